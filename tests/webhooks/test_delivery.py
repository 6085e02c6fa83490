"""Delivery by real `livedata deliver` processes to real HTTP receivers: signed PUTs in
log order, filters and fields, retries, Retry-After, 410, disabled-not-dropped."""

from __future__ import annotations

import itertools
import time
from typing import Any

import pytest
from standardwebhooks import Webhook

from livedata.capture.position import Position
from livedata.webhooks.models import Delivery, Subscription
from tests.webhooks.conftest import api_call, subscribe

pytestmark = pytest.mark.django_db(transaction=True)


def add_author(db: Any, email: str = "a@example.com", name: str = "A") -> int:
    return db.execute(
        "INSERT INTO livedata_demo_author (name, email) VALUES (%s, %s) RETURNING id", [name, email]
    ).fetchone()[0]


def add_book(db: Any, title: str, author: int) -> int:
    return db.execute(
        "INSERT INTO livedata_demo_book (title, author_id) VALUES (%s, %s) RETURNING id",
        [title, author],
    ).fetchone()[0]


def wait_until(predicate: Any, timeout: float = 20.0, message: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, message or "condition not met in time"
        time.sleep(0.05)


def claimed(db: Any, sub_id: int) -> bool:
    """Whether a worker holds the subscription: its advisory lock (see the dispatcher's
    docstring, "Claiming"), which a worker holds for as long as it runs a runner of it."""
    from livedata.webhooks.store import LOCK_SUBSCRIPTION

    return db.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' "
        "AND classid::bigint = %s AND objid::bigint = %s AND objsubid = 2 AND granted "
        "AND database = (SELECT oid FROM pg_database WHERE datname = current_database()))",
        [LOCK_SUBSCRIPTION, sub_id % 2**31],
    ).fetchone()[0]


def assert_nothing_more_delivered(db: Any, sub_id: int, receiver: Any, make_receiver: Any):
    """Prove the worker sends nothing more of the disabled subscription ``sub_id`` to
    ``receiver`` (a disabled subscription gives no signal of its own: nothing runs for it).

    1. Its runner is gone: no worker holds its lock (a runner ends, then unlocks).
    2. A witness subscription (another owner, authors only, its own receiver) is made now,
       after the disable was committed, and a witness change committed after everything
       the test committed before: the witness receiving it proves the worker claimed the
       witness in a reload that began after both, so that reload's one read of the
       subscriptions saw ``sub_id`` disabled; and that its listener has read past every
       earlier change (log order).
    3. Then ``sub_id`` is still not held, and ``receiver`` got nothing more. A worker that
       took ``sub_id`` again in that reload (or before) would hold its lock while its
       runner runs, and a runner that had ended already would have sent its first change
       (the one it had not got acknowledged, or the first committed after it).
    """
    from django.contrib.auth.models import Permission, User

    sent = len(receiver.requests)
    wait_until(lambda: not claimed(db, sub_id), message="the disabled runner kept its lock")
    owner = User.objects.create_user("witness")
    owner.user_permissions.add(Permission.objects.get(codename="view_author"))
    witness = make_receiver()
    subscribe(owner, "witness", witness.url, models=["livedata_demo.author"])
    marker = add_author(db, "witness@example.com", "Witness")
    got = witness.wait_for(1)
    assert got[0].event["data"]["new"]["id"] == marker
    assert not claimed(db, sub_id), "a worker took the disabled subscription again"
    assert len(receiver.requests) == sent, receiver.requests[sent:]
    Subscription.objects.filter(owner=owner).delete()


