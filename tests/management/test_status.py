"""``livedata status`` on a real database, and beside a real ``livedata serve``."""

from __future__ import annotations

import socket
import time

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.db import connection

from livedata.accounts import tokens
from livedata.capture import log
from livedata.demo.bookstore.models import Author
from livedata.webhooks.models import Subscription
from tests.conftest import run_livedata
from tests.server.conftest import free_port

pytestmark = pytest.mark.django_db(transaction=True)


def status(*args: str) -> list[str]:
    out = run_livedata("status", *args)
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr
    return out.stdout.splitlines()


def test_the_log_and_a_webhook_subscription_behind_it():
    owner = User.objects.create_user("svc")
    sub = Subscription.objects.create(
        owner=owner,
        name="orders",
        url="http://127.0.0.1:9/hook",
        model_labels=["livedata_demo.author"],
        operations=["insert", "update", "delete"],
        secret="whsec_x",
        position=str(log.head(connection)),
    )
    Author.objects.create(name="A", email="a@example.com")  # two transactions
    Author.objects.create(name="B", email="b@example.com")
    lines = status()
    assert lines[0].startswith("log: head ")
    assert any(line.startswith("log: newest change #") for line in lines)
    assert "log: horizon none (never pruned: every change since install is kept)" in lines
    assert any(line.startswith("broker: not configured") for line in lines)
    mine = [line for line in lines if line.startswith(f'webhook {sub.pk} "orders"')]
    assert len(mine) == 1, lines
    assert f"active at {sub.position}: behind 2 transaction(s), 2 row(s) of its models" in mine[0]
    assert "oldest written" in mine[0]

    call_command("prune", "--older-than", "0s")
    lines = status()
    assert any(line.startswith("log: horizon txid ") for line in lines), lines


def test_a_running_server_shows_as_a_process_and_its_figures_with_url(server):
    scraper = User.objects.create_user("prometheus")
    secret = tokens.issue(scraper, kind="metrics")[0]
    url = f"http://{server}/livedata/metrics"
    # the application name as PostgreSQL keeps it (63 characters at most)
    wanted = "process: " + f"livedata listener {socket.gethostname()}"[:63]
    deadline = time.monotonic() + 15
    while True:  # the listener connects once the server has started
        lines = status("--url", url, "--token", secret)
        if any(line.startswith(wanted) and "(server;" in line for line in lines):
            break
        assert time.monotonic() < deadline, lines
        time.sleep(0.2)
    assert any(line.startswith("process: livedata webhooks ") for line in lines), lines
    assert f'{url}: livedata_connections{{transport="websocket"}} 0' in lines
    assert f"{url}: livedata_listener_connected 1" in lines

    refused = run_livedata("status", "--url", url)  # no token
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines() == [
        f"CommandError: {url}: answered 401 (give --token or $LIVEDATA_TOKEN)"
    ]


def test_an_unreachable_database_is_one_line_and_exit_1():
    port = free_port()
    out = run_livedata("status", DATABASE_URL=f"postgresql://postgres@127.0.0.1:{port}/nowhere")
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("CommandError: the database is unreachable: ")
    assert out.stdout == ""
