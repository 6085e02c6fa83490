"""The listener reads the log from its position, feeds followers, survives restarts."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
import pytest

from livedata.capture import log
from livedata.capture.listener import Listener
from livedata.capture.log import Batch, ChangeRow, MissingLogTable
from tests.conftest import private_database

pytestmark = pytest.mark.django_db(transaction=True)

INSERT = "INSERT INTO livedata_demo_author (name, email) VALUES (%s, %s)"


async def until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        await asyncio.sleep(0.01)


def collect() -> tuple[list[ChangeRow], Callable[[Batch], Awaitable[None]]]:
    got: list[ChangeRow] = []

    async def consumer(batch: Batch) -> None:
        got.extend(batch.rows)

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
        listener.follow(consumer)
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


def test_a_connection_killed_while_idle_is_reopened_and_nothing_is_lost(db_params, caplog):
    """The listener watches its idle socket itself: a backend terminated while it waits
    must end the wait with a reconnect (not a busy loop or a silent stall)."""

    async def main() -> tuple[list[str], int]:
        got, consumer = collect()
        listener = Listener(params=db_params)
        listener.poll_interval = 30  # no timer read hides a dead connection
        listener.reconnect_min = 0.05
        listener.follow(consumer)
        task = asyncio.create_task(listener.run())
        await asyncio.wait_for(listener.connected.wait(), 10)
        await write(db_params, "before kill")
        await until(lambda: len(got) == 1)
        async with await psycopg.AsyncConnection.connect(**db_params, autocommit=True) as conn:
            await conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                "AND (query LIKE 'LISTEN %%' OR query LIKE '%%pg_current_snapshot%%')"
            )
        await until(lambda: listener.connects == 2)
        await write(db_params, "after kill")
        await until(lambda: len(got) == 2)
        listener.stop()
        await task
        return [r.new["name"] for r in got], listener.connects

    with caplog.at_level(logging.WARNING, logger="livedata.listener"):
        names, connects = asyncio.run(main())
    assert names == ["before kill", "after kill"]
    assert connects == 2
    assert "unavailable" in caplog.text


def test_replays_from_a_position_and_batches(db_params, head):
    async def main() -> list[ChangeRow]:
        await write(db_params, *[f"n{i}" for i in range(25)])
        got, consumer = collect()
        listener = Listener(params=db_params, position=head)
        listener.batch_size = 10
        batches: list[int] = []

        async def count(batch: Batch) -> None:
            batches.append(len(batch.rows))

        listener.follow(consumer)
        listener.follow(count)
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

        async def broken(batch: Batch) -> None:
            raise RuntimeError("consumer bug")

        listener = Listener(params=db_params)
        listener.follow(broken)
        listener.follow(consumer)
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
    private_database(server, dbname)
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
        listener = Listener(params=params, position=start)
        listener.reconnect_max = 0.5
        listener.follow(consumer)
        task = asyncio.create_task(listener.run())
        # the marker: a second failed attempt was logged (it tried, failed and retried)
        await until(lambda: caplog.text.count("unavailable") >= 2)
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
        # the marker: committed last, so delivered after anything extra (a duplicate)
        await write_some("marker", 1)
        await until(lambda: any(r.new["name"] == "marker0" for r in got))
        listener.stop()
        await task
        return got, listener

    try:
        with caplog.at_level(logging.WARNING, logger="livedata.listener"):
            got, listener = asyncio.run(main())
    finally:
        server.discard()
    assert [r.new["name"] for r in got] == committed
    assert len({r.id for r in got}) == len(got)
    assert listener.connects >= 2
    assert "unavailable" in caplog.text and "retrying" in caplog.text


def test_write_fence_resolves_after_the_transaction_is_delivered(db_params):
    """What DDP methods wait on before `updated`: their transaction reached the consumers."""

    async def main() -> None:
        got, consumer = collect()
        listener = Listener(params=db_params)
        listener.poll_interval = 30  # only NOTIFY or wake() may drive it
        follower = listener.follow(consumer)
        task = asyncio.create_task(listener.run())
        await asyncio.wait_for(listener.connected.wait(), 10)
        async with await psycopg.AsyncConnection.connect(**db_params) as conn:
            await conn.execute(INSERT, ["fenced", "fenced@example.com"])
            txid = int(
                (await (await conn.execute("SELECT pg_current_xact_id()::text")).fetchone())[0]
            )
            await conn.commit()
        await asyncio.wait_for(follower.wait_seen(txid), 5)
        assert [r.new["name"] for r in got] == ["fenced"]
        # a transaction that wrote no captured row (no NOTIFY): wake() reads at once
        async with await psycopg.AsyncConnection.connect(**db_params) as conn:
            await conn.execute("CREATE TEMP TABLE t (x int)")
            await conn.execute("INSERT INTO t VALUES (1)")
            txid = int(
                (await (await conn.execute("SELECT pg_current_xact_id()::text")).fetchone())[0]
            )
            await conn.commit()
        await asyncio.wait_for(follower.wait_seen(txid), 5)
        assert len(got) == 1
        listener.stop()
        await task

    asyncio.run(main())


def test_a_long_transaction_elsewhere_delays_nothing(db_params):
    """An unrelated transaction (with an xid) stays open: later commits arrive at once."""

    async def main() -> float:
        got, consumer = collect()
        listener = Listener(params=db_params)
        listener.poll_interval = 30
        listener.follow(consumer)
        task = asyncio.create_task(listener.run())
        await asyncio.wait_for(listener.connected.wait(), 10)
        async with await psycopg.AsyncConnection.connect(**db_params) as long:
            await long.execute("CREATE TEMP TABLE scratch (x int)")
            await long.execute("INSERT INTO scratch VALUES (1)")  # holds an xid, stays open
            start = time.monotonic()
            await write(db_params, "meanwhile")
            await until(lambda: len(got) == 1, timeout=5)
            elapsed = time.monotonic() - start
            await long.rollback()
        listener.stop()
        await task
        return elapsed

    assert asyncio.run(main()) < 1.0


def test_a_slow_consumer_delays_no_other(db_params):
    """Each follower has its own task: one stuck in its consumer holds back only itself."""

    async def main() -> tuple[float, list[ChangeRow]]:
        fast, fast_consumer = collect()
        slow: list[ChangeRow] = []
        release = asyncio.Event()

        async def slow_consumer(batch: Batch) -> None:
            await release.wait()  # e.g. a live query re-running a huge query
            slow.extend(batch.rows)

        listener = Listener(params=db_params)
        listener.follow(slow_consumer, name="slow")
        listener.follow(fast_consumer, name="fast")
        task = asyncio.create_task(listener.run())
        await asyncio.wait_for(listener.connected.wait(), 10)
        start = time.monotonic()
        for i in range(5):
            await write(db_params, f"n{i}")
        await until(lambda: len(fast) == 5, timeout=5)
        elapsed = time.monotonic() - start
        release.set()
        await until(lambda: len(slow) == 5)
        listener.stop()
        await task
        return elapsed, slow

    elapsed, slow = asyncio.run(main())
    assert elapsed < 2.0
    assert [r.new["name"] for r in slow] == [f"n{i}" for i in range(5)]


def test_a_follower_over_its_bound_catches_up_from_the_log(db_params):
    """A follower whose queue overflows drops it and reads the log itself: it still gets
    every change once, in order, while the others were served from memory."""

    async def main() -> tuple[list[ChangeRow], list[ChangeRow], int]:
        everything, consumer = collect()
        lagging: list[ChangeRow] = []
        gate = asyncio.Event()

        async def lagging_consumer(batch: Batch) -> None:
            await gate.wait()
            lagging.extend(batch.rows)

        listener = Listener(params=db_params)
        listener.batch_size = 10
        listener.follow(consumer)
        behind = listener.follow(lagging_consumer, max_rows=20)
        task = asyncio.create_task(listener.run())
        await asyncio.wait_for(listener.connected.wait(), 10)
        for i in range(12):  # 12 transactions of 5 rows: 60 rows, the bound is 20
            await write(db_params, *[f"t{i}-{j}" for j in range(5)])
        await until(lambda: len(everything) == 60)
        gate.set()
        await until(lambda: len(lagging) == 60, timeout=20)
        # the marker: committed last, so each follower gets it after any duplicate
        await write(db_params, "marker")
        await until(lambda: any(r.new["name"] == "marker" for r in everything))
        await until(lambda: any(r.new["name"] == "marker" for r in lagging), timeout=20)
        listener.stop()
        await task
        return everything, lagging, behind.catch_ups

    everything, lagging, catch_ups = asyncio.run(main())
    assert [r.id for r in lagging] == [r.id for r in everything]
    assert catch_ups >= 1


def test_one_read_per_isolated_commit(db_params):
    """A commit's NOTIFY wakes one read, and a burst is not one read per NOTIFY."""

    async def main() -> tuple[list[int], int, int]:
        got, consumer = collect()
        listener = Listener(params=db_params)
        listener.poll_interval = 30  # no timer reads during the test
        listener.follow(consumer)
        task = asyncio.create_task(listener.run())
        await asyncio.wait_for(listener.connected.wait(), 10)
        await asyncio.sleep(0.2)
        per_commit = []
        for i in range(10):
            before = listener.reads
            await write(db_params, f"solo{i}")
            await until(lambda n=i: len(got) == n + 1)
            # a second read would follow at once. No marker can stand in for this wait:
            # anything that makes the listener read again (a commit, wake()) is one more
            # read too, so a second read slower than 0.05 s still passes unseen
            await asyncio.sleep(0.05)
            per_commit.append(listener.reads - before)
        before = listener.reads

        def burst() -> None:
            with psycopg.connect(**db_params, autocommit=True) as c:
                for i in range(200):
                    c.execute(INSERT, [f"burst{i}", f"burst{i}@example.com"])

        # the listener is busy elsewhere (its event loop held) while 200 transactions
        # commit one by one: their 200 NOTIFYs wait, and must cost one read, not 200
        writer = threading.Thread(target=burst)
        writer.start()
        writer.join()
        await until(lambda: len(got) == 210)
        burst_reads = listener.reads - before
        listener.stop()
        await task
        return per_commit, burst_reads, listener.notifies

    per_commit, burst_reads, _ = asyncio.run(main())
    assert per_commit == [1] * 10
    # 1, or 2-3 when the last NOTIFYs reach the listener's socket after its first read
    # began (PostgreSQL forwards them asynchronously, after each COMMIT has returned)
    assert burst_reads <= 3, burst_reads


