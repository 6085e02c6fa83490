"""``/livedata/metrics`` of a real ``livedata serve``: the figures follow what clients do,
and only staff or a metrics token may read them."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import pytest
from django.contrib.auth.models import User
from prometheus_client.parser import text_string_to_metric_families

from livedata.accounts import tokens
from livedata.demo.bookstore.models import Author, Book
from tests.webhooks.conftest import demo_collections  # noqa: F401 (a fixture)

pytestmark = pytest.mark.django_db(transaction=True)

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(server: str, secret: str) -> Samples:
    response = httpx.get(
        f"http://{server}/livedata/metrics",
        headers={"Authorization": f"Bearer {secret}"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    out: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def until(server: str, secret: str, check: Callable[[Samples], bool], timeout=15) -> Samples:
    """Scrape until ``check`` holds (the figures are read live: a change shows at the
    next scrape after the process has seen it)."""
    deadline = time.monotonic() + timeout
    while True:
        got = scrape(server, secret)
        if check(got):
            return got
        assert time.monotonic() < deadline, f"figures never matched: {got}"
        time.sleep(0.05)


@pytest.fixture
def metrics_token() -> str:
    scraper = User.objects.create_user("prometheus", password="x")
    return tokens.issue(scraper, kind="metrics")[0]


WS = (("transport", "websocket"),)
ALL_BOOKS = (("publication", "AllBooks"),)
LIVE_QUERIES = (("consumer", "live queries"),)


def test_figures_follow_a_subscription_and_a_write(server, ddp, metrics_token):
    before = until(server, metrics_token, lambda s: s[("livedata_up", ())] == 1)
    assert before[("livedata_connections", WS)] == 0
    assert ("livedata_subscriptions", ALL_BOOKS) not in before
    assert before[("livedata_listener_connected", ())] == 1
    assert before[("livedata_consumer_lag_rows", LIVE_QUERIES)] == 0
    assert ("livedata_broker_connected", (("kind", "nats"),)) not in before  # none configured
    assert before[("process_resident_memory_bytes", ())] > 0

    client = ddp()
    client.send({"msg": "sub", "id": "s1", "name": "AllBooks", "params": []})
    client.until(lambda m: m.get("msg") == "ready")
    subscribed = until(
        server, metrics_token, lambda s: s.get(("livedata_subscriptions", ALL_BOOKS)) == 1
    )
    assert subscribed[("livedata_connections", WS)] == 1
    assert subscribed[("livedata_observers", ALL_BOOKS)] == 1
    # its authors and its books, both matched from the log rows alone
    assert subscribed[("livedata_observer_queries", (*ALL_BOOKS, ("refresh", "memory")))] == 2
    sent = subscribed[("livedata_messages_out_total", WS)]
    assert sent >= 2  # connected, ready (and the server id's frame)

    author = Author.objects.create(name="Janet", email="janet@example.com")
    Book.objects.create(title="Hot Six", author=author)
    client.until(lambda m: m.get("msg") == "added" and m["fields"].get("title") == "Hot Six")
    after = until(
        server,
        metrics_token,
        lambda s: (
            s[("livedata_messages_out_total", WS)] > sent
            and s[("livedata_consumer_lag_rows", LIVE_QUERIES)] == 0
        ),
    )
    assert (
        after[("livedata_listener_rows_total", ())]
        >= before[("livedata_listener_rows_total", ())] + 2
    )
    assert (
        after[("livedata_listener_batches_total", ())]
        > before[("livedata_listener_batches_total", ())]
    )
    assert after[("livedata_observer_documents", ALL_BOOKS)] == 2  # the author and the book
    assert after[("livedata_observer_refreshes_total", (("how", "memory"),))] >= 1

    client.close()
    gone = until(server, metrics_token, lambda s: s[("livedata_connections", WS)] == 0)
    assert ("livedata_subscriptions", ALL_BOOKS) not in gone
    # what the closed session sent still counts: the total never goes back
    assert gone[("livedata_messages_out_total", WS)] >= after[("livedata_messages_out_total", WS)]


def test_only_staff_and_metrics_tokens_may_read_the_figures(server, metrics_token):
    url = f"http://{server}/livedata/metrics"
    anonymous = httpx.get(url, timeout=30)
    assert anonymous.status_code == 401
    assert "livedata_" not in anonymous.text

    User.objects.create_user("reader", password="pw-reader")
    plain = httpx.get(url, auth=("reader", "pw-reader"), timeout=30)
    assert plain.status_code == 403
    assert "livedata_" not in plain.text
    assert (
        httpx.get(url, headers={"Authorization": "Bearer nonsense"}, timeout=30).status_code == 401
    )

    User.objects.create_user("boss", password="pw-boss", is_staff=True)
    assert httpx.get(url, auth=("boss", "pw-boss"), timeout=30).status_code == 200
    staff_api = tokens.issue(User.objects.get(username="boss"), kind="api")[0]
    bearer = {"Authorization": f"Bearer {staff_api}"}
    assert httpx.get(url, headers=bearer, timeout=30).status_code == 200

    # a metrics token opens nothing else (the pull feed refuses it like an unknown token)
    pulled = httpx.get(
        f"http://{server}/livedata/pull/livedata_demo.book?offset=-1",
        headers={"Authorization": f"Bearer {metrics_token}"},
        timeout=30,
    )
    assert pulled.status_code == 401


def test_sockjs_sessions_are_counted_apart(server, metrics_token):
    from tests.server.test_sockjs import XhrPolling, open_session
    from tests.server.test_websocket import CONNECT

    client = open_session(server, XhrPolling)
    client.send(CONNECT)
    assert client.recv()["msg"] == "connected"
    got = until(
        server, metrics_token, lambda s: s[("livedata_connections", (("transport", "sockjs"),))]
    )
    assert got[("livedata_connections", (("transport", "sockjs"),))] == 1
    assert got[("livedata_connections", WS)] == 0
    assert got[("livedata_messages_out_total", (("transport", "sockjs"),))] >= 2
    assert got[("livedata_messages_out_total", WS)] == 0


@pytest.mark.usefixtures("demo_collections")  # books exposed, whatever ran before
def test_a_failing_webhook_receiver_shows_as_backlog_and_retries(server, metrics_token):
    from django.contrib.auth.models import Permission

    from livedata.webhooks.models import Subscription
    from tests.webhooks.conftest import Receiver, subscribe

    failing = True
    receiver = Receiver(respond=lambda _: (500, {}, b"down") if failing else (204, {}, b""))
    receiver.start()
    try:
        owner = User.objects.create_user("svc")
        owner.user_permissions.add(Permission.objects.get(codename="view_book"))
        subscribe(User.objects.get(pk=owner.pk), "books", receiver.url)
        labels = (("subscription", str(Subscription.objects.get(name="books").pk)),)
        until(server, metrics_token, lambda s: s[("livedata_webhook_subscriptions_held", ())] == 1)

        author = Author.objects.create(name="Janet", email="janet@example.com")
        Book.objects.create(title="Hot Six", author=author)
        retrying = until(
            server,
            metrics_token,
            lambda s: s.get(("livedata_webhook_failed_attempts", labels), 0) >= 1,
        )
        assert retrying[("livedata_webhook_backlog", labels)] == 1
        assert retrying[("livedata_webhook_backlog_seconds", labels)] > 0
        assert retrying[("livedata_webhook_attempts_total", (("outcome", "failed"),))] >= 1

        failing = False  # the next retry (at most 1.6 s later in the test settings) lands
        delivered = until(
            server,
            metrics_token,
            lambda s: (
                s.get(("livedata_webhook_attempts_total", (("outcome", "delivered"),)), 0) >= 1
            ),
        )
        assert delivered[("livedata_webhook_backlog", labels)] == 0
        assert delivered[("livedata_webhook_failed_attempts", labels)] == 0
    finally:
        receiver.stop()


def test_held_pull_clients_are_counted_by_model(server, metrics_token):
    from concurrent.futures import ThreadPoolExecutor

    from django.contrib.auth.models import Permission

    from tests.pull.conftest import feed_on, follow

    reader = User.objects.create_user("billing")
    reader.user_permissions.add(Permission.objects.get(codename="view_book"))
    held = (("model", "livedata_demo.book"),)
    with feed_on(server, tokens.issue(reader, kind="api")[0]) as feed:
        _, handle, offset = follow(feed)
        with ThreadPoolExecutor(1) as pool:
            answer = pool.submit(feed, offset=offset, handle=handle, live="true")
            got = until(
                server, metrics_token, lambda s: s.get(("livedata_pull_live_clients", held))
            )
            assert got[("livedata_pull_live_clients", held)] == 1
            assert got[("livedata_consumer_lag_rows", (("consumer", "pull feed"),))] == 0
            author = Author.objects.create(name="Janet", email="janet@example.com")
            Book.objects.create(title="Hot Six", author=author)
            assert answer.result(timeout=30).status_code == 200
    until(server, metrics_token, lambda s: ("livedata_pull_live_clients", held) not in s)
