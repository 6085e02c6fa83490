"""``livedata serve --workers N``: N processes on one port, each with its own listener."""

from __future__ import annotations

import subprocess
import time

import psutil
import pytest

from livedata.demo.bookstore.models import Author, Book
from tests.accounts.test_ddp_login import connected, result_of
from tests.conftest import spawn_livedata
from tests.server.conftest import free_port, stop, wait_listening

pytestmark = pytest.mark.django_db(transaction=True)


def _add_book(c, method_id: str, title: str) -> list[dict]:
    """``test.addBook`` through ``c``; every message up to its result and updated."""
    return c.call(method_id, "test.addBook", title, "w@example.com")


def _added_before_updated(got: list[dict], method_id: str, title: str) -> bool:
    """The write fence: the method's own book reached the client before ``updated``."""
    added = [
        i for i, m in enumerate(got) if m["msg"] == "added" and m["fields"].get("title") == title
    ]
    updated = [i for i, m in enumerate(got) if m["msg"] == "updated" and method_id in m["methods"]]
    return bool(added) and added[0] < updated[0]


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
    opened = []
    try:
        wait_listening(port, proc)
        # connect until two connections are served by different processes (the kernel
        # spreads accepts between the workers; each answers test.pid with its own pid)
        by_pid = {}
        deadline = time.monotonic() + 60
        while len(by_pid) < 2:
            assert time.monotonic() < deadline, f"every connection was served by {set(by_pid)}"
            c = connected(f"127.0.0.1:{port}")
            opened.append(c)
            by_pid.setdefault(result_of(c.call("pid", "test.pid"), "pid")["result"], c)
        workers = {p.pid for p in psutil.Process(proc.pid).children(recursive=True)}
        assert set(by_pid) <= workers  # served by two of the server's own worker processes
        for c in by_pid.values():
            c.send({"msg": "sub", "id": "all", "name": "AllBooks", "params": []})
            assert c.until(lambda m: m["msg"] == "ready")[-1] == {"msg": "ready", "subs": ["all"]}
        first, second = by_pid.values()
        # several writes each way: without the fence, ``updated`` overtakes the data in
        # most of them (it needs no round trip through the change log)
        titles = set()
        for i in range(10):
            writer, other = (first, second) if i % 2 == 0 else (second, first)
            title = f"B{i}"
            titles.add(title)
            got = _add_book(writer, title, title)
            assert _added_before_updated(got, title, title), got
            # the other process sees the write through its own listener
            other.until(lambda m, t=title: m["msg"] == "added" and m["fields"].get("title") == t)
        assert set(Book.objects.values_list("title", flat=True)) == titles
    finally:
        for c in opened:
            c.close()
        stop(proc)
