"""Raw DDP over WebSocket (``/websocket``): one DDP message per text frame, as Meteor's
Node and mobile clients speak it. Origin checks, admission (the pace sessions start at:
``runtime.admission``, waited for before the socket is accepted) and the inbound size
limit live here."""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable
from typing import Any

from livedata.ddp import messages
from livedata.runtime.admission import Busy
from livedata.server.ddp_session import DDPSession, Services
from livedata.server.headers import headers_of
from livedata.server.origin import origin_allowed, site_origin
from livedata.server.outgoing import SEND_MANY, Flag, Writer

logger = logging.getLogger("livedata.server")

#: Seconds to get a close frame out before giving up on the client.
CLOSE_TIMEOUT = 5.0


async def refuse(scope: dict[str, Any], receive: Any, send: Any, status: int, text: str) -> None:
    """Answer an HTTP request, or refuse a WebSocket before accepting it, with ``status``."""
    if scope["type"] == "http":
        body, headers = _plain(text)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        return
    if (await receive())["type"] != "websocket.connect":
        return
    await refuse_opening(scope, send, status, text)


async def refuse_opening(
    scope: dict[str, Any],
    send: Any,
    status: int,
    text: str,
    extra: list[tuple[bytes, bytes]] | None = None,
    close_code: int | None = None,
) -> None:
    """Refuse a WebSocket whose ``websocket.connect`` came, before accepting it: an HTTP
    ``status`` response where the server can send one, else a close before accept (which
    the server answers with 403), with ``close_code`` (default 4000 + ``status``)."""
    if "websocket.http.response" in scope.get("extensions", {}):
        body, headers = _plain(text)
        start = {
            "type": "websocket.http.response.start",
            "status": status,
            "headers": headers + (extra or []),
        }
        await send(start)
        await send({"type": "websocket.http.response.body", "body": body})
    else:
        await send({"type": "websocket.close", "code": close_code or 4000 + status})


def _plain(text: str) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    body = text.encode()
    headers = [(b"content-type", b"text/plain; charset=UTF-8")]
    return body, [*headers, (b"content-length", str(len(body)).encode())]


async def serve_websocket(
    services: Services, scope: dict[str, Any], receive: Any, send: Any
) -> None:
    conf = services.settings
    headers = headers_of(scope)
    site = site_origin(scope, headers)
    if not origin_allowed(headers.get("origin"), site, conf.DDP_ALLOWED_ORIGINS):
        logger.info("livedata: refused DDP connection from origin %s", headers.get("origin"))
        await receive()  # websocket.connect
        await send({"type": "websocket.close", "code": 4003})
        return
    message = await receive()
    if message["type"] != "websocket.connect":
        return
    try:  # admission: the session's turn to start, before the socket opens
        await services.runtime.admission.admit()
    except Busy as exc:
        await _busy(scope, send, exc)
        return
    await send({"type": "websocket.accept"})
    closed = Flag()

    def send_text(text: str) -> Awaitable[None]:
        # the server's own send, not a coroutine around it (once per frame: the fan-out)
        if closed.is_set():
            return _nothing()
        return send({"type": "websocket.send", "text": text})  # type: ignore[no-any-return]

    send_many = None
    if SEND_MANY in scope.get("extensions", {}):

        def send_many(texts: list[str]) -> Awaitable[None]:
            if closed.is_set():
                return _nothing()
            return send({"type": SEND_MANY, "texts": texts})  # type: ignore[no-any-return]

    handler = asyncio.current_task()
    abandoned = False

    async def close(code: int, reason: str) -> None:
        nonlocal abandoned
        if closed.is_set():
            return
        closed.set()
        try:
            await asyncio.wait_for(
                send({"type": "websocket.close", "code": code, "reason": reason[:120]}),
                CLOSE_TIMEOUT,
            )
        except TimeoutError:
            # a client that reads nothing cannot take even a close frame: stop waiting for
            # it; returning from the app makes the server drop the connection
            abandoned = True
            if handler is not None:
                handler.cancel()

    client = scope.get("client")
    ddp_session = DDPSession(
        services,
        # send waits for the socket
        Writer(send_text, close, conf.DDP_MAX_OUTGOING_BYTES, send_many),
        client_address=client[0] if client else None,
        http_headers=headers,
        site_origin=site,
        admitted=True,
    )
    limit = conf.DDP_MAX_MESSAGE_BYTES
    ddp_session.start()
    try:
        await _receive_loop(ddp_session, receive, limit)
    except asyncio.CancelledError:
        if not abandoned:
            raise
    finally:
        closed.set()
        await ddp_session.stop()


async def _nothing() -> None:
    pass


async def _busy(scope: dict[str, Any], send: Any, exc: Busy) -> None:
    """Refuse the WebSocket before it opens: 503 with ``Retry-After`` (a close before
    accept, which the server turns into 403, without the HTTP response extension).

    Before it opens, not after: Meteor's client resets its retry count when a socket
    opens, so a socket opened and then closed for being busy is retried after 10 ms, and
    again, while a refused one counts as a failed attempt and backs off (5 s, 11 s...)."""
    retry = [(b"retry-after", str(math.ceil(exc.wait)).encode())]
    await refuse_opening(scope, send, 503, exc.reason or "Server busy", retry, close_code=1013)


async def _receive_loop(ddp_session: DDPSession, receive: Any, limit: int) -> None:
    while not ddp_session.closed.is_set():
        message = await receive()
        kind = message["type"]
        if kind == "websocket.disconnect":
            break
        if kind != "websocket.receive":
            continue
        text = message.get("text")
        if text is None:
            data = message.get("bytes") or b""
            text = data.decode("utf-8", errors="replace")
        if len(text) > limit:
            ddp_session.protocol.send(messages.error(f"Message too big (limit {limit} bytes)"))
            ddp_session.flush()
            await ddp_session.shutdown(1009, "message too big")
            break
        await ddp_session.feed(text)
