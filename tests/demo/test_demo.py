"""``livedata demo``: seeds idempotently and serves the bookstore with the printed users."""

from __future__ import annotations

import socket
import subprocess
import time
import urllib.request

import pytest
from django.contrib.auth import authenticate
from django.core.management import call_command

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


def test_serves_the_site_over_http():
    port = free_port()
    proc = spawn_livedata("demo", "--port", str(port), "--no-input", stderr=subprocess.STDOUT)
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
    finally:
        proc.terminate()
        out = proc.communicate(timeout=20)[0]
    assert f"http://127.0.0.1:{port}/admin/" in out
