"""The bare broadcaster: the ceiling bench/fanout.py measures livedata's fan-out against.

Issue 14's baseline: a minimal ASGI app with no Django, no mergebox and no per-client
state. One PostgreSQL connection LISTENs on ``fanout_books``; the writer of
bench/fanout.py sends the new book row as the NOTIFY payload in the row's own
transaction. Each notification becomes one pre-encoded DDP ``added`` frame (the bytes
livedata sends for a book), written in turn to every ``AllBooks`` socket and to every
``BooksOfAuthor`` socket of the book's author (the payload's ``author_id``: a dict of
author id → sockets, the in-memory match at its cheapest).

It speaks just enough DDP for the load generator (bench/fanout_client.js) to treat it
as livedata: the ``server_id`` greeting, ``connect`` → ``connected``, ``sub`` → the
initial documents + ``ready``, ``ping`` → ``pong``. The initial documents are read and
encoded once at start-up (bench/fanout.py seeds before starting it), as livedata's
publications send them: for ``BooksOfAuthor`` [author id], that author's books (no
author document); for any other name, every author and book (AllBooks: 150 sends of
shared frames).

bench/fanout.py runs it on the stack ``livedata serve`` uses (uvicorn, websockets-sansio,
httptools, no permessage-deflate); ``FANOUT_DSN`` is the libpq connection string.
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

import psycopg

CHANNEL = "fanout_books"
_subscribed: set[Any] = set()  # AllBooks
_of_author: dict[str, set[Any]] = {}  # BooksOfAuthor, by str(author id)
_initial: list[dict[str, str]] = []
_initial_of_author: dict[str, list[dict[str, str]]] = {}
_task: list[asyncio.Task[None]] = []


def added(collection: str, id_: Any, fields: dict[str, Any]) -> dict[str, str]:
    """The ASGI send event of one DDP ``added``, encoded as livedata encodes it."""
    message = {"msg": "added", "collection": collection, "id": str(id_), "fields": fields}
    return {"type": "websocket.send", "text": json.dumps(message, separators=(",", ":"))}


async def _broadcast(started: asyncio.Event) -> None:
    async with await psycopg.AsyncConnection.connect(
        os.environ["FANOUT_DSN"], autocommit=True
    ) as conn:
        authors = await conn.execute("SELECT id, name, email FROM livedata_demo_author ORDER BY id")
        for id_, name, email in await authors.fetchall():
            _initial.append(added("livedata_demo.author", id_, {"name": name, "email": email}))
        books = await conn.execute(
            "SELECT id, title, author_id FROM livedata_demo_book ORDER BY id"
        )
        for id_, title, author_id in await books.fetchall():
            book = added("livedata_demo.book", id_, {"title": title, "author_id": author_id})
            _initial.append(book)
            _initial_of_author.setdefault(str(author_id), []).append(book)
        await conn.execute(f"LISTEN {CHANNEL}")
        started.set()
        async for note in conn.notifies():
            row = json.loads(note.payload)
            event = added("livedata_demo.book", row.pop("id"), row)
            await _send_all(_subscribed, event)
            group = _of_author.get(str(row["author_id"]))
            if group:
                await _send_all(group, event)


async def _send_all(sockets: set[Any], event: dict[str, str]) -> None:
    for send in list(sockets):
        try:
            await send(event)
        except Exception:  # a socket that went away
            sockets.discard(send)


async def _lifespan(receive: Any, send: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            started = asyncio.Event()
            _task.append(asyncio.create_task(_broadcast(started)))
            await started.wait()
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            _task[0].cancel()
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _session(receive: Any, send: Any) -> None:
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.send", "text": '{"server_id":"0"}'})
    joined: list[set[Any]] = []
    try:
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            ddp = json.loads(message.get("text") or "{}")
            kind = ddp.get("msg")
            if kind == "connect":
                await send({"type": "websocket.send", "text": '{"msg":"connected","session":"b"}'})
            elif kind == "sub":
                if ddp.get("name") == "BooksOfAuthor":
                    author = str(ddp["params"][0])
                    initial = _initial_of_author.get(author, [])
                    group = _of_author.setdefault(author, set())
                else:
                    initial, group = _initial, _subscribed
                for event in initial:
                    await send(event)
                ready = json.dumps({"msg": "ready", "subs": [ddp["id"]]})
                await send({"type": "websocket.send", "text": ready})
                group.add(send)
                joined.append(group)
            elif kind == "ping":
                await send({"type": "websocket.send", "text": '{"msg":"pong"}'})
    finally:
        for group in joined:
            group.discard(send)


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
    elif scope["type"] == "websocket":
        await _session(receive, send)
    else:
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b""})
