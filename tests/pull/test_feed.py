"""The pull feed over real HTTP against a real ``livedata serve``: protocol, live modes,
filters, caching and every bad input."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from livedata.capture import log
from livedata.demo.bookstore.models import Author, Book
from tests.conftest import settle
from tests.pull.conftest import feed_on, follow, held_on, state_of, wait_until
from tests.server.conftest import _serve


def add_book(db, title: str, author: int) -> int:
    return db.execute(
        "INSERT INTO livedata_demo_book (title, author_id) VALUES (%s, %s) RETURNING id",
        [title, author],
    ).fetchone()[0]


def books() -> dict:
    return {
        str(b.pk): {"id": b.pk, "title": b.title, "author_id": b.author_id}
        for b in Book.objects.all()
    }


def test_snapshot_in_pages_then_changes(feed, author, connect):
    Book.objects.bulk_create([Book(title=f"b{i}", author_id=author) for i in range(25)])
    first = feed(offset="-1", limit=10)
    assert first.status_code == 200
    assert first.headers["Livedata-Phase"] == "snapshot"
    assert "Livedata-Up-To-Date" not in first.headers
    assert int(first.headers["Livedata-Rows-Estimate"]) > 0
    page = first.json()
    assert [m["op"] for m in page] == ["insert"] * 10
    assert page[0]["value"] == {"id": int(page[0]["pk"]), "title": "b0", "author_id": author}

    messages, handle, offset = follow(feed, limit=10)
    assert len(messages) == 25 and state_of(messages) == books()

    db = connect()
    db.execute("UPDATE livedata_demo_book SET title = 'changed' WHERE title = 'b3'")
    db.execute("DELETE FROM livedata_demo_book WHERE title = 'b4'")
    db.execute("INSERT INTO livedata_demo_book (title, author_id) VALUES ('new', %s)", [author])
    settle(db)  # the three are below every reader's horizon: one read returns them all
    response = feed(offset=offset, handle=handle)
    changes = response.json()
    assert [m.get("op") or m["control"] for m in changes] == [
        "update",
        "delete",
        "insert",
        "up-to-date",
    ]
    assert changes[0]["old"]["title"] == "b3" and changes[0]["value"]["title"] == "changed"
    assert changes[1]["value"] == {"id": int(changes[1]["pk"])}
    assert response.headers["Livedata-Up-To-Date"] == "true"
    assert state_of(changes, state_of(messages)) == books()


def test_live_long_poll_wakes_on_commit(feed, author, connect, held):
    _, handle, offset = follow(feed)
    with ThreadPoolExecutor(1) as pool:
        answer = pool.submit(feed, offset=offset, handle=handle, live="true")
        # held: the server found nothing new and registered the request to wait
        wait_until(lambda: held() == 1, "the long-poll was not held")
        assert not answer.done()
        # committed only now, so the request can only have it by being woken up
        connect().execute(
            "INSERT INTO livedata_demo_book (title, author_id) VALUES ('live', %s)", [author]
        )
        response = answer.result(timeout=30)
    assert response.status_code == 200
    # the change, not the empty answer PULL_LIVE_TIMEOUT (2 s) would have given
    assert [m.get("op") for m in response.json()] == ["insert", None]
    assert response.json()[0]["value"]["title"] == "live"
    assert held() == 0
    assert response.headers["Cache-Control"] == "no-store"
    # coming back at the same offset is answered at once (from the notifier's memory)
    again = feed(offset=offset, handle=handle, live="true")
    assert again.json() == response.json()


#: the live timeout of ``short_poll_server`` (the suite's servers wait 2 s, the default 20 s)
SHORT_LIVE_TIMEOUT = 1.0


@pytest.fixture
def short_poll_server(transactional_db: None) -> Iterator[str]:
    """A server whose held live requests time out after ``SHORT_LIVE_TIMEOUT``."""
    settings = {"PULL_LIVE_TIMEOUT": SHORT_LIVE_TIMEOUT}
    yield from _serve("", LIVEDATA_SETTINGS=json.dumps(settings))


def test_live_long_poll_times_out_up_to_date(short_poll_server, token, author):
    held = held_on(short_poll_server)
    with feed_on(short_poll_server, token) as feed, ThreadPoolExecutor(1) as pool:
        _, handle, offset = follow(feed)
        started = time.monotonic()
        answer = pool.submit(feed, offset=offset, handle=handle, live="true")
        wait_until(lambda: held() == 1, "the long-poll was not held")
        response = answer.result(timeout=30)
        took = time.monotonic() - started
    # the server's deadline starts after the request was sent, so it cannot answer
    # sooner than its timeout (this bound cannot fail on a slow machine) ...
    assert took >= SHORT_LIVE_TIMEOUT - 0.1, took
    # ... and answers at its timeout: not held until something else (a poll, the 2 s of
    # the other servers, the default 20 s) lets it go; 1.5 s of slack for a busy machine
    assert took < SHORT_LIVE_TIMEOUT + 1.5, took
    assert held() == 0  # let go at its timeout
    assert response.json() == [{"control": "up-to-date"}]
    assert response.headers["Livedata-Up-To-Date"] == "true"


def test_server_sent_events_stream_snapshot_then_changes(server, token, author, connect):
    Book.objects.bulk_create([Book(title=f"s{i}", author_id=author) for i in range(5)])
    url = f"http://{server}/livedata/pull/livedata_demo.book"
    headers = {"Authorization": f"Bearer {token}", "Accept": "text/event-stream"}
    db = connect()
    events: list[dict] = []
    with httpx.stream(
        "GET", url, params={"offset": "-1", "limit": 2}, headers=headers, timeout=30
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["Livedata-Handle"]
        for line in response.iter_lines():
            if not line.startswith("data:"):
                continue
            events.append(json.loads(line[5:]))
            if events[-1].get("control") == "up-to-date" and len(events) < 12:
                db.execute(
                    "INSERT INTO livedata_demo_book (title, author_id) VALUES ('sse', %s)", [author]
                )
            if any(e.get("value", {}).get("title") == "sse" for e in events):
                break
    controls = [e for e in events if "control" in e]
    assert [c["control"] for c in controls[:3]] == ["offset", "offset", "offset"]
    assert state_of(events) == books()


def test_filters_and_fields(feed, author, connect):
    other = Author.objects.create(name="Other", email="other@example.com").pk
    Book.objects.create(title="Alpha", author_id=author)
    Book.objects.create(title="Beta", author_id=other)
    messages, handle, offset = follow(feed, author=str(author), fields="title")
    assert [m["value"] for m in messages] == [{"id": messages[0]["value"]["id"], "title": "Alpha"}]

    db = connect()
    alpha = messages[0]["pk"]
    beta = str(Book.objects.get(title="Beta").pk)
    db.execute("UPDATE livedata_demo_book SET author_id = %s WHERE id = %s", [other, alpha])
    db.execute("UPDATE livedata_demo_book SET author_id = %s WHERE id = %s", [author, beta])
    db.execute("UPDATE livedata_demo_book SET title = 'Gamma' WHERE id = %s", [alpha])  # not ours
    # committed last, so after the Gamma update in log order: a read that has the marker
    # has read past Gamma, so Gamma's absence means it was not sent (not "not yet")
    marker = str(add_book(db, "Marker", author))
    settle(db)  # the four are below every reader's horizon: one read returns them all
    changes = feed(offset=offset, handle=handle, author=str(author), fields="title").json()
    assert [(m.get("op"), m.get("pk")) for m in changes] == [
        ("delete", alpha),  # stopped matching
        ("insert", beta),  # started matching
        ("insert", marker),
        (None, None),
    ]
    assert changes[1]["value"] == {"id": int(beta), "title": "Beta"}

    starts, *_ = follow(feed, title__startswith="Be")
    assert [m["value"]["title"] for m in starts] == ["Beta"]
    inside, *_ = follow(feed, author__in=f"{author},{other}")
    assert len(inside) == 3  # Gamma (ex-Alpha), Beta, Marker


def test_permissions_and_exposure(server, feed, transactional_db):
    from django.contrib.auth.models import User

    from livedata.accounts import tokens

    url = f"http://{server}/livedata/pull/livedata_demo.book"
    assert httpx.get(url, params={"offset": "-1"}).status_code == 401
    nobody = User.objects.create_user("nobody")
    secret = tokens.issue(nobody, kind="api")[0]
    denied = httpx.get(url, params={"offset": "-1"}, headers={"Authorization": f"Bearer {secret}"})
    assert denied.status_code == 403
    assert denied.json() == {
        "error": "forbidden",
        "message": "you need the livedata_demo.view_book permission",
    }
    for model in ("auth.user", "testapp.note", "nonsense", "livedata_demo.nope"):
        response = feed(model, offset="-1")
        assert response.status_code == 404, model
        assert response.json()["error"] == "unknown-model"
    assert feed("livedata_demo.author", offset="-1").status_code == 200


@pytest.mark.parametrize(
    ("params", "field", "text"),
    [
        ({}, "offset", "offset is required"),
        ({"offset": "abc"}, "offset", "invalid offset"),
        ({"offset": "s!!!"}, "offset", "invalid offset"),
        ({"offset": "12_3"}, "handle", "handle is required"),
        ({"offset": "12_3", "handle": "forged:abc:def"}, "handle", "invalid handle"),
        ({"offset": "-1", "limit": "many"}, "limit", "limit must be an integer"),
        ({"offset": "-1", "limit": "0"}, "limit", "at least 1"),
        ({"offset": "-1", "fields": "title,secret"}, "fields", "not an exposed field"),
        ({"offset": "-1", "colour": "red"}, "colour", "not a parameter of the feed"),
        ({"offset": "-1", "author__name": "x"}, "author__name", "own columns"),
        ({"offset": "-1", "author": "x"}, "author", "filter 'author'"),
        ({"offset": "-1", "title__regex": "x"}, None, "cannot be followed live"),
        ({"offset": "-1", "title__range": "a"}, "title__range", "two values"),
        ({"offset": "-1", "author__in": ""}, "author__in", "at least one value"),
        ({"offset": "-1", "author__in": "1,x"}, "author__in", "'x' is not a valid author"),
        ({"offset": "-1", "author__in": "1,"}, "author__in", "'' is not a valid author"),
        ({"offset": "-1", "author__gte": "1.5"}, "author__gte", "'1.5' is not a valid author"),
    ],
)
def test_bad_input_gets_precise_400(feed, params, field, text):
    response = feed(**params)
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["error"] == "bad-request"
    assert body.get("field") == field
    assert text in body["message"]


def test_an_offset_past_the_keys_range_is_a_400(feed, author):
    """Issue 19: a snapshot offset holding a huge number was a 500 (EmptyResultSet)."""
    handle = feed(offset="-1").headers["Livedata-Handle"]
    for key in (10**30, -(10**30)):
        offset = "s" + base64.urlsafe_b64encode(str(key).encode()).decode().rstrip("=")
        response = feed(offset=offset, handle=handle)
        assert response.status_code == 400, response.text
        assert response.json()["field"] == "offset"
        assert "not a key of this model" in response.json()["message"]


def test_handle_is_bound_to_its_feed(feed, author):
    Book.objects.create(title="x", author_id=author)
    _, handle, offset = follow(feed)
    other = feed(offset=offset, handle=handle, author=str(author))
    assert other.status_code == 400 and "other fields or filters" in other.json()["message"]
    wrong = feed("livedata_demo.author", offset=offset, handle=handle)
    assert wrong.status_code == 400 and "is for livedata_demo.book" in wrong.json()["message"]
    before = feed(offset="1_1", handle=handle)
    assert before.status_code == 400 and "before this feed" in before.json()["message"]


def test_shape_change_and_pruned_log_answer_must_refetch(feed, author, connect):
    from livedata.pull.position import Handle

    Book.objects.create(title="x", author_id=author)
    _, raw, offset = follow(feed)
    handle = Handle.decode(raw)
    reshaped = Handle(handle.model, handle.snapshot, handle.params, "0" * 16).encode()
    response = feed(offset=offset, handle=reshaped)
    assert response.status_code == 409
    assert response.json()["error"] == "must-refetch"

    db = connect()
    db.execute("INSERT INTO livedata_demo_book (title, author_id) VALUES ('y', %s)", [author])
    settle(db)  # the insert is below the horizon the prune marks
    assert log.prune(db, older_than=None) > 0
    response = feed(offset=offset, handle=raw)
    assert response.status_code == 409
    assert response.json()["error"] == "must-refetch"


def test_truncate_answers_must_refetch(feed, author, connect):
    # a TRUNCATE committed before the snapshot is in it, even when an older transaction
    # keeps the snapshot's xmin below the TRUNCATE's txid
    older = connect(autocommit=False)
    older.execute("SELECT pg_current_xact_id()")
    connect().execute("TRUNCATE livedata_demo_book")
    Book.objects.create(title="x", author_id=author)
    first = feed(offset="-1")
    older.commit()  # now the change read reaches the TRUNCATE's txid
    settle(connect())
    handle, offset = first.headers["Livedata-Handle"], first.headers["Livedata-Offset"]
    page = feed(offset=offset, handle=handle)
    assert page.status_code == 200, page.text
    assert state_of(first.json() + page.json()) == books()
    offset = page.headers["Livedata-Offset"]
    db = connect()
    db.execute("TRUNCATE livedata_demo_book")
    settle(db)  # the TRUNCATE is below every reader's horizon
    response = feed(offset=offset, handle=handle)
    assert response.status_code == 409 and response.json()["error"] == "must-refetch"


def test_limits_are_capped_and_pages_cacheable(feed, author):
    Book.objects.bulk_create([Book(title=f"c{i}", author_id=author) for i in range(3)])
    response = feed(offset="-1", limit="999999999")
    assert response.headers["Livedata-Limit"] == "10000"  # PULL_MAX_PAGE_SIZE
    _, handle, offset = follow(feed)
    page = feed(offset=offset, handle=handle)
    assert page.headers["Cache-Control"] == "private, no-cache"  # up to date: may grow
    full = feed(offset="-1", limit=1)
    second = dict(offset=full.headers["Livedata-Offset"], handle=full.headers["Livedata-Handle"])
    cached = feed(limit=1, **second)
    assert cached.headers["Cache-Control"] == "private, max-age=604800, immutable"
    etag = cached.headers["ETag"]
    again = feed(limit=1, headers={"If-None-Match": etag}, **second)
    assert again.status_code == 304 and again.headers["ETag"] == etag


def test_offset_now_sends_only_later_changes(feed, author, connect):
    Book.objects.create(title="before", author_id=author)
    first = feed(offset="now")
    assert first.status_code == 200 and first.json() == [{"control": "up-to-date"}]
    handle, offset = first.headers["Livedata-Handle"], first.headers["Livedata-Offset"]
    connect().execute(
        "INSERT INTO livedata_demo_book (title, author_id) VALUES ('after', %s)", [author]
    )
    response = feed(offset=offset, handle=handle, live="true")
    assert [m["value"]["title"] for m in response.json() if "op" in m] == ["after"]


def test_changes_carry_no_audit_context(feed, author):
    """The feed never sends who made a change (issue 19, finding 8: webhooks did)."""
    import livedata

    _, handle, offset = follow(feed)
    who = {"username": "admin", "user_id": 1, "remote_addr": "198.51.100.7", "path": "/admin/x"}
    with livedata.context(**who):
        book = Book.objects.create(title="Small Gods", author_id=author)
        book.title = "Small Gods (2nd ed.)"
        book.save()
    response = feed(offset=offset, handle=handle, live="true")
    changes = [m for m in response.json() if "control" not in m]
    assert changes and changes[0]["op"] == "insert"  # the update may come in the next answer
    assert all(set(m) <= {"op", "pk", "value", "old"} for m in changes)
    assert b"198.51.100.7" not in response.content and b"admin" not in response.content


INJECTED = "x' OR '1'='1"
DROP = "'; DROP TABLE livedata_demo_book; --"


def test_sql_in_filter_values_and_keys_is_never_executed(feed, author, connect):
    """Issue 19 (kept): filter values are data (matched literally by the snapshot's SQL
    and by the live matcher); keys that are not a lookup on an exposed column are 400."""
    for title in ("Alpha", "Beta", INJECTED, "100% pure"):
        Book.objects.create(title=title, author_id=author)

    def titles(**params: str) -> list[str]:
        return sorted(m["value"]["title"] for m in follow(feed, **params)[0])

    assert titles(title=INJECTED) == [INJECTED]
    assert titles(title=DROP) == []
    assert titles(title__startswith="%") == [] and titles(title__startswith="100%") == ["100% pure"]
    assert titles(title__in="Alpha') OR ('1'='1,Beta") == ["Beta"]
    for key in (
        "title; DROP TABLE livedata_demo_book; --",
        "title__exact') OR 1=1 --",
        "title' OR '1'='1",
        "title__in)--",
        "1=1) OR (title",
    ):
        response = feed(offset="-1", **{key: "x"})
        assert response.status_code == 400, (key, response.text)
        assert response.json()["error"] == "bad-request"
    # live: the change read matches in memory, literally too
    _, handle, offset = follow(feed, title=INJECTED)
    db = connect()
    db.execute("INSERT INTO livedata_demo_book (title, author_id) VALUES ('Gamma', %s)", [author])
    db.execute(
        "INSERT INTO livedata_demo_book (title, author_id) VALUES (%s, %s)", [INJECTED, author]
    )
    live = feed(offset=offset, handle=handle, title=INJECTED, live="true").json()
    assert [m["value"]["title"] for m in live if "op" in m] == [INJECTED]
    assert db.execute("SELECT count(*) FROM livedata_demo_book").fetchone()[0] == 6  # intact


def test_excluded_fields_are_never_in_rows_or_changes(feed, author, connect):
    """Issue 19 (kept): Book excludes added_by: not in snapshot rows, values or old values
    of changes, and not a field one may ask for."""
    from django.contrib.auth.models import User

    user = User.objects.create_user("adder")
    book = Book.objects.create(title="Hot Six", author_id=author, added_by=user)
    first = feed(offset="-1")
    assert b"added_by" not in first.content
    messages, handle, offset = follow(feed)
    assert set(messages[0]["value"]) == {"id", "title", "author_id"}
    db = connect()
    db.execute("UPDATE livedata_demo_book SET added_by_id = NULL WHERE id = %s", [book.pk])
    db.execute("UPDATE livedata_demo_book SET added_by_id = %s, title = 'Seven' WHERE id = %s",
               [user.pk, book.pk])  # fmt: skip
    changes = []
    while not any(m.get("value", {}).get("title") == "Seven" for m in changes):
        response = feed(offset=offset, handle=handle, live="true")
        assert b"added_by" not in response.content, response.text
        changes += response.json()
        offset = response.headers["Livedata-Offset"]
    for m in changes:
        if "op" in m:
            assert set(m["value"]) <= {"id", "title", "author_id"}
            assert set(m.get("old") or {}) <= {"id", "title", "author_id"}
    for fields in ("added_by", "added_by_id", "title,added_by"):
        asked = feed(offset="-1", fields=fields)
        assert asked.status_code == 400 and asked.json()["field"] == "fields", fields
