"""Request bodies read only up to a limit, before any view sees them.

Django's ASGI handler reads a whole body (spooling it to disk past
``FILE_UPLOAD_MAX_MEMORY_SIZE``) before the view runs, so a view's own size check (the
HTTP APIs' ``read_json``) answers 413 only after the client sent everything: a 50 MiB
body was read whole first (issue 19). ``bounded_body`` reads at most ``limit`` bytes: a
declared ``Content-Length`` over it is refused before a byte of the body is read, a
chunked body as soon as it passes the limit. The 413 closes the connection (the rest of
the body is never read), and what was read is replayed to the application.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


def declared_length(scope: dict[str, Any]) -> int | None:
    """The request's ``Content-Length`` (None: none, or not a number)."""
    for name, value in scope.get("headers", []):
        if name.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def too_large(send: Send, limit: int, *, body: bytes | None = None) -> None:
    """Answer 413 and close the connection (``connection: close``: the server stops
    reading the body). ``body``: the answer (default: the HTTP APIs' JSON error)."""
    if body is None:
        error = {"error": "payload-too-large", "message": f"request body over {limit} bytes"}
        body = json.dumps(error).encode()
        kind = b"application/json"
    else:
        kind = b"text/plain; charset=UTF-8"
    headers = [
        (b"content-type", kind),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
        (b"cache-control", b"no-store"),
    ]
    await send({"type": "http.response.start", "status": 413, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def read_up_to(receive: Receive, limit: int | None) -> tuple[bytes | None, Any]:
    """Read a request body to its end, stopping as soon as it passes ``limit`` bytes
    (None: no limit): ``(None, None)`` then, the rest never read. Else ``(body,
    None)``, or ``(what came so far, event)`` when another event (a disconnect) ended it
    first."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks), message
        chunk = message.get("body", b"")
        size += len(chunk)
        if limit is not None and size > limit:
            return None, None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks), None


async def bounded_body(
    scope: dict[str, Any], receive: Receive, send: Send, limit: int
) -> Receive | None:
    """Read the body of an HTTP request up to ``limit`` bytes.

    Returns a ``receive`` for the application that hands it the body read, then the
    server's own events (``http.disconnect``); or None after answering 413.
    """
    declared = declared_length(scope)
    if declared is not None and declared > limit:
        await too_large(send, limit)
        return None
    body, ended = await read_up_to(receive, limit)
    if body is None:
        await too_large(send, limit)
        return None
    # gone before its end (a disconnect): let the application see that instead
    first: dict[str, Any] | None = ended or {
        "type": "http.request",
        "body": body,
        "more_body": False,
    }

    async def replay() -> dict[str, Any]:
        nonlocal first
        if first is not None:
            message, first = first, None
            return message
        return await receive()

    return replay
