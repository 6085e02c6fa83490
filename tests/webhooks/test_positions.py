"""Webhooks on snapshot positions: a transaction held open elsewhere delays nothing,
out-of-order commits arrive in commit order, old ``TXID:ID`` positions resume exactly,
and the migration converts stored cursors."""

from __future__ import annotations

import time
from typing import Any

import pytest

from livedata.capture.position import START, Position, Snapshot
from livedata.webhooks.models import Delivery, Subscription
from tests.webhooks.conftest import api_call, subscribe
from tests.webhooks.test_delivery import add_author, add_book, wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def titles(requests: list[Any]) -> list[str]:
    return [r.event["data"]["new"]["title"] for r in requests]


def arrival_of(receiver: Any, title: str, timeout: float = 10.0) -> float:
    deadline = time.monotonic() + timeout
    while True:
        for request in list(receiver.requests):
            if request.event["data"]["new"]["title"] == title:
                return request.at
        assert time.monotonic() < deadline, f"{title!r} never arrived: {titles(receiver.requests)}"
        time.sleep(0.005)


def up_to_marker(receiver: Any, db: Any, author: int, title: str = "marker") -> list[str]:
    """Every title delivered, once a marker book committed now has arrived: the worker
    delivers in log order, one request at a time, so anything still to come of what was
    committed before (a duplicate, a change it should not send) arrives before it."""
    add_book(db, title, author)
    arrival_of(receiver, title)
    return titles(receiver.requests)


def warm_up(receiver: Any, db: Any, author: int) -> None:
    """The worker is up and following the log: a first change has arrived."""
    add_book(db, "warm-up", author)
    arrival_of(receiver, "warm-up", timeout=30)


@pytest.mark.parametrize("held", ["unrelated table", "same captured table"])
def test_a_transaction_held_open_delays_nothing(held, svc, receiver, start_worker, connect) -> None:
    subscribe(svc, "books", receiver.url)
    start_worker()
    db = connect()
    author = add_author(db)
    warm_up(receiver, db, author)
    blocker = connect(autocommit=False)  # BEGIN ...; a write; then idle in transaction
    if held == "unrelated table":
        blocker.execute("INSERT INTO auth_group (name) VALUES ('held open')")
    else:
        blocker.execute(
            "INSERT INTO livedata_demo_book (title, author_id) VALUES ('held', %s)", [author]
        )
    assert blocker.execute("SELECT pg_current_xact_id_if_assigned()").fetchone()[0]
    try:
        latencies = []
        for i in range(3):
            add_book(db, f"meanwhile {i}", author)
            committed = time.monotonic()
            latencies.append(arrival_of(receiver, f"meanwhile {i}") - committed)
        assert max(latencies) < 1.0, latencies
    finally:
        blocker.commit()
    expected = ["warm-up", "meanwhile 0", "meanwhile 1", "meanwhile 2"]
    if held == "same captured table":
        arrival_of(receiver, "held")
        expected.append("held")  # delivered when it commits, after what committed before
    assert up_to_marker(receiver, db, author) == [*expected, "marker"]


def test_out_of_order_commits_arrive_in_commit_order(svc, receiver, start_worker, connect):
    subscribe(svc, "books", receiver.url)
    start_worker()
    db = connect()
    author = add_author(db)
    warm_up(receiver, db, author)
    a, b = connect(autocommit=False), connect(autocommit=False)
    add_book(a, "A", author)  # the lower row id and txid...
    add_book(b, "B", author)
    b.commit()  # ...but B commits first
    committed = time.monotonic()
    assert arrival_of(receiver, "B") - committed < 1.0  # without waiting for A
    # No marker for these two checks: a later commit would change what the position check
    # below compares (the stored position is the last event's only when no write of the
    # worker's own comes between), so they keep fixed waits, and a duplicate slower than
    # the wait would still pass unseen
    time.sleep(0.3)
    assert titles(receiver.requests) == ["warm-up", "B"]
    add_book(a, "A2", author)
    a.commit()
    arrival_of(receiver, "A2")
    time.sleep(0.5)
    assert titles(receiver.requests) == ["warm-up", "B", "A", "A2"]  # once each
    wait_until(lambda: api_call(svc, "GET", "books").json()["lag"]["changes"] == 0)
    state = api_call(svc, "GET", "books").json()
    assert state["position"] == receiver.requests[-1].event["data"]["position"]


def test_an_old_txid_id_position_resumes_exactly(svc, receiver, start_worker, connect) -> None:
    subscribe(svc, "books", receiver.url)
    db = connect()
    author = add_author(db)
    with db.transaction():
        for i in range(3):
            add_book(db, f"T{i}", author)
    add_book(db, "after 1", author)
    add_book(db, "after 2", author)
    txid, row_id = db.execute(
        "SELECT txid::text::bigint, id FROM livedata_change "
        "WHERE model = 'livedata_demo.book' AND new->>'title' = 'T1'"
    ).fetchone()
    response = api_call(svc, "PUT", "books/position", {"from": f"{txid}:{row_id}"})
    assert response.status_code == 200, response.json()
    assert response.json()["lag"]["changes"] == 3
    assert Position.parse(Subscription.objects.get().position) == Position.from_cursor(txid, row_id)
    start_worker()
    receiver.wait_for(3)
    assert up_to_marker(receiver, db, author) == ["T2", "after 1", "after 2", "marker"]
    wait_until(lambda: api_call(svc, "GET", "books").json()["lag"]["changes"] == 0)
    # the stored position is a complete snapshot again
    wait_until(lambda: Position.parse(Subscription.objects.get().position).complete)


