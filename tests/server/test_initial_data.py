"""Initial data larger than the outgoing buffer is streamed, not dropped (issue 19, finding 6).

With 70,012 books a fresh ``AllBooks`` subscription got ``ready`` with no documents, then
close 1008, on every retry: the initial documents were queued at once, past
``DDP_MAX_OUTGOING_BYTES``. The test server's bound is 256 KiB; these books take ~1 MB.
"""

from __future__ import annotations

import pytest

from livedata.demo.bookstore.models import Author, Book
from tests.server.test_sockjs import (
    CONNECT,
    EventSource,
    HtmlFile,
    WebSocket,
    XhrPolling,
    XhrStreaming,
    open_session,
)
from tests.server.test_websocket import Client

pytestmark = pytest.mark.django_db(transaction=True)

BOOKS = 6000


@pytest.fixture
def many_books(connect) -> set[str]:
    author = Author.objects.create(name="Prolific", email="prolific@example.com")
    Book.objects.bulk_create(
        [
            Book(title=f"Volume {i} of a very long series " + "x" * 100, author=author)
            for i in range(BOOKS)
        ]
    )
    return {str(pk) for pk in Book.objects.values_list("pk", flat=True)}


def receive_all(client, sub_id: str) -> tuple[set[str], list[dict]]:
    """The book ids added before ``ready``, and every message up to it."""
    client.send({"msg": "sub", "id": sub_id, "name": "AllBooks", "params": []})
    added: set[str] = set()
    seen = client.until(lambda m: m["msg"] in ("ready", "nosub"), timeout=30)
    for m in seen:
        if m["msg"] == "added" and m["collection"] == "livedata_demo.book":
            added.add(m["id"])
    return added, seen


def test_initial_data_over_the_buffer_limit_reaches_a_websocket_client(server, many_books):
    client = Client(server)
    client.recv()
    client.send(CONNECT)
    client.recv()
    client.send({"msg": "ping", "id": "before"})  # answered in order, not lost
    added, seen = receive_all(client, "all")
    assert seen[-1] == {"msg": "ready", "subs": ["all"]}
    assert added == many_books
    # the connection goes on, live
    Book.objects.create(title="one more", author=Author.objects.get())
    [new] = [m for m in client.until(lambda m: m["msg"] == "added") if m["msg"] == "added"]
    assert new["fields"]["title"] == "one more"
    client.send({"msg": "ping", "id": "after"})
    assert client.until(lambda m: m.get("id") == "after")[-1] == {"msg": "pong", "id": "after"}
    client.close()


@pytest.mark.parametrize(
    "kind", [XhrPolling, XhrStreaming, EventSource, HtmlFile, WebSocket], ids=lambda k: k.transport
)
def test_initial_data_over_the_buffer_limit_reaches_a_sockjs_client(server, many_books, kind):
    client = open_session(server, kind)
    client.send(CONNECT)
    assert client.recv()["msg"] == "connected"
    added, seen = receive_all(client, "all")
    assert seen[-1] == {"msg": "ready", "subs": ["all"]}
    assert added == many_books
    client.send({"msg": "ping", "id": "after"})
    assert client.recv() == {"msg": "pong", "id": "after"}
    client.close()
