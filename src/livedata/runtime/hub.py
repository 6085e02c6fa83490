"""``Runtime``: the listener, pools, services and ticker one process shares.

Made once by the composition root (``livedata.server.app.LivedataApp``) and passed to
what needs it: the live-query engine (``livequery.engine``), DDP sessions, and the
services (webhook delivery, the pull feed) through ``service_factories``. The listener
is started with the server's lifespan, or on the first DDP connection when the server
has no lifespan support.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from livedata import dbthreads
from livedata.capture.follower import Follower
from livedata.capture.leader import ClusterListener
from livedata.capture.leader import listener as cluster_listener
from livedata.capture.listener import Listener
from livedata.capture.log import Batch, Snapshot
from livedata.conf import LivedataSettings, livedata_settings
from livedata.ddp.errors import DDPError
from livedata.ddp.ratelimit import RateLimiter, Rule
from livedata.runtime import figures
from livedata.runtime.admission import Admission, Slots
from livedata.runtime.fence import Invocable, fence_snapshot, run_sync, run_waiting
from livedata.runtime.figures import Figure

logger = logging.getLogger("livedata.server")

#: How long a subscription waits for the listener to start (the database being down).
LISTEN_TIMEOUT = 30.0


class Ticked(Protocol):
    """What the runtime's ticker drives (a DDP session: heartbeats, connect deadline)."""

    def tick(self, now: float) -> None: ...


@dataclass
class _Consumer:
    consumer: Callable[[Batch], Awaitable[None]]
    name: str
    models: list[str] | None
    fenced: bool


