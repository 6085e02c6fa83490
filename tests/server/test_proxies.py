"""Trusted proxies (``HTTP_FORWARDED_ALLOW_IPS``, ``server.proxies``): a real ``livedata
serve`` trusting 127.0.0.2 gets real HTTP requests and WebSockets with forged
``X-Forwarded-For`` / ``X-Forwarded-Proto`` from an untrusted peer (127.0.0.1) and a
trusted one (127.0.0.2: any of 127/8 is this host), and the client address it uses for
the audit context, the HTTP APIs' TLS rule (the webhooks' API) and the rate limits is
the one only a trusted proxy can name."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from django.contrib.auth.models import Permission, User
from django.core import checks
from websockets.sync.client import connect

from livedata.accounts import tokens
from livedata.conf import livedata_settings
from livedata.models import Change
from livedata.server.checks import server_limits
from livedata.server.proxies import TrustedProxies
from tests.server.conftest import _serve
from tests.server.test_websocket import CONNECT

pytestmark = pytest.mark.django_db(transaction=True)

UNTRUSTED, PROXY = "127.0.0.1", "127.0.0.2"
#: addresses clients "are" behind the proxy (documentation ranges: only ever text here)
REAL, OTHER = "203.0.113.7", "198.51.100.1"


@pytest.fixture
def proxied(transactional_db: None) -> Iterator[str]:
    settings = {"HTTP_FORWARDED_ALLOW_IPS": [PROXY]}
    yield from _serve("1", LIVEDATA_SETTINGS=json.dumps(settings))


def http(server: str, source: str) -> httpx.Client:
    """HTTP requests to ``server`` from the address ``source``."""
    transport = httpx.HTTPTransport(local_address=source)
    return httpx.Client(base_url=f"http://{server}", transport=transport, timeout=30)


def remote_addr_of_write(server: str, source: str, email: str, **headers: str) -> str:
    """The audit context's address of a write made by a view (ContextMiddleware)."""
    with http(server, source) as client:
        assert client.post(f"/t/write-sync/?email={email}", headers=headers).status_code == 200
    change = Change.objects.get(model="livedata_demo.author", new__email=email)
    return change.context["remote_addr"]


def test_the_audit_context_believes_only_trusted_proxies(proxied):
    forged = {"X-Forwarded-For": REAL}
    assert remote_addr_of_write(proxied, UNTRUSTED, "a@example.com", **forged) == UNTRUSTED
    assert remote_addr_of_write(proxied, PROXY, "b@example.com", **forged) == REAL
    # what the client put in the header itself stays left of what the proxy appended
    chain = {"X-Forwarded-For": f"{OTHER}, {REAL}"}
    assert remote_addr_of_write(proxied, PROXY, "c@example.com", **chain) == REAL
    # a trusted proxy with nothing to say: its own address
    assert remote_addr_of_write(proxied, PROXY, "d@example.com") == PROXY


def test_a_ddp_method_audit_context_through_a_trusted_proxy(proxied):
    def method_address(source: str) -> str:
        headers = {"X-Forwarded-For": REAL}
        url = f"ws://{proxied}/websocket"
        with connect(url, additional_headers=headers, source_address=(source, 0)) as ws:
            ws.recv(timeout=10)
            ws.send(json.dumps(CONNECT))
            assert json.loads(ws.recv(timeout=10))["msg"] == "connected"
            title = f"from {source}"
            call = {"msg": "method", "id": "1", "method": "test.addBook"}
            ws.send(json.dumps({**call, "params": [title, "ddp@example.com"]}))
            while json.loads(ws.recv(timeout=10))["msg"] != "updated":
                pass
        return Change.objects.get(model="livedata_demo.book", new__title=title).context[
            "remote_addr"
        ]

    from livedata.demo.bookstore.models import Author

    Author.objects.create(name="DDP", email="ddp@example.com")
    assert method_address(UNTRUSTED) == UNTRUSTED
    assert method_address(PROXY) == REAL


def test_the_tls_rule_of_the_webhooks_api_behind_a_proxy_on_the_same_host(proxied):
    user = User.objects.create_user("svc", "svc@example.com", "svc-password")
    user.user_permissions.add(*Permission.objects.filter(codename="view_book"))
    secret, _ = tokens.issue(user, kind="api")
    bearer = {"Authorization": f"Bearer {secret}", "X-Forwarded-For": REAL}
    with http(proxied, PROXY) as client:
        # the client spoke plain HTTP to the proxy: not "loopback", refused
        refused = client.get("/livedata/subscriptions/", headers=bearer)
        assert refused.status_code == 401
        assert "plain HTTP" in refused.json()["message"]
        secure = {**bearer, "X-Forwarded-Proto": "https"}
        assert client.get("/livedata/subscriptions/", headers=secure).status_code == 200
    with http(proxied, UNTRUSTED) as client:  # a forged scheme changes nothing (loopback)
        forged = {**bearer, "X-Forwarded-For": REAL, "X-Forwarded-Proto": "https"}
        assert client.get("/livedata/subscriptions/", headers=forged).status_code == 200


