"""One subscription's delivery state, as a pure core: values in, decisions out.

In the manner of h11: no sockets, no database, no asyncio, no clock of its own. The
drivers feed it what happened and do what it says:

- the runner (``runner``) offers each examined change (``begin``, ``offer``, ``end``),
  asks for the next request to send (``next_step``), sends it and reports the
  ``on_result``; it owns the events it waits on;
- the dispatcher (``dispatcher``) takes the progress to write (``take_update``), has
  ``store`` write it, and reports back what was stored (``flushed_to``).

So every rule of delivery (the durable position, the order, batching, retries, 410
Gone, giving up) can be tested by feeding values (tests/webhooks/test_state.py), and
the drivers only move bytes and wait.

``position()`` is what is written back as the durable position: everything before the
first unacknowledged event (each event keeps the position before it), or, with an empty
buffer, everything the follower handed on. One request is in flight at a time, so the
receiver sees the log's order.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from livedata.capture.position import Position
from livedata.webhooks.selection import batch_payload

if TYPE_CHECKING:
    from livedata.webhooks.transport import Result

#: a subscription whose next retry is further away than this is handed back until then
PARK_AFTER = 10.0


def webhook_id(sub_id: int, epoch: int, first: int, last: int | None = None) -> str:
    """Stable across retries and workers, and short: the subscription, its position
    epoch, and the log row ids of the delivery's first and last change (row ids are
    unique in the log; positions are not short)."""
    base = f"msg_{sub_id}_{epoch}_{first}"
    return base if last is None or last == first else f"{base}_{last}"


@dataclass
class SubscriptionRow:
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
    def from_row(cls, r: tuple[Any, ...]) -> SubscriptionRow:
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
    """What happened since the last write (merged into the row by ``store.write``)."""

    delivered: int = 0
    success_at: datetime | None = None
    error_at: datetime | None = None
    error: str | None = None
    status: int | None = None
    disable: str | None = None


@dataclass
class Update:
    """One subscription's row update, as ``store.write`` sends it."""

    sub_id: int
    generation: int
    updated: datetime
    previous: str  # the position this state last wrote, as stored (compare-and-set)
    position: Position
    attempts: int
    next_attempt_at: datetime | None
    progress: Progress


# --- what next_step() says -------------------------------------------------------------
@dataclass(frozen=True)
class Idle:
    """Nothing to send: wait for an offer."""


@dataclass(frozen=True)
class Wait:
    """A retry is due in ``seconds``: wait (an offer may wake the driver earlier)."""

    seconds: float


@dataclass(frozen=True)
class Park:
    """The next retry is far away: hand the subscription back until then."""


@dataclass(frozen=True)
class Request:
    """Send this, then report ``on_result``."""

    webhook_id: str
    payload: dict[str, Any]
    count: int  # changes in it
    position: Position  # the subscription's position once it is acknowledged


@dataclass(frozen=True)
class Outcome:
    """What ``on_result`` made of an answer."""

    attempt: Attempt  # the delivery-log row
    disabled: str | None = None  # why the subscription is disabled now, if it is


