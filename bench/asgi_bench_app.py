"""A bare ASGI WebSocket app: the ceiling for bench/asgi_servers.py (no DDP, no Django).

``/ws``: every connection joins one broadcast group. A text ``"b N"`` makes the server
send N precomputed messages to every connection (concurrently, one task per connection);
``"j G"`` joins group G and ``"p G TEXT"`` sends TEXT to every member of G (a bare
broadcaster for bench/live_queries.py); anything else is echoed back.
"""

from __future__ import annotations

import asyncio
from typing import Any

MESSAGE = '{"msg":"changed","collection":"livedata_demo.book","id":"1","fields":{"title":"x"}}'
_group: set[Any] = set()
_groups: dict[str, set[Any]] = {}


async def _send_k(member: Any, k: int) -> None:
    try:
        for _ in range(k):
            await member({"type": "websocket.send", "text": MESSAGE})
    except Exception:
        _group.discard(member)


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})
        return
    await receive()
    await send({"type": "websocket.accept"})
    _group.add(send)
    try:
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text") or ""
            if text.startswith("j "):  # join group: "j NAME"
                _groups.setdefault(text[2:], set()).add(send)
            elif text.startswith("p "):  # publish to a group: "p NAME MESSAGE"
                _, name, payload = text.split(" ", 2)
                for member in list(_groups.get(name, ())):
                    await member({"type": "websocket.send", "text": payload})
            elif text.startswith("b "):
                k = int(text[2:])
                await asyncio.gather(*(_send_k(member, k) for member in list(_group)))
            else:
                await send({"type": "websocket.send", "text": text})
    finally:
        _group.discard(send)
        for members in _groups.values():
            members.discard(send)