def test_signed_puts_in_log_order(svc, receiver, start_worker, connect) -> None:
    sub = subscribe(
        svc, "books", receiver.url, models=["livedata_demo.book", "livedata_demo.author"]
    )
    start_worker()
    db = connect()
    author = add_author(db)
    books = [add_book(db, f"Book {i}", author) for i in range(5)]
    db.execute("UPDATE livedata_demo_book SET title = 'Renamed' WHERE id = %s", [books[0]])
    db.execute("DELETE FROM livedata_demo_book WHERE id = %s", [books[1]])
    got = receiver.wait_for(8)
    verifier = Webhook(sub["secret"])  # the specification's own verifier
    events = []
    for request in got:
        assert request.method == "PUT" and request.path == "/hook"
        assert request.headers["content-type"] == "application/json"
        events.append(verifier.verify(request.body, request.headers))
    assert [e["type"] for e in events] == [
        "livedata_demo.author.insert",
        *["livedata_demo.book.insert"] * 5,
        "livedata_demo.book.update",
        "livedata_demo.book.delete",
    ]
    positions = [Position.parse(e["data"]["position"]) for e in events]
    assert len(set(positions)) == 8 and positions[-1].complete
    for earlier, later in itertools.pairwise(positions):  # each one at or after the last
        assert later.end.covers(earlier.end)
        if later.snapshot == earlier.snapshot and not later.complete:
            assert later.last_id > earlier.last_id
    insert, update, delete = events[1], events[6], events[7]
    assert insert["data"]["new"] == {"id": books[0], "title": "Book 0", "author_id": author}
    assert insert["data"]["old"] is None and insert["data"]["pk"] == str(books[0])
    assert update["data"]["changed"] == ["title"] and update["data"]["new"]["title"] == "Renamed"
    assert update["data"]["old"]["title"] == "Book 0"
    assert delete["data"]["new"] is None and delete["data"]["old"]["id"] == books[1]
    assert insert["timestamp"].endswith("Z")
    ids = [r.id for r in got]
    assert len(set(ids)) == 8 and all(i.startswith("msg_") for i in ids)
    assert all(len(i) < 40 for i in ids)  # subscription, epoch, row id: short
    # the position is durable, the delivery log has every attempt
    wait_until(lambda: Subscription.objects.get().delivered == 8)
    state = api_call(svc, "GET", "books").json()
    assert state["position"] == events[-1]["data"]["position"]
    assert state["lag"]["changes"] == 0 and state["last_success"]
    wait_until(lambda: Delivery.objects.filter(outcome="delivered").count() == 8)
    record = Delivery.objects.filter(webhook_id=ids[0]).get()
    assert record.status_code == 204 and record.attempt == 1 and record.latency_ms > 0
    assert record.position == events[0]["data"]["position"]
    add_book(db, "Marker", author)  # delivered after any repeat of the eight (log order)
    receiver.wait_for(9)
    assert len(receiver.requests) == 9  # nothing twice
    assert receiver.requests[8].event["data"]["new"]["title"] == "Marker"


def test_filter_fields_and_operations(svc, receiver, start_worker, connect) -> None:
    db = connect()
    mine, other = add_author(db, "m@example.com"), add_author(db, "o@example.com")
    subscribe(
        svc,
        "mine",
        receiver.url,
        filter={"author": mine},
        fields=["title"],
        operations=["insert", "update"],
    )
    start_worker()
    kept = add_book(db, "Mine", mine)
    add_book(db, "Theirs", other)
    db.execute("UPDATE livedata_demo_book SET author_id = %s WHERE id = %s", [mine, kept])  # no-op
    db.execute("UPDATE livedata_demo_book SET title = 'Mine 2' WHERE id = %s", [kept])
    moved = add_book(db, "Moving", mine)
    db.execute("UPDATE livedata_demo_book SET author_id = %s WHERE id = %s", [other, moved])
    db.execute("DELETE FROM livedata_demo_book WHERE id = %s", [kept])  # not subscribed
    marker = add_book(db, "Marker", mine)  # delivered after anything earlier (log order)
    got = receiver.wait_for(4)
    events = [r.event for r in receiver.requests]
    assert [(e["type"], e["data"]["pk"]) for e in events] == [
        ("livedata_demo.book.insert", str(kept)),
        ("livedata_demo.book.update", str(kept)),
        ("livedata_demo.book.insert", str(moved)),
        ("livedata_demo.book.insert", str(marker)),
    ], "the author change of 'Moving' only touched a field not sent: not delivered"
    assert events[0]["data"]["new"] == {"id": kept, "title": "Mine"}  # narrowed fields
    assert events[1]["data"]["changed"] == ["title"]
    assert len(got) == 4


