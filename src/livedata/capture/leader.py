"""One reader of the log per cluster: a leader elected in PostgreSQL, batches via a broker.

Without a broker every process's ``Listener`` reads the log itself: N processes, N
reads of every batch. With ``LIVEDATA["LISTENER_BROKER_URL"]`` set, ``listener()``
returns a ``ClusterListener``, and:

- **one leader reads.** Each process keeps a database session that tries
  ``pg_try_advisory_lock`` every ``LISTENER_LEADER_RETRY`` seconds, and only while the
  broker answers. The holder runs the listener's own read loop (LISTEN, reads by
  snapshot difference) on that very session and appends each batch, positions and rows
  (``capture.wire``), to the stream (``capture.broker``). When the leader dies or its
  session breaks, PostgreSQL releases the lock and a standby takes over from where its
  own process was; a leader that cannot append gives the lock up.
- **every process consumes** the stream and offers each batch to its followers, exactly
  as its own reads would be. The leader's own process offers each batch to its followers
  as it reads it, before the append: they skip the broker's round trip, and drop the
  stream's copy when it comes (it ends where they already are).
- **PostgreSQL stays the source of truth.** A process starts at the log's head, as a
  listener does. Batches carry positions, and a follower reads any gap from the log
  itself (``capture.follower``): entries trimmed or lost with a restarted broker, a
  new leader's chain, this process's reconnect. So each follower still receives every
  committed row once, in order, whatever fails.
- **the broker down**: a process that cannot read the stream reads the log itself (the
  listener's loop, as without a broker) until the stream delivers again.

    listener = leader.listener()       # a Listener, or a ClusterListener with a broker
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import psycopg

from livedata.capture import log, wire
from livedata.capture.broker import BrokerUnavailable, Stream, describe_url
from livedata.capture.follower import first_line
from livedata.capture.listener import Listener
from livedata.capture.log import Batch, MissingLogTable
from livedata.conf import livedata_settings

logger = logging.getLogger("livedata.listener")

#: Larger encoded batches go as a mark (``wire.mark``): followers read those rows from
#: the log themselves instead of the broker holding megabytes per entry.
MAX_ENTRY_BYTES = 1024 * 1024

_LOCK = "pg_try_advisory_lock(hashtext('livedata.leader'), hashtext(%(key)s))"
LOCK_SQL = f"SELECT {_LOCK}"
#: A standby asked to read now (a write fence) wakes the leader as a commit's trigger does.
NUDGE_SQL = f"SELECT pg_notify(%(channel)s, ''), {_LOCK}"


def listener(**kwargs: Any) -> Listener:
    """The process's listener: a ``ClusterListener`` when a broker is configured."""
    url = livedata_settings().LISTENER_BROKER_URL
    return ClusterListener(broker_url=url, **kwargs) if url else Listener(**kwargs)


class ClusterListener(Listener):
    """A ``Listener`` fed by the cluster's leader through the broker (module docstring).

    ``source`` says where its batches come from now: "broker" or "database" (reading the
    log itself while the broker cannot be read), "starting" before either.
    """

    def __init__(
        self,
        *,
        broker_url: str,
        stream: str | None = None,
        params: dict[str, Any] | None = None,
        alias: str = "default",
    ) -> None:
        super().__init__(params=params, alias=alias)
        conf = livedata_settings()
        self.stream = Stream(
            broker_url,
            stream or conf.LISTENER_BROKER_STREAM,
            maxlen=conf.LISTENER_BROKER_MAXLEN,
            block=min(1.0, self.poll_interval),
        )
        self.leader = Leader(self)
        self.source = "starting"
        self.broker_batches = 0  # batches taken from the stream
        self.local_batches = 0  # batches this process's leader offered as it read them
        self.fallbacks = 0  # times it went to read the log itself

    def wake(self) -> None:
        super().wake()
        self.leader.wake()

    def offer_local(self, batch: Batch) -> None:
        """A batch this process's leader just read: to the followers now, not after the
        broker's round trip (they drop the stream's copy: it ends where they are)."""
        self.local_batches += 1
        self._advance(batch)

    def _advance(self, batch: Batch) -> None:
        self.publish(batch)
        if self.position is None or not self.position.covers(batch.end):
            self.position = batch.end  # never back (the stream's copy of a local batch)

    def watch(self, channel: str, callback: Callable[[], None], *, on_connect: bool = True) -> None:
        """As ``Listener.watch``: on the leader's session (leading or standing by) while the
        broker is up, on the session reading the log itself while it is down."""
        super().watch(channel, callback, on_connect=on_connect)
        self.leader.watch(channel, callback, on_connect=on_connect)

    def stop(self) -> None:
        super().stop()
        self.leader.stop()

    async def run(self) -> None:
        leading = asyncio.create_task(self.leader.run(), name="livedata leader")
        try:
            await self._consume()
        finally:
            self.leader.stop()
            await asyncio.gather(leading, return_exceptions=True)
            for follower in list(self.followers):
                await follower.close()
            await self.stream.close()

    async def _start(self) -> None:
        """Fix the starting position at the log's head (a commit after it is delivered)."""
        delay = self.reconnect_min
        while self.position is None and not self._stopping.is_set():
            try:
                conn = await self.connect()
                try:
                    exists = await (await conn.execute(log.TABLE_EXISTS_SQL)).fetchone()
                    if not exists or not exists[0]:
                        raise MissingLogTable()
                    self.position = await log.head_async(conn)
                finally:
                    await conn.close()
            except (psycopg.OperationalError, psycopg.InterfaceError, OSError) as exc:
                logger.warning(
                    "livedata listener: database unavailable (%s); retrying in %.1fs",
                    first_line(exc),
                    delay,
                )
                await self._sleep(delay)
                delay = min(delay * 2, self.reconnect_max)
        if self.position is not None:
            self.publish(Batch(self.position, self.position, []))
            self.started.set()

    async def _consume(self) -> None:
        await self._start()
        after: str | None = None
        direct: asyncio.Task[None] | None = None
        delay = self.reconnect_min
        try:
            while not self._stopping.is_set():
                if direct is not None and direct.done():
                    direct.result()  # its loop ended with an error (no log table): raise it
                try:
                    if after is None:
                        after = await self.stream.last_id()
                    entries = await self.stream.read(after)
                except BrokerUnavailable as exc:
                    if direct is None:
                        logger.warning(
                            "livedata listener: %s; reading the log from PostgreSQL until "
                            "it is back",
                            exc,
                        )
                        direct = asyncio.create_task(self._read_loop(), name="livedata direct")
                        self.fallbacks += 1
                        self.source = "database"
                    await self._sleep(delay)
                    delay = min(delay * 2, self.reconnect_max)
                    continue
                delay = self.reconnect_min
                if not entries:
                    continue
                if direct is not None:
                    # the stream delivers again: stop reading ourselves, then take it
                    direct.cancel()
                    await asyncio.gather(direct, return_exceptions=True)
                    direct = None
                    logger.warning(
                        "livedata listener: broker %s is back",
                        describe_url(self.stream.url),
                    )
                self.source = "broker"
                for entry_id, data in entries:
                    after = entry_id
                    try:
                        batch = wire.decode(data)
                    except wire.WireError as exc:
                        # a gap: the next batch has the followers read it from the log
                        logger.warning("livedata listener: entry %s skipped: %s", entry_id, exc)
                        continue
                    self.broker_batches += 1
                    self._advance(batch)
        finally:
            if direct is not None:
                direct.cancel()
                await asyncio.gather(direct, return_exceptions=True)


