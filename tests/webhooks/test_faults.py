"""Faults, with real processes and real HTTP: a receiver down then back, a hanging
receiver next to a fast one, a worker SIGKILLed mid-delivery, two workers sharing the
work, PostgreSQL restarted under a worker."""

from __future__ import annotations

import subprocess
import threading
import time
from typing import Any

import psycopg
import pytest

from livedata.webhooks.models import Delivery
from tests.conftest import ROOT, livedata_cmd, private_database, spawn_livedata
from tests.webhooks.conftest import Receiver, subscribe
from tests.webhooks.test_delivery import add_author, add_book, wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def titles(requests: list[Any]) -> list[str]:
    return [r.event["data"]["new"]["title"] for r in requests]


def workers_connected(db: psycopg.Connection) -> int:
    return db.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'livedata webhooks %%' "
        "AND datname = current_database()"
    ).fetchone()[0]


def claims_per_worker(db: psycopg.Connection) -> list[int]:
    """How many subscriptions each worker holds (their advisory locks), fewest first."""
    from livedata.webhooks.store import LOCK_SUBSCRIPTION

    rows = db.execute(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid::bigint = %s "
        "AND objsubid = 2 AND granted "
        "AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
        "GROUP BY pid ORDER BY 1",
        [LOCK_SUBSCRIPTION],
    ).fetchall()
    return [r[0] for r in rows]


def test_receiver_down_then_back_gets_everything_in_order(svc, start_worker, connect) -> None:
    first = Receiver().start()
    port = first.port
    first.stop()  # nothing listens there now: connections are refused
    subscribe(svc, "books", f"http://127.0.0.1:{port}/hook")
    start_worker(settings={"WEBHOOK_RETRY_SCHEDULE": [0] + [0.3] * 40})
    db = connect()
    author = add_author(db)
    for i in range(20):
        add_book(db, f"B{i:02}", author)
    wait_until(lambda: Delivery.objects.filter(outcome="error").count() >= 3)
    back = Receiver().start(port)
    try:
        back.wait_for(20)
        # committed last, so delivered after any repeat of the twenty (log order, one
        # request at a time): once it has come, a duplicate would have
        add_book(db, "Marker", author)
        back.wait_for(21)
        assert titles(back.requests) == [*(f"B{i:02}" for i in range(20)), "Marker"]
        assert "Connect" in Delivery.objects.filter(outcome="error").first().error
    finally:
        back.stop()


def test_a_hanging_receiver_does_not_delay_the_others(
    svc, make_receiver, start_worker, connect
) -> None:
    hanging = make_receiver(delay=30)
    fast = make_receiver()
    subscribe(svc, "slow", hanging.url)
    subscribe(svc, "fast", fast.url)
    start_worker(settings={"WEBHOOK_TIMEOUT": 1.0, "WEBHOOK_RETRY_SCHEDULE": [0, 0.5, 0.5, 60]})
    db = connect()
    author = add_author(db)
    started = time.monotonic()
    for i in range(10):
        add_book(db, f"B{i}", author)
    fast.wait_for(10, timeout=10)
    assert time.monotonic() - started < 5
    assert titles(fast.requests) == [f"B{i}" for i in range(10)]
    wait_until(lambda: Delivery.objects.filter(error__contains="timed out").count() >= 2)
    slow = Delivery.objects.filter(subscription__name="slow")
    assert {d.outcome for d in slow} == {"error"}
    assert all(0.9 < d.latency_ms / 1000 < 5 for d in slow)
    assert len({r.id for r in hanging.requests}) == 1  # the same change, retried


def test_no_transaction_is_held_while_a_request_hangs(
    svc, make_receiver, start_worker, connect, read_since
) -> None:
    hanging = make_receiver(delay=30)
    subscribe(svc, "slow", hanging.url)
    start_worker(settings={"WEBHOOK_TIMEOUT": 20.0})
    db = connect()
    author = add_author(db)
    add_book(db, "Hangs", author)
    hanging.wait_for(1)
    # a transaction held across the request would be open for all of its 30 s: this
    # settling wait can only make the check fail less often, never pass a held one
    time.sleep(0.3)
    sessions = db.execute(
        "SELECT backend_xid, state FROM pg_stat_activity "
        "WHERE application_name LIKE 'livedata webhooks %%' AND datname = current_database()"
    ).fetchall()
    assert sessions and all(xid is None and state == "idle" for xid, state in sessions), sessions
    # the change log's readers are not held back by the request in flight
    from livedata.capture import log

    before = log.head(db)
    add_author(db, "later@example.com")
    assert [r.model for r in read_since(before)] == ["livedata_demo.author"]


