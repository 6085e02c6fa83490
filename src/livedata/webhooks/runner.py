"""One subscription's delivery loop: its buffer of changes, its retries, its position.

A ``Runner`` exists while this process holds the subscription (see ``dispatcher``). Its
changes come from its own ``Follower`` on the process's listener
(``livedata.capture.follower``), started at the subscription's durable position and
limited to its models: the follower hands on the listener's batches while they follow
on, and reads the log itself (catching up) when there is a gap, so the runner sees one
gap-free chain of batches and does no reading of its own. ``consume`` turns each batch
into the buffer of matching events (waiting while the buffer is full: the follower's
queue then overflows and it catches up from the log later, so memory stays bounded).

``position()`` is what is written back as the durable position: everything before the
first unacknowledged event (each event keeps the position before it), or, with an empty
buffer, everything the follower handed on. One request is in flight at a time, so the
receiver sees the log's order.
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

from livedata.capture.follower import Follower
from livedata.capture.log import Batch, ChangeRow
from livedata.capture.position import Position
from livedata.webhooks.selection import Selection, batch_payload, encode
from livedata.webhooks.signing import Signer
from livedata.webhooks.transport import Result

if TYPE_CHECKING:
    from livedata.webhooks.dispatcher import Dispatcher

logger = logging.getLogger("livedata.webhooks")

#: a runner whose next retry is further away than this is handed back until then
PARK_AFTER = 10.0


def webhook_id(sub_id: int, epoch: int, first: int, last: int | None = None) -> str:
    """Stable across retries and workers, and short: the subscription, its position
    epoch, and the log row ids of the delivery's first and last change (row ids are
    unique in the log; positions are not short)."""
    base = f"msg_{sub_id}_{epoch}_{first}"
    return base if last is None or last == first else f"{base}_{last}"


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
    position: Position
    position_text: str
    generation: int
    epoch: int
    attempts: int
    next_attempt_at: datetime | None
    updated: datetime

    @classmethod
    def from_row(cls, r: tuple[Any, ...]) -> Config:
        return cls(
            r[0], r[1], r[2], list(r[3]), list(r[4]), r[5] or {}, r[6], r[7], r[8],
            Position.parse(r[9]), r[9], r[10], r[11], r[12], r[13], r[14],
        )  # fmt: skip

    @property
    def version(self) -> tuple[int, datetime]:
        return (self.generation, self.updated)

    def due(self, now: datetime) -> bool:
        return self.next_attempt_at is None or (self.next_attempt_at - now).total_seconds() < 1


@dataclass(slots=True)
class Item:
    event: dict[str, Any]
    row_id: int  # the change's log row (for webhook-id)
    before: Position  # everything up to here was handled before this change
    after: Position  # ... and up to here once it is acknowledged


@dataclass
class Attempt:
    """A delivery-log row waiting for the flusher."""

    sub_id: int
    webhook_id: str
    position: str  # the subscription's position once acknowledged
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
        self.follower: Follower | None = None  # set by the dispatcher (see follow())
        self.examined = config.position  # inside consume(): the rows looked at so far
        self.consuming = False
        #: set when the runner stops examining (stopping, or a row it cannot examine):
        #: nothing after it was looked at, whatever the follower goes on to hand it
        self.cut: Position | None = None
        self.flushed = config.position
        self.flushed_text = config.position_text  # as stored (compare-and-set)
        self.flushed_at = 0.0
        self.buffer: deque[Item] = deque()
        self.room = asyncio.Event()  # the buffer has room (consume waits for it)
        self.room.set()
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
    def position(self) -> Position:
        """Everything up to here was acknowledged or does not match."""
        if self.buffer:
            return self.buffer[0].before
        if self.cut is not None:
            return self.cut
        if self.consuming or self.follower is None or self.follower.position is None:
            return self.examined
        # batches without a row of our models never reach consume(): the follower's
        # position covers them too
        return self.follower.position

    # --- the follower's consumer ----------------------------------------------------------
    async def consume(self, batch: Batch) -> None:
        """Examine a batch (the follower's chain: gap-free, in order) into the buffer."""
        if self.stopping or self.cut is not None:
            if self.cut is None:
                self.cut = batch.start
            return
        self.consuming = True
        try:
            self.examined = batch.start
            for index, row in enumerate(batch.rows):
                after = batch.position_after(index)
                try:
                    event = self.selection.select(row)
                except Exception:
                    self._cut(row)
                    return
                if event is not None:
                    event["data"]["position"] = str(after)
                    self.buffer.append(Item(event, row.id, self.examined, after))
                    self.wake.set()
                    if len(self.buffer) >= self.d.buffer_limit:
                        self.room.clear()
                self.examined = after
                if not self.room.is_set():
                    await self.room.wait()  # the follower waits too; its queue is bounded
                    if self.stopping:
                        self.cut = self.examined
                        return
            self.examined = batch.end
        finally:
            self.consuming = False

    def _cut(self, row: ChangeRow) -> None:
        """A row this subscription cannot examine (a bug): keep the position before it
        and hand the subscription back; its next holder tries again."""
        logger.exception(
            "livedata webhooks: subscription %s could not examine change %s",
            self.config.id,
            row.id,
        )
        self.cut = self.examined
        self.stop()

    # --- the loop -----------------------------------------------------------------------
    async def run(self) -> None:
        while not self.stopping:
            if not self.buffer:
                self.wake.clear()
                self.idle_since = time.monotonic()
                await self.wake.wait()
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

    def stop(self) -> None:
        self.stopping = True
        self.wake.set()
        self.room.set()

    async def _attempt(self) -> None:
        count = self.inflight or min(self.config.batch, len(self.buffer))
        self.inflight = count
        items = [self.buffer[i] for i in range(count)]
        if count == 1:
            payload = items[0].event
            wid = webhook_id(self.config.id, self.config.epoch, items[0].row_id)
        else:
            payload = batch_payload([item.event for item in items])
            wid = webhook_id(self.config.id, self.config.epoch, items[0].row_id, items[-1].row_id)
        body = encode(payload)
        headers = self.signer.headers(wid, body)
        result = await self.d.transport.put(self.config.url, body, headers)
        now = datetime.now(UTC)
        self.d.record(
            Attempt(
                self.config.id, wid, str(items[-1].after), count, self.attempts + 1, result, now
            )
        )
        if result.ok:
            for _ in range(count):
                self.buffer.popleft()
            if len(self.buffer) < self.d.buffer_limit:
                self.room.set()
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
        self.stop()
        logger.warning("livedata webhooks: subscription %s disabled: %s", self.config.id, reason)

    def take_progress(self) -> tuple[Progress, Position]:
        progress, self.progress = self.progress, Progress()
        self.dirty = False
        return progress, self.position()
