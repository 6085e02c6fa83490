"""The publication ``livedata.dashboard`` over a real DDP connection: what it shows
follows the process live (change rows, subscriptions, webhook states)."""

from __future__ import annotations

import time

import pytest

from livedata.dashboard.documents import CHANGES, COLLECTION, SAMPLES
from livedata.demo.bookstore.models import Author
from livedata.webhooks.models import Subscription
from tests.dashboard.conftest import View, answer
from tests.webhooks.conftest import subscribe

pytestmark = pytest.mark.django_db(transaction=True)

SUB = {"msg": "sub", "id": "d", "name": "livedata.dashboard", "params": []}


def _open(c) -> View:
    c.send(SUB)
    got, before = answer(c, "d")
    assert got["msg"] == "ready", got
    view = View(c)
    view.take(before)
    return view


def test_a_psql_insert_shows_in_recent_changes_within_a_second(clients, staff, connect):
    view = _open(clients(staff))
    with connect() as conn:
        start = time.monotonic()
        conn.execute("INSERT INTO livedata_demo_author (name, email) VALUES ('Ann', 'ann@x.org')")

    def arrived(v: View):
        return [
            d for d in v.collections.get(CHANGES, {}).values() if d["pk"] and d["op"] == "insert"
        ]

    row = view.wait(arrived, timeout=5)[0]
    took = time.monotonic() - start
    assert took < 1.0, f"the row took {took:.2f} s"
    assert row["model"] == "livedata_demo.author"
    assert row["pk"] == str(Author.objects.get(email="ann@x.org").pk)
    # and the rate of changes by model, and the chart's samples, follow
    view.wait(
        lambda v: (
            "livedata_demo.author" in (v.doc(COLLECTION, "flow") or {}).get("changes_per_s", {})
        )
    )
    view.wait(lambda v: len(v.collections.get(SAMPLES, {})) >= 2)


def test_recent_changes_keep_the_audit_context(clients, staff, connect):
    view = _open(clients(staff))
    with connect() as conn, conn.transaction():
        conn.execute(
            "SELECT set_config('livedata.context', %s, true)",
            ['{"username": "ops", "request_id": "r-1"}'],
        )
        conn.execute("INSERT INTO livedata_demo_author (name, email) VALUES ('Bo', 'bo@x.org')")
    row = view.wait(
        lambda v: [d for d in v.collections.get(CHANGES, {}).values() if d["op"] == "insert"]
    )[0]
    assert (row["username"], row["request_id"]) == ("ops", "r-1")


def test_the_subscriber_count_follows_a_client_subscribing_and_leaving(clients, staff):
    view = _open(clients(staff))
    other = clients()
    other.send({"msg": "sub", "id": "b", "name": "AllBooks", "params": []})
    assert answer(other, "b")[0]["msg"] == "ready"

    def count(v: View) -> int | None:
        return ((v.doc(COLLECTION, "now") or {}).get("subscriptions") or {}).get("AllBooks")

    view.wait(lambda v: count(v) == 1)
    observers = view.doc(COLLECTION, "now")["observers"]
    assert [(o["publication"], o["subscribers"]) for o in observers] == [("AllBooks", 1)]
    other.close()
    view.wait(lambda v: not count(v))
    assert view.doc(COLLECTION, "now")["dashboard_subscribers"] == 1


def test_a_failing_receiver_shows_retrying_then_delivered_after_retry_now(
    clients, staff, svc, make_receiver
):
    answers = [500]
    receiver = make_receiver(respond=lambda r: (answers[0], {}, b"no"))
    subscribe(svc, "hooked", receiver.url)
    hook_id = Subscription.objects.get(name="hooked").pk
    view = _open(clients(staff))
    author = Author.objects.create(name="Cy", email="cy@x.org")
    author.books.create(title="A Book")

    def state(v: View) -> dict | None:
        subs = (v.doc(COLLECTION, "webhooks") or {}).get("subscriptions") or []
        return next((s for s in subs if s["name"] == "hooked"), None)

    failing = view.wait(
        lambda v: (s := state(v)) and s["state"] == "retrying" and s["recent"] and s
    )
    assert failing["recent"][0]["status_code"] == 500
    assert failing["recent"][0]["latency_ms"] is not None
    answers[0] = 200
    got = view.client.call("1", "livedata.dashboard.retryNow", hook_id)
    assert next(m for m in got if m["msg"] == "result")["result"] == 1
    view.take([m for m in got if m.get("collection")])
    done = view.wait(lambda v: (s := state(v)) and s["state"] == "active" and s["delivered"] and s)
    last = view.wait(lambda v: (s := state(v)) and s["recent"][0]["outcome"] == "delivered" and s)
    assert last["recent"][0]["status_code"] == 200 and done["delivered"] >= 1
    assert Subscription.objects.get(pk=hook_id).attempts == 0
