"""The per-process listener: the one place that reads the change log and fans it out.

One PostgreSQL connection per process does ``LISTEN``; a NOTIFY only wakes it (its payload
is empty and may be lost while reconnecting), so on every wake-up, on a timer and after
every reconnect it reads the log itself from its position (``livedata.capture.log``:
snapshot differences, so a long transaction elsewhere delays nothing) and offers each
``Batch`` to every follower. Notifications that arrived before a read began are covered
by it and dropped: a burst of commits costs one read per batch, not one per NOTIFY.

The listener never waits for a consumer: each consumer is a ``Follower`` with its own
task and bounded queue, which catches up from the log by itself when it falls behind
(``livedata.capture.follower``). Across database restarts the listener resumes from its
position, so each follower receives every committed change exactly once.

    listener = Listener()
    follower = listener.follow(my_async_callable)   # called with a Batch
    listener.watch("my_channel", my_callback)       # other NOTIFYs, on the same connection
    await listener.run()                            # until listener.stop()

``watch`` lets other parts of the process wait for a NOTIFY of their own (the webhook
dispatcher: subscriptions changed) without a connection and a poll of their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import psycopg
from psycopg import pq, sql

from livedata.capture import log
from livedata.capture.follower import DEFAULT_MAX_ROWS, Connect, Consumer, Follower, first_line
from livedata.capture.log import Batch, MissingLogTable, Position, PositionExpired
from livedata.conf import livedata_settings

logger = logging.getLogger("livedata.listener")

# Keys of Django's connection parameters that are not libpq connection options.
_NOT_CONNINFO = {"cursor_factory", "context", "prepare_threshold", "server_side_binding"}


def connection_params(alias: str = "default") -> dict[str, Any]:
    """psycopg.connect() keyword arguments for Django's database ``alias``."""
    from django.db import connections

    params = connections[alias].get_connection_params()
    return {k: v for k, v in params.items() if k not in _NOT_CONNINFO and v not in (None, "")}


#: ``application_name`` prefix of the listener's LISTEN connection: ``livedata status``
#: finds the live server processes by it in ``pg_stat_activity``
APPLICATION_NAME = "livedata listener"


def application_name(role: str = APPLICATION_NAME) -> str:
    """``role host:pid``, within PostgreSQL's 63 characters."""
    return f"{role} {socket.gethostname()}:{os.getpid()}"[:63]


def _generic_plans(params: dict[str, Any], role: str = APPLICATION_NAME) -> dict[str, Any]:
    """The listener's own session: autocommit, and generic plans for its one read query,
    named ``role host:pid`` (unless the database settings or ``PGAPPNAME`` name it).

    PostgreSQL otherwise keeps re-planning the read (its visibility-bound CTE makes the
    custom plan look cheaper), which tripled its cost (0.65 ms vs 0.2 ms per read).
    """
    options = " ".join(
        filter(None, [params.get("options"), "-c plan_cache_mode=force_generic_plan"])
    )
    # the database settings' name, else libpq's PGAPPNAME (it applies only when none is given)
    name = params.get("application_name") or os.environ.get("PGAPPNAME") or application_name(role)
    return {**params, "options": options, "autocommit": True, "application_name": name}


def describe(params: dict[str, Any]) -> str:
    host = params.get("host") or "localhost"
    port = f":{params['port']}" if params.get("port") else ""
    return f"{params.get('dbname', '?')} on {host}{port}"


