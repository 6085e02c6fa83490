"""A worker with no active subscription costs the database nothing: it waits for the
subscriptions' trigger to NOTIFY (through its listener's connection) instead of reloading
every ``WEBHOOK_REFRESH_INTERVAL``, and a subscription made by another process is still
claimed at once."""

from __future__ import annotations

from typing import Any

import pytest

from tests.webhooks.conftest import subscribe
from tests.webhooks.test_delivery import add_author, wait_until

pytestmark = pytest.mark.django_db(transaction=True)

REFRESH = 0.1  # seconds: a polling worker runs a reload this often


def dispatcher_backend(db: Any) -> tuple[int, Any] | None:
    """(pid, time of its last statement) of the worker's dispatcher connection."""
    return db.execute(
        "SELECT pid, state_change FROM pg_stat_activity "
        "WHERE application_name LIKE 'livedata webhooks %%' AND datname = current_database()"
    ).fetchone()


def quiet_for(db: Any, seconds: float) -> bool:
    """Whether the dispatcher's connection ran no statement for ``seconds``."""
    before = dispatcher_backend(db)
    db.execute("SELECT pg_sleep(%s)", [seconds])
    return before is not None and dispatcher_backend(db) == before


def test_an_idle_worker_runs_no_statements_and_wakes_on_a_new_subscription(
    svc, receiver, start_worker, connect
) -> None:
    db = connect()
    start_worker(settings={"WEBHOOK_REFRESH_INTERVAL": REFRESH})
    # its first reload and flush done, it goes quiet (a polling one never would)
    wait_until(lambda: quiet_for(db, 3 * REFRESH), 15, "the idle worker kept running statements")
    assert quiet_for(db, 30 * REFRESH), "the idle worker ran a statement"
    # another process (here: the test's Django) creates a subscription: the trigger's
    # NOTIFY wakes the worker, which claims it and delivers (after a 60 s idle wait without)
    subscribe(svc, "authors", receiver.url, models=["livedata_demo.author"])
    marker = add_author(db, "idle@example.com", "Idle")
    got = receiver.wait_for(1, timeout=10)
    assert got[0].event["data"]["new"]["id"] == marker
