"""``livedata demo``: seeds idempotently and serves the bookstore with the printed users."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
from django.contrib.auth import authenticate
from django.core.management import call_command
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect as ws_connect

from livedata.demo.bookstore.models import Author, Book
from tests.conftest import spawn_livedata

pytestmark = pytest.mark.django_db(transaction=True)


def test_setup_is_idempotent_and_credentials_work(capsys):
    call_command("demo", "--setup-only", "--no-input")
    call_command("demo", "--setup-only", "--no-input")
    out = capsys.readouterr().out
    assert "admin / admin-password" in out and "demo / demo-password" in out
    janet = Author.objects.get(email="janet@evanovich.com")
    assert janet.name == "Janet Evanovich" and janet.books.count() >= 2
    assert Author.objects.exclude(pk=janet.pk).filter(books__isnull=False).exists()
    assert Author.objects.count() == 3 and Book.objects.count() == 7
    admin = authenticate(username="admin", password="admin-password")
    assert admin is not None and admin.is_superuser
    demo = authenticate(username="demo", password="demo-password")
    assert demo is not None and demo.email == "demo@example.com" and not demo.is_staff


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def demo_allowed_hosts() -> list[str]:
    """The demo settings' ALLOWED_HOSTS (imported in a child: this process has settings)."""
    code = "import livedata.demo.settings as s, json; print(json.dumps(s.ALLOWED_HOSTS))"
    env = {k: v for k, v in os.environ.items() if k != "LIVEDATA_ALLOWED_HOSTS"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout)


def test_the_demo_serves_only_its_own_names():
    assert demo_allowed_hosts() == ["localhost", "127.0.0.1", "[::1]"]


def test_serves_the_site_over_http():
    port = free_port()
    proc = spawn_livedata(
        "demo",
        "--port",
        str(port),
        "--no-input",
        stderr=subprocess.STDOUT,
        LIVEDATA_TEST_ALLOWED_HOSTS=json.dumps(demo_allowed_hosts()),
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as page:
                    body = page.read().decode()
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline
                time.sleep(0.2)
        assert "Janet Evanovich" in body and "One for the Money" in body
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/admin/login/", timeout=5) as page:
            assert page.status == 200
        # DNS rebinding (with the demo's ALLOWED_HOSTS): a page of evil.example resolved to
        # this machine is refused, over HTTP and over the WebSocket its origin would allow
        rebound = urllib.request.Request(
            f"http://127.0.0.1:{port}/", headers={"Host": f"evil.example:{port}"}
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(rebound, timeout=5)
        assert refused.value.code == 400
        with pytest.raises(InvalidStatus) as ws_refused:
            ws_connect(
                f"ws://evil.example:{port}/websocket",
                sock=socket.create_connection(("127.0.0.1", port), timeout=10),
                origin=f"http://evil.example:{port}",
                open_timeout=10,
            )
        assert ws_refused.value.response.status_code in (400, 403)
    finally:
        proc.terminate()
        out = proc.communicate(timeout=20)[0]
    assert f"http://127.0.0.1:{port}/admin/" in out


def test_the_demo_refuses_to_start_without_its_capture_triggers():
    """Issue 16: a trigger gone (its migration applied, so `migrate` leaves it gone) is
    a start-up error naming the model and the command, not a demo whose page never
    updates."""
    from django.db import connection

    update = next(t for t in Author._meta.triggers if t.name == "livedata_update")
    with connection.cursor() as cur:
        cur.execute(f"DROP TRIGGER {update.get_pgid(Author)} ON {Author._meta.db_table}")
    try:
        proc = spawn_livedata("demo", "--port", str(free_port()), "--no-input")
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 1, out
        assert "Traceback" not in err
        assert f"not serving: {Author._meta.label}'s changes are not captured" in err
        assert "livedata_update are missing or outdated" in err
        assert "run `livedata pgtrigger install`" in err
    finally:
        call_command("pgtrigger", "install")