def test_killed_worker_redelivers_with_the_same_id(svc, make_receiver, start_worker, connect):
    entered = threading.Event()
    calls = {"n": 0}

    def respond(request):
        calls["n"] += 1
        if calls["n"] == 1:
            entered.set()
            time.sleep(4)  # worker A dies while this request is in flight
        return 204, {}, b""

    receiver = make_receiver(respond=respond)
    subscribe(svc, "books", receiver.url)
    a = start_worker()
    db = connect()
    author = add_author(db)
    add_book(db, "In flight", author)
    assert entered.wait(20)
    b = start_worker()
    wait_until(lambda: workers_connected(db) == 2, message="worker B did not connect")
    a.kill()  # SIGKILL: no goodbye; its connection (and advisory locks) die with it
    got = receiver.wait_for(2)
    assert got[1].id == got[0].id and titles(got) == ["In flight", "In flight"]
    add_book(db, "After", author)
    got = receiver.wait_for(3)
    assert titles(got[2:]) == ["After"]
    wait_until(lambda: Delivery.objects.count() >= 2)
    workers = set(Delivery.objects.values_list("worker", flat=True))
    assert len(workers) == 1 and str(b.proc.pid) in workers.pop()  # A never recorded


def test_two_workers_share_subscriptions_without_double_delivery(
    svc, make_receiver, start_worker, connect
) -> None:
    receivers = [make_receiver() for _ in range(6)]
    for i, r in enumerate(receivers):
        subscribe(svc, f"s{i}", r.url)
    db = connect()
    start_worker()
    start_worker()
    wait_until(lambda: workers_connected(db) == 2)
    # a few reloads: the first worker hands back what exceeds its share, the second takes it
    wait_until(lambda: claims_per_worker(db) == [3, 3], message="the six were not shared")
    author = add_author(db)
    for i in range(20):
        add_book(db, f"B{i:02}", author)
    for r in receivers:
        r.wait_for(20)
    # committed last, so delivered to each after any repeat of the twenty (log order,
    # one request at a time per subscription): once it has come, a duplicate would have
    add_book(db, "Marker", author)
    for r in receivers:
        r.wait_for(21)
    for r in receivers:  # once each, in order
        assert titles(r.requests) == [*(f"B{i:02}" for i in range(20)), "Marker"]
    wait_until(lambda: Delivery.objects.count() == 126)
    assert Delivery.objects.values("worker").distinct().count() == 2


def test_delivery_resumes_after_postgresql_restarts(tmp_path, receiver) -> None:
    from livedata.embedded.server import ensure_server

    server = ensure_server(tmp_path / "pgdata")
    env = private_database(server, "restart_webhooks")
    run = {"env": env, "cwd": ROOT, "check": True, "timeout": 120}
    setup = f"""
from django.contrib.auth.models import Permission, User
from livedata.capture import log
from django.db import connection
from livedata.webhooks.models import Subscription
from livedata.webhooks.signing import new_secret
u = User.objects.create_user("svc", "s@example.com", "pw")
u.user_permissions.add(Permission.objects.get(codename="view_book"))
s = Subscription(owner=u, name="books", url="{receiver.url}", model_labels=["livedata_demo.book"],
                 operations=["insert", "update", "delete", "truncate"], secret=new_secret())
s.log_position = log.head(connection)
s.save()
"""
    subprocess.run(livedata_cmd("shell", "-c", setup), **run)
    params = {"host": server.socket_dir, "dbname": "restart_webhooks", "user": "postgres"}
    worker = spawn_livedata("deliver", stderr=subprocess.STDOUT, environ=env)
    db = psycopg.connect(**params, autocommit=True)
    try:
        author = add_author(db)
        for i in range(5):
            add_book(db, f"a{i}", author)
        receiver.wait_for(5)
        db.close()
        server.stop()
        time.sleep(1.0)
        server.start()
        db = psycopg.connect(**params, autocommit=True)
        for i in range(5):  # right after the restart: the worker may still be away
            add_book(db, f"b{i}", author)
        deadline = time.monotonic() + 60
        expected = [f"a{i}" for i in range(5)] + [f"b{i}" for i in range(5)]
        while True:
            seen = list(dict.fromkeys(titles(receiver.requests)))  # first arrival of each
            if len(seen) >= 10:
                break
            assert time.monotonic() < deadline, seen
            time.sleep(0.1)
        assert seen == expected
    finally:
        worker.terminate()
        try:
            print(worker.communicate(timeout=20)[0])
        except subprocess.TimeoutExpired:
            worker.kill()
        db.close()
        server.discard()


def test_more_subscriptions_than_concurrency_take_turns(
    svc, make_receiver, start_worker, connect
) -> None:
    receivers = [make_receiver() for _ in range(3)]
    for i, r in enumerate(receivers):
        subscribe(svc, f"s{i}", r.url)
    start_worker("--concurrency", "1")
    db = connect()
    author = add_author(db)
    add_book(db, "First", author)
    for r in receivers:
        r.wait_for(1, timeout=30)
    add_book(db, "Second", author)
    for r in receivers:
        r.wait_for(2, timeout=30)
        assert titles(r.requests) == ["First", "Second"]
