"""One host behind nginx, as the README's "Deployment: behind nginx" shows it
(bench/nginx.py makes the configuration both use): Debian's nginx terminating TLS with a
self-signed certificate made here, in front of 2 ``livedata serve`` processes started
with the systemd unit's command line, on the test's PostgreSQL.

Clients connect from 127.0.0.2 and 127.0.0.3 (any address of 127/8 is this host), never
from nginx's 127.0.0.1: the audit trail names the client's address, not the proxy's,
whatever the client forges in ``X-Forwarded-For``, and the login rate limit counts each
client apart.
"""

from __future__ import annotations

import contextlib
import json
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from bench import nginx
from websockets.sync.client import connect

from livedata.demo.bookstore.models import Author, Book
from livedata.models import Change
from tests.conftest import ROOT, spawn_livedata
from tests.server.conftest import free_port, self_signed, stop, wait_listening
from tests.server.test_websocket import CONNECT

pytestmark = pytest.mark.django_db(transaction=True)

ALICE, BOB = "127.0.0.2", "127.0.0.3"
#: what the processes get besides the tests' settings: nginx trusted, and a login rate
#: limit per client address only, small enough to reach
SETTINGS = {
    "HTTP_FORWARDED_ALLOW_IPS": ["127.0.0.1"],
    "DDP_RATE_LIMITS": [{"methods": ["login"], "per": "client_address", "calls": 3, "seconds": 60}],
}


class Site:
    def __init__(self, port: int, cert: Path) -> None:
        self.port = port
        self.origin = f"https://127.0.0.1:{port}"
        self.tls = ssl.create_default_context(cafile=str(cert))

    def ddp(self, source: str, **headers: str) -> Any:
        """A DDP client over wss from ``source``, as the site's page would open it."""
        ws = connect(
            f"wss://127.0.0.1:{self.port}/websocket",
            ssl=self.tls,
            source_address=(source, 0),
            additional_headers={"Origin": self.origin, **headers},
            open_timeout=10,
        ).__enter__()  # closed by ws.close()
        assert json.loads(ws.recv(timeout=10)) == {"server_id": "0"}
        ws.send(json.dumps(CONNECT))
        assert json.loads(ws.recv(timeout=10))["msg"] == "connected"
        return ws

    def http(self, source: str) -> httpx.Client:
        transport = httpx.HTTPTransport(local_address=source, verify=self.tls)
        return httpx.Client(base_url=self.origin, transport=transport, timeout=10)


def call(ws: Any, method_id: str, name: str, *params: Any) -> dict:
    ws.send(json.dumps({"msg": "method", "id": method_id, "method": name, "params": params}))
    return until(ws, lambda m: m["msg"] == "result" and m["id"] == method_id)


#: every message each connection received, so a wait sees what an earlier one read past
_received: dict[int, list[dict]] = {}


def until(ws: Any, predicate: Any, timeout: float = 15) -> dict:
    seen = _received.setdefault(id(ws), [])
    found = next((m for m in seen if predicate(m)), None)
    deadline = time.monotonic() + timeout
    while found is None:
        message = json.loads(ws.recv(timeout=max(0.1, deadline - time.monotonic())))
        seen.append(message)
        found = message if predicate(message) else None
    seen.remove(found)
    return found