class Runtime:
    """What every session, view and service of this process shares."""

    #: Background services started and stopped with every listening runtime (webhook
    #: delivery, the pull feed): callables taking the runtime and returning an object
    #: with async ``start()``/``stop()``, or None to stay off.
    service_factories: ClassVar[list[Callable[[Runtime], Any]]] = []

    def __init__(self, *, settings: LivedataSettings | None = None, listen: bool = True) -> None:
        self.settings = settings or livedata_settings()
        self.listener: Listener | None = cluster_listener() if listen else None
        self._consumers: list[_Consumer] = []
        #: the follower whose progress ``fence`` waits on (the live queries')
        self.fenced_follower: Follower | None = None
        self._listener_task: asyncio.Task[None] | None = None
        self._services: list[Any] | None = None
        #: Live DDP sessions (``server.ddp_session``): one task ticks them all (heartbeats,
        #: the connect deadline), and the figures count them
        self.sessions: set[Any] = set()
        #: the process's figures (``runtime.figures``): each part registers its source
        self.figures = figures.Board()
        self.figures.add("listener", self._figures)
        if isinstance(self.listener, ClusterListener):
            self._plug_cluster(self.listener)
        self._ticker: asyncio.Task[None] | None = None
        #: thread pools (each thread keeps a DB connection), with their sizes: "default"
        #: runs sync methods and live-query refreshes; methods that hash passwords run on
        #: "accounts", so a login flood cannot take the threads everything else needs
        sizes = {
            "default": self.settings.DDP_METHOD_THREADS,
            "accounts": self.settings.ACCOUNTS_THREADS,
        }
        self.pools = {
            name: (ThreadPoolExecutor(max_workers=n, thread_name_prefix=f"livedata-{name}"), n)
            for name, n in sizes.items()
        }
        self.executor = self.pools["default"][0]
        self.rate_limiter = RateLimiter(Rule.from_setting(r) for r in self.settings.DDP_RATE_LIMITS)
        #: admission control (``admission``): the pace new DDP sessions start at, and the
        #: subscriptions set up at once, so a reconnect storm queues instead of piling up
        conf = self.settings
        self.admission = Admission(
            conf.DDP_ACCEPT_RATE, conf.DDP_ACCEPT_BURST, conf.DDP_ACCEPT_WAIT
        )
        self.subscribe_slots = Slots(
            conf.DDP_SUBSCRIBE_CONCURRENCY, conf.DDP_SUBSCRIBE_WAIT, "a new subscription"
        )

    def _plug_cluster(self, listener: ClusterListener) -> None:
        """The broker's and the leader's figures (``Board.broker``, ``Board.leader``)."""
        name = f"{socket.gethostname()}:{os.getpid()}"
        self.figures.broker = lambda: figures.BrokerState(
            "redis", listener.source == "broker", f"batches from {listener.source}"
        )
        self.figures.leader = lambda: figures.LeaderState(
            listener.leader.leading, name if listener.leader.leading else None
        )

    def follow(
        self,
        consumer: Callable[[Batch], Awaitable[None]],
        *,
        name: str,
        models: Iterable[str] | None = None,
        fenced: bool = False,
    ) -> None:
        """Feed ``consumer`` the listener's batches once started (before ``start``).

        ``fenced``: ``fence`` waits on this consumer's follower (one: the live queries,
        so ``updated`` follows the data a method wrote)."""
        if fenced and any(c.fenced for c in self._consumers):
            raise ValueError("only one consumer of a runtime can be fenced on")
        models = list(models) if models is not None else None
        self._consumers.append(_Consumer(consumer, name, models, fenced))

    async def start(self) -> None:
        figures.serving(self.figures)
        if self.listener is not None and self._listener_task is None:
            for c in self._consumers:
                follower = self.listener.follow(c.consumer, name=c.name, models=c.models)
                if c.fenced:
                    self.fenced_follower = follower
            self._listener_task = asyncio.create_task(self.listener.run())
            self._listener_task.add_done_callback(_report_listener_exit)
        if self.listener is not None and self._services is None:
            self._services = [s for f in self.service_factories if (s := f(self)) is not None]
            for service in self._services:
                await service.start()
        conf = self.settings
        if self._ticker is None and (conf.DDP_HEARTBEAT_INTERVAL or conf.DDP_CONNECT_TIMEOUT):
            self._ticker = asyncio.create_task(self._tick_sessions())

    async def listening(self) -> None:
        """Wait until the listener has fixed its starting cursor.

        A subscription's initial query must come after that point, or a commit landing
        between the query and the listener's start would never reach the subscriber.
        """
        if self.listener is None:
            return
        await self.start()
        try:
            await asyncio.wait_for(self.listener.started.wait(), LISTEN_TIMEOUT)
        except TimeoutError:
            raise DDPError(
                503, "Live data is unavailable: the database cannot be reached"
            ) from None

    async def _tick_sessions(self) -> None:
        conf = self.settings
        periods = [conf.DDP_HEARTBEAT_INTERVAL, conf.DDP_HEARTBEAT_TIMEOUT]
        if not conf.DDP_HEARTBEAT_INTERVAL:
            periods = []
        periods += [conf.DDP_CONNECT_TIMEOUT] if conf.DDP_CONNECT_TIMEOUT else []
        step = max(0.05, min(periods) / 4)
        while True:
            await asyncio.sleep(step)
            now = time.monotonic()
            for session in list(self.sessions):
                try:
                    session.tick(now)
                except Exception:
                    logger.exception("livedata: heartbeat of a session failed")

    async def stop(self) -> None:
        figures.stopped(self.figures)
        for service in reversed(self._services or []):
            await service.stop()
        self._services = None
        if self._ticker is not None:
            self._ticker.cancel()
            await asyncio.gather(self._ticker, return_exceptions=True)
            self._ticker = None
        if self.listener is not None and self._listener_task is not None:
            self.listener.stop()
            await asyncio.gather(self._listener_task, return_exceptions=True)
            self._listener_task = None
        for pool, size in self.pools.values():
            await asyncio.get_running_loop().run_in_executor(None, dbthreads.close_all, pool, size)
            pool.shutdown(wait=False, cancel_futures=True)

    async def invoke(self, method: Invocable, call: Any, params: list[Any]) -> tuple[Any, Any]:
        """Run a method; returns its result and the snapshot its writes are fenced on
        (taken after they committed; None: it wrote nothing)."""
        bound = method.bind(call, params)
        loop = asyncio.get_running_loop()
        # the caller's context variables (the audit context) go with it to the thread:
        # run_in_executor, unlike asyncio.to_thread, does not carry them
        carried = contextvars.copy_context().run
        pool = self.pools.get(method.pool, self.pools["default"])[0]
        wait = self.settings.DDP_DATABASE_WAIT
        if method.is_async:
            if method.login_required or method.permission_required:
                check = method.check_access
                await loop.run_in_executor(pool, carried, run_waiting, wait, check, call.user)
            result = await method.func(*bound.args, **bound.kwargs)
            fence = await loop.run_in_executor(pool, fence_snapshot)
            return result, fence
        return await loop.run_in_executor(pool, carried, run_sync, method, call, bound, wait)

    async def fence(self, snapshot: Snapshot) -> None:
        """Wait until the fenced consumer (the live queries) was handed everything
        ``snapshot`` sees (the write fence: ``updated`` follows the method's data).
        Other transactions still open when it was taken are not waited for."""
        if self.listener is None:
            return
        await self.start()
        if self.fenced_follower is None:
            return
        try:
            await asyncio.wait_for(
                self.fenced_follower.wait_covers(snapshot), self.settings.DDP_METHOD_FENCE_TIMEOUT
            )
        except TimeoutError:
            logger.warning("livedata: write fence at %s timed out; sending updated", snapshot)

    def _figures(self) -> list[Figure]:
        """The listener's figures and each follower's lag (see ``runtime.figures``)."""
        listener = self.listener
        if listener is None:
            return []
        age = -1.0 if listener.last_read is None else time.monotonic() - listener.last_read
        out = [
            Figure.one("listener_connected", "gauge", _CONNECTED, listener.connected.is_set()),
            *(
                Figure.one(f"listener_{attr}_total", "counter", text, getattr(listener, attr))
                for attr, text in _LISTENER_TOTALS
            ),
            Figure.one("listener_last_read_age_seconds", "gauge", _LAST_READ, age),
        ]
        per_consumer = [Figure(name, kind, text) for name, kind, text in _CONSUMER]
        for follower in listener.followers:
            labels = (("consumer", follower.name),)
            values = (*follower.lag(), follower.catching_up, follower.catch_ups)
            for figure, value in zip(per_consumer, values, strict=True):
                figure.values.append((labels, float(value)))
        return out + per_consumer


