"""A project's own ``asgi.py`` mounting livedata (``LivedataApp(get_asgi_application())``,
tests/testapp/asgi.py, as the README shows it) under the ASGI servers projects run:
uvicorn with ``--workers 2``, gunicorn with uvicorn's worker class, and daphne. Each is a
real server process; real DDP clients subscribe, and a row inserted with plain SQL
reaches them live (through each worker's own listener)."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator

import psutil
import pytest

from tests.accounts.test_ddp_login import connected, result_of
from tests.conftest import ROOT, livedata_env
from tests.server.conftest import free_port, stop, wait_listening
from tests.server.live import insert_book, subscribe_all_books, wait_added

pytestmark = pytest.mark.django_db(transaction=True)

APP = "tests.testapp.asgi:application"


def _server(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", *args],
        env=livedata_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
    )


def _run(proc: subprocess.Popen, port: int) -> Iterator[tuple[str, int]]:
    """``("127.0.0.1:PORT", pid)`` of the server once it listens; stopped after the test."""
    try:
        wait_listening(port, proc)
        yield f"127.0.0.1:{port}", proc.pid
    finally:
        stop(proc)


@pytest.fixture
def uvicorn_workers(transactional_db) -> Iterator[tuple[str, int]]:
    port = free_port()
    cmd = ("uvicorn", APP, "--port", str(port), "--workers", "2", "--log-level", "warning")
    yield from _run(_server(*cmd), port)


@pytest.fixture
def gunicorn_uvicorn_workers(transactional_db) -> Iterator[tuple[str, int]]:
    # uvicorn 0.54 still ships uvicorn.workers (deprecated in favour of the uvicorn-worker
    # package, which it warns about): the class the issue names, with no other package
    port = free_port()
    cmd = ("gunicorn", "-k", "uvicorn.workers.UvicornWorker", "-w", "2")
    yield from _run(_server(*cmd, "-b", f"127.0.0.1:{port}", APP), port)


@pytest.fixture
def daphne(transactional_db) -> Iterator[tuple[str, int]]:
    port = free_port()
    yield from _run(_server("daphne", "-b", "127.0.0.1", "-p", str(port), APP), port)


def _one_client_per_worker(server: str, pid: int, opened: list) -> list:
    """Connect until two connections are served by different worker processes (the
    kernel spreads accepts between them; each answers test.pid with its own pid)."""
    by_pid = {}
    deadline = time.monotonic() + 60
    while len(by_pid) < 2:
        assert time.monotonic() < deadline, f"every connection was served by {set(by_pid)}"
        c = connected(server)
        opened.append(c)
        by_pid.setdefault(result_of(c.call("pid", "test.pid"), "pid")["result"], c)
    workers = {p.pid for p in psutil.Process(pid).children(recursive=True)}
    assert set(by_pid) <= workers, (set(by_pid), workers)  # the server's own workers
    return list(by_pid.values())


def _subscribed_clients_get_a_sql_insert(clients: list, connect) -> None:
    for c in clients:
        subscribe_all_books(c)
    title = insert_book(connect())
    for c in clients:
        assert wait_added(c, title)["collection"] == "livedata_demo.book"


@pytest.mark.parametrize("name", ["uvicorn_workers", "gunicorn_uvicorn_workers"])
def test_two_workers_each_send_a_sql_insert_live(request, name, connect):
    server, pid = request.getfixturevalue(name)
    opened: list = []
    try:
        clients = _one_client_per_worker(server, pid, opened)
        _subscribed_clients_get_a_sql_insert(clients, connect)
    finally:
        for c in opened:
            c.close()


def test_daphne_sends_a_sql_insert_live(daphne, connect):
    server, _ = daphne
    clients = [connected(server), connected(server)]
    try:
        _subscribed_clients_get_a_sql_insert(clients, connect)
    finally:
        for c in clients:
            c.close()
