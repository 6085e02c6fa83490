"""The feed on the snapshot-difference read path: what an open transaction elsewhere, an
out-of-order commit and an old ``<txid>_<id>`` offset do to it."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from livedata.capture.position import Position, Snapshot
from livedata.demo.bookstore.models import Book
from livedata.pull.position import Handle, decode_position, encode_position
from tests.pull.conftest import follow, state_of, wait_until
from tests.pull.test_feed import books

INSERT = "INSERT INTO livedata_demo_book (title, author_id) VALUES (%s, %s)"


def _hold_unrelated(connect):
    """A transaction that wrote a table nobody captures and stays open."""
    held = connect(autocommit=False)
    held.execute("INSERT INTO auth_group (name) VALUES ('held open')")
    return held


@pytest.mark.parametrize(
    "text",
    [
        "918233:918233:",
        "918233:928233:918233",
        "5:9:5,7",
        "5:9:5,7/7:12:7,11/12345",
        "1:1:",
    ],
)
def test_offset_encoding_round_trips(text):
    position = Position.parse(text)
    offset = encode_position(position)
    assert offset.startswith("c") and httpx.URL("?o=" + offset).params["o"] == offset
    assert all(c.isalnum() or c in "-_." for c in offset)
    assert decode_position(offset) == position


def test_offset_lengths():
    assert len(encode_position(Position.parse("918233:918233:"))) == 6
    assert len(encode_position(Position.parse("918233:928233:918233"))) == 8
    xip = tuple(range(918_000, 922_000, 40))  # 100 in flight over 4,000 xids
    hundred = encode_position(Position(Snapshot(xip[0], 922_100, xip)))
    assert len(hundred) < 220 < len(str(Snapshot(xip[0], 922_100, xip)))
    assert decode_position("812_4410") == Position.from_cursor(812, 4410)


def test_change_reaches_a_live_client_while_another_transaction_is_open(
    feed, author, connect, held
):
    _, handle, offset = follow(feed)
    blocker = _hold_unrelated(connect)
    db = connect()
    with ThreadPoolExecutor(1) as pool:
        answer = pool.submit(feed, offset=offset, handle=handle, live="true")
        # committed once the request is held, so it can only have it by being woken up
        wait_until(lambda: held() == 1, "the long-poll was not held")
        db.execute(INSERT, ["while held", author])
        committed = time.monotonic()
        response = answer.result(timeout=30)
    took = time.monotonic() - committed
    assert [m.get("value", {}).get("title") for m in response.json()] == ["while held", None]
    assert took < 1.0, took
    blocker.rollback()


def test_sse_client_gets_a_change_while_another_transaction_is_open(server, token, author, connect):
    held = _hold_unrelated(connect)
    db = connect()
    url = f"http://{server}/livedata/pull/livedata_demo.book"
    headers = {"Authorization": f"Bearer {token}", "Accept": "text/event-stream"}
    committed = 0.0
    with httpx.stream("GET", url, params={"offset": "-1"}, headers=headers, timeout=30) as r:
        for line in r.iter_lines():
            if not line.startswith("data:"):
                continue
            event = json.loads(line[5:])
            if event.get("control") == "up-to-date" and not committed:
                db.execute(INSERT, ["sse while held", author])
                committed = time.monotonic()
            if event.get("value", {}).get("title") == "sse while held":
                break
    assert time.monotonic() - committed < 1.0
    held.rollback()


def test_out_of_order_commits_are_delivered_as_they_commit(feed, author, connect):
    """A takes its xid and writes first, B commits first: B comes at once, without
    waiting for A; then A; each once."""
    messages, handle, offset = follow(feed)
    a = connect(autocommit=False)
    a.execute(INSERT, ["A", author])
    b = connect()
    b.execute(INSERT, ["B", author])
    started = time.monotonic()
    first = feed(offset=offset, handle=handle, live="true")
    assert time.monotonic() - started < 1.0
    assert [m["value"]["title"] for m in first.json() if "op" in m] == ["B"]
    offset = first.headers["Livedata-Offset"]

    threading.Timer(0.3, a.commit).start()
    second = feed(offset=offset, handle=handle, live="true")
    assert [m["value"]["title"] for m in second.json() if "op" in m] == ["A"]
    offset = second.headers["Livedata-Offset"]
    rest = feed(offset=offset, handle=handle)
    assert [m for m in rest.json() if "op" in m] == []
    changes = first.json() + second.json()
    assert state_of(changes, state_of(messages)) == books()


def test_old_style_offset_still_works(feed, author, connect):
    Book.objects.create(title="in the snapshot", author_id=author)
    messages, raw, _ = follow(feed)
    s1 = Handle.decode(raw).snapshot
    connect().execute(INSERT, ["after", author])
    time.sleep(0.2)
    # what the old feed answered after the last snapshot page: "<S1.xmin>_0"
    response = feed(offset=f"{s1.xmin}_0", handle=raw)
    changes = []
    for _ in range(3):  # the old offset's step first, then from the snapshot it ends at
        assert response.status_code == 200, response.text
        assert response.headers["Livedata-Offset"].startswith("c")
        changes += response.json()
        if "Livedata-Up-To-Date" in response.headers:
            break
        response = feed(offset=response.headers["Livedata-Offset"], handle=raw)
    assert response.headers["Livedata-Up-To-Date"] == "true"
    assert [m["value"]["title"] for m in changes if "op" in m] == ["after"]
    assert state_of(changes, state_of(messages)) == books()


@pytest.mark.parametrize("offset", ["c", "c!!", "cA.B", "cAB.AB.", "x12"])
def test_bad_change_offsets_are_400(feed, offset):
    response = feed(offset=offset, handle="x")
    assert response.status_code == 400
    assert response.json()["field"] == "offset"
