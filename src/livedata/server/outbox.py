"""A connection's one outbox: the frames queued for one client, in order, byte-bounded.

Pure (no asyncio, no sockets), so the rules can be tested by feeding values. Every
connection has exactly one, whatever its transport: a raw WebSocket's writer pops its
frames one at a time (``outgoing.Writer``), a SockJS session's receivers take them all at
once (``sockjs.core``). Nothing that queues frames ever waits on the client; the bound is
what keeps a slow client from holding unbounded memory:

- ``put`` queues frames; once they total more than ``limit`` bytes, everything queued is
  dropped, the outbox closes and ``put`` says ``OVERFLOW``: the caller disconnects the
  client (DDP with ``1008``, SockJS with ``1008 Outgoing buffer limit``);
- once closed, ``put`` drops what it is given; what was queued before is still taken;
- while a stream is *held* (a subscription's initial documents, which may be larger
  than the bound: issue 19), the stream's own frames go ahead with ``put_ahead`` as the
  client takes them, and frames ``put`` meanwhile wait behind them, counted against the
  bound; ``release`` moves them ahead, in order.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Sequence


class Queued(enum.Enum):
    """What :meth:`Outbox.put` did with the frames."""

    QUEUED = "queued"
    DROPPED = "dropped"  # the outbox was closed already
    OVERFLOW = "overflow"  # past the bound: everything dropped, and the outbox closed


class Outbox:
    """The frames queued for one client: ``bytes`` ahead (what is taken next), and those
    held behind a stream."""

    __slots__ = (
        "_ahead",
        "_behind",
        "behind_bytes",
        "bytes",
        "closed",
        "holding",
        "limit",
        "sent",
        "sent_bytes",
    )

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._ahead: deque[str] = deque()
        self.bytes = 0  # of the frames ahead
        self._behind: deque[str] | None = None  # made by the first stream (memory: issue 4)
        self.behind_bytes = 0
        self.holding = False  # a stream is going out: ``put`` queues behind it
        self.closed = False
        #: frames (and their characters) queued so far, for the figures: two additions
        #: per ``put`` (measured on the fan-out path: see the commit)
        self.sent = 0
        self.sent_bytes = 0

    def __len__(self) -> int:
        """Frames ahead (the ones a writer or receiver takes now)."""
        return len(self._ahead)

    def __bool__(self) -> bool:
        return bool(self._ahead)

    @property
    def total_bytes(self) -> int:
        """What counts against the bound: the frames ahead and those held behind."""
        return self.bytes + self.behind_bytes

    def put(self, frames: Sequence[str]) -> Queued:
        if self.closed:
            return Queued.DROPPED
        size = sum(map(len, frames))
        if self.holding:
            if self._behind is None:
                self._behind = deque()
            self._behind.extend(frames)
            self.behind_bytes += size
        else:
            self._ahead.extend(frames)
            self.bytes += size
        if self.bytes + self.behind_bytes > self.limit:
            self.clear()
            self.closed = True
            return Queued.OVERFLOW
        self.sent += len(frames)
        self.sent_bytes += size
        return Queued.QUEUED

    def put_ahead(self, frame: str) -> None:
        """A streamed frame: ahead of the held ones, not checked against the bound (the
        stream keeps to the client's pace itself); dropped once closed."""
        if self.closed:
            return
        self._ahead.append(frame)
        self.bytes += len(frame)
        self.sent += 1
        self.sent_bytes += len(frame)

    def hold(self) -> None:
        """A stream begins: frames ``put`` from now on wait behind it."""
        self.holding = True

    def release(self) -> None:
        """The stream ended: the frames held behind it go ahead, in order."""
        self.holding = False
        if self._behind:
            self._ahead.extend(self._behind)
            self.bytes += self.behind_bytes
            self._behind.clear()
            self.behind_bytes = 0

    def popleft(self) -> str:
        """The next frame ahead (a writer sending one at a time)."""
        frame = self._ahead.popleft()
        self.bytes -= len(frame)
        return frame

    def take(self) -> list[str]:
        """Every frame ahead, at once (a receiver writing them as one SockJS frame)."""
        frames = list(self._ahead)
        self._ahead.clear()
        self.bytes = 0
        return frames

    def close(self) -> None:
        """Queue nothing more (what is queued can still be taken)."""
        self.closed = True

    def clear(self) -> None:
        """Drop everything queued, ahead and behind."""
        self._ahead.clear()
        self.bytes = 0
        if self._behind is not None:
            self._behind.clear()
        self.behind_bytes = 0
