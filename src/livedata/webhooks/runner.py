"""One subscription's delivery loop: its position, its buffer of changes, its retries.

A ``Runner`` exists while this process holds the subscription (see ``dispatcher``). It
knows three positions: ``examined`` (the last log row it looked at), ``horizon`` (every
row up to here was looked at; after a complete read it is the read's visibility bound)
and ``position()`` (every change up to here was acknowledged or does not match: what is
written back as the durable cursor). Changes come from the listener's batches while they
follow on from ``horizon`` (``offer``), else from its own reads of the log (``_fill``).
One request is in flight at a time, so the receiver sees the log's order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import psycopg

from livedata.capture.log import ChangeRow, Cursor
from livedata.webhooks.selection import Selection, batch_payload, encode
from livedata.webhooks.signing import Signer
from livedata.webhooks.transport import Result

if TYPE_CHECKING:
    from livedata.webhooks.dispatcher import Dispatcher

logger = logging.getLogger("livedata.webhooks")

MAX_ID = 2**63 - 1
#: a runner whose next retry is further away than this is handed back until then
PARK_AFTER = 10.0


def webhook_id(sub_id: int, epoch: int, first: Cursor, last: Cursor | None = None) -> str:
    """Stable across retries and workers: subscription, position epoch, change cursor."""
    base = f"msg_{sub_id}_{epoch}_{first.txid}_{first.id}"
    return base if last is None or last == first else f"{base}_{last.txid}_{last.id}"


@dataclass
class Config:
    """A subscription's row, as a worker needs it."""

    id: int
    owner_id: int
    url: str
    labels: list[str]
    operations: list[str]
    filter: dict[str, Any]
    fields: Any
    batch: int
    secret: str
    cursor: Cursor
    generation: int
    epoch: int
    attempts: int
    next_attempt_at: datetime | None
    updated: datetime

    @classmethod
    def from_row(cls, r: tuple[Any, ...]) -> Config:
        return cls(
            r[0], r[1], r[2], list(r[3]), list(r[4]), r[5] or {}, r[6], r[7], r[8],
            Cursor(r[9], r[10]), r[11], r[12], r[13], r[14], r[15],
        )  # fmt: skip

    @property
    def version(self) -> tuple[int, datetime]:
        return (self.generation, self.updated)

    def due(self, now: datetime) -> bool:
        return self.next_attempt_at is None or (self.next_attempt_at - now).total_seconds() < 1


@dataclass(slots=True)
class Item:
    event: dict[str, Any]
    cursor: Cursor
    before: Cursor  # everything up to here was handled before this change


@dataclass
class Attempt:
    """A delivery-log row waiting for the flusher."""

    sub_id: int
    webhook_id: str
    cursor: str
    changes: int
    attempt: int
    result: Result
    at: datetime


@dataclass
class Progress:
    """What a runner has to write back (merged by the flusher)."""

    delivered: int = 0
    success_at: datetime | None = None
    error_at: datetime | None = None
    error: str | None = None
    status: int | None = None
    disable: str | None = None