def test_webhook_ids_are_short_and_stable(svc, make_receiver, start_worker, connect) -> None:
    answers = iter([500])
    receiver = make_receiver(respond=lambda r: (next(answers, 204), {}, b""))
    subscribe(svc, "books", receiver.url)
    start_worker()
    db = connect()
    book = add_book(db, "Retried", add_author(db))
    got = receiver.wait_for(2)
    row_id = db.execute(
        "SELECT id FROM livedata_change WHERE model = 'livedata_demo.book' AND pk = %s", [str(book)]
    ).fetchone()[0]
    sub = Subscription.objects.get()
    assert got[0].id == got[1].id == f"msg_{sub.pk}_{sub.epoch}_{row_id}"
    wait_until(lambda: Delivery.objects.count() == 2)
    assert {d.position for d in Delivery.objects.all()} == {got[0].event["data"]["position"]}


def test_migration_converts_stored_cursors(connect) -> None:
    from django.core.management import call_command

    call_command("migrate", "livedata", "0005", verbosity=0)
    try:
        db = connect()
        user = db.execute(
            "INSERT INTO auth_user (username, password, is_superuser, first_name, last_name, "
            "email, is_staff, is_active, date_joined) "
            "VALUES ('m', '', false, '', '', '', false, true, now()) RETURNING id"
        ).fetchone()[0]
        with db.transaction():  # one transaction of two rows: a cursor between them
            db.execute(
                "INSERT INTO testapp_gadget (id, name) "
                "VALUES (gen_random_uuid(), 'g1'), (gen_random_uuid(), 'g2')"
            )
            txid = int(db.execute("SELECT pg_current_xact_id()::text").fetchone()[0])
        first, second = db.execute(
            "SELECT min(id), max(id) FROM livedata_change WHERE txid = %s::text::xid8",
            [str(txid)],
        ).fetchone()
        cursors = {"start": (0, 0), "inside": (txid, first), "whole": (txid, second),
                   "caught-up": (txid + 5, 2**63 - 1)}  # fmt: skip
        for name, (t, i) in cursors.items():
            sub = db.execute(
                "INSERT INTO livedata_webhook_subscription (owner_id, name, url, model_labels, "
                "operations, filter, batch, secret, state, disabled_reason, cursor_txid, "
                "cursor_id, generation, epoch, attempts, delivered, last_error, created, "
                "updated) VALUES (%s, %s, 'http://x/', '[]', '[]', '{}', 1, 's', 'active', "
                "'', %s, %s, 1, 1, 0, 0, '', now(), now()) RETURNING id",
                [user, name, t, i],
            ).fetchone()[0]
            db.execute(
                "INSERT INTO livedata_webhook_delivery (subscription_id, webhook_id, cursor, "
                "changes, attempt, outcome, error, response_excerpt, worker, at) "
                "VALUES (%s, 'msg', %s, 1, 1, 'delivered', '', '', '', now())",
                [sub, f"{t}:{i}"],
            )
    finally:
        call_command("migrate", "livedata", verbosity=0)
    expected = {
        "start": START,
        "inside": Position.from_cursor(txid, first),
        "whole": Position(Snapshot(txid + 1, txid + 1)),
        "caught-up": Position(Snapshot(txid + 6, txid + 6)),
    }
    stored = {s.name: s.position for s in Subscription.objects.all()}
    assert stored == {name: str(p) for name, p in expected.items()}
    delivered = {d.subscription.name: d.position for d in Delivery.objects.all()}
    assert delivered == stored  # the SQL conversion is the same as from_cursor's


def test_an_expired_position_disables_with_the_reason(svc, receiver, start_worker, connect):
    subscribe(svc, "books", receiver.url)
    db = connect()
    horizon = int(db.execute("SELECT pg_snapshot_xmin(pg_current_snapshot())").fetchone()[0])
    db.execute(
        "INSERT INTO livedata_log_horizon (name, txid, last_id, pruned_at) "
        "VALUES ('pruned', %s::text::xid8, 0, now()) "
        "ON CONFLICT (name) DO UPDATE SET txid = EXCLUDED.txid",
        [str(horizon)],
    )
    Subscription.objects.update(position=str(START))  # behind what was pruned
    start_worker()
    wait_until(lambda: Subscription.objects.get().state == "disabled")
    reason = Subscription.objects.get().disabled_reason
    assert "older than the oldest kept change" in reason and "/position" in reason
    assert receiver.requests == []