def test_retries_keep_the_webhook_id_and_are_logged(svc, make_receiver, start_worker, connect):
    answers = iter([500, 502])
    receiver = make_receiver(respond=lambda r: (next(answers, 200), {}, b'{"why": "busy"}'))
    subscribe(svc, "books", receiver.url)
    start_worker()
    db = connect()
    add_book(db, "Retry me", add_author(db))
    add_book(db, "Then me", add_author(db, "b@example.com"))
    got = receiver.wait_for(4)
    assert got[0].id == got[1].id == got[2].id != got[3].id
    assert got[2].at - got[1].at >= 0.35  # the schedule: 0, 0.2, 0.4, ...
    wait_until(lambda: Delivery.objects.count() == 4)
    attempts = list(
        Delivery.objects.order_by("id").values_list("attempt", "status_code", "outcome")
    )
    assert attempts == [(1, 500, "failed"), (2, 502, "failed"), (3, 200, "delivered"),
                        (1, 200, "delivered")]  # fmt: skip
    failed = Delivery.objects.order_by("id").first()
    assert failed.response_excerpt == '{"why": "busy"}' and failed.latency_ms is not None


def test_retry_after_is_honoured(svc, make_receiver, start_worker, connect) -> None:
    answers = iter([(429, {"Retry-After": "2"}, b""), (503, {"Retry-After": "1"}, b"")])
    receiver = make_receiver(respond=lambda r: next(answers, (200, {}, b"ok")))
    subscribe(svc, "books", receiver.url)
    start_worker()
    db = connect()
    add_book(db, "Later", add_author(db))
    got = receiver.wait_for(3, timeout=30)
    assert got[1].at - got[0].at >= 1.9 and got[2].at - got[1].at >= 0.9


def test_410_disables_and_a_put_continues_from_there(svc, make_receiver, start_worker, connect):
    gone = {"yes": True}
    receiver = make_receiver(respond=lambda r: (410, {}, b"") if gone["yes"] else (204, {}, b""))
    subscribe(svc, "books", receiver.url)
    start_worker()
    db = connect()
    author = add_author(db)
    add_book(db, "One", author)
    receiver.wait_for(1)
    wait_until(lambda: Subscription.objects.get().state == "disabled")
    state = api_call(svc, "GET", "books").json()
    assert "410" in state["disabled_reason"] and state["lag"]["changes"] == 1
    add_book(db, "Two", author)  # committed while disabled: kept for later
    assert_nothing_more_delivered(db, Subscription.objects.get().pk, receiver, make_receiver)
    assert len(receiver.requests) == 1
    gone["yes"] = False
    subscribe(svc, "books", receiver.url)  # the same PUT re-enables
    got = receiver.wait_for(3)
    assert got[1].id == got[0].id  # the change that got 410, again, then the next
    assert [r.event["data"]["new"]["title"] for r in got[1:]] == ["One", "Two"]


def test_exhausted_schedule_disables_never_drops(svc, make_receiver, start_worker, connect):
    down = {"yes": True}
    receiver = make_receiver(respond=lambda r: (500, {}, b"") if down["yes"] else (204, {}, b""))
    subscribe(svc, "books", receiver.url)
    start_worker()
    db = connect()
    author = add_author(db)
    for i in range(3):
        add_book(db, f"B{i}", author)
    receiver.wait_for(5)  # the test schedule has 5 attempts
    wait_until(lambda: Subscription.objects.get().state == "disabled")
    sub = Subscription.objects.get()
    assert sub.attempts == 5 and "5 attempts failed" in sub.disabled_reason
    assert_nothing_more_delivered(db, sub.pk, receiver, make_receiver)
    assert len(receiver.requests) == 5
    down["yes"] = False
    api_call(svc, "PUT", "books", {"url": receiver.url, "models": ["livedata_demo.book"]})
    got = receiver.wait_for(8)
    assert [r.event["data"]["new"]["title"] for r in got[5:]] == ["B0", "B1", "B2"]


def test_private_addresses_are_refused_when_connecting(svc, receiver, start_worker, connect):
    # allowed where the subscription was made (this test process), not in the worker
    subscribe(svc, "books", f"http://localhost:{receiver.port}/hook")
    start_worker(settings={"WEBHOOK_ALLOWED_NETWORKS": [], "WEBHOOK_RETRY_SCHEDULE": [0, 60]})
    db = connect()
    add_book(db, "Secret", add_author(db))
    wait_until(lambda: Delivery.objects.exists())
    record = Delivery.objects.get()
    assert record.outcome == "error" and "refused" in record.error
    assert "loopback" in record.error and receiver.requests == []


