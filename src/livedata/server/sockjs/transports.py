"""The SockJS transports, as drivers: each moves a request's bytes between ASGI and a
session, with the framing of ``frames.py`` and the headers of ``protocol.py``.

Receiving (frames to the client): ``xhr`` and ``jsonp`` (polling: one response, one
frame), ``xhr_streaming``, ``eventsource`` and ``htmlfile`` (streaming: one response
until ``response_limit`` bytes). Sending (messages from the client): ``xhr_send`` and
``jsonp_send``. ``websocket``: both ways over one socket, SockJS-framed or raw. Each
takes the endpoint it serves (its sessions, limits and cookies: ``TransportHost``), then
the request.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import TYPE_CHECKING, Protocol

from livedata.server.sockjs import frames, protocol
from livedata.server.sockjs.frames import HTTPError
from livedata.server.sockjs.http import Receive, Scope, Send, read_body, respond, watch_disconnect
from livedata.server.sockjs.protocol import JAVASCRIPT, NO_CACHE, TEXT, Headers, cors
from livedata.server.sockjs.receivers import HTTPReceiver, Receiver, WebSocketReceiver

if TYPE_CHECKING:
    from livedata.server.sockjs.sockjs_session import SockJSSession

H = Mapping[str, str]


class TransportHost(Protocol):
    """What the transports need of their endpoint (``endpoint.SockJSEndpoint``; a
    Protocol, so this module does not import the endpoint that imports it)."""

    response_limit: int
    max_message_bytes: int | None
    sessions: dict[str, SockJSSession]

    def _new_session(
        self,
        session_id: str | None,
        scope: Scope,
        headers: Mapping[str, str],
        transport: str,
        binding: str | None = None,
    ) -> SockJSSession: ...

    def _receiving_session(
        self, scope: Scope, headers: Mapping[str, str], session_id: str, transport: str
    ) -> tuple[SockJSSession, Headers]: ...

    def _sending_client(
        self, scope: Scope, headers: Mapping[str, str], session_id: str
    ) -> Headers: ...

    def _cookie(self, headers: Mapping[str, str], applies: bool = True) -> Headers: ...


# --- receiving ---------------------------------------------------------------------------


async def xhr(
    ep: TransportHost, scope: Scope, receive: Receive, send: Send, h: H, sid: str
) -> None:
    await _discard_body(ep, receive, scope)
    session, bind = ep._receiving_session(scope, h, sid, "xhr")
    start = [(b"content-type", JAVASCRIPT), NO_CACHE, *cors(h), *ep._cookie(h), *bind]
    receiver = HTTPReceiver(send, start, wrap=frames.xhr_chunk, limit=None)
    await _receive(session, receive, receiver)


async def xhr_streaming(
    ep: TransportHost, scope: Scope, receive: Receive, send: Send, h: H, sid: str
) -> None:
    await _discard_body(ep, receive, scope)
    session, bind = ep._receiving_session(scope, h, sid, "xhr_streaming")
    start = [(b"content-type", JAVASCRIPT), NO_CACHE, *cors(h), *ep._cookie(h), *bind]
    receiver = HTTPReceiver(send, start, wrap=frames.xhr_chunk, limit=ep.response_limit)
    await receiver.start(frames.XHR_STREAMING_PRELUDE)
    await _receive(session, receive, receiver)


async def eventsource(
    ep: TransportHost, scope: Scope, receive: Receive, send: Send, h: H, sid: str
) -> None:
    await _discard_body(ep, receive, scope)
    session, bind = ep._receiving_session(scope, h, sid, "eventsource")
    start = [(b"content-type", protocol.EVENT_STREAM), NO_CACHE, *ep._cookie(h), *bind]
    receiver = HTTPReceiver(send, start, wrap=frames.eventsource_chunk, limit=ep.response_limit)
    await receiver.start(frames.EVENTSOURCE_PRELUDE)
    await _receive(session, receive, receiver)


async def htmlfile(
    ep: TransportHost, scope: Scope, receive: Receive, send: Send, h: H, sid: str
) -> None:
    callback = protocol.callback(scope.get("query_string", b""))
    await _discard_body(ep, receive, scope)
    session, bind = ep._receiving_session(scope, h, sid, "htmlfile")
    start = [(b"content-type", protocol.HTML), NO_CACHE, *ep._cookie(h), *bind]
    receiver = HTTPReceiver(send, start, wrap=frames.htmlfile_chunk, limit=ep.response_limit)
    await receiver.start(frames.htmlfile_prelude(callback))
    await _receive(session, receive, receiver)


async def jsonp(
    ep: TransportHost, scope: Scope, receive: Receive, send: Send, h: H, sid: str
) -> None:
    callback = protocol.callback(scope.get("query_string", b""))
    await _discard_body(ep, receive, scope)
    session, bind = ep._receiving_session(scope, h, sid, "jsonp")
    start = [(b"content-type", JAVASCRIPT), NO_CACHE, *ep._cookie(h), *bind]
    start.append((b"x-content-type-options", b"nosniff"))
    receiver = HTTPReceiver(send, start, wrap=frames.jsonp_chunk(callback), limit=None)
    await _receive(session, receive, receiver)


async def _receive(session: SockJSSession, receive: Receive, receiver: HTTPReceiver) -> None:
    watcher = asyncio.get_running_loop().create_task(watch_disconnect(receive, receiver))
    try:
        await session.attach(receiver)
        await receiver.finish()
    finally:
        watcher.cancel()


async def _discard_body(ep: TransportHost, receive: Receive, scope: Scope) -> None:
    """A receiving request's body means nothing: skipped, but only up to the send
    limit (a 413 past it, the rest unread)."""
    if await read_body(receive, ep.max_message_bytes or 0, scope) is None:
        raise HTTPError(413, "Payload too large.", close=True)


# --- sending -----------------------------------------------------------------------------


async def xhr_send(
    ep: TransportHost, scope: Scope, receive: Receive, send: Send, h: H, sid: str
) -> None:
    bind = ep._sending_client(scope, h, sid)
    messages = frames.send_body(await _read(ep, receive, sid, scope))
    await _deliver(ep, sid, messages)
    out = [(b"content-type", TEXT), NO_CACHE, *cors(h), *ep._cookie(h), *bind]
    await respond(send, 204, b"", out)


async def jsonp_send(
    ep: TransportHost, scope: Scope, receive: Receive, send: Send, h: H, sid: str
) -> None:
    bind = ep._sending_client(scope, h, sid)
    body = frames.jsonp_send_body(h.get("content-type", ""), await _read(ep, receive, sid, scope))
    messages = frames.send_body(body)
    await _deliver(ep, sid, messages)
    out = [(b"content-type", TEXT), NO_CACHE, *ep._cookie(h), *bind]
    await respond(send, 200, b"ok", out)


async def _read(ep: TransportHost, receive: Receive, session_id: str, scope: Scope) -> str:
    body = await read_body(receive, ep.max_message_bytes, scope)
    if body is None:
        session = ep.sessions.get(session_id)
        if session is not None:
            await session.close(1009, "Message too big")
        raise HTTPError(413, "Payload too large.", close=True)
    try:
        return body.decode()
    except UnicodeDecodeError:
        raise HTTPError(500, "Broken JSON encoding.") from None


async def _deliver(ep: TransportHost, session_id: str, messages: list[str]) -> None:
    session = ep.sessions.get(session_id)
    if session is None:
        raise HTTPError(404)
    await session.deliver(messages)


# --- WebSocket ---------------------------------------------------------------------------


async def websocket(
    ep: TransportHost, scope: Scope, receive: Receive, send: Send, h: H, transport: str
) -> None:
    """A WebSocket session (``transport``: ``websocket`` or ``raw-websocket``), its own
    session for the socket's life."""
    if (await receive())["type"] != "websocket.connect":
        return
    await send({"type": "websocket.accept"})
    raw = transport == "raw-websocket"
    session = ep._new_session(None, scope, h, transport)
    receiver = WebSocketReceiver(send, raw=raw)
    writer = asyncio.get_running_loop().create_task(_attach(session, receiver))
    try:
        await _read_websocket(ep, receive, session, receiver, raw)
    finally:
        receiver.stop()
        await asyncio.gather(writer, return_exceptions=True)


async def _read_websocket(
    ep: TransportHost,
    receive: Receive,
    session: SockJSSession,
    receiver: WebSocketReceiver,
    raw: bool,
) -> None:
    limit = ep.max_message_bytes
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            receiver.closed = True
            return
        if message["type"] != "websocket.receive":
            continue
        text = message.get("text")
        if text is None:
            text = (message.get("bytes") or b"").decode("utf-8", errors="replace")
        if limit is not None and len(text) > limit:
            receiver.close_code = 1009
            session.abort(1009, "Message too big")
            return
        if raw:
            await session.deliver([text])
            continue
        messages = frames.websocket_messages(text)
        if messages is None:
            receiver.close_code = 1002
            session.abort(1002, "Broken framing.")  # sockjs: terminate abruptly
            return
        if messages:  # empty frames are ignored
            await session.deliver(messages)


async def _attach(session: SockJSSession, receiver: Receiver) -> None:
    try:
        await session.attach(receiver)
    finally:
        await receiver.finish()
