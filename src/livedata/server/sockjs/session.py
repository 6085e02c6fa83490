"""SockJS sessions: frames, the bounded outgoing buffer, and the receivers that carry it.

A session outlives the requests that carry it: polling transports attach one receiver per
request, streaming ones one per response (until its size limit), WebSockets one for their
whole life. At most one receiver is attached at a time; a second one gets
``c[2010,"Another connection still open"]``. A session without a receiver for
``disconnect_delay`` seconds expires. Frames to the client (SockJS 0.3.3):

    o                open (first frame of a session)
    h                heartbeat (after ``heartbeat_delay`` seconds without frames)
    a["m1","m2"]     messages, each a JSON string
    c[3000,"Go away!"]  close; served to every request until the session expires

An idle session owns no task: only a timer for its expiry. Handler callbacks run one at a
time, in order (``on_open``, then ``on_message`` for each message, then ``on_close``).
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import json
import logging
import re
from collections import deque
from collections.abc import Callable, Coroutine, Mapping
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from livedata.server.sockjs.endpoint import SockJSEndpoint

logger = logging.getLogger("livedata.server.sockjs")

# Characters a server must escape in JSON (sockjs-protocol 0.3.3, "JSON Unicode
# Encoding"): browsers mangle them, and lone surrogates cannot be encoded as UTF-8.
_ESCAPED = re.compile("[\u200c-\u200f\u2028-\u202f\u2060-\u206f\ufff0-\uffff\ud800-\udfff]")


def dumps(value: Any) -> str:
    """JSON as SockJS servers write it: compact, UTF-8, with the unsafe characters escaped."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return _ESCAPED.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def message_frame(messages: list[str]) -> str:
    return "a" + dumps(messages)


def close_frame(code: int, reason: str) -> str:
    return "c" + dumps([code, reason])


class Handler(Protocol):
    """What a handler factory returns (``async def on_open(self)`` is optional)."""

    async def on_message(self, text: str) -> None: ...

    async def on_close(self) -> None: ...


HandlerFactory = Callable[["SockJSSession"], Handler]


class State(enum.Enum):
    CONNECTING = "connecting"  # no receiver has been attached yet
    OPEN = "open"
    CLOSED = "closed"  # the close frame is served until the session expires


class Receiver:
    """One request or WebSocket carrying frames to the client while it is attached."""

    #: send ``h`` after ``heartbeat_delay`` idle seconds (not on raw WebSockets)
    heartbeats = True

    def __init__(self) -> None:
        self.wakeup = asyncio.Event()
        self.finished = False  # the receiver ended (response complete, socket closed)
        self.stopped = False  # the client went away, or the transport must stop now

    def stop(self) -> None:
        """The client went away (or the transport is aborted): detach at once."""
        if not self.finished:
            self.stopped = True
            self.wakeup.set()

    async def frame(self, frame: str) -> bool:
        """Write one frame; True when the receiver is finished after it."""
        raise NotImplementedError

    async def finish(self) -> None:
        """End the response or close the socket (idempotent)."""
        self.finished = True

    async def open(self) -> bool:
        return await self.frame("o")

    async def heartbeat(self) -> bool:
        return await self.frame("h")

    async def messages(self, messages: list[str]) -> bool:
        return await self.frame(message_frame(messages))

    async def closing(self, code: int, reason: str) -> None:
        await self.frame(close_frame(code, reason))
        self.finished = True


