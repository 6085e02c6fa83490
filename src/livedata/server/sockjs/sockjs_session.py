"""SockJS sessions: the driver of a session's core (``core.py``) and its handler.

A session outlives the requests that carry it: polling transports attach one receiver per
request, streaming ones one per response (until its size limit), WebSockets one for their
whole life. At most one receiver is attached at a time; a second one gets
``c[2010,"Another connection still open"]``. A session without a receiver for
``disconnect_delay`` seconds expires. The frames are those of ``frames.py``; the state and
the session's one outbox (``livedata.server.outbox``, bounded) are those of
``core.SockJSSessionCore``, and this module adds what needs a loop: the receiver's
wake-ups and heartbeats, the expiry timer, the handler's callbacks. A handler queues with
``send``, or puts in ``outbox`` itself and calls ``carry`` (the DDP handler does, so that
a DDP session over SockJS has one outbox, not one of its own in front of this one).

An idle session owns no task: only a timer for its expiry. Handler callbacks run one at a
time, in order (``on_open``, then ``on_message`` for each message, then ``on_close``).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, Protocol

from livedata.server.outbox import Outbox
from livedata.server.sockjs.core import Closing, Messages, Queued, SockJSSessionCore, State
from livedata.server.sockjs.frames import close_frame, dumps, message_frame
from livedata.server.sockjs.receivers import Receiver

__all__ = [
    "Handler",
    "HandlerFactory",
    "Receiver",
    "SockJSSession",
    "State",
    "close_frame",
    "dumps",
    "message_frame",
]

logger = logging.getLogger("livedata.server.sockjs")


class Handler(Protocol):
    """What a handler factory returns (``async def on_open(self)`` is optional)."""

    async def on_message(self, text: str) -> None: ...

    async def on_close(self) -> None: ...


HandlerFactory = Callable[["SockJSSession"], Handler]


class SessionHost(Protocol):
    """What a SockJS session needs of its endpoint (``endpoint.SockJSEndpoint``; a
    Protocol, so this module does not import the endpoint that imports it)."""

    max_queue_bytes: int
    heartbeat_delay: float
    disconnect_delay: float

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None: ...

    def forget(self, session: SockJSSession) -> None: ...


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
        endpoint: SessionHost,
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
        self.core = SockJSSessionCore(endpoint.max_queue_bytes)
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
    def state(self) -> State:
        return self.core.state

    @property
    def close_status(self) -> tuple[int, str]:
        return self.core.close_status

    @property
    def closed(self) -> bool:
        return self.core.closed

    # --- the handler's interface --------------------------------------------------------

    async def send(self, text: str) -> None:
        """Queue a message for the client (never waits; dropped once the session closed).

        A client that does not take its messages fast enough (the queue passes
        ``max_queue_bytes``) is disconnected, so one slow client cannot hold unbounded
        memory."""
        queued = self.core.queue(text)
        if queued is Queued.OVERFLOW:
            logger.warning(
                "sockjs: session %s exceeded %d queued bytes: disconnecting a slow client",
                self.log_name,
                self.core.max_queue_bytes,
            )
            self._closed_now()
        elif queued is Queued.QUEUED and self._receiver is not None:
            self._receiver.wakeup.set()

    @property
    def outbox(self) -> Outbox:
        """The session's one outbox, which a handler may also fill itself (the DDP
        session does: ``ddp.SockJSCarrier``), followed by ``carry``."""
        return self.core.outbox

    def carry(self) -> None:
        """Messages were put in ``outbox`` directly: the attached receiver takes them."""
        if self._receiver is not None:
            self._receiver.wakeup.set()

    async def drained(self, below: int) -> None:
        """Wait until at most ``below`` bytes are queued for the client (or the session
        closed): how a producer of much data (a subscription's initial documents) keeps
        to the client's pace instead of filling the queue past ``max_queue_bytes``."""
        while self.core.queued_bytes > below and not self.core.closed:
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
            if self.core.attached():
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
            if receiver.stopped and self.core.interrupted():
                self._closed_now()
            self._schedule_expiry()

    async def _carry(self, receiver: Receiver) -> None:
        delay = self.endpoint.heartbeat_delay if receiver.heartbeats else None
        while True:
            receiver.wakeup.clear()
            if receiver.stopped:
                return
            frame = self.core.next_frame()
            if isinstance(frame, Messages):
                self._taken()
                if await receiver.messages(frame.messages):
                    return
                continue
            if isinstance(frame, Closing):
                await receiver.closing(frame.code, frame.reason)
                return
            try:
                async with asyncio.timeout(delay):
                    await receiver.wakeup.wait()
            except TimeoutError:
                if await receiver.heartbeat():
                    return

    async def deliver(self, messages: list[str]) -> None:
        """Messages from the client, to the handler in order (dropped unless open)."""
        if self.core.closed or not messages:
            return
        async with self._lock:
            for text in messages:
                if not self.core.is_open or self.handler is None:
                    return
                await self._call(self.handler.on_message, text)

    def abort(self, code: int, reason: str) -> None:
        """The client broke the protocol: close without telling it (the socket just ends)."""
        self._set_closed(code, reason)
        if self._receiver is not None:
            self._receiver.stop()

    # --- internals ----------------------------------------------------------------------

    def _set_closed(self, code: int, reason: str) -> None:
        if self.core.close(code, reason):
            self._closed_now()

    def _closed_now(self) -> None:
        """What follows the core's closing: wake whoever waits, and tell the handler."""
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
        if self.core.expire():
            self._closed_now()
