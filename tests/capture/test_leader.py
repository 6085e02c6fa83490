"""The cluster listener in one process: gaps in the stream are read from PostgreSQL by
position, entries read twice or unreadable change nothing, and a write fence on a
standby wakes the leader. (Processes, failover and outages: test_broker.py.)"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import psycopg
import pytest

from livedata.capture import log, wire
from livedata.capture.broker import Stream
from livedata.capture.leader import LOCK_SQL, ClusterListener
from livedata.capture.log import Snapshot
from tests.capture.redis_server import RedisServer
from tests.capture.test_listener import collect, until, write

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def redis_url(tmp_path: Path):
    server = RedisServer(tmp_path)
    server.start()
    yield server.url
    server.stop()


def test_a_gap_in_the_stream_is_read_from_the_log_and_nothing_comes_twice(
    db_params, redis_url, caplog
):
    """The test holds the leader's lock and appends batches itself, leaving one out."""

    async def main() -> tuple[list[str], int]:
        async with await psycopg.AsyncConnection.connect(**db_params, autocommit=True) as me:
            await me.execute(LOCK_SQL, {"key": "livedata"})  # no process becomes the leader
            listener = ClusterListener(broker_url=redis_url, params=db_params)
            got, consumer = collect()
            follower = listener.follow(consumer)
            task = asyncio.create_task(listener.run())
            await asyncio.wait_for(listener.started.wait(), 10)
            stream = Stream(redis_url, "livedata", maxlen=100)
            await write(db_params, "one", "two")
            first = await log.read_batch_async(me, listener.position)
            await write(db_params, "three")
            second = await log.read_batch_async(me, first.end)
            await stream.append(wire.encode(second))  # the first never reaches the broker
            await until(lambda: len(got) == 3)
            await stream.append(wire.encode(second))  # twice
            await stream.append(b"not a batch")
            await write(db_params, "four")
            third = await log.read_batch_async(me, second.end)
            await stream.append(wire.encode(third))
            await until(lambda: len(got) == 4)
            await until(lambda: listener.broker_batches == 3)
            listener.stop()
            await task
            await stream.close()
            assert listener.source == "broker" and not listener.leader.elections
            return [r.new["name"] for r in got], follower.catch_ups

    with caplog.at_level(logging.WARNING, logger="livedata.listener"):
        names, catch_ups = asyncio.run(main())
    assert names == ["one", "two", "three", "four"]
    assert catch_ups == 1
    assert "skipped: not a livedata batch" in caplog.text


def test_a_write_fence_on_a_standby_wakes_the_leader(db_params, redis_url):
    """No NOTIFY (nothing captured was written) and a 30 s poll: the fence still holds
    for well under a second in either process."""

    async def main() -> list[float]:
        listeners = [ClusterListener(broker_url=redis_url, params=db_params) for _ in range(2)]
        followers = []
        for listener in listeners:
            listener.leader.poll_interval = 30
            followers.append(listener.follow(collect()[1]))
        tasks = [asyncio.create_task(listener.run()) for listener in listeners]
        await until(lambda: sum(x.leader.leading for x in listeners) == 1)
        waits = []
        async with await psycopg.AsyncConnection.connect(**db_params, autocommit=True) as conn:
            for follower in reversed(followers):  # the standby's first, if it is second
                await conn.execute("SELECT pg_current_xact_id()")  # moves the snapshot only
                text = (await (await conn.execute(log.HEAD_SQL)).fetchone())[0]
                start = asyncio.get_running_loop().time()
                await asyncio.wait_for(follower.wait_covers(Snapshot.parse(text)), 5)
                waits.append(asyncio.get_running_loop().time() - start)
        for listener in listeners:
            listener.stop()
        await asyncio.gather(*tasks)
        return waits

    waits = asyncio.run(main())
    assert max(waits) < 1.0, waits


def test_a_step_another_reader_abandoned_does_not_hold_the_follower(db_params, redis_url):
    """A follower that read a gap up to the end of a step skips the rest of that step's
    batches; when they never come (their leader died, a new one goes on from the end of
    the step), it takes the new chain instead of skipping it for ever."""

    async def main() -> list[str]:
        async with await psycopg.AsyncConnection.connect(**db_params, autocommit=True) as me:
            await me.execute(LOCK_SQL, {"key": "livedata"})  # the test is the leader
            listener = ClusterListener(broker_url=redis_url, params=db_params)
            got, consumer = collect()
            listener.follow(consumer)
            task = asyncio.create_task(listener.run())
            await asyncio.wait_for(listener.started.wait(), 10)
            stream = Stream(redis_url, "livedata", maxlen=100)
            await write(db_params, "zero")
            skipped = await log.read_batch_async(me, listener.position)
            async with me.transaction():  # one transaction larger than a batch
                for i in range(25):
                    await me.execute(
                        "INSERT INTO livedata_demo_author (name, email) VALUES (%s, %s)",
                        [f"big{i}", f"big{i}@example.com"],
                    )
            part = await log.read_batch_async(me, skipped.end, limit=10)
            assert not part.end.complete
            await stream.append(wire.encode(part))  # a gap, ending inside a step
            await until(lambda: len(got) == 26)
            await write(db_params, "later")
            # the new leader's chain goes on from the step's end: the rest of it never comes
            after = await log.read_batch_async(me, log.Position(part.end.end))
            await stream.append(wire.encode(after))
            await until(lambda: len(got) == 27)
            listener.stop()
            await task
            await stream.close()
            return [r.new["name"] for r in got]

    names = asyncio.run(main())
    assert names == ["zero", *[f"big{i}" for i in range(25)], "later"]