def test_basic_rate_limits_count_per_real_client(proxied):
    """``HTTP_API_BASIC_RATE_LIMITS``: 10 failed attempts per 10 s per client address.
    Each attempt tries another username (the per-user limit stays out of it)."""

    def statuses(source: str, forwarded_for: list[str]) -> list[int]:
        with http(proxied, source) as client:
            return [
                client.get(
                    "/livedata/subscriptions/",
                    auth=(f"user{i}-{source}", "wrong"),
                    headers={"X-Forwarded-For": address, "X-Forwarded-Proto": "https"},
                ).status_code
                for i, address in enumerate(forwarded_for)
            ]

    # an untrusted client forging a new address each time still has one budget
    forged = statuses(UNTRUSTED, [f"203.0.113.{i}" for i in range(11)])
    assert forged == [401] * 10 + [429]
    # behind the trusted proxy, 11 clients: none is limited by the others
    assert statuses(PROXY, [f"198.51.100.{i}" for i in range(11)]) == [401] * 11
    # and one of them, past its own budget, is
    assert statuses(PROXY, ["192.0.2.9"] * 11) == [401] * 10 + [429]


def test_client_of_takes_the_rightmost_untrusted_hop():
    proxies = TrustedProxies(["10.0.0.0/8", "127.0.0.1"])
    assert proxies.client_of("127.0.0.1", "1.2.3.4, 10.1.1.1") == "1.2.3.4"
    assert proxies.client_of("127.0.0.1", "6.6.6.6, 1.2.3.4") == "1.2.3.4"
    assert proxies.client_of("127.0.0.1", "10.2.2.2, 10.1.1.1") == "10.2.2.2"
    assert proxies.client_of("127.0.0.1", "not-an-address") == "127.0.0.1"
    assert proxies.client_of("127.0.0.1", "") == "127.0.0.1"
    assert not TrustedProxies().trusts("127.0.0.1")
    assert TrustedProxies(["unix"]).trusts(None) and not TrustedProxies(["unix"]).trusts("::1")
    anyone = TrustedProxies(["*"])  # any peer, and the address the nearest one appended
    assert anyone.trusts("192.0.2.1") and anyone.trusts(None)
    assert anyone.client_of("192.0.2.1", "6.6.6.6, 1.2.3.4") == "1.2.3.4"


@pytest.mark.parametrize(
    "value", [["10.0.0.300"], "127.0.0.1", [None], ["localhost"], ["10.0.0.0/33"]]
)
def test_a_malformed_setting_is_a_system_check_error(settings, value):
    settings.LIVEDATA = {**settings.LIVEDATA, "HTTP_FORWARDED_ALLOW_IPS": value}
    livedata_settings.cache_clear()
    errors = [e for e in server_limits() if "HTTP_FORWARDED_ALLOW_IPS" in e.msg]
    assert [(e.level, e.id) for e in errors] == [(checks.ERROR, "livedata.E005")]
    assert repr(value[0] if isinstance(value, list) else value) in errors[0].msg


@pytest.fixture
def capped_proxied(transactional_db: None) -> Iterator[str]:
    settings = {"HTTP_FORWARDED_ALLOW_IPS": [PROXY], "HTTP_MAX_CONNECTIONS_PER_ADDRESS": 3}
    yield from _serve("1", LIVEDATA_SETTINGS=json.dumps(settings))


def test_a_trusted_proxy_is_not_capped_per_address(capped_proxied):
    """It carries every client's connections: 3 per address caps 127.0.0.1, not it."""
    import socket

    host, port = capped_proxied.split(":")

    def answers(source: str, count: int) -> list[str]:
        """``count`` connections from ``source``, all held open: each asks once."""
        sockets = [
            socket.create_connection((host, int(port)), 10, (source, 0)) for _ in range(count)
        ]
        try:
            return [_status(sock) for sock in sockets]
        finally:
            for sock in sockets:
                sock.close()

    # (the fixture's own probe from 127.0.0.1 may not be counted out yet: at most 3)
    untrusted = answers(UNTRUSTED, 6)
    assert untrusted.count("200") <= 3 and untrusted[-1] == "refused", untrusted
    assert answers(PROXY, 6) == ["200"] * 6


def _status(sock: Any) -> str:
    """ "200", or "refused" (the 503 the cap answers at once, or the closed socket that
    follows it when the request was sent after)."""
    data = b""
    try:
        sock.sendall(b"GET /sockjs/info HTTP/1.1\r\nHost: x\r\n\r\n")
        while len(data) < 12 and (chunk := sock.recv(12 - len(data))):
            data += chunk
    except ConnectionError:
        pass
    return "200" if data == b"HTTP/1.1 200" else "refused"
