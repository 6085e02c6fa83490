"""The Origin rule (scheme, host and port) and Host validation for DDP (issue 19, findings 15
and 2): over the raw WebSocket and SockJS, against real servers."""

from __future__ import annotations

import base64
import os
import socket
import urllib.request

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from livedata.server.origin import origin_allowed, same_origin
from tests.server.conftest import _serve

pytestmark = pytest.mark.django_db(transaction=True)


def test_origins_compare_scheme_host_and_port():
    site = "http://127.0.0.1:8000"
    assert same_origin("http://127.0.0.1:8000", site)
    assert not same_origin("https://127.0.0.1:8000", site)  # another scheme: another site
    assert not same_origin("http://127.0.0.1:8001", site)
    assert same_origin("https://example.com", "https://EXAMPLE.com:443")
    assert origin_allowed(None, site, ())  # no header: not a browser
    for empty in ("", " ", "null"):
        assert not origin_allowed(empty, site, ())
    assert origin_allowed("https://app.example", site, ("https://app.example:443",))
    assert not origin_allowed("http://app.example", site, ("https://app.example",))


def handshake(server: str, path: str, headers: dict[str, str]) -> int:
    """The status of a WebSocket handshake with exactly these headers (Host included)."""
    host, port = server.split(":")
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [f"GET {path} HTTP/1.1", "Upgrade: websocket", "Connection: Upgrade"]
    lines += [f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        status_line = sock.recv(4096).split(b"\r\n", 1)[0]
    return int(status_line.split()[1])


@pytest.mark.parametrize("path", ["/websocket", "/sockjs/000/abc/websocket"])
def test_an_https_or_empty_origin_is_refused_on_an_http_site(server, path):
    for origin in (f"https://{server}", ""):
        assert handshake(server, path, {"Host": server, "Origin": origin}) == 403, origin
    assert handshake(server, path, {"Host": server, "Origin": f"http://{server}"}) == 101
    with pytest.raises(InvalidStatus) as refused:
        connect(f"ws://{server}{path}", open_timeout=10, origin=f"https://{server}")
    assert refused.value.response.status_code == 403


def test_an_https_origin_is_refused_by_sockjs_http(server):
    for origin in (f"https://{server}", ""):
        request = urllib.request.Request(f"http://{server}/sockjs/info", headers={"Origin": origin})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        assert refused.value.code == 403, origin


@pytest.fixture
def strict_hosts_server(transactional_db):
    yield from _serve("1", LIVEDATA_TEST_ALLOWED_HOSTS='["127.0.0.1"]')


@pytest.mark.parametrize("path", ["/websocket", "/sockjs/websocket", "/sockjs/000/a/websocket"])
def test_a_websocket_for_another_host_is_refused_before_accept(strict_hosts_server, path):
    server = strict_hosts_server
    evil = {"Host": "evil.example", "Origin": "http://evil.example"}
    assert handshake(server, path, evil) == 400
    assert handshake(server, path, {"Host": server}) == 101


def test_sockjs_http_for_another_host_is_refused(strict_hosts_server):
    server = strict_hosts_server
    evil = {"Host": "evil.example", "Origin": "http://evil.example"}
    for path in ("/sockjs/info", "/sockjs/000/abc/xhr"):
        request = urllib.request.Request(f"http://{server}{path}", headers=evil, method="POST")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        assert refused.value.code == 400
        assert refused.value.read() == b"Bad Request (Invalid host)"
    with urllib.request.urlopen(f"http://{server}/sockjs/info", timeout=10) as page:
        assert page.status == 200
