"""Admission control: how fast a process takes on new DDP sessions and subscriptions.

When a server process restarts, its clients reconnect to the others within
milliseconds (Meteor's client retries twice after 10 ms before backing off): hundreds of
``connect`` handshakes and subscriptions arrive at once on processes already serving
their own clients. Taken all at once, the event loop stalls for the clients already
there (bench/storm.py: a survivor's answer to a ping took up to 0.8-1.8 s without
admission, 0.4-0.5 s with it). Here they wait their turn instead (queued, not refused):

- ``Pacer``: new sessions at ``DDP_ACCEPT_RATE`` per second with bursts of
  ``DDP_ACCEPT_BURST`` (a token bucket, kept as reservations: each arrival is given the
  time it may start, so the queue costs no task and is served in arrival order). One
  whose turn would come later than ``DDP_ACCEPT_WAIT`` seconds is refused at once with
  ``Busy``: the queue is bounded by rate x wait + burst, whatever arrives.
- ``Slots``: at most ``DDP_SUBSCRIBE_CONCURRENCY`` subscriptions being set up at once
  (waiting for the engine's lock, the initial query, the documents entering the
  client's mergebox; the streaming that follows is at the client's pace and holds no
  slot, so clients that read nothing cannot hold them all); one waiting longer than
  ``DDP_SUBSCRIBE_WAIT`` gets ``Busy``.

``Busy`` is Meteor's error 503, which clients may retry. A raw WebSocket waits for its
turn before it is accepted and is refused with HTTP 503 (Meteor's client then backs off
as after any failed attempt); a SockJS session waits at its first message (``connect``)
and is refused with a DDP ``error`` and a close with 1013 (Try Again Later); the engine
turns a subscription's into ``nosub``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from livedata.ddp.errors import DDPError


class Busy(DDPError):
    """The process is taking on sessions or subscriptions as fast as it is allowed to,
    and this one would wait longer than its deadline: retry later."""

    def __init__(self, what: str, wait: float) -> None:
        super().__init__(503, f"Server busy: {what} would wait more than {wait:g} s")
        self.wait = wait


class Pacer:
    """A token bucket of ``rate`` per second holding ``burst`` tokens, as reservations
    (GCRA): ``reserve`` says how long an arrival waits for its token, in arrival order.
    ``rate`` 0: no limit (never waits)."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self._interval = 1.0 / rate if rate > 0 else 0.0
        #: how far ahead of now the bucket may be booked before arrivals wait
        self._tolerance = max(0, burst - 1) * self._interval
        #: when the next token is free (theoretical arrival time); in the past: idle
        self._next = 0.0

    def reserve(self, now: float, max_wait: float) -> float | None:
        """Seconds until this arrival may start (0: at once), its token taken; None when
        that is more than ``max_wait`` (no token taken)."""
        if self.rate <= 0:
            return 0.0
        start = max(now, self._next - self._tolerance)
        wait = start - now
        if wait > max_wait:
            return None
        self._next = max(self._next, now) + self._interval
        return wait

    def cancel(self, now: float) -> None:
        """An arrival that reserved gave up before its turn: its token goes back (only
        the time booked ahead, never below now, so no burst is created)."""
        if self.rate > 0:
            self._next = max(now, self._next - self._interval)


class Admission:
    """Paces the start of DDP sessions (``DDP_ACCEPT_*``); counts the ones waiting."""

    def __init__(self, rate: float, burst: int, wait: float) -> None:
        self.pacer = Pacer(rate, burst)
        self.max_wait = wait
        #: sessions waiting for their turn now (for operators' figures)
        self.waiting = 0

    async def admit(self) -> None:
        """Wait for this session's turn; ``Busy`` when it is further off than the wait."""
        delay = self.pacer.reserve(time.monotonic(), self.max_wait)
        if delay is None:
            raise Busy("a new session", self.max_wait)
        if delay <= 0:
            return
        self.waiting += 1
        try:
            await asyncio.sleep(delay)
        except asyncio.CancelledError:
            self.pacer.cancel(time.monotonic())
            raise
        finally:
            self.waiting -= 1


class Slots:
    """At most ``limit`` holders at once (0: no limit), waiters served in arrival order;
    one waiting longer than ``wait`` seconds gets ``Busy``."""

    def __init__(self, limit: int, wait: float, what: str) -> None:
        self.limit = limit
        self.max_wait = wait
        self.what = what
        self._semaphore = asyncio.Semaphore(limit) if limit > 0 else None
        #: holders now, and those waiting for a slot (for operators' figures, tests)
        self.active = 0
        self.waiting = 0

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        semaphore = self._semaphore
        if semaphore is not None:
            self.waiting += 1
            try:
                async with asyncio.timeout(self.max_wait):
                    await semaphore.acquire()
            except TimeoutError:
                raise Busy(self.what, self.max_wait) from None
            finally:
                self.waiting -= 1
        self.active += 1
        try:
            yield
        finally:
            self.active -= 1
            if semaphore is not None:
                semaphore.release()