class SockJSSession:
    """What a handler sees of its SockJS session: ``send``, ``close`` and where it came from.

    ``client_address`` and ``http_headers`` (lower-case names) are those of the request
    that opened the session; ``transport`` names its transport (``xhr``, ``websocket``,
    ``raw-websocket``...); ``scheme`` is the ASGI scheme of that request (``http``,
    ``https``, ``ws``, ``wss``). ``exclusive``: no other client can drive this session
    (a WebSocket, or an HTTP session bound to its browser by a secret cookie).
    """

    def __init__(
        self,
        endpoint: SockJSEndpoint,
        session_id: str | None,
        *,
        transport: str,
        client_address: str | None,
        http_headers: Mapping[str, str],
        scheme: str = "http",
        binding: str | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.session_id = session_id  # None: a WebSocket's own session, never looked up
        self.transport = transport
        self.client_address = client_address
        self.http_headers = http_headers
        self.scheme = scheme
        #: the secret the session's requests must carry (``sockjs_bind`` cookie), or None
        self.binding = binding
        self.handler: Handler | None = None
        self.state = State.CONNECTING
        self.close_status: tuple[int, str] = (3000, "Go away!")
        self._outbox: deque[str] = deque()
        self._outbox_bytes = 0
        self._receiver: Receiver | None = None
        self._lock = asyncio.Lock()  # handler callbacks run one at a time, in order
        self._expiry: asyncio.TimerHandle | None = None
        self._on_close_started = False
        self._drained: asyncio.Event | None = None  # set when the outbox was taken

    def __repr__(self) -> str:
        return f"<SockJSSession {self.log_name} {self.state.value}>"

    @property
    def log_name(self) -> str:
        """How logs name the session: never its id, which is all a client needs to use it
        when it is not bound; a digest still tells one session's lines from another's."""
        if self.session_id is None:
            return self.transport
        digest = hashlib.sha256(self.session_id.encode()).hexdigest()[:8]
        return f"{self.transport}#{digest}"

    @property
    def exclusive(self) -> bool:
        return self.session_id is None or self.binding is not None

    @property
    def closed(self) -> bool:
        return self.state is State.CLOSED

    # --- the handler's interface --------------------------------------------------------

    async def send(self, text: str) -> None:
        """Queue a message for the client (never waits; dropped once the session closed).

        A client that does not take its messages fast enough (the queue passes
        ``max_queue_bytes``) is disconnected, so one slow client cannot hold unbounded
        memory."""
        if self.state is State.CLOSED:
            return
        self._outbox.append(text)
        self._outbox_bytes += len(text)
        if self._outbox_bytes > self.endpoint.max_queue_bytes:
            logger.warning(
                "sockjs: session %s exceeded %d queued bytes: disconnecting a slow client",
                self.log_name,
                self.endpoint.max_queue_bytes,
            )
            self._outbox.clear()
            self._outbox_bytes = 0
            self._set_closed(1008, "Outgoing buffer limit")
            return
        if self._receiver is not None:
            self._receiver.wakeup.set()

    async def drained(self, below: int) -> None:
        """Wait until at most ``below`` bytes are queued for the client (or the session
        closed): how a producer of much data (a subscription's initial documents) keeps
        to the client's pace instead of filling the queue past ``max_queue_bytes``."""
        while self._outbox_bytes > below and self.state is not State.CLOSED:
            if self._drained is None:
                self._drained = asyncio.Event()
            self._drained.clear()
            await self._drained.wait()

    def _taken(self) -> None:
        if self._drained is not None:
            self._drained.set()

    async def close(self, code: int = 3000, reason: str = "Go away!") -> None:
        """Close the session: queued messages are still delivered, then ``c[code,reason]``."""
        self._set_closed(code, reason)

    # --- used by the transports ---------------------------------------------------------

    async def attach(self, receiver: Receiver) -> None:
        """Carry frames through ``receiver`` until it is finished or stopped."""
        if self._receiver is not None:
            await receiver.closing(2010, "Another connection still open")
            return
        self._cancel_expiry()
        self._receiver = receiver  # closed too: messages queued before the close go first
        try:
            if self.state is State.CONNECTING:
                self.state = State.OPEN
                async with self._lock:  # messages wait for the open frame and on_open
                    done = await receiver.open()
                    on_open = getattr(self.handler, "on_open", None)
                    if on_open is not None:
                        await self._call(on_open)
                if done:
                    return
            await self._carry(receiver)
        finally:
            if self._receiver is receiver:
                self._receiver = None
            if receiver.stopped and self.state is State.OPEN:
                self._set_closed(1002, "Connection interrupted")
            self._schedule_expiry()

    async def _carry(self, receiver: Receiver) -> None:
        delay = self.endpoint.heartbeat_delay if receiver.heartbeats else None
        while True:
            receiver.wakeup.clear()
            if receiver.stopped:
                return
            if self._outbox:
                messages = list(self._outbox)
                self._outbox.clear()
                self._outbox_bytes = 0
                self._taken()
                if await receiver.messages(messages):
                    return
                continue
            if self.state is State.CLOSED:
                await receiver.closing(*self.close_status)
                return
            try:
                async with asyncio.timeout(delay):
                    await receiver.wakeup.wait()
            except TimeoutError:
                if await receiver.heartbeat():
                    return

    async def deliver(self, messages: list[str]) -> None:
        """Messages from the client, to the handler in order (dropped unless open)."""
        if self.state is State.CLOSED or not messages:
            return
        async with self._lock:
            for text in messages:
                if self.state is not State.OPEN or self.handler is None:
                    return
                await self._call(self.handler.on_message, text)

    def abort(self, code: int, reason: str) -> None:
        """The client broke the protocol: close without telling it (the socket just ends)."""
        self._set_closed(code, reason)
        if self._receiver is not None:
            self._receiver.stop()

    # --- internals ----------------------------------------------------------------------

    def _set_closed(self, code: int, reason: str) -> None:
        if self.state is State.CLOSED:
            return
        self.state = State.CLOSED
        self.close_status = (code, reason)
        self._taken()
        if self._receiver is not None:
            self._receiver.wakeup.set()
        if not self._on_close_started and self.handler is not None:
            self._on_close_started = True
            self.endpoint.spawn(self._run_on_close())

    async def _run_on_close(self) -> None:
        async with self._lock:
            if self.handler is not None:
                await self._call(self.handler.on_close)

    async def _call(self, callback: Callable[..., Coroutine[Any, Any, Any]], *args: Any) -> None:
        try:
            await callback(*args)
        except Exception:
            logger.exception("sockjs: handler of session %s failed", self.log_name)
            self._set_closed(1011, "Internal error")

    def _schedule_expiry(self) -> None:
        if self.session_id is None or self._receiver is not None:
            return
        self._cancel_expiry()
        loop = asyncio.get_running_loop()
        self._expiry = loop.call_later(self.endpoint.disconnect_delay, self._expire)

    def _cancel_expiry(self) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None

    def _expire(self) -> None:
        self._expiry = None
        if self._receiver is not None:
            return
        self.endpoint.forget(self)
        self._outbox.clear()
        self._outbox_bytes = 0
        self._set_closed(1000, "Session expired")
