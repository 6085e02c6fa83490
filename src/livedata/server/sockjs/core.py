"""A SockJS session's state, sans-I/O: its lifecycle, around the connection's one outbox.

Pure (no asyncio, no sockets), in the manner of h11: the driver (``sockjs_session.py``)
tells the core what happened (a message queued, a receiver attached, a close) and asks it
what to write next (:meth:`SockJSSessionCore.next_frame`); timers, locks and handler
callbacks stay in the driver. So the rules can be tested by feeding values:

- CONNECTING until the first receiver attaches, which gets the open frame (OPEN);
- messages queue in order in the session's ``outbox`` (``livedata.server.outbox``: the
  only one of the connection, which a DDP session over SockJS queues into directly);
  past ``max_queue_bytes`` it is dropped and the session closes with ``1008 Outgoing
  buffer limit`` (a slow client holds no unbounded memory);
- once CLOSED, nothing more queues; what was queued before the close is still written,
  then the close frame, to every receiver until the session expires.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from livedata.server.outbox import Outbox, Queued


class State(enum.Enum):
    CONNECTING = "connecting"  # no receiver has been attached yet
    OPEN = "open"
    CLOSED = "closed"  # the close frame is served until the session expires


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


class SockJSSessionCore:
    """The state and the outbox of one SockJS session."""

    def __init__(self, max_queue_bytes: int) -> None:
        self.max_queue_bytes = max_queue_bytes
        self.state = State.CONNECTING
        self.close_status: tuple[int, str] = (3000, "Go away!")
        self.outbox = Outbox(max_queue_bytes)

    @property
    def queued_bytes(self) -> int:
        """Bytes of the messages the next receiver takes (a stream's held ones aside)."""
        return self.outbox.bytes

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
        queued = self.outbox.put((text,))
        if queued is Queued.OVERFLOW:
            self.close(*OUTBOX_LIMIT)
        return queued

    def close(self, code: int, reason: str) -> bool:
        """Close with ``c[code,reason]``; False if it was closed already (the first
        close's status stays)."""
        if self.state is State.CLOSED:
            return False
        self.state = State.CLOSED
        self.close_status = (code, reason)
        self.outbox.close()
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
        if self.outbox:
            return Messages(self.outbox.take())
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
        self.outbox.clear()