class Leader(Listener):
    """The listener's read loop, run while holding the cluster's lock, into the stream.

    It reads on the session that holds the lock: when that session ends, so do its
    reads, so a leader that lost the lock cannot go on appending. ``wake()`` (a write
    fence waiting in this process) reads now on the leader; on a standby it sends the
    channel's NOTIFY on the standby's session, which wakes the leader wherever it runs.
    """

    def __init__(self, owner: ClusterListener) -> None:
        super().__init__(params=owner._params, alias=owner._alias)
        self.owner = owner
        self.retry = livedata_settings().LISTENER_LEADER_RETRY
        self.elections = 0  # times this process became the leader
        #: a write fence waits in this process (``wake()``): a standby nudges the leader
        self._nudge = False

    @property
    def leading(self) -> bool:
        return self.connected.is_set()

    def wake(self) -> None:
        self._nudge = True
        super().wake()

    async def _before_connect(self) -> None:
        await self.owner.stream.ping()  # contend only while we could append

    async def _listen(self, conn: psycopg.AsyncConnection) -> None:
        stream = self.owner.stream
        args = {"key": stream.key, "channel": self.channel}
        await self._listen_watched(conn, set(self._watches))
        while not self._stopping.is_set():
            if self._unlistened:  # watched since
                await self._listen_watched(conn)
            await stream.ping()
            # only for a fence: the retry's own timer sets _poke too, and a NOTIFY then
            # would have the leader read the log once a retry for nothing
            nudged, self._nudge = self._nudge, False
            self._poke.clear()
            row = await (await conn.execute(NUDGE_SQL if nudged else LOCK_SQL, args)).fetchone()
            if row and row[-1]:
                break
            await self._wait(conn, self.retry)  # or stop(), wake(), a watched NOTIFY
        else:
            return
        # go on from where this process is: the stream goes on where it was
        self.position = self.owner.position
        self.elections += 1
        await super()._listen(conn)
        logger.info("livedata listener: this process is the leader from %s", self.position)

    def _session(self, params: dict[str, Any]) -> dict[str, Any]:
        """TCP keepalives both ways (over TCP): a leader cut off from the database without
        a reset notices within ~20 s, and the server ends its session, and so frees the
        lock for a standby, as fast (the defaults wait two hours). The whole cluster waits
        on this one session, where without a broker only one process would."""
        session = super()._session(params)
        keepalives = (
            "-c tcp_keepalives_idle=10 -c tcp_keepalives_interval=3 -c tcp_keepalives_count=3"
        )
        return {
            "keepalives": 1,
            "keepalives_idle": 10,
            "keepalives_interval": 3,
            "keepalives_count": 3,
            **session,
            "options": f"{session['options']} {keepalives}",
        }

    def publish(self, batch: Batch) -> None:
        """Nothing: the leader has no followers of its own (its process's are fed below)."""

    async def _emit(self, batch: Batch) -> None:
        self.owner.offer_local(batch)  # this process first: one round trip less
        data = wire.encode(batch)
        if len(data) > MAX_ENTRY_BYTES:
            data = wire.mark(batch)
        await self.owner.stream.append(data)

    def _report_unavailable(self, exc: BaseException, params: dict[str, Any], delay: float) -> None:
        if isinstance(exc, BrokerUnavailable):  # the consumer said so once already
            logger.debug("livedata leader: %s; retrying in %.1fs", exc, delay)
        else:
            super()._report_unavailable(exc, params, delay)
