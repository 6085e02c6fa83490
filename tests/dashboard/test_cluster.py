"""With several processes the page shows each one's figures (issue 18): two ``livedata
serve`` on one database, a page open on the first lists both, and loses the second
when it stops. Nothing is written for it before a page opens."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from livedata.accounts import tokens
from livedata.dashboard.documents import COLLECTION, PROCESSES
from tests.dashboard.conftest import SETTINGS, View, answer, cookie_client
from tests.dashboard.test_idle import _figure
from tests.server.conftest import free_port, spawn_serve, stop, wait_listening

pytestmark = pytest.mark.django_db(transaction=True)


class Server:
    """A ``livedata serve`` with the dashboard's settings, stopped once."""

    def __init__(self) -> None:
        port = free_port()
        settings = json.dumps(SETTINGS)
        self.proc = spawn_serve(port, LIVEDATA_TEST_OVERRIDES="1", LIVEDATA_SETTINGS=settings)
        self.address = f"127.0.0.1:{port}"
        self.stopped = False
        try:
            wait_listening(port, self.proc)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        if not self.stopped:
            self.stopped = True
            stop(self.proc)


@pytest.fixture
def two_servers(transactional_db) -> Iterator[tuple[Server, Server]]:
    made: list[Server] = []
    try:
        made.append(Server())
        made.append(Server())
        yield made[0], made[1]
    finally:
        for server in made:
            server.stop()


def _wait_figure(server: Server, token: str, name: str, check, timeout: float = 20) -> float:
    deadline = time.monotonic() + timeout
    while not check(value := _figure(server.address, token, name)):
        assert time.monotonic() < deadline, f"livedata_{name} is still {value}"
        time.sleep(0.1)
    return value


def _processes(view: View) -> dict[str, dict]:
    return view.collections.get(PROCESSES, {})


def test_a_page_on_one_process_shows_every_process(two_servers, staff):
    first, second = two_servers
    token = tokens.issue(staff, kind="metrics")[0]
    for server in (first, second):  # listening on the channel: connecting started nothing
        _wait_figure(server, token, "listener_connected", lambda v: v == 1)
    for server in (first, second):
        assert _figure(server.address, token, "dashboard_cluster_reports_total") == 0

    page = cookie_client(first.address, staff)
    try:
        page.send({"msg": "sub", "id": "d", "name": "livedata.dashboard", "params": []})
        ready, before = answer(page, "d")
        assert ready["msg"] == "ready"
        view = View(page)
        view.take(before)
        mine = view.doc(COLLECTION, "now")["process"]
        theirs = f"{mine.rsplit(':', 1)[0]}:{second.proc.pid}"
        assert mine.endswith(f":{first.proc.pid}")

        view.wait(lambda v: {mine, theirs} <= set(_processes(v)))
        assert set(_processes(view)) == {mine, theirs}
        other = _processes(view)[theirs]
        assert other["listener_connected"] is True
        assert other["dashboard_subscribers"] == 0  # the page is on the first
        # its first row was written as the page subscribed, before it counted
        view.wait(lambda v: _processes(v)[mine]["dashboard_subscribers"] == 1)
        assert {"sessions", "subscriptions", "observers", "messages_per_s"} <= set(other)
        assert {"memory_bytes", "max_lag_seconds", "leader"} <= set(other)
        _wait_figure(second, token, "dashboard_cluster_reports_total", lambda v: v > 0)

        second.stop()
        view.wait(lambda v: theirs not in _processes(v))  # gone quiet: removed
        assert set(_processes(view)) == {mine}
    finally:
        page.close()


def test_the_reports_stop_when_the_page_closes(two_servers, staff):
    first, second = two_servers
    token = tokens.issue(staff, kind="metrics")[0]
    page = cookie_client(first.address, staff)
    page.send({"msg": "sub", "id": "d", "name": "livedata.dashboard", "params": []})
    assert answer(page, "d")[0]["msg"] == "ready"
    _wait_figure(second, token, "dashboard_cluster_reports_total", lambda v: v > 0)
    page.close()

    # QUIET_INTERVALS (3) of 0.2 s after the last NOTIFY, the second stops reporting
    def settled(server: Server) -> float:
        deadline = time.monotonic() + 20
        last = _figure(server.address, token, "dashboard_cluster_reports_total")
        while True:
            time.sleep(1.0)  # longer than 3 intervals: a reporter still running adds 4
            now = _figure(server.address, token, "dashboard_cluster_reports_total")
            if now == last:
                return now
            assert time.monotonic() < deadline, "still reporting with no page open"
            last = now

    for server in (first, second):
        assert settled(server) > 0