class Listener:
    """Reads committed changes from ``position`` on and offers them to followers.

    ``position=None`` starts at the log's head when the listener first connects (only
    changes committed after that are delivered); pass ``log.START`` or a saved position
    to replay. ``models`` (labels) limits what is read.
    """

    def __init__(
        self,
        *,
        position: Position | str | None = None,
        models: Iterable[str] | None = None,
        params: dict[str, Any] | None = None,
        alias: str = "default",
    ) -> None:
        conf = livedata_settings()
        self.position: Position | None = Position.parse(position) if position is not None else None
        self.models = sorted({m.lower() for m in models}) if models else None
        self._params = params
        self._alias = alias
        self.channel = conf.LISTENER_NOTIFY_CHANNEL
        self.batch_size = conf.LISTENER_BATCH_SIZE
        self.poll_interval = conf.LISTENER_POLL_INTERVAL
        self.reconnect_min = conf.LISTENER_RECONNECT_MIN
        self.reconnect_max = conf.LISTENER_RECONNECT_MAX
        self.followers: list[Follower] = []
        #: other channels this connection LISTENs on, with their callbacks (``watch``)
        #: (callback, also after each (re)connection)
        self._watches: dict[str, list[tuple[Callable[[], None], bool]]] = {}
        self._unlistened: set[str] = set()
        self._stopping = asyncio.Event()
        self._poke = asyncio.Event()
        self.connected = asyncio.Event()
        #: set once the starting position is fixed: from then on no commit can be missed
        self.started = asyncio.Event()
        self.connects = 0  # how many times a connection was (re)established
        self.reads = 0  # log reads (statements) so far
        self.notifies = 0  # wake-ups by NOTIFY
        self.batches = 0  # batches offered to the followers (with rows or a moved end)
        self.rows = 0  # change rows read
        self.last_read: float | None = None  # time.monotonic() of the last read

    # --- followers --------------------------------------------------------------------
    def follow(
        self,
        consumer: Consumer,
        *,
        name: str = "",
        position: Position | None = None,
        models: Iterable[str] | None = None,
        max_rows: int = DEFAULT_MAX_ROWS,
        connect: Connect | None = None,
        on_expired: Callable[[PositionExpired], Awaitable[None]] | None = None,
    ) -> Follower:
        """Feed ``consumer`` every batch from now on (or from ``position``), on its own task.

        ``connect`` opens its catch-up connections (default: a new one each time; pass a
        ``ConnectionLimit``'s to share a few). ``on_expired`` is told when ``position``
        turns out to be older than the pruned horizon (the follower then stops). A
        follower from a saved position starts catching up at once, not at the next
        commit. Call from the event loop the listener runs on.
        """
        follower = Follower(
            consumer,
            connect=connect or self.connect,
            name=name,
            position=position if position is not None else self.position,
            models=models,
            limit=self.batch_size,
            max_rows=max_rows,
            wake=self.wake,
            on_expired=on_expired,
        )
        self.followers.append(follower)
        if position is not None and self.position is not None:
            # the listener's next batch starts here: catch up to it now
            follower.offer(Batch(self.position, self.position, []))
        return follower

    async def unfollow(self, follower: Follower) -> None:
        if follower in self.followers:
            self.followers.remove(follower)
        await follower.close()

    async def connect(self) -> psycopg.AsyncConnection:
        """A new autocommit connection to the listener's database (for catching up)."""
        params = self._params or await asyncio.to_thread(connection_params, self._alias)
        return await psycopg.AsyncConnection.connect(**_generic_plans(params, "livedata catch-up"))

    def watch(self, channel: str, callback: Callable[[], None], *, on_connect: bool = True) -> None:
        """Call ``callback`` (on the event loop) on every NOTIFY on ``channel``, and after
        every (re)connection, since NOTIFYs sent while disconnected are lost. A burst of
        NOTIFYs received together calls it once. ``on_connect=False``: on NOTIFYs only,
        for a watcher whose sender repeats itself (the dashboard's, every refresh) and
        which must not start anything when nobody sent one."""
        if channel == self.channel:
            raise ValueError(f"{channel!r} is the change log's own channel")
        if channel not in self._watches:
            self._watches[channel] = []
            self._unlistened.add(channel)
            self._poke.set()  # LISTEN on it now, not after the next commit
        self._watches[channel].append((callback, on_connect))

    def _notified(self, channels: set[str], *, connecting: bool = False) -> None:
        for channel in channels:
            for callback, on_connect in self._watches.get(channel, ()):
                if connecting and not on_connect:
                    continue
                try:
                    callback()
                except Exception:
                    logger.exception("livedata listener: a watcher of %r failed", channel)

    async def _listen_watched(
        self, conn: psycopg.AsyncConnection, channels: set[str] | None = None
    ) -> None:
        """LISTEN on ``channels`` (default: those watched since the last call), then tell
        their watchers: whatever was sent before this session listened is lost."""
        fresh = set(self._unlistened if channels is None else channels)
        for channel in sorted(fresh):
            await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
        self._unlistened -= fresh
        self._notified(fresh, connecting=True)

    def stop(self) -> None:
        self._stopping.set()
        self._poke.set()

    def wake(self) -> None:
        """Read the log now instead of waiting for a NOTIFY or the poll timer."""
        self._poke.set()

    async def run(self) -> None:
        """Serve until ``stop()``; reconnects with back-off when the database goes away."""
        try:
            await self._read_loop()
        finally:
            for follower in list(self.followers):
                await follower.close()

    async def _read_loop(self) -> None:
        delay = self.reconnect_min
        while not self._stopping.is_set():
            conn: psycopg.AsyncConnection | None = None
            params: dict[str, Any] = self._params or {}
            try:
                await self._before_connect()
                params = params or await asyncio.to_thread(connection_params, self._alias)
                conn = await psycopg.AsyncConnection.connect(**self._session(params))
                await self._listen(conn)
                delay = self.reconnect_min
                await self._serve(conn)
            except psycopg.errors.UndefinedTable as exc:
                raise MissingLogTable() from exc
            except (psycopg.OperationalError, psycopg.InterfaceError, OSError) as exc:
                self.connected.clear()
                if self._stopping.is_set():
                    break
                self._report_unavailable(exc, params, delay)
                await self._sleep(delay)
                delay = min(delay * 2, self.reconnect_max)
            finally:
                self.connected.clear()
                if conn is not None:
                    await conn.close()

    async def _before_connect(self) -> None:
        """What must hold before the read loop opens its session (an ``OSError`` backs off)."""

    def _session(self, params: dict[str, Any]) -> dict[str, Any]:
        """The connection parameters of the read loop's session."""
        return _generic_plans(params)

    def _report_unavailable(self, exc: BaseException, params: dict[str, Any], delay: float) -> None:
        logger.warning(
            "livedata listener: database %s unavailable (%s); retrying in %.1fs",
            describe(params) if params else repr(self._alias),
            first_line(exc),
            delay,
        )

    async def _listen(self, conn: psycopg.AsyncConnection) -> None:
        await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))
        exists = await (await conn.execute(log.TABLE_EXISTS_SQL)).fetchone()
        if not exists or not exists[0]:
            raise MissingLogTable()
        await self._listen_watched(conn, set(self._watches))
        if self.position is None:
            self.position = await log.head_async(conn)
        # followers made before this learn where the stream starts (a write fence waiting
        # on one must not wait for the next commit), those behind start catching up
        self.publish(Batch(self.position, self.position, []))
        self.started.set()
        self.connects += 1
        self.connected.set()
        logger.debug("livedata listener connected at %s", self.position)

    async def _serve(self, conn: psycopg.AsyncConnection) -> None:
        while not self._stopping.is_set():
            if self._unlistened:  # watched since
                await self._listen_watched(conn)
            await self._drain(conn)
            await self._wait(conn)

    async def _wait(self, conn: psycopg.AsyncConnection, timeout: float | None = None) -> None:
        """Until a NOTIFY, a ``wake()``, ``stop()`` or the poll timer (or ``timeout``).

        The socket is watched directly (``loop.add_reader`` and libpq's own input
        functions) rather than through ``conn.notifies()``: that costs two tasks, a lock
        and a generator per wake-up, a third of the listener's CPU at 1000 commits/s. The
        connection is the listener's alone and idle here, so nothing else reads it.
        """
        backlog = getattr(conn, "_notifies_backlog", None)
        if backlog:  # NOTIFYs psycopg received during the last read
            ours = self._sort_backlog(backlog)
            if ours:  # read again
                self.notifies += ours
                return
        pgconn = conn.pgconn
        channel = self.channel.encode()
        fd = pgconn.socket
        poke = self._poke
        lost: list[psycopg.Error] = []

        def readable() -> None:
            try:
                pgconn.consume_input()
                if pgconn.status != pq.ConnStatus.OK:
                    raise psycopg.OperationalError("the server closed the connection")
                notified = False
                others: set[str] = set()
                while (n := pgconn.notifies()) is not None:
                    if n.relname == channel:
                        self.notifies += 1
                        notified = True
                    else:
                        others.add(n.relname.decode())
                if others:
                    self._notified(others)
            except psycopg.Error as exc:  # the connection broke while idle
                lost.append(exc)
                poke.set()
                return
            if notified:
                poke.set()

        loop = asyncio.get_running_loop()
        readable()  # input that arrived with the last read's results
        loop.add_reader(fd, readable)
        timer = loop.call_later(self.poll_interval if timeout is None else timeout, poke.set)
        try:
            await poke.wait()
        finally:
            timer.cancel()
            loop.remove_reader(fd)
        if lost:
            raise psycopg.OperationalError(f"listener connection lost: {first_line(lost[0])}")

    async def _drain(self, conn: psycopg.AsyncConnection) -> None:
        assert self.position is not None
        while True:
            # whatever committed before this read began is in it: their NOTIFYs are moot
            backlog = getattr(conn, "_notifies_backlog", None)
            if backlog:
                self._sort_backlog(backlog)
            self._poke.clear()
            batch = await log.read_batch_async(
                conn, self.position, limit=self.batch_size, models=self.models
            )
            self.reads += 1
            self.last_read = time.monotonic()
            if batch.rows or batch.end != batch.start:
                self.batches += 1
                self.rows += len(batch.rows)
                await self._emit(batch)
            self.position = batch.end
            if batch.caught_up:
                return

    def _sort_backlog(self, backlog: Any) -> int:
        """Empty psycopg's backlog of NOTIFYs: calls the watchers of other channels,
        returns how many were the log's."""
        ours = 0
        others: set[str] = set()
        for n in backlog:
            if n.channel == self.channel:
                ours += 1
            else:
                others.add(n.channel)
        backlog.clear()
        if others:
            self._notified(others)
        return ours

    async def _emit(self, batch: Batch) -> None:
        """Where a batch read goes: this process's followers (the leader: the broker)."""
        self.publish(batch)

    def publish(self, batch: Batch) -> None:
        for follower in list(self.followers):
            follower.offer(batch)

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), timeout=seconds)
