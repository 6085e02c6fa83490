"""The listener reads the log from its cursor and survives the database going away."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import time
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
import pytest

from livedata.capture import log
from livedata.capture.listener import Listener
from livedata.capture.log import ChangeRow, MissingLogTable
from tests.conftest import ROOT, livedata_cmd

pytestmark = pytest.mark.django_db(transaction=True)

INSERT = "INSERT INTO bookstore_author (name, email) VALUES (%s, %s)"


async def until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        await asyncio.sleep(0.01)


def collect() -> tuple[list[ChangeRow], Callable[[list[ChangeRow]], Awaitable[None]]]:
    got: list[ChangeRow] = []

    async def consumer(rows: list[ChangeRow]) -> None:
        got.extend(rows)

    return got, consumer


async def write(params: dict[str, Any], *names: str) -> None:
    async with await psycopg.AsyncConnection.connect(**params, autocommit=True) as conn:
        for name in names:
            await conn.execute(INSERT, [name, f"{name}@example.com"])


def test_delivers_new_commits_in_order_woken_by_notify(db_params):
    async def main() -> tuple[list[str], float]:
        await write(db_params, "before")
        got, consumer = collect()
        listener = Listener(params=db_params)  # starts at the head: "before" is not replayed
        listener.poll_interval = 30  # only NOTIFY can wake it in time
        listener.add_consumer(consumer)
        task = asyncio.create_task(listener.run())
        await asyncio.wait_for(listener.connected.wait(), 10)
        start = time.monotonic()
        await write(db_params, "one", "two", "three")
        await until(lambda: len(got) == 3)
        elapsed = time.monotonic() - start
        listener.stop()
        await task
        return [r.new["name"] for r in got], elapsed

    names, elapsed = asyncio.run(main())
    assert names == ["one", "two", "three"]
    assert elapsed < 5  # woken by NOTIFY, not by the (30 s) poll timer


def test_replays_from_a_cursor_and_batches(db_params, head):
    async def main() -> list[ChangeRow]:
        await write(db_params, *[f"n{i}" for i in range(25)])
        got, consumer = collect()
        listener = Listener(params=db_params, cursor=head)
        listener.batch_size = 10
        batches: list[int] = []

        async def count(rows: list[ChangeRow]) -> None:
            batches.append(len(rows))

        listener.add_consumer(consumer)
        listener.add_consumer(count)
        task = asyncio.create_task(listener.run())
        await until(lambda: len(got) == 25)
        listener.stop()
        await task
        assert batches == [10, 10, 5]
        return got

    got = asyncio.run(main())
    assert [r.new["name"] for r in got] == [f"n{i}" for i in range(25)]


def test_a_failing_consumer_does_not_stop_the_others(db_params, caplog):
    async def main() -> list[ChangeRow]:
        got, consumer = collect()

        async def broken(rows: list[ChangeRow]) -> None:
            raise RuntimeError("consumer bug")

        listener = Listener(params=db_params)
        listener.add_consumer(broken)
        listener.add_consumer(consumer)
        task = asyncio.create_task(listener.run())
        await asyncio.wait_for(listener.connected.wait(), 10)
        await write(db_params, "x", "y")
        await until(lambda: len(got) == 2)
        listener.stop()
        await task
        return got

    with caplog.at_level(logging.ERROR, logger="livedata.listener"):
        assert len(asyncio.run(main())) == 2
    assert "consumer" in caplog.text and "failed" in caplog.text


def test_missing_change_log_table_is_a_clear_error(connect, db_params):
    name = f"livedata_empty_{os.getpid()}"
    admin = connect()
    admin.execute(f"DROP DATABASE IF EXISTS {name}")
    admin.execute(f"CREATE DATABASE {name}")
    try:
        listener = Listener(params={**db_params, "dbname": name})
        with pytest.raises(MissingLogTable, match="run `livedata migrate`"):
            asyncio.run(listener.run())
    finally:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def test_survives_a_real_database_restart(tmp_path, caplog):
    """Down at start, up, down again mid-stream, up: every commit delivered exactly once."""
    from livedata.embedded.server import ensure_server

    server = ensure_server(tmp_path / "pgdata")
    dbname = "restart_test"
    env = {
        **{k: v for k, v in os.environ.items() if k != "DATABASE_URL"},
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "PYTHONPATH": str(ROOT),
        "LIVEDATA_PGDATA": str(server.data_dir),
        "LIVEDATA_DB_NAME": dbname,
    }
    subprocess.run(livedata_cmd("migrate", "-v0"), env=env, check=True, cwd=ROOT, timeout=120)
    params = {"host": server.socket_dir, "dbname": dbname, "user": "postgres"}
    committed: list[str] = []

    async def write_some(prefix: str, n: int) -> None:
        names = [f"{prefix}{i}" for i in range(n)]
        await write(params, *names)
        committed.extend(names)

    async def main() -> tuple[list[ChangeRow], Listener]:
        with psycopg.connect(**params, autocommit=True) as conn:
            start = log.head(conn)
        server.stop()  # the database is down when the listener starts
        got, consumer = collect()
        listener = Listener(params=params, cursor=start)
        listener.reconnect_max = 0.5
        listener.add_consumer(consumer)
        task = asyncio.create_task(listener.run())
        await asyncio.sleep(1.0)
        assert not listener.connected.is_set()
        await asyncio.to_thread(server.start)
        await asyncio.wait_for(listener.connected.wait(), 15)
        await write_some("a", 20)
        await until(lambda: len(got) == 20)

        await asyncio.to_thread(server.stop)  # restart under the listener's feet
        await asyncio.sleep(0.5)
        await asyncio.to_thread(server.start)
        # written right after the restart, maybe before the listener is back: its NOTIFY
        # is lost, the catch-up read must still find these rows
        await write_some("b", 20)
        await until(lambda: len(got) == 40, timeout=20)
        await write_some("c", 5)
        await until(lambda: len(got) == 45)
        await asyncio.sleep(0.3)  # anything extra (a duplicate) would arrive by now
        listener.stop()
        await task
        return got, listener

    try:
        with caplog.at_level(logging.WARNING, logger="livedata.listener"):
            got, listener = asyncio.run(main())
    finally:
        server.discard()
    assert [r.new["name"] for r in got] == committed
    assert len({r.cursor for r in got}) == len(got)
    assert listener.connects >= 2
    assert "unavailable" in caplog.text and "retrying" in caplog.text


def test_write_fence_resolves_after_the_transaction_is_delivered(db_params):
    """What DDP methods wait on before `updated`: their transaction reached the consumers."""

    async def main() -> None:
        got, consumer = collect()
        listener = Listener(params=db_params)
        listener.poll_interval = 30  # only NOTIFY or wake() may drive it
        listener.add_consumer(consumer)
        task = asyncio.create_task(listener.run())
        await asyncio.wait_for(listener.connected.wait(), 10)
        async with await psycopg.AsyncConnection.connect(**db_params) as conn:
            await conn.execute(INSERT, ["fenced", "fenced@example.com"])
            txid = int(
                (await (await conn.execute("SELECT pg_current_xact_id()::text")).fetchone())[0]
            )
            await conn.commit()
        await asyncio.wait_for(listener.wait_delivered(txid), 5)
        assert [r.new["name"] for r in got] == ["fenced"]
        # a transaction that wrote no captured row (no NOTIFY): wake() reads at once
        async with await psycopg.AsyncConnection.connect(**db_params) as conn:
            await conn.execute("CREATE TEMP TABLE t (x int)")
            await conn.execute("INSERT INTO t VALUES (1)")
            txid = int(
                (await (await conn.execute("SELECT pg_current_xact_id()::text")).fetchone())[0]
            )
            await conn.commit()
        await asyncio.wait_for(listener.wait_delivered(txid), 5)
        assert len(got) == 1
        listener.stop()
        await task

    asyncio.run(main())