class Runner:
    """Delivers one subscription's changes, in order, one request at a time."""

    def __init__(self, dispatcher: Dispatcher, config: Config, selection: Selection) -> None:
        self.d = dispatcher
        self.config = config
        self.selection = selection
        self.signer = Signer(config.secret)
        self.examined = config.cursor  # last log row looked at (a real cursor)
        self.horizon = config.cursor  # every row up to here was looked at (may be synthetic)
        self.flushed = config.cursor
        self.flushed_at = 0.0
        self.buffer: deque[Item] = deque()
        self.behind = True  # read the log from the position before using the listener's
        self.filling = False
        self.missed = False
        self.wake = asyncio.Event()
        self.attempts = config.attempts
        self.next_attempt_at = config.next_attempt_at
        self.progress = Progress()
        self.dirty = False
        self.inflight = 0  # changes of the request in flight (kept for its retries)
        self.stopping = False
        self.parked = False
        self.idle_since: float | None = None
        self.task: asyncio.Task[None] | None = None

    def idle_for(self, now: float) -> float:
        if self.idle_since is None or self.buffer or self.inflight:
            return 0.0
        return now - self.idle_since

    # --- position -----------------------------------------------------------------------
    def position(self) -> Cursor:
        """Everything up to here was acknowledged or does not match."""
        return self.buffer[0].before if self.buffer else self.examined

    def _examine(self, row: ChangeRow) -> None:
        event = self.selection.select(row)
        if event is not None:
            self.buffer.append(Item(event, row.cursor, self.examined))
        self.examined = row.cursor

    def offer(self, previous: Cursor | None, rows: list[ChangeRow]) -> None:
        """A listener batch (its rows follow ``previous``): take it if contiguous."""
        if self.filling:
            self.missed = True
            return
        if (
            self.behind
            or previous is None
            or self.horizon < previous
            or len(self.buffer) >= self.d.buffer_limit
        ):
            self.behind = True
            self.wake.set()
            return
        before = len(self.buffer)
        for row in rows:
            if row.cursor > self.horizon:
                self._examine(row)
        last = rows[-1].cursor
        self.horizon = max(self.horizon, last)
        self.examined = max(self.examined, last)
        if len(self.buffer) != before:
            self.wake.set()

    async def _fill(self) -> None:
        self.filling, self.missed = True, False
        try:
            rows, bound = await self.d.read(self.horizon, self.config.labels)
        finally:
            self.filling = False
        for row in rows:
            if row.cursor > self.horizon:
                self._examine(row)
        if rows:
            self.horizon = max(self.horizon, rows[-1].cursor)
        if len(rows) < self.d.read_limit:
            # everything below the bound was in this read
            self.horizon = max(self.horizon, Cursor(bound - 1, MAX_ID))
            self.behind = self.missed
        self.missed = False

    # --- the loop -----------------------------------------------------------------------
    async def run(self) -> None:
        while not self.stopping:
            if not self.buffer:
                if self.behind:
                    try:
                        await self._fill()
                    except (psycopg.Error, OSError) as exc:
                        # the dispatcher notices too, reconnects and starts over
                        logger.debug("livedata webhooks: read failed: %s", exc)
                        await asyncio.sleep(self.d.conf.RECONNECT_MIN)
                    continue
                self.wake.clear()
                self.idle_since = time.monotonic()
                try:
                    # normally the listener's batches wake it; reading the log now and
                    # then as well means nothing can wait forever
                    await asyncio.wait_for(self.wake.wait(), self.d.idle_read_interval)
                except TimeoutError:
                    self.behind = True
                self.idle_since = None
                continue
            if self.next_attempt_at is not None:
                delay = (self.next_attempt_at - datetime.now(UTC)).total_seconds()
                if delay > PARK_AFTER:
                    self.parked = True
                    return
                if delay > 0:
                    self.wake.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self.wake.wait(), delay)
                    continue
            await self._attempt()

    async def _attempt(self) -> None:
        count = self.inflight or min(self.config.batch, len(self.buffer))
        self.inflight = count
        items = [self.buffer[i] for i in range(count)]
        if count == 1:
            payload = items[0].event
            wid = webhook_id(self.config.id, self.config.epoch, items[0].cursor)
        else:
            payload = batch_payload([item.event for item in items])
            wid = webhook_id(self.config.id, self.config.epoch, items[0].cursor, items[-1].cursor)
        body = encode(payload)
        headers = self.signer.headers(wid, body)
        result = await self.d.transport.put(self.config.url, body, headers)
        now = datetime.now(UTC)
        self.d.record(
            Attempt(
                self.config.id, wid, str(items[0].cursor), count, self.attempts + 1, result, now
            )
        )
        if result.ok:
            for _ in range(count):
                self.buffer.popleft()
            self.inflight = 0
            self.attempts = 0
            self.next_attempt_at = None
            self.progress.delivered += count
            self.progress.success_at = now
        else:
            self.attempts += 1
            self.progress.error_at = now
            self.progress.error = f"{wid}: {result.error}"[:2000]
            self.progress.status = result.status
            schedule = self.d.conf.WEBHOOK_RETRY_SCHEDULE
            if result.outcome == "gone":
                self._disable(f"the receiver answered 410 Gone at {now:%Y-%m-%d %H:%M:%S}Z")
            elif self.attempts >= len(schedule):
                self._disable(
                    f"{self.attempts} attempts failed (last: {result.error}); re-enable it "
                    "with a PUT to continue from the change that failed"
                )
            else:
                wait = result.retry_after
                if wait is None:
                    wait = schedule[self.attempts]
                self.next_attempt_at = now + timedelta(seconds=wait)
        self.dirty = True
        self.d.flush_soon()

    def _disable(self, reason: str) -> None:
        self.progress.disable = reason
        self.stopping = True
        logger.warning("livedata webhooks: subscription %s disabled: %s", self.config.id, reason)

    def take_progress(self) -> tuple[Progress, Cursor]:
        progress, self.progress = self.progress, Progress()
        self.dirty = False
        return progress, self.position()