class DeliveryState:
    """One subscription's buffer, retries and positions (see the module docstring)."""

    def __init__(
        self, subscription: SubscriptionRow, *, buffer_limit: int, retry_schedule: Sequence[float]
    ) -> None:
        self.subscription = subscription
        self.buffer_limit = buffer_limit
        self.retry_schedule = retry_schedule
        self.examined = subscription.position  # inside a batch: the rows looked at so far
        self.consuming = False
        #: set when examining stops (stopping, or a row that cannot be examined):
        #: nothing after it was looked at, whatever the follower goes on to hand on
        self.cut: Position | None = None
        self.flushed = subscription.position
        self.flushed_text = subscription.position_text  # as stored (compare-and-set)
        self.flushed_at = 0.0
        self.buffer: deque[Item] = deque()
        self.attempts = subscription.attempts
        self.next_attempt_at = subscription.next_attempt_at
        self.progress = Progress()
        self.dirty = False
        self.inflight = 0  # changes of the request in flight (kept for its retries)
        self.stopping = False
        self.parked = False
        self.idle_since: float | None = None

    # --- offering changes ---------------------------------------------------------------
    def begin(self, start: Position) -> bool:
        """A batch from ``start`` is offered; False: it is not examined (stopping, or
        cut before), and nothing after ``start`` counts as looked at."""
        if self.stopping or self.cut is not None:
            if self.cut is None:
                self.cut = start
            return False
        self.consuming = True
        self.examined = start
        return True

    def offer(self, row_id: int, event: dict[str, Any] | None, after: Position) -> None:
        """The change ``row_id`` was examined: ``event`` is what to send for it (None:
        it does not match); ``after`` is where a reader that received it resumes."""
        if event is not None:
            event["data"]["position"] = str(after)
            self.buffer.append(Item(event, row_id, self.examined, after))
        self.examined = after

    @property
    def full(self) -> bool:
        """The buffer is full: the driver stops offering until a delivery empties it."""
        return len(self.buffer) >= self.buffer_limit

    def end(self, end: Position | None) -> None:
        """The batch is over: examined up to ``end`` (None: stopped inside it)."""
        if end is not None:
            self.examined = end
        self.consuming = False

    def cut_here(self) -> None:
        """Nothing after what was examined so far is looked at (a row that could not be
        examined, or stopping while waiting for room)."""
        self.cut = self.examined

    # --- delivering -----------------------------------------------------------------------
    def next_step(self, now: datetime) -> Idle | Wait | Park | Request:
        if not self.buffer:
            return Idle()
        if self.next_attempt_at is not None:
            delay = (self.next_attempt_at - now).total_seconds()
            if delay > PARK_AFTER:
                self.parked = True
                return Park()
            if delay > 0:
                return Wait(delay)
        count = self.inflight or min(self.subscription.batch, len(self.buffer))
        self.inflight = count  # a retry sends the same changes (the same webhook-id)
        items = [self.buffer[i] for i in range(count)]
        subscription = self.subscription
        if count == 1:
            payload = items[0].event
            wid = webhook_id(subscription.id, subscription.epoch, items[0].row_id)
        else:
            payload = batch_payload([item.event for item in items])
            wid = webhook_id(subscription.id, subscription.epoch, items[0].row_id, items[-1].row_id)
        return Request(wid, payload, count, items[-1].after)

    def on_result(self, request: Request, result: Result, now: datetime) -> Outcome:
        """The receiver's answer to ``request``: a 2xx acknowledges its changes; 410
        Gone, or the last retry of the schedule failing, disables; else a retry is
        scheduled (``Retry-After`` wins over the schedule)."""
        attempt = Attempt(
            self.subscription.id,
            request.webhook_id,
            str(request.position),
            request.count,
            self.attempts + 1,
            result,
            now,
        )
        disabled = None
        if result.ok:
            for _ in range(request.count):
                self.buffer.popleft()
            self.inflight = 0
            self.attempts = 0
            self.next_attempt_at = None
            self.progress.delivered += request.count
            self.progress.success_at = now
        else:
            self.attempts += 1
            self.progress.error_at = now
            self.progress.error = f"{request.webhook_id}: {result.error}"[:2000]
            self.progress.status = result.status
            if result.outcome == "gone":
                disabled = f"the receiver answered 410 Gone at {now:%Y-%m-%d %H:%M:%S}Z"
            elif self.attempts >= len(self.retry_schedule):
                disabled = (
                    f"{self.attempts} attempts failed (last: {result.error}); re-enable it "
                    "with a PUT to continue from the change that failed"
                )
            else:
                wait = result.retry_after
                if wait is None:
                    wait = self.retry_schedule[self.attempts]
                self.next_attempt_at = now + timedelta(seconds=wait)
        if disabled is not None:
            self.disable(disabled)
        self.dirty = True
        return Outcome(attempt, disabled)

    def disable(self, reason: str) -> None:
        """Disable the subscription (written with the next update) and stop."""
        self.progress.disable = reason
        self.dirty = True
        self.stopping = True

    # --- idleness (for taking turns) -----------------------------------------------------
    def idle(self, clock: float) -> None:
        self.idle_since = clock

    def busy(self) -> None:
        self.idle_since = None

    def idle_for(self, clock: float) -> float:
        if self.idle_since is None or self.buffer or self.inflight:
            return 0.0
        return clock - self.idle_since

    # --- progress to write ------------------------------------------------------------------
    def position(self, followed: Position | None) -> Position:
        """Everything up to here was acknowledged or does not match. ``followed``: the
        follower's position (what it handed on), None without one."""
        if self.buffer:
            return self.buffer[0].before
        if self.cut is not None:
            return self.cut
        if self.consuming or followed is None:
            return self.examined
        # batches without a row of our models are never offered: the follower's
        # position covers them too
        return followed

    def wants_write(self, followed: Position | None, clock: float, ended: bool) -> bool:
        """News to write: progress now; a position that only moved past non-matching
        rows lazily (once a second, or when the runner ended)."""
        moved = self.position(followed) != self.flushed
        return self.dirty or (moved and (ended or clock - self.flushed_at > 1))

    def take_update(self, followed: Position | None) -> Update:
        """The update to write; the progress in it is not reported again."""
        progress, self.progress = self.progress, Progress()
        self.dirty = False
        return Update(
            self.subscription.id,
            self.subscription.generation,
            self.subscription.updated,
            self.flushed_text,
            self.position(followed),
            self.attempts,
            self.next_attempt_at,
            progress,
        )

    def flushed_to(self, position: Position, clock: float) -> None:
        """``position`` is stored now (the update's compare-and-set succeeded)."""
        self.flushed = position
        self.flushed_text = str(position)
        self.flushed_at = clock
