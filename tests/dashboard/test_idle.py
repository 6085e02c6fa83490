"""The dashboard costs nothing while nobody has it open: no timer wakes and no database
transaction is made for it; with a subscriber both happen (so the test can see them).

Transactions are counted by PostgreSQL (``pg_stat_database.xact_commit`` of the test
database: everything the server does, whoever asked), the timer's wake-ups by the
server's own figure ``livedata_dashboard_refreshes_total`` (its metrics endpoint), and
the rows it writes for the other processes' pages by ``dashboard_cluster_reports_total``.
PostgreSQL publishes a backend's counts up to 10 s late when it goes idle
(``PGSTAT_IDLE_INTERVAL``), so each window starts after that much quiet.
"""

from __future__ import annotations

import re
import time
import urllib.request

import psycopg
import pytest

from livedata.accounts import tokens
from tests.dashboard.conftest import answer

pytestmark = pytest.mark.django_db(transaction=True)

WINDOW = 5.0
#: how late PostgreSQL may publish a backend's counts (PGSTAT_IDLE_INTERVAL), and a bit
STATS_DELAY = 11.0


def _commits(db_params) -> int:
    with psycopg.connect(**db_params, autocommit=True) as conn:
        row = conn.execute(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
        ).fetchone()
    return int(row[0])


def _figure(server: str, token: str, name: str) -> float:
    """``livedata_<name>`` as the server's metrics endpoint gives it now."""
    request = urllib.request.Request(
        f"http://{server}/livedata/metrics", headers={"Authorization": f"Bearer {token}"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        text = response.read().decode()
    found = re.search(rf"^livedata_{name} (\S+)$", text, re.M)
    assert found, f"the server exposes no livedata_{name}"
    return float(found.group(1))


def _refreshes(server: str, token: str) -> float:
    return _figure(server, token, "dashboard_refreshes_total")


def _reports(server: str, token: str) -> float:
    """Rows the server wrote to the dashboard's process table (``dashboard.cluster``)."""
    return _figure(server, token, "dashboard_cluster_reports_total")


def _rate(db_params) -> float:
    """Transactions per second committed in the test database over ``WINDOW``."""
    before = _commits(db_params)
    time.sleep(WINDOW)  # a measurement window: the count over it is the observation
    return (_commits(db_params) - before - 1) / WINDOW  # less our own read


def test_no_timer_and_no_query_without_a_subscriber(server, clients, staff, db_params):
    token = tokens.issue(staff, kind="metrics")[0]
    time.sleep(STATS_DELAY)  # the server's start-up counts are in
    assert _refreshes(server, token) == 0
    idle = _rate(db_params)
    assert _refreshes(server, token) == 0  # no subscriber: the timer never woke
    assert _reports(server, token) == 0  # nor did it write its row for other processes

    page = clients(staff)
    page.send({"msg": "sub", "id": "d", "name": "livedata.dashboard", "params": []})
    assert answer(page, "d")[0]["msg"] == "ready"
    open_rate = _rate(db_params)
    woke = _refreshes(server, token)
    assert woke >= WINDOW / 0.2 / 2  # DASHBOARD_INTERVAL 0.2: about 25 in the window
    assert _reports(server, token) >= WINDOW / 0.2 / 2  # its row, as often

    page.close()  # the last subscriber leaves
    deadline = time.monotonic() + 10
    while (dashboards := _figure(server, token, "dashboard_subscribers")) != 0:
        assert time.monotonic() < deadline, f"{dashboards} dashboards still open"
        time.sleep(0.1)
    stopped_at = _refreshes(server, token)
    # the reports go on for 3 intervals without a NOTIFY: the window starts STATS_DELAY
    # after the last, or its late-published counts land in the window
    deadline, reported = time.monotonic() + 10, -1.0
    while (now := _reports(server, token)) != reported:
        assert time.monotonic() < deadline, "the process goes on reporting"
        reported = now
        time.sleep(1.0)  # more than 3 intervals of 0.2 s: a report would have come
    time.sleep(STATS_DELAY)
    closed = _rate(db_params)
    assert _refreshes(server, token) == stopped_at  # the timer stopped with it
    assert _reports(server, token) == reported  # and the reports
    print(f"transactions/s: idle {idle:.2f}, open {open_rate:.2f}, closed again {closed:.2f}")
    # open: one refresh (webhooks, mirrors, processes, the NOTIFY: 1 transaction) and one
    # report (1) 5 times a second
    assert open_rate - idle >= 5, (idle, open_rate)
    # closed: back to what the server does without it (listener, webhook reloads...)
    # (a dashboard still refreshing would add 10/s; the background varies by a few)
    assert closed <= idle + 2, (idle, closed)