def test_embedded_loopback_is_refused_when_connecting(svc, receiver, start_worker, connect):
    # issue 19, finding 13: IPv6 forms carrying 127.0.0.1 reach loopback through a
    # gateway (or the dual stack): the worker refuses them before any socket exists
    hosts = ["[::ffff:127.0.0.1]", "[::127.0.0.1]", "[64:ff9b::7f00:1]", "[2002:7f00:1::]"]
    for i, host in enumerate(hosts):
        subscribe(svc, f"books{i}", f"http://{host}:{receiver.port}/hook")
    start_worker(settings={"WEBHOOK_ALLOWED_NETWORKS": [], "WEBHOOK_RETRY_SCHEDULE": [0, 60]})
    db = connect()
    add_book(db, "Secret", add_author(db))
    wait_until(lambda: Delivery.objects.count() == len(hosts))
    for record in Delivery.objects.all():
        assert record.outcome == "error" and "refused" in record.error, record.error
        assert "loopback" in record.error
    assert receiver.requests == []


def test_a_redirect_is_not_followed_and_the_delivery_is_retried(
    svc, make_receiver, start_worker, connect
) -> None:
    """Issue 19 (kept): a receiver answering 302 to another loopback URL: nothing is sent
    there, the attempt counts as failed and is retried with the same webhook id."""
    elsewhere = make_receiver()
    answers = iter(
        [(302, {"Location": elsewhere.url}, b""), (307, {"Location": elsewhere.url}, b"")]
    )
    receiver = make_receiver(respond=lambda r: next(answers, (204, {}, b"")))
    subscribe(svc, "books", receiver.url)
    start_worker()
    db = connect()
    add_book(db, "Moved", add_author(db))
    got = receiver.wait_for(3)
    assert got[0].id == got[1].id == got[2].id
    wait_until(lambda: Delivery.objects.count() == 3)
    attempts = list(
        Delivery.objects.order_by("id").values_list("attempt", "status_code", "outcome")
    )
    assert attempts == [(1, 302, "failed"), (2, 307, "failed"), (3, 204, "delivered")]
    assert elsewhere.requests == []


def test_excluded_fields_are_never_in_deliveries(svc, receiver, start_worker, connect) -> None:
    """Issue 19 (kept): Book excludes added_by: not in new, old or changed, a change of it
    alone is not delivered, and a subscription cannot ask for it."""
    from django.contrib.auth.models import User

    for fields in (["added_by"], ["added_by_id"], ["title", "added_by"]):
        asked = api_call(svc, "PUT", "sneaky", {"url": receiver.url,
                                                "models": ["livedata_demo.book"],
                                                "fields": fields})  # fmt: skip
        assert asked.status_code == 400 and asked.json()["field"] == "fields", fields
    subscribe(svc, "books", receiver.url)
    start_worker()
    user = User.objects.create_user("adder")
    db = connect()
    book = db.execute(
        "INSERT INTO livedata_demo_book (title, author_id, added_by_id) VALUES ('Hot Six', %s, %s) "
        "RETURNING id",
        [add_author(db), user.pk],
    ).fetchone()[0]
    db.execute("UPDATE livedata_demo_book SET added_by_id = NULL WHERE id = %s", [book])
    db.execute("UPDATE livedata_demo_book SET added_by_id = %s, title = 'Seven' WHERE id = %s",
               [user.pk, book])  # fmt: skip
    db.execute("DELETE FROM livedata_demo_book WHERE id = %s", [book])
    # a later change, delivered after any the worker would have sent (log order): once
    # it has come, the added_by-only update is known not to be sent
    add_book(db, "Marker", add_author(db, "m@example.com"))
    got = receiver.wait_for(4)
    assert [r.event["type"] for r in receiver.requests] == [
        "livedata_demo.book.insert",
        "livedata_demo.book.update",  # the title; the added_by-only update is not sent
        "livedata_demo.book.delete",
        "livedata_demo.book.insert",
    ]
    assert got[3].event["data"]["new"]["title"] == "Marker"
    assert all(b"added_by" not in r.body for r in got), [r.body for r in got]
    assert got[1].event["data"]["changed"] == ["title"]


