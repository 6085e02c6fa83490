"""One subscription's delivery loop: the driver of its ``DeliveryState``.

A ``Runner`` exists while this process holds the subscription (see ``dispatcher``). Its
changes come from its own ``Follower`` on the process's listener
(``livedata.capture.follower``), started at the subscription's durable position and
limited to its models: the follower hands on the listener's batches while they follow
on, and reads the log itself (catching up) when there is a gap, so the runner sees one
gap-free chain of batches and does no reading of its own. ``consume`` selects each
batch's events and offers them to the state (waiting while its buffer is full: the
follower's queue then overflows and it catches up from the log later, so memory stays
bounded).

Every decision (what to send, what a result means, which position to write) is the
state's (``livedata.webhooks.state``); the runner encodes, signs, sends and waits. It
knows nothing of the dispatcher: it is given a transport and two callbacks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime

from livedata.capture.follower import Follower
from livedata.capture.log import Batch, ChangeRow
from livedata.capture.position import Position
from livedata.webhooks.selection import Selection, encode
from livedata.webhooks.signing import Signer
from livedata.webhooks.state import (
    Attempt,
    DeliveryState,
    Idle,
    Park,
    Request,
    SubscriptionRow,
    Wait,
)
from livedata.webhooks.transport import Transport

logger = logging.getLogger("livedata.webhooks")


class Runner:
    """Delivers one subscription's changes, in order, one request at a time."""

    def __init__(
        self,
        state: DeliveryState,
        selection: Selection,
        *,
        transport: Transport,
        record: Callable[[Attempt], None],
        flush_soon: Callable[[], None],
    ) -> None:
        self.state = state
        self.selection = selection
        self.signer = Signer(state.subscription.secret)
        self.transport = transport
        self._record = record
        self._flush_soon = flush_soon
        self.follower: Follower | None = None  # set by the dispatcher
        self.room = asyncio.Event()  # the buffer has room (consume waits for it)
        self.room.set()
        self.wake = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    @property
    def subscription(self) -> SubscriptionRow:
        return self.state.subscription

    @property
    def stopping(self) -> bool:
        return self.state.stopping

    def position(self) -> Position:
        """Everything up to here was acknowledged or does not match."""
        follower = self.follower
        return self.state.position(None if follower is None else follower.position)

    # --- stopping ---------------------------------------------------------------------------
    def stop(self) -> None:
        """Stop delivering and examining (the one way to: wakes whatever waits)."""
        self.state.stopping = True
        self.wake.set()
        self.room.set()

    def disable(self, reason: str) -> None:
        """Disable the subscription (written with the next flush) and stop."""
        self.state.disable(reason)
        self.stop()
        logger.warning(
            "livedata webhooks: subscription %s disabled: %s", self.subscription.id, reason
        )

    # --- the follower's consumer ----------------------------------------------------------
    async def consume(self, batch: Batch) -> None:
        """Examine a batch (the follower's chain: gap-free, in order) into the buffer."""
        state = self.state
        if not state.begin(batch.start):
            return
        end: Position | None = None
        try:
            for index, row in enumerate(batch.rows):
                try:
                    event = self.selection.select(row)
                except Exception:
                    self._cut(row)
                    return
                state.offer(row.id, event, batch.position_after(index))
                if event is not None:
                    self.wake.set()
                    if state.full:
                        self.room.clear()
                if not self.room.is_set():
                    await self.room.wait()  # the follower waits too; its queue is bounded
                    if state.stopping:
                        state.cut_here()
                        return
            end = batch.end
        finally:
            state.end(end)

    def _cut(self, row: ChangeRow) -> None:
        """A row this subscription cannot examine (a bug): keep the position before it
        and hand the subscription back; its next holder tries again."""
        logger.exception(
            "livedata webhooks: subscription %s could not examine change %s",
            self.subscription.id,
            row.id,
        )
        self.state.cut_here()
        self.stop()

    # --- the loop -----------------------------------------------------------------------
    async def run(self) -> None:
        state = self.state
        while not state.stopping:
            step = state.next_step(datetime.now(UTC))
            if isinstance(step, Idle):
                self.wake.clear()
                state.idle(time.monotonic())
                await self.wake.wait()
                state.busy()
            elif isinstance(step, Park):
                return
            elif isinstance(step, Wait):
                self.wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), step.seconds)
            else:
                await self._send(step)

    async def _send(self, request: Request) -> None:
        body = encode(request.payload)
        headers = self.signer.headers(request.webhook_id, body)
        result = await self.transport.put(self.subscription.url, body, headers)
        outcome = self.state.on_result(request, result, datetime.now(UTC))
        self._record(outcome.attempt)
        if outcome.disabled is not None:
            self.disable(outcome.disabled)
        elif not self.state.full:
            self.room.set()
        self._flush_soon()
