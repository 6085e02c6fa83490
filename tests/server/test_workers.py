"""``livedata serve --workers N``: N processes on one port, each with its own listener."""

from __future__ import annotations

import json
import subprocess

import pytest
from websockets.sync.client import connect

from livedata.demo.bookstore.models import Author, Book
from tests.conftest import spawn_livedata
from tests.server.conftest import free_port, stop, wait_listening

pytestmark = pytest.mark.django_db(transaction=True)


def test_two_workers_share_the_port_and_fence_writes(transactional_db):
    Author.objects.create(name="W", email="w@example.com")
    port = free_port()
    proc = spawn_livedata(
        "serve",
        "--port",
        str(port),
        "--workers",
        "2",
        "--log-level",
        "warning",
        stderr=subprocess.STDOUT,
    )
    try:
        wait_listening(port, proc)
        sessions = set()
        for i in range(6):
            with connect(f"ws://127.0.0.1:{port}/websocket", open_timeout=10) as ws:
                ws.recv()
                ws.send('{"msg":"connect","version":"1","support":["1"]}')
                sessions.add(json.loads(ws.recv())["session"])
                ws.send(
                    json.dumps(
                        {
                            "msg": "method",
                            "id": "1",
                            "method": "test.addBook",
                            "params": [f"B{i}", "w@example.com"],
                        }
                    )
                )
                kinds = [json.loads(ws.recv(timeout=10))["msg"] for _ in range(2)]
                assert kinds == ["result", "updated"]
        assert len(sessions) == 6
        assert Book.objects.filter(title__startswith="B").count() == 6
        workers = __import__("psutil").Process(proc.pid).children(recursive=True)
        assert len(workers) >= 2
    finally:
        stop(proc)
