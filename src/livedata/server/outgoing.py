"""How a DDP session's frames reach its client: the transport's ``Carrier`` of the
connection's one outbox (``outbox.Outbox``), the ``Writer`` that carries it for
transports whose ``send`` waits for the socket, and ``stream``, which sends a
subscription's initial documents at the pace the client takes them.

Nothing that produces frames (methods, the live-query engine) ever waits on a slow
client: frames are put in the outbox and carried from there; a client whose outbox
passes ``DDP_MAX_OUTGOING_BYTES`` is disconnected by its DDP session. Two carriers:

- ``Writer`` (the raw WebSocket, and in-memory pipes in tests): frames are popped one at
  a time and the transport's ``send`` driven inline; only a send that has to wait for
  the socket goes on in a task, which exists only while there are frames (an idle
  connection owns no task); a reply to the client's own message goes out inline
  (``carry_now``), without a task;
- ``sockjs.ddp.SockJSCarrier``: the outbox is the SockJS session's, whose receivers take
  every queued frame at once when the client polls or streams.

No task per frame and no lock: ``_sending`` keeps frames in order between the inline
send and the writer task. No task per change either (issue 14: 1000 sessions each
given a change made 1000 tasks): ``carry`` starts sending inline, and only a send that
has to wait for the socket goes on in a task (``_Resumed``), as Python 3.12's eager tasks
do; a send that fails inline is logged (debug) instead of ending a task in error.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine, Generator
from types import CoroutineType
from typing import Any, Protocol

from livedata.ddp.messages import serialize
from livedata.server.outbox import Outbox

logger = logging.getLogger("livedata.server")

SendText = Callable[[str], Awaitable[None]]
#: Sends several frames in one write (a transport that can: ``wsprotocol``'s extension).
SendMany = Callable[[list[str]], Awaitable[None]]
#: That ASGI extension (and its send event's type): ``{"type": SEND_MANY, "texts": [...]}``
#: writes the text frames at once: a batch of changes in one system call.
SEND_MANY = "livedata.websocket.send_many"
CloseTransport = Callable[[int, str], Awaitable[None]]

#: Longest wait for queued frames to get out when closing, before giving up on them (a
#: client that reads nothing would otherwise hold the closing session forever).
DRAIN_TIMEOUT = 5.0


class Flag:
    """A flag set once (a connection closed): ``asyncio.Event``'s ``set`` and ``is_set``
    without its waiters' deque, which no one awaits here (an idle connection's memory,
    issue 14: ~0.8 KB each)."""

    __slots__ = ("_set",)

    def __init__(self) -> None:
        self._set = False

    def set(self) -> None:
        self._set = True

    def is_set(self) -> bool:
        return self._set


class Carrier(Protocol):
    """What carries a connection's one outbox to its client (provided by the transport)."""

    outbox: Outbox

    def carry(self) -> None:
        """Frames were put in the outbox: carry them to the client (never waits)."""

    async def carry_now(self) -> None:
        """Carry what is queued now, inline if the transport can (a reply to a message)."""

    async def room(self, below: int) -> None:
        """Wait until at most ``below`` bytes are queued ahead (or the outbox closed)."""

    async def close(self, code: int, reason: str) -> None:
        """Close the transport with ``code`` after what is queued (held frames too)."""

    async def stop(self) -> None:
        """The transport is gone: end the carrier's work."""