@pytest.fixture
def site(tmp_path: Path, transactional_db: None) -> Iterator[Site]:
    binary = nginx.binary()
    if binary is None:
        pytest.fail("nginx is missing and could not be installed: apt-get install nginx")
    cert, key = self_signed(tmp_path)
    ports = [free_port(), free_port()]
    procs = []
    try:
        for port in ports:  # the unit's ExecStart, for livedata@PORT
            args = nginx.exec_start(port)
            proc = spawn_livedata(
                *args, stderr=subprocess.STDOUT, LIVEDATA_SETTINGS=json.dumps(SETTINGS)
            )
            procs.append(proc)
        for port, proc in zip(ports, procs, strict=True):
            wait_listening(port, proc)
        port = free_port()
        servers = [f"127.0.0.1:{p}" for p in ports]
        config = nginx.site(f"127.0.0.1:{port}", servers, str(cert), str(key), "localhost")
        prefix = tmp_path / "nginx"
        prefix.mkdir()
        (prefix / "nginx.conf").write_text(nginx.main(str(prefix), config))
        test = subprocess.run(
            [binary, "-t", "-p", str(prefix), "-e", str(prefix / "error.log"), "-c", "nginx.conf"],
            capture_output=True,
            text=True,
        )
        assert test.returncode == 0, test.stderr
        proxy = subprocess.Popen(
            [binary, "-p", str(prefix), "-e", str(prefix / "error.log"), "-c", "nginx.conf"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        procs.append(proxy)
        wait_listening(port, proxy)
        yield Site(port, cert)
    finally:
        for proc in reversed(procs):
            stop(proc)
        with contextlib.suppress(FileNotFoundError):
            print((tmp_path / "nginx" / "error.log").read_text()[-3000:])


def test_ddp_over_wss_through_nginx_to_two_processes(site):
    Author.objects.create(name="Ada", email="ada@example.com")
    # round-robin: both processes serve (each connection says which one it reached)
    clients, pids = [], set()
    for _ in range(4):
        ws = site.ddp(ALICE, **{"X-Forwarded-For": "203.0.113.66"})  # forged: ignored
        clients.append(ws)
        pids.add(call(ws, "p", "test.pid")["result"])
    assert len(pids) == 2, "nginx sent every connection to one process"
    try:
        ws = clients[0]
        ws.send(json.dumps({"msg": "sub", "id": "all", "name": "AllBooks", "params": []}))
        until(ws, lambda m: m["msg"] == "ready")
        assert "error" not in call(ws, "1", "test.addBook", "Through nginx", "ada@example.com")
        Book.objects.create(title="By a script", author=Author.objects.get())
        for title in ("Through nginx", "By a script"):  # live, over wss
            until(ws, lambda m, t=title: m.get("fields", {}).get("title") == t)
    finally:
        for ws in clients:
            ws.close()
    book = Book.objects.get(title="Through nginx")
    [change] = Change.objects.filter(model="livedata_demo.book", object_pk=str(book.pk))
    assert change.context["remote_addr"] == ALICE  # the client's, not nginx's 127.0.0.1
    assert change.context["ddp_method"] == "test.addBook"


def test_a_view_s_audit_context_and_sockjs_through_nginx(site):
    with site.http(BOB) as http:
        # a view's write (ContextMiddleware), the client forging its address
        forged = {"X-Forwarded-For": "203.0.113.66"}
        assert http.post("/t/write-sync/?email=bob@example.com", headers=forged).is_success
        # SockJS's xhr-polling: every request of the session must reach its process
        base = "/sockjs/000/nginxsession1"
        assert http.post(f"{base}/xhr").text == "o\n"
        assert json.loads(http.post(f"{base}/xhr").text[1:])[0] == '{"server_id":"0"}'
        for message in (CONNECT, {"msg": "method", "id": "1", "method": "test.pid", "params": []}):
            sent = http.post(f"{base}/xhr_send", content=json.dumps([json.dumps(message)]))
            assert sent.status_code == 204, sent.text
        got = []
        deadline = time.monotonic() + 15
        while not any(m.get("msg") == "result" for m in got):
            assert time.monotonic() < deadline
            frame = http.post(f"{base}/xhr").text
            if frame.startswith("a"):
                got += [json.loads(m) for m in json.loads(frame[1:])]
        assert got[0]["msg"] == "connected"
    change = Change.objects.get(model="livedata_demo.author", new__email="bob@example.com")
    assert change.context["remote_addr"] == BOB


def test_the_login_rate_limit_counts_each_real_client(site):
    wrong = {"user": {"username": "nobody"}, "password": "wrong"}
    alice = site.ddp(ALICE)
    try:
        pid = call(alice, "p", "test.pid")["result"]
        bob = site.ddp(BOB)
        while call(bob, "p", "test.pid")["result"] != pid:  # the same process as Alice
            bob.close()
            bob = site.ddp(BOB)
        try:
            errors = [call(alice, f"a{i}", "login", wrong)["error"]["error"] for i in range(4)]
            assert errors == [403, 403, 403, "too-many-requests"]
            # Bob, behind the same nginx (one address to the process), has his own budget
            assert call(bob, "b", "login", wrong)["error"]["error"] == 403
        finally:
            bob.close()
    finally:
        alice.close()


def test_the_readme_shows_the_configuration_and_unit_the_test_runs() -> None:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Deployment: behind nginx") :]
    for fence, expected in (("nginx", nginx.site(**nginx.EXAMPLE)), ("ini", nginx.UNIT)):
        block = section[section.index(f"```{fence}\n") + len(f"```{fence}\n") :]
        assert block[: block.index("```")] == expected
