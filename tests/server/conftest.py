"""A real ``livedata serve`` process on a free port, on the test database."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import spawn_livedata


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and localhost, and its key (openssl, one day)."""
    import subprocess

    cert, key = directory / "cert.pem", directory / "key.pem"
    request = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
    names = ["-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"]
    files = ["-keyout", str(key), "-out", str(cert)]
    subprocess.run([*request, *names, *files], check=True, capture_output=True, timeout=60)
    return cert, key


def stop(proc: Any) -> None:
    """Stop a server process; print its output (pytest shows it when the test failed)."""
    import subprocess

    proc.terminate()
    try:
        output = proc.communicate(timeout=20)[0]
    except subprocess.TimeoutExpired:
        proc.kill()
        output = proc.communicate()[0]
    print(f"--- livedata serve output ---\n{output}")


def wait_listening(port: int, proc, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited: {proc.stdout.read()}") from None
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.1)


@pytest.fixture
def server(transactional_db) -> Iterator[str]:
    """``127.0.0.1:PORT`` of a running server (small message and buffer limits)."""
    yield from _serve("1")


@pytest.fixture
def fast_heartbeat_server(transactional_db) -> Iterator[str]:
    """A server that pings after 1 s of silence and closes 1 s after an unanswered ping."""
    yield from _serve("fast-heartbeat")


def spawn_serve(port: int, **env: str) -> Any:
    """A ``livedata serve`` process on ``port`` (its output on stdout), not yet listening."""
    import subprocess

    cmd = ["serve", "--port", str(port), "--log-level", "warning"]
    return spawn_livedata(*cmd, stderr=subprocess.STDOUT, **env)


def _serve(overrides: str, **env: str) -> Iterator[str]:
    for tries in range(3):
        port = free_port()  # free when asked; another process may bind it before ours
        proc = spawn_serve(port, LIVEDATA_TEST_OVERRIDES=overrides, **env)
        try:
            wait_listening(port, proc)
            break
        except RuntimeError as exc:  # CI once lost the port that way: another one
            stop(proc)
            if "address already in use" not in str(exc) or tries == 2:
                raise
    try:
        yield f"127.0.0.1:{port}"
    finally:
        stop(proc)


@pytest.fixture
def ddp(server):
    """Make connected DDP clients of ``server`` (closed after the test)."""
    from tests.server.test_websocket import CONNECT, Client

    clients = []

    def make() -> Client:
        c = Client(server)
        c.recv()
        c.send(CONNECT)
        c.recv()
        clients.append(c)
        return c

    yield make
    for c in clients:
        c.close()