_CONNECTED = "1 while the listener's LISTEN connection is up"
_LAST_READ = "seconds since the listener's last read of the log (-1: none yet)"
#: the listener's counters: (its attribute, what it counts)
_LISTENER_TOTALS = [
    ("connects", "times the listener (re)connected"),
    ("reads", "reads of the change log"),
    ("batches", "batches read from the change log and offered to the consumers"),
    ("rows", "change rows read from the log"),
    ("notifies", "wake-ups by NOTIFY"),
]
#: each follower's figures, in the order of ``Follower.lag()``, catching_up, catch_ups
_CONSUMER: list[tuple[str, Any, str]] = [
    (
        "consumer_lag_transactions",
        "gauge",
        "committed transactions read by the listener, not yet handed to the consumer",
    ),
    ("consumer_lag_rows", "gauge", "change rows read, not yet handed to the consumer"),
    (
        "consumer_lag_seconds",
        "gauge",
        "seconds since the oldest change not yet handed to the consumer was written",
    ),
    (
        "consumer_catching_up",
        "gauge",
        "1 while the consumer reads the log itself (behind: its lag is at least the above)",
    ),
    ("consumer_catch_ups_total", "counter", "times the consumer read the log itself"),
]


def _report_listener_exit(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("livedata: the change-log listener stopped", exc_info=task.exception())
