"""Followers sharing a ConnectionLimit: many catch up at once on at most N connections."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
import pytest

from livedata.capture.follower import ConnectionLimit, Follower
from livedata.capture.listener import Listener
from livedata.capture.log import Batch, ChangeRow
from tests.capture.test_listener import until, write

pytestmark = pytest.mark.django_db(transaction=True)


def test_many_followers_catch_up_on_one_shared_connection(db_params, head) -> None:
    async def main() -> tuple[list[list[ChangeRow]], ConnectionLimit, int]:
        await write(db_params, *[f"backlog{i}" for i in range(30)])
        listener = Listener(params=db_params)  # at the head: the backlog is behind it
        opened = 0
        peak = 0

        async def connect() -> psycopg.AsyncConnection:
            nonlocal opened
            opened += 1
            return await listener.connect()

        limit = ConnectionLimit(connect, 1)
        got: list[list[ChangeRow]] = [[] for _ in range(5)]

        def consumer_for(i: int) -> Any:
            async def consume(batch: Batch) -> None:
                nonlocal peak
                peak = max(peak, limit.in_use)
                got[i].extend(batch.rows)
                await asyncio.sleep(0.01)  # catching up takes a while: others must wait

            return consume

        task = asyncio.create_task(listener.run())
        await asyncio.wait_for(listener.started.wait(), 10)
        for i in range(5):
            follower = Follower(
                consumer_for(i),
                connect=limit.connect,
                position=head,
                models=["livedata_demo.author"],
                limit=7,  # several reads each
                wake=listener.wake,
            )
            listener.followers.append(follower)
        await write(db_params, "live")  # a batch starting ahead of them all: a gap
        await until(lambda: all(len(g) == 31 for g in got))
        await write(db_params, "after")  # then they follow the listener's stream
        await until(lambda: all(len(g) == 32 for g in got))
        listener.stop()
        await task
        await limit.close()
        return got, limit, opened

    got, limit, opened = asyncio.run(main())
    names = [f"backlog{i}" for i in range(30)] + ["live", "after"]
    for rows in got:
        assert [r.new["name"] for r in rows] == names  # each exactly once, in order
    assert opened == 1 and limit.opened == 1  # reused by all five catch-ups
    assert limit.in_use == 0


def test_a_broken_connection_is_not_reused(db_params) -> None:
    async def main() -> int:
        async def connect() -> psycopg.AsyncConnection:
            return await psycopg.AsyncConnection.connect(**db_params, autocommit=True)

        limit = ConnectionLimit(connect, 2)
        first = await limit.connect()
        await first.execute("SELECT 1")
        await first.close()  # handed back and kept
        again = await limit.connect()  # the same one
        with pytest.raises(psycopg.OperationalError):
            await again.execute("SELECT pg_terminate_backend(pg_backend_pid())")
        await again.close()  # broken: dropped
        third = await limit.connect()
        await third.execute("SELECT 1")
        await third.close()
        await limit.close()
        return limit.opened

    assert asyncio.run(main()) == 2