def test_write_fence_does_not_wait_for_a_long_transaction(db_params):
    """The fence of a write taken as a snapshot after it committed: other transactions
    still open then (here one left idle) are not waited for."""
    from livedata.capture.position import Snapshot

    async def main() -> float:
        got, consumer = collect()
        listener = Listener(params=db_params)
        listener.poll_interval = 30
        follower = listener.follow(consumer)
        task = asyncio.create_task(listener.run())
        await asyncio.wait_for(listener.connected.wait(), 10)
        async with await psycopg.AsyncConnection.connect(**db_params) as idle:
            await idle.execute(INSERT, ["idle", "idle@example.com"])  # then idle in transaction
            await write(db_params, "fenced")
            async with await psycopg.AsyncConnection.connect(**db_params, autocommit=True) as c:
                text = (await (await c.execute("SELECT pg_current_snapshot()::text")).fetchone())[0]
            start = time.monotonic()
            await asyncio.wait_for(follower.wait_covers(Snapshot.parse(text)), 5)
            elapsed = time.monotonic() - start
            assert [r.new["name"] for r in got] == ["fenced"]
            await idle.rollback()
        listener.stop()
        await task
        return elapsed

    assert asyncio.run(main()) < 1.0


def test_a_follower_from_a_pruned_position_is_told_and_stops(db_params, connect, caplog):
    """Catching up from a position older than the pruned horizon cannot fill the gap: the
    follower stops and says so (``on_expired``), the others go on."""
    from livedata.capture.log import START, PositionExpired

    async def main() -> tuple[list[PositionExpired], list[ChangeRow]]:
        await write(db_params, "old")
        log.prune(connect(), older_than=None)
        told: list[PositionExpired] = []

        async def on_expired(exc: PositionExpired) -> None:
            told.append(exc)

        got, consumer = collect()
        others, other_consumer = collect()
        listener = Listener(params=db_params)
        task = asyncio.create_task(listener.run())
        await asyncio.wait_for(listener.started.wait(), 10)
        lost = listener.follow(consumer, position=START, on_expired=on_expired)
        listener.follow(other_consumer)
        await until(lambda: bool(told))
        await write(db_params, "new")
        await until(lambda: len(others) == 1)
        listener.stop()
        await task
        assert lost.expired is told[0]
        return told, got

    with caplog.at_level(logging.ERROR, logger="livedata.listener"):
        told, got = asyncio.run(main())
    assert "refetch" in str(told[0]) and got == []
    assert "stopped" in caplog.text


