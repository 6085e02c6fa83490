"""``livedata serve``'s options, each against a real process: TLS (https and wss with a
self-signed certificate made here with openssl), a Unix socket (HTTP and DDP through
it), and ``--reload`` (the process restarts when a watched file changes)."""

from __future__ import annotations

import json
import os
import socket
import ssl
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect, unix_connect

from tests.conftest import spawn_livedata
from tests.server.conftest import free_port, self_signed, stop, wait_listening
from tests.server.test_websocket import CONNECT

pytestmark = pytest.mark.django_db(transaction=True)


def serve(*args: str) -> subprocess.Popen:
    return spawn_livedata("serve", "--log-level", "warning", *args, stderr=subprocess.STDOUT)


def hello(ws) -> dict:
    """Connect, call ``hello``, return its result message."""
    assert json.loads(ws.recv(timeout=10)) == {"server_id": "0"}
    ws.send(json.dumps(CONNECT))
    assert json.loads(ws.recv(timeout=10))["msg"] == "connected"
    ws.send(json.dumps({"msg": "method", "id": "1", "method": "hello", "params": ["tls"]}))
    while (message := json.loads(ws.recv(timeout=10)))["msg"] != "result":
        pass
    return message


def test_https_and_wss_with_a_certificate(tmp_path):
    cert, key = self_signed(tmp_path)
    port = free_port()
    proc = serve("--port", str(port), "--ssl-certfile", str(cert), "--ssl-keyfile", str(key))
    trusted = ssl.create_default_context(cafile=str(cert))
    try:
        wait_listening(port, proc)
        with httpx.Client(verify=trusted, timeout=10) as client:
            page = client.get(f"https://127.0.0.1:{port}/")
            assert page.status_code == 200 and "<html" in page.text.lower()
        url = f"wss://127.0.0.1:{port}/websocket"
        # the page's own origin is https://: the same origin over wss, accepted
        origin = {"Origin": f"https://127.0.0.1:{port}"}
        with connect(url, ssl=trusted, additional_headers=origin, open_timeout=10) as ws:
            assert hello(ws)["result"] == "hello tls"
        plain = {"Origin": f"http://127.0.0.1:{port}"}  # another origin (scheme) than the site's
        with pytest.raises(InvalidStatus) as refused:
            connect(url, ssl=trusted, additional_headers=plain, open_timeout=10)
        assert refused.value.response.status_code == 403
    finally:
        stop(proc)


def test_a_unix_socket(tmp_path):
    path = tmp_path / "livedata.sock"
    proc = serve("--uds", str(path))
    try:
        deadline = time.monotonic() + 60
        while not _accepts(path):
            assert proc.poll() is None, proc.stdout.read()
            assert time.monotonic() < deadline, "serve did not listen on its socket"
            time.sleep(0.1)
        transport = httpx.HTTPTransport(uds=str(path))
        with httpx.Client(transport=transport, base_url="http://localhost", timeout=10) as c:
            info = c.get("/sockjs/info")
            assert info.status_code == 200 and info.json()["websocket"] is True
        with unix_connect(str(path), "ws://localhost/websocket", open_timeout=10) as ws:
            assert hello(ws)["result"] == "hello tls"
    finally:
        stop(proc)


def _accepts(path: Path) -> bool:
    if not path.exists():
        return False
    with socket.socket(socket.AF_UNIX) as s:
        try:
            s.connect(str(path))
        except OSError:
            return False
    return True


def test_reload_restarts_on_a_changed_file(tmp_path):
    watched = tmp_path / "watched"
    watched.mkdir()
    module = watched / "changed.py"  # uvicorn's StatReload sees changes of files it saw
    module.write_text("x = 1\n")
    port = free_port()
    proc = serve("--port", str(port), "--reload", "--reload-dir", str(watched))
    try:
        wait_listening(port, proc)
        first = _pid(port)
        assert first is not None and first != proc.pid  # the worker, under the reloader
        module.write_text("x = 2\n")
        later = time.time() + 2  # a newer mtime, whatever the file system's resolution
        os.utime(module, (later, later))
        deadline = time.monotonic() + 60
        while (now := _pid(port)) in (first, None):
            assert proc.poll() is None, proc.stdout.read()
            assert time.monotonic() < deadline, "serve did not restart"
            time.sleep(0.3)
        assert now != first
    finally:
        stop(proc)


def _pid(port: int) -> int | None:
    """The serving process's pid (the test app's ``test.pid``), None while it restarts."""
    try:
        with connect(f"ws://127.0.0.1:{port}/websocket", open_timeout=5) as ws:
            ws.recv(timeout=5)
            ws.send(json.dumps(CONNECT))
            ws.recv(timeout=5)
            ws.send(json.dumps({"msg": "method", "id": "p", "method": "test.pid", "params": []}))
            while (message := json.loads(ws.recv(timeout=5)))["msg"] != "result":
                pass
            return message["result"]
    except (OSError, TimeoutError, InvalidStatus):
        return None


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["--ssl-certfile", "cert.pem"], "--ssl-certfile and --ssl-keyfile go together"),
        (["--ssl-certfile", "/nope.pem", "--ssl-keyfile", "/nope.pem"], "no such file"),
        (["--reload", "--workers", "2"], "--reload runs one process"),
        (["--reload-dir", "."], "--reload-dir needs --reload"),
    ],
)
def test_wrong_options_are_refused_clearly(args, error):
    proc = serve(*args)
    output = proc.communicate(timeout=60)[0]
    assert proc.returncode != 0 and error in output
    assert "Traceback" not in output
