"""``Follower.lag``: what the listener read that a slow consumer was not handed yet."""

from __future__ import annotations

import asyncio

import pytest

from livedata.capture.listener import Listener
from livedata.capture.log import Batch
from tests.capture.test_listener import until, write

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_blocked_consumer_shows_its_lag_until_it_takes_the_rows(db_params) -> None:
    async def main() -> None:
        listener = Listener(params=db_params)
        release = asyncio.Event()
        handed: list[int] = []

        async def slow(batch: Batch) -> None:
            handed.extend(r.id for r in batch.rows)
            await release.wait()

        follower = listener.follow(slow, name="slow", models=["livedata_demo.author"])
        task = asyncio.create_task(listener.run())
        try:
            await asyncio.wait_for(listener.connected.wait(), 10)
            assert follower.lag() == (0, 0, 0.0)
            await write(db_params, "one")  # handed on, then the consumer blocks
            await until(lambda: len(handed) == 1)
            await write(db_params, "two", "three")  # two more transactions, queued
            await until(lambda: listener.rows >= 3)
            await until(lambda: follower.lag()[1] == 3)  # the one in hand and the two queued
            transactions, rows, seconds = follower.lag()
            assert (transactions, rows) == (3, 3)
            assert 0 <= seconds < 30
            release.set()
            await until(lambda: follower.lag()[1] == 0)
            assert follower.lag() == (0, 0, 0.0)
            assert len(handed) == 3
        finally:
            listener.stop()
            await task

    asyncio.run(main())
