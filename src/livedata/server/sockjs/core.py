"""A SockJS session's state, sans-I/O: its lifecycle and its bounded outgoing queue.

Pure (no asyncio, no sockets), in the manner of h11: the driver (``session.py``) tells the
core what happened (a message queued, a receiver attached, a close) and asks it what to
write next (:meth:`SessionCore.next_frame`); timers, locks and handler callbacks stay in
the driver. So the rules can be tested by feeding values:

- CONNECTING until the first receiver attaches, which gets the open frame (OPEN);
- messages queue in order; past ``max_queue_bytes`` the queue is dropped and the session
  closes with ``1008 Outgoing buffer limit`` (a slow client holds no unbounded memory);
- once CLOSED, nothing more queues; what was queued before the close is still written,
  then the close frame, to every receiver until the session expires.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass


class State(enum.Enum):
    CONNECTING = "connecting"  # no receiver has been attached yet
    OPEN = "open"
    CLOSED = "closed"  # the close frame is served until the session expires


class Queued(enum.Enum):
    """What :meth:`SessionCore.queue` did with a message."""

    QUEUED = "queued"
    DROPPED = "dropped"  # the session was closed already
    OVERFLOW = "overflow"  # the queue passed its bound: dropped, and the session closed


@dataclass(frozen=True)
class Messages:
    """Write these messages (one ``a[...]`` frame, or raw WebSocket messages)."""

    messages: list[str]


@dataclass(frozen=True)
class Closing:
    """Write the close frame ``c[code,reason]``; the receiver is then done."""

    code: int
    reason: str


#: the close of a session whose client took its messages too slowly
OUTBOX_LIMIT = (1008, "Outgoing buffer limit")
#: the close of a session whose receiving connection went away while it was open
INTERRUPTED = (1002, "Connection interrupted")
#: the close of a session left without a receiver for its disconnect delay
EXPIRED = (1000, "Session expired")


class SessionCore:
    """The state and the outgoing queue of one SockJS session."""

    def __init__(self, max_queue_bytes: int) -> None:
        self.max_queue_bytes = max_queue_bytes
        self.state = State.CONNECTING
        self.close_status: tuple[int, str] = (3000, "Go away!")
        self._outbox: deque[str] = deque()
        self.queued_bytes = 0

    @property
    def closed(self) -> bool:
        return self.state is State.CLOSED

    @property
    def is_open(self) -> bool:
        """Messages from the client are handled only now."""
        return self.state is State.OPEN

    def queue(self, text: str) -> Queued:
        if self.state is State.CLOSED:
            return Queued.DROPPED
        self._outbox.append(text)
        self.queued_bytes += len(text)
        if self.queued_bytes > self.max_queue_bytes:
            self.clear()
            self.close(*OUTBOX_LIMIT)
            return Queued.OVERFLOW
        return Queued.QUEUED

    def close(self, code: int, reason: str) -> bool:
        """Close with ``c[code,reason]``; False if it was closed already (the first
        close's status stays)."""
        if self.state is State.CLOSED:
            return False
        self.state = State.CLOSED
        self.close_status = (code, reason)
        return True

    def attached(self) -> bool:
        """A receiver attached: True when it must get the open frame first (the first)."""
        if self.state is State.CONNECTING:
            self.state = State.OPEN
            return True
        return False

    def next_frame(self) -> Messages | Closing | None:
        """What the attached receiver writes next: every queued message, else the close
        frame once closed; None: nothing now (wait, or write a heartbeat)."""
        if self._outbox:
            messages = list(self._outbox)
            self.clear()
            return Messages(messages)
        if self.state is State.CLOSED:
            return Closing(*self.close_status)
        return None

    def interrupted(self) -> bool:
        """The receiving connection went away: an open session closes (SockJS 1002)."""
        return self.state is State.OPEN and self.close(*INTERRUPTED)

    def expire(self) -> bool:
        """No receiver for the disconnect delay: what is queued is dropped, and the
        session closes (True if it was not closed yet)."""
        self.clear()
        return self.close(*EXPIRED)

    def clear(self) -> None:
        self._outbox.clear()
        self.queued_bytes = 0