def test_watched_channels_are_heard_on_a_standby_and_while_the_broker_is_down(db_params, tmp_path):
    """``watch`` (the webhook dispatcher's "subscriptions changed") needs no leadership:
    a standby hears it on its lock session, and with the broker gone, on the session
    that reads the log itself."""
    server = RedisServer(tmp_path)
    server.start()

    async def main() -> None:
        async with await psycopg.AsyncConnection.connect(**db_params, autocommit=True) as me:
            await me.execute(LOCK_SQL, {"key": "livedata"})  # it stays a standby
            listener = ClusterListener(broker_url=server.url, params=db_params)
            calls: list[float] = []
            listener.watch("livedata_test_watch", lambda: calls.append(0))
            task = asyncio.create_task(listener.run())
            await until(lambda: calls)  # told once listening (what came before is lost)
            for _ in range(2):
                before = len(calls)
                await me.execute("NOTIFY livedata_test_watch")
                await until(lambda before=before: len(calls) > before, 5)
                if listener.source != "database":
                    server.stop()  # the second time, without the broker
                    await until(lambda: listener.source == "database")
            listener.stop()
            await task

    try:
        asyncio.run(main())
    finally:
        server.stop()


def test_the_leaders_own_process_gets_each_batch_without_waiting_for_the_broker(
    db_params, redis_url
):
    """Appends are held back (CLIENT PAUSE WRITE): the leader's followers still get the
    row at once, and the stream's copy, when it comes, is not handed on again."""

    async def main() -> tuple[list[str], float, ClusterListener]:
        import redis.asyncio as redis

        listener = ClusterListener(broker_url=redis_url, params=db_params)
        got, consumer = collect()
        listener.follow(consumer)
        task = asyncio.create_task(listener.run())
        await until(lambda: listener.leader.leading, 15)
        await write(db_params, "first")
        await until(lambda: len(got) == 1 and listener.source == "broker")
        admin = redis.Redis.from_url(redis_url)
        await admin.execute_command("CLIENT", "PAUSE", 4000, "WRITE")
        start = asyncio.get_running_loop().time()
        await write(db_params, "paused")
        await until(lambda: len(got) == 2, 2.0)
        waited = asyncio.get_running_loop().time() - start
        before = listener.broker_batches
        await until(lambda: listener.broker_batches > before, 10)  # the stream's copy
        await write(db_params, "after")
        await until(lambda: len(got) == 3)
        listener.stop()
        await task
        await admin.aclose()
        return [r.new["name"] for r in got], waited, listener

    names, waited, listener = asyncio.run(main())
    assert names == ["first", "paused", "after"]
    assert waited < 2.0
    assert listener.local_batches >= 3


def test_a_standby_with_no_fence_waiting_does_not_wake_the_leader(db_params, redis_url):
    """A standby contends for the lock every retry; only a write fence waiting on it
    sends the NOTIFY that has the leader read the log. Idle, the leader reads nothing."""

    async def main() -> tuple[int, int]:
        listeners = [ClusterListener(broker_url=redis_url, params=db_params) for _ in range(2)]
        for listener in listeners:
            listener.leader.poll_interval = 30  # no poll reads: only a NOTIFY wakes it
            listener.leader.retry = 0.1
            listener.follow(collect()[1])
        tasks = [asyncio.create_task(x.run()) for x in listeners]
        await until(lambda: sum(x.leader.leading for x in listeners) == 1)
        leader = next(x.leader for x in listeners if x.leader.leading)
        standby = next(x for x in listeners if not x.leader.leading)
        await asyncio.sleep(0.5)  # its first reads after taking the lock
        idle_from = leader.reads
        await asyncio.sleep(2.0)  # about 20 of the standby's retries
        idle = leader.reads - idle_from
        fenced_from = leader.reads
        async with await psycopg.AsyncConnection.connect(**db_params, autocommit=True) as conn:
            await conn.execute("SELECT pg_current_xact_id()")  # moves the snapshot only
            text = (await (await conn.execute(log.HEAD_SQL)).fetchone())[0]
        await asyncio.wait_for(standby.followers[0].wait_covers(Snapshot.parse(text)), 5)
        fenced = leader.reads - fenced_from
        for listener in listeners:
            listener.stop()
        await asyncio.gather(*tasks)
        return idle, fenced

    idle, fenced = asyncio.run(main())
    assert idle == 0
    assert fenced >= 1