def test_watched_channels_share_the_connection_and_are_told_after_a_reconnect(db_params):
    """``watch``: a NOTIFY on another channel calls its watcher (a burst once) and reads
    no log; a reconnection calls it too (what was sent meanwhile is lost), except a
    watcher with ``on_connect=False``, called on NOTIFYs only."""

    quiet: list[str] = []

    async def main() -> tuple[list[float], int, int]:
        calls: list[float] = []
        listener = Listener(params=db_params)
        listener.poll_interval = 30
        listener.reconnect_min = 0.05
        task = asyncio.create_task(listener.run())
        await asyncio.wait_for(listener.connected.wait(), 10)
        listener.watch("livedata_test_other", lambda: calls.append(time.monotonic()))
        listener.watch("livedata_test_other", lambda: quiet.append("x"), on_connect=False)
        await until(lambda: len(calls) == 1)  # told once it LISTENs
        reads = listener.reads
        async with await psycopg.AsyncConnection.connect(**db_params, autocommit=True) as conn:
            async with conn.transaction():  # folded into one NOTIFY by PostgreSQL
                for _ in range(3):
                    await conn.execute("SELECT pg_notify('livedata_test_other', '')")
            await until(lambda: len(calls) >= 2)
            await conn.execute("SELECT pg_notify('livedata_test_other', 'again')")
            await until(lambda: len(calls) >= 3)
            reads_after, notifies = listener.reads, listener.notifies
            await conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                "AND (query LIKE 'LISTEN %%' OR query LIKE '%%pg_current_snapshot%%')"
            )
        await until(lambda: listener.connects == 2 and len(calls) >= 4)
        listener.stop()
        await task
        return calls, reads_after - reads, notifies

    calls, reads, notifies = asyncio.run(main())
    assert len(calls) == 4
    assert quiet == ["x", "x"]  # the two NOTIFYs, not the (re)connections
    assert reads == 0 and notifies == 0  # the log's own channel was not woken
