"""``PullClient`` against a real server: sync and async, long-poll and SSE, resuming from
a saved position, retrying while the server is away, refetching after a 409."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import threading
import time

import pytest

from livedata.capture import log
from livedata.demo.bookstore.models import Book
from livedata.pull import PullClient, PullError
from tests.conftest import settle, spawn_livedata
from tests.pull.conftest import state_of
from tests.pull.test_feed import books
from tests.server.conftest import free_port, stop, wait_listening


def _client(server: str, token: str, **kwargs) -> PullClient:
    return PullClient(f"http://{server}/livedata/", "livedata_demo.book", token=token, **kwargs)


def test_sync_until_up_to_date_then_resume(server, token, author, connect):
    Book.objects.bulk_create([Book(title=f"c{i}", author_id=author) for i in range(7)])
    client = _client(server, token, limit=3, live=False)
    batches = list(client)
    assert [b.phase for b in batches] == ["snapshot"] * 3 + ["changes"]
    assert batches[0].estimate is not None and not batches[0].refetch
    assert batches[-1].up_to_date
    state = state_of([m for b in batches for m in b.messages])
    assert state == books()

    db = connect()
    db.execute("UPDATE livedata_demo_book SET title = 'later' WHERE title = 'c1'")
    settle(db)  # below every reader's horizon: one read returns it
    resumed = _client(server, token, live=False, handle=client.handle, offset=client.offset)
    more = list(resumed)
    assert [m["op"] for b in more for m in b.messages] == ["update"]
    assert state_of([m for b in more for m in b.messages], state) == books()


@pytest.mark.parametrize("sse", [False, True], ids=["long-poll", "sse"])
def test_async_follows_live_changes(server, token, author, connect, sse):
    Book.objects.create(title="first", author_id=author)
    db = connect()

    async def follow() -> list[dict]:
        seen: list[dict] = []
        async for batch in _client(server, token, sse=sse):
            seen += batch.messages
            if batch.up_to_date and len(seen) == 1:
                threading.Timer(
                    0.3,
                    db.execute,
                    [
                        "INSERT INTO livedata_demo_book (title, author_id) VALUES ('live', %s)",
                        [author],
                    ],
                ).start()
            if any(m["value"]["title"] == "live" for m in seen):
                return seen
        raise AssertionError("the feed ended")

    seen = asyncio.run(asyncio.wait_for(follow(), 30))
    assert state_of(seen) == books()


def test_sse_sync_until_up_to_date(server, token, author):
    Book.objects.bulk_create([Book(title=f"e{i}", author_id=author) for i in range(5)])
    batches = list(_client(server, token, sse=True, live=False, limit=2))
    assert batches[-1].up_to_date
    assert state_of([m for b in batches for m in b.messages]) == books()


def test_retries_until_the_server_is_up(token, author, transactional_db, caplog):
    Book.objects.create(title="patient", author_id=author)
    port = free_port()
    found: list = []

    def run() -> None:
        found.extend(_client(f"127.0.0.1:{port}", token, live=False, backoff=(0.05, 0.5)))

    caplog.set_level(logging.WARNING, logger="livedata.pull.client")
    thread = threading.Thread(target=run)
    thread.start()
    # connection refused meanwhile: the client backs off and retries (the marker: a second
    # refused attempt was logged, so it retried once already)
    deadline = time.monotonic() + 20
    while caplog.text.count("retrying") < 2:
        assert time.monotonic() < deadline and thread.is_alive(), caplog.text
        time.sleep(0.02)
    proc = spawn_livedata(
        "serve", "--port", str(port), "--log-level", "warning", stderr=subprocess.STDOUT
    )
    try:
        wait_listening(port, proc)
        thread.join(30)
        assert not thread.is_alive()
        assert state_of([m for b in found for m in b.messages]) == books()
    finally:
        stop(proc)


def test_refetch_after_the_log_was_pruned(server, token, author, connect):
    Book.objects.create(title="old", author_id=author)
    client = _client(server, token, live=False)
    list(client)
    db = connect()
    db.execute("INSERT INTO livedata_demo_book (title, author_id) VALUES ('new', %s)", [author])
    settle(db)  # nothing older holds the prune back: 'new' goes too
    log.prune(db, older_than=None)
    again = list(_client(server, token, live=False, handle=client.handle, offset=client.offset))
    assert again[0].refetch and again[0].phase == "snapshot"
    assert not any(b.refetch for b in again[1:])
    assert state_of([m for b in again for m in b.messages]) == books()


def test_refusals_raise(server, token):
    with pytest.raises(PullError) as error:
        list(_client(server, token, live=False, filters={"colour": "red"}))
    assert error.value.status == 400 and error.value.body["field"] == "colour"
    with pytest.raises(PullError) as error:
        list(_client(server, "wrong-token", live=False))
    assert error.value.status == 401