class Writer:
    """The carrier of a transport whose ``send`` waits while the socket is backed up."""

    __slots__ = (
        "_close",
        "_room",
        "_room_low",
        "_send",
        "_send_many",
        "_sending",
        "_task",
        "outbox",
    )

    def __init__(
        self,
        send: SendText,
        close: CloseTransport,
        limit: int,
        send_many: SendMany | None = None,
    ) -> None:
        """``send_many``: when the transport has it, frames queued together go in one
        write (one system call for a batch of changes, not one per change)."""
        self.outbox = Outbox(limit)
        self._send = send
        self._send_many = send_many
        self._close = close
        self._task: asyncio.Task[None] | None = None
        self._sending = False  # someone is sending the outbox: frames keep their order
        self._room: asyncio.Event | None = None  # set when the outbox drains (streaming)
        self._room_low = 0  # ...to this many bytes

    def carry(self) -> None:
        """Send what is queued, inline: each frame's ``send`` is driven here, without a
        coroutine of ours around it (the fan-out path: once per change per session). The
        first send that has to wait for the socket goes on in a task, with the rest."""
        if self._task is not None or self._sending or self.outbox.closed:
            return
        outbox, send, room, many = self.outbox, self._send, self._room, self._send_many
        self._sending = True  # no one else sends meanwhile: frames keep their order
        try:
            while outbox:
                if many is not None and len(outbox) > 1:
                    sending = many(outbox.take())
                else:
                    sending = send(outbox.popleft())
                if type(sending) is not CoroutineType:  # another awaitable: drive it too
                    sending = _awaited(sending)
                try:
                    waiting_on = sending.send(None)
                except StopIteration:
                    if room is not None and outbox.bytes <= self._room_low:
                        room.set()  # a stream waiting for room goes on
                    continue
                except Exception:  # the transport is gone (the session learns it from it)
                    logger.debug("sending to a DDP client failed", exc_info=True)
                    return
                # the rest in a task; started here, so that a task cancelled before its
                # first step still runs ``_finish``'s ``finally`` (through _Resumed)
                rest = self._finish(_Resumed(sending, waiting_on))
                self._task = asyncio.get_running_loop().create_task(_Resumed(rest, rest.send(None)))
                return
        finally:
            if self._task is None:
                self._sending = False

    async def _finish(self, sending: _Resumed) -> None:
        """The rest of a send that had to wait, then of the outbox (the writer task)."""
        try:
            await sending
            if self._room is not None and self.outbox.bytes <= self._room_low:
                self._room.set()
            await self._send_queued()
        finally:
            self._sending = False
            self._task = None

    async def carry_now(self) -> None:
        if self._task is not None or self._sending:
            self.carry()
            return
        # inline: no task per message (a client that does not read blocks only its own
        # receive loop)
        await self._send_queued()

    async def room(self, below: int) -> None:
        if self._room is None:
            self._room = asyncio.Event()
        self._room_low = below
        while self.outbox.bytes > below and not self.outbox.closed:
            self._room.clear()
            self.carry()
            await self._room.wait()

    async def close(self, code: int, reason: str) -> None:
        task = self._task
        if task is not None and task is not asyncio.current_task():
            task.cancel()  # sent below, alone, so frames keep their order
            await asyncio.gather(task, return_exceptions=True)
        self._wake()
        self.outbox.release()
        try:
            try:
                await asyncio.wait_for(self._send_queued(), DRAIN_TIMEOUT)
            except TimeoutError:  # it reads nothing: close without the rest
                self.outbox.clear()
            await self._close(code, reason)
        except Exception:  # the transport may already be gone
            logger.debug("closing a DDP transport failed", exc_info=True)

    async def stop(self) -> None:
        self._wake()
        task = self._task
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    def _wake(self) -> None:
        if self._room is not None:
            self._room.set()

    async def _send_queued(self) -> None:
        """Send the frames ahead in the outbox, one at a time, until there are none;
        ``_sending`` meanwhile, so that no one else sends and frames keep their order."""
        self._sending = True
        outbox, many = self.outbox, self._send_many
        try:
            while outbox:
                if many is not None and len(outbox) > 1:
                    await many(outbox.take())
                else:
                    await self._send(outbox.popleft())
                if self._room is not None and outbox.bytes <= self._room_low:
                    self._room.set()  # a stream waiting for room goes on
        finally:
            self._sending = False


class _Resumed(Coroutine[Any, Any, None]):
    """The rest of ``coro``, started inline and suspended on ``waiting_on`` (what it
    yielded: a future, or None for a bare yield), awaited by the writer task: its first
    step waits on ``waiting_on``, later ones go on into ``coro``. A task cancelled before
    its first step throws into ``coro`` itself, so its ``finally`` blocks run then."""

    __slots__ = ("_coro", "_waiting_on")

    def __init__(self, coro: Coroutine[Any, Any, None], waiting_on: Any) -> None:
        self._coro = coro
        self._waiting_on = waiting_on

    def send(self, value: Any) -> Any:
        if self._waiting_on is not _STARTED:
            waiting_on, self._waiting_on = self._waiting_on, _STARTED
            return waiting_on
        return self._coro.send(value)

    def throw(self, typ: Any, val: Any = None, tb: Any = None) -> Any:
        self._waiting_on = _STARTED
        if val is None and tb is None:  # asyncio throws the exception alone
            return self._coro.throw(typ)
        return self._coro.throw(typ, val, tb)

    def close(self) -> None:
        self._coro.close()

    def __await__(self) -> Generator[Any, None, None]:
        return self  # type: ignore[return-value]

    def __iter__(self) -> _Resumed:
        return self

    def __next__(self) -> Any:
        return self.send(None)


_STARTED = object()


async def _awaited(awaitable: Awaitable[None]) -> None:
    await awaitable


#: characters of a subscription's initial frames queued before they are carried together
#: (one write); bounded so that 1000 clients subscribing at once hold little each
STREAM_CHUNK = 64 * 1024


async def stream(messages: list[dict[str, Any] | str], carrier: Carrier, closed: Flag) -> None:
    """Send ``messages`` (messages, or frames already encoded; held in the outbox since
    the stream began) as the client takes them, until ``closed``.

    Each is serialised and queued only while the outbox holds less than a quarter of its
    bound; then this waits for room (the transport's ``send`` waits for the socket, or a
    SockJS client's polls take the frames). So the initial data of a subscription may be
    any size: it never overflows the outbox, and costs no serialised copy of its whole.
    Frames put meanwhile (changes, replies) wait behind it, counted against the bound: a
    client that stops reading is still disconnected when they exceed it, or by the
    heartbeat. ``messages`` may grow while this runs.
    """
    outbox = carrier.outbox
    low = max(outbox.limit // 4, 1)
    chunk = min(low, STREAM_CHUNK)
    i = 0
    while i < len(messages):
        if closed.is_set():
            return
        # queue a chunk, then carry it at once: a transport with ``send_many`` writes it
        # in one system call (150 documents: one write, not 150; one write per frame was
        # half of what subscribing 1000 clients at once cost)
        while i < len(messages) and outbox.bytes <= chunk:
            message = messages[i]
            frame = message if type(message) is str else serialize(message)  # type: ignore[arg-type]
            messages[i] = ""  # queued: its memory may go
            i += 1
            outbox.put_ahead(frame)
        carrier.carry()
        if outbox.bytes > low:
            await carrier.room(low)
