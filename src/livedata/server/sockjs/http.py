"""ASGI plumbing of the SockJS endpoint: complete responses, bounded request bodies, a
client's disconnect, and refusing a WebSocket handshake.

The driver side of ``protocol.py``: this moves bytes over ASGI, the rules are there.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, Protocol

from livedata.server.bodies import declared_length, read_up_to
from livedata.server.sockjs.protocol import REASONS, TEXT, Headers

Scope = dict[str, Any]
Receive = Callable[[], Coroutine[Any, Any, dict[str, Any]]]
Send = Callable[[dict[str, Any]], Coroutine[Any, Any, None]]


class Stoppable(Protocol):
    """What ``watch_disconnect`` needs of a receiver (``receivers.Receiver``; a Protocol,
    so this module does not import the receivers that import it)."""

    def stop(self) -> None: ...


async def respond(send: Send, status: int, body: bytes, headers: Headers) -> None:
    """A complete response, with Content-Length (none for 204 and 304)."""
    out = list(headers)
    if status not in (204, 304):
        out.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": out})
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def read_body(
    receive: Receive, limit: int | None, scope: Scope | None = None
) -> bytes | None:
    """The request body, or None as soon as it passes ``limit`` bytes (0 or None: no
    limit): the rest is never read (answer with ``connection: close``), so an oversized
    body costs at most ``limit`` bytes, not its whole length (issue 19). A declared
    ``Content-Length`` over the limit (``scope`` given) is refused before reading."""
    if limit and scope is not None and (declared_length(scope) or 0) > limit:
        return None
    body, _ = await read_up_to(receive, limit or None)
    return body


async def watch_disconnect(receive: Receive, receiver: Stoppable) -> None:
    """Stop ``receiver`` when the client goes away (a streaming or polling response)."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            receiver.stop()
            return


async def deny_websocket(scope: Scope, receive: Receive, send: Send, status: int) -> None:
    """Refuse a WebSocket handshake with ``status`` (an HTTP answer where the server
    supports it, else a close with 4000 + status)."""
    if (await receive())["type"] != "websocket.connect":
        return
    if "websocket.http.response" in scope.get("extensions", {}):
        body = REASONS.get(status, "Forbidden.").encode() if status != 403 else b"Forbidden."
        start = {"type": "websocket.http.response.start", "status": status}
        start["headers"] = [(b"content-type", TEXT), (b"content-length", str(len(body)).encode())]
        await send(start)
        await send({"type": "websocket.http.response.body", "body": body})
    else:
        await send({"type": "websocket.close", "code": 4000 + status})
