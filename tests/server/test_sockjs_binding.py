"""SockJS sessions belong to the client that opened them (issue 19, findings 1 and 10).

A session of the HTTP transports is named by an id in its URLs. Before, anyone who knew
an id could drive the session: a page made a logged-in browser open one (a top-level
navigation to ``…/jsonp``), and a third party with no cookie posted DDP to ``xhr_send``
and read ``xhr``, acting as the browser's user.
"""

from __future__ import annotations

import http.client
import json
import subprocess
import time
import uuid

import pytest
from django.contrib.auth.models import User
from django.test import Client as DjangoClient

from livedata.demo.bookstore.models import Author, Book
from tests.conftest import spawn_livedata
from tests.server.conftest import _serve, free_port, wait_listening
from tests.server.test_sockjs import CONNECT, XhrPolling, open_session

pytestmark = pytest.mark.django_db(transaction=True)


def post(server: str, path: str, body: str = "", headers=None, source: str | None = None):
    """One request, optionally from another local address (a third party)."""
    host, port = server.split(":")
    conn = http.client.HTTPConnection(
        host, int(port), timeout=10, source_address=(source, 0) if source else None
    )
    conn.request("POST", path, body=body.encode(), headers=headers or {})
    response = conn.getresponse()
    data = response.read().decode()
    conn.close()
    return response, data


def bind_cookie(response) -> str:
    [cookie] = [v for k, v in response.getheaders() if k.lower() == "set-cookie"]
    return cookie.split(";")[0]  # sockjs_bind=<secret>


class EventSource:
    """A browser's top-level navigation to ``…/eventsource``, kept open and read."""

    def __init__(self, server: str, path: str, headers: dict[str, str]) -> None:
        self.conn = http.client.HTTPConnection(server, timeout=10)
        self.conn.request("GET", path, headers=headers)
        self.response = self.conn.getresponse()
        self.buffer = ""

    def frames_until(self, predicate, timeout: float = 10) -> list[str]:
        deadline = time.monotonic() + timeout
        frames: list[str] = []
        while time.monotonic() < deadline:
            while "\r\n\r\n" in self.buffer:
                event, self.buffer = self.buffer.split("\r\n\r\n", 1)
                if event.strip().startswith("data: "):
                    frames.append(event.strip()[len("data: ") :])
                    if predicate(frames[-1]):
                        return frames
            self.buffer += self.response.read1(65536).decode()
        raise AssertionError(f"not seen before the deadline: {frames}")

    def close(self) -> None:
        self.conn.close()


def test_a_third_party_cannot_drive_a_logged_in_browsers_session(server):
    admin = User.objects.create_superuser("admin", "admin@example.com", "admin-password")
    Author.objects.create(name="Janet Evanovich", email="janet@evanovich.com")
    browser = DjangoClient()
    browser.force_login(admin)
    cookie = f"sessionid={browser.cookies['sessionid'].value}"
    base = f"/sockjs/000/{uuid.uuid4().hex}"

    # the reported vector: JSONP is off by default
    conn = http.client.HTTPConnection(server, timeout=10)
    conn.request("GET", f"{base}/jsonp?c=x", headers={"Cookie": cookie})
    assert conn.getresponse().status == 404
    conn.close()

    # the same with a GET transport that stays: the admin's browser opens the session
    victim = EventSource(server, f"{base}/eventsource", {"Cookie": cookie})
    try:
        assert victim.response.status == 200
        secret = bind_cookie(victim.response)
        assert secret.startswith("sockjs_bind=")
        set_cookie = victim.response.getheader("set-cookie")
        assert f"Path={base};" in set_cookie and "HttpOnly" in set_cookie
        assert victim.frames_until(lambda f: f == "o")

        # a third party (no cookie, no Origin) knows the id: it gets nothing
        attack = json.dumps(
            [
                json.dumps(CONNECT),
                json.dumps(
                    {
                        "msg": "method",
                        "id": "1",
                        "method": "test.addBook",
                        "params": ["Pwned", "janet@evanovich.com"],
                    }
                ),
            ]
        )
        response, body = post(server, f"{base}/xhr_send", attack)
        assert (response.status, body) == (403, "Forbidden.")
        response, body = post(server, f"{base}/xhr")
        assert (response.status, body) == (403, "Forbidden.")
        # nor with a guessed secret
        response, _ = post(server, f"{base}/xhr_send", attack, {"Cookie": "sockjs_bind=guess"})
        assert response.status == 403

        # the browser itself (its cookies, the binding among them) is served, logged in
        mine = {"Cookie": f"{cookie}; {secret}"}
        response, _ = post(server, f"{base}/xhr_send", json.dumps([json.dumps(CONNECT)]), mine)
        assert response.status == 204
        frames = victim.frames_until(lambda f: '\\"users\\"' in f)
        assert not any("Pwned" in f or '\\"result\\"' in f for f in frames)
        assert any('\\"connected\\"' in f for f in frames)
    finally:
        victim.close()
    assert not Book.objects.filter(title="Pwned").exists()


def test_a_session_without_cookies_serves_only_its_own_address_and_origin(server):
    """A Node client (no cookies): its session id leaks (a log, a proxy); others are refused."""
    c = open_session(server, XhrPolling)
    c.send(CONNECT)
    assert c.recv()["msg"] == "connected"
    ping = json.dumps([json.dumps({"msg": "ping", "id": "x"})])
    for headers, source in (
        ({}, "127.0.0.2"),  # another host
        ({"Origin": f"http://{server}"}, None),  # a browser page on the same host
    ):
        for transport in ("xhr_send", "xhr"):
            response, body = post(server, f"{c.base}/{transport}", ping, headers, source)
            assert (response.status, body) == (403, "Forbidden."), (transport, headers, source)
    # the client itself goes on, and got nothing of the refused requests
    c.send({"msg": "ping", "id": "mine"})
    assert c.recv() == {"msg": "pong", "id": "mine"}


@pytest.fixture
def jsonp_server(transactional_db):
    yield from _serve("1", LIVEDATA_SETTINGS='{"DDP_SOCKJS_JSONP": true}')


def test_jsonp_is_served_only_when_enabled(server, jsonp_server):
    for where, status in ((server, 404), (jsonp_server, 200)):
        conn = http.client.HTTPConnection(where, timeout=10)
        conn.request("GET", f"/sockjs/000/{uuid.uuid4().hex}/jsonp?c=cb")
        response = conn.getresponse()
        assert (response.status, response.read()) == (
            (200, b'cb("o");\r\n') if status == 200 else (404, b"Not found.")
        )
        conn.close()


def test_session_ids_stay_out_of_the_access_log(transactional_db):
    port = free_port()
    proc = spawn_livedata(
        "serve", "--port", str(port), "--log-level", "info", stderr=subprocess.STDOUT
    )
    try:
        wait_listening(port, proc)
        c = open_session(f"127.0.0.1:{port}", XhrPolling)
        c.send(CONNECT)
        assert c.recv()["msg"] == "connected"
        sid = c.base.rsplit("/", 1)[1]
    finally:
        proc.terminate()
        output = proc.communicate(timeout=20)[0]
    assert '"POST /sockjs/000/*/xhr_send HTTP/1.1" 204' in output, output
    assert '"POST /sockjs/000/*/xhr HTTP/1.1" 200' in output
    assert sid not in output