def test_batches_are_opt_in(svc, receiver, start_worker, connect) -> None:
    db = connect()
    author = add_author(db)
    sub = subscribe(svc, "books", receiver.url, batch=10)
    api_call(
        svc, "PUT", "books", {"url": receiver.url, "models": ["livedata_demo.book"], "batch": 10}
    )
    with db.transaction():
        for i in range(25):
            add_book(db, f"B{i}", author)
    start_worker()
    wait_until(lambda: sum(len(r.event["data"]) for r in receiver.requests) >= 25)
    bodies = [r.event for r in receiver.requests]
    assert all(b["type"] == "livedata.batch" for b in bodies)
    titles = [e["data"]["new"]["title"] for b in bodies for e in b["data"]]
    assert titles == [f"B{i}" for i in range(25)]
    assert len(bodies) <= 4
    Webhook(sub["secret"]).verify(receiver.requests[0].body, receiver.requests[0].headers)


def test_serve_delivers_too(svc, receiver, server, connect) -> None:
    subscribe(svc, "books", receiver.url)
    db = connect()
    add_book(db, "Served", add_author(db))
    got = receiver.wait_for(1)
    assert got[0].event["data"]["new"]["title"] == "Served"


def test_big_responses_are_cut_and_the_next_delivery_works(
    svc, make_receiver, start_worker, connect
) -> None:
    receiver = make_receiver(respond=lambda r: (200, {}, b"x" * 2_000_000))
    subscribe(svc, "books", receiver.url)
    start_worker(settings={"WEBHOOK_MAX_RESPONSE_BYTES": 10_000})
    db = connect()
    author = add_author(db)
    add_book(db, "One", author)
    add_book(db, "Two", author)
    got = receiver.wait_for(2)
    assert titles_of(got) == ["One", "Two"]
    wait_until(lambda: Delivery.objects.count() == 2)
    assert {d.outcome for d in Delivery.objects.all()} == {"delivered"}
    assert all(len(d.response_excerpt) == 1000 for d in Delivery.objects.all())


def titles_of(requests: list[Any]) -> list[str]:
    return [r.event["data"]["new"]["title"] for r in requests]


def test_lost_permission_disables(svc, receiver, make_receiver, start_worker, connect) -> None:
    subscribe(svc, "books", receiver.url)
    svc.user_permissions.clear()
    start_worker()
    wait_until(lambda: Subscription.objects.get().state == "disabled")
    assert "view_book" in Subscription.objects.get().disabled_reason
    db = connect()
    add_book(db, "Hidden", add_author(db))
    assert_nothing_more_delivered(db, Subscription.objects.get().pk, receiver, make_receiver)
    assert receiver.requests == []


def test_permission_revoked_while_delivering_disables(
    svc, receiver, make_receiver, start_worker, connect
):
    subscribe(svc, "books", receiver.url)
    start_worker(settings={"WEBHOOK_PERMISSION_RECHECK": 0.5})
    db = connect()
    author = add_author(db)
    add_book(db, "Seen", author)
    receiver.wait_for(1)
    svc.user_permissions.clear()
    wait_until(lambda: Subscription.objects.get().state == "disabled")
    assert "view_book" in Subscription.objects.get().disabled_reason
    add_book(db, "Not seen", author)
    sub_id = Subscription.objects.get().pk
    assert_nothing_more_delivered(db, sub_id, receiver, make_receiver)
    assert titles_of(receiver.requests) == ["Seen"]


def test_over_real_http_with_serve(svc, token, receiver, server, connect) -> None:
    """The API served by `livedata serve` over HTTP, and the same process delivering."""
    import json
    import urllib.error
    import urllib.request

    def put(path: str, body: bytes) -> tuple[int, dict]:
        request = urllib.request.Request(
            f"http://{server}/livedata/subscriptions/{path}",
            data=body,
            method="PUT",
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.load(response)
        except urllib.error.HTTPError as exc:
            return exc.code, json.load(exc)

    status, bad = put("books", b'{"url": "nope", "models": ["livedata_demo.book"]}')
    assert status == 400 and bad["field"] == "url"
    status, garbled = put("books", b"{")
    assert status == 400 and garbled["error"] == "bad-request"
    status, huge = put("books", b"[" + b"1," * 50_000 + b"1]")
    assert status == 413 and huge["error"] == "payload-too-large"
    assert not Subscription.objects.exists()
    body = {"url": receiver.url, "models": ["livedata_demo.book"]}
    status, created = put("books", json.dumps(body).encode())
    assert status == 201
    db = connect()
    add_book(db, "Over HTTP", add_author(db))
    got = receiver.wait_for(1)
    Webhook(created["secret"]).verify(got[0].body, got[0].headers)
    assert got[0].event["data"]["new"]["title"] == "Over HTTP"
