"""The npm DDP clients see live changes from a raw-SQL writer: WebSocket and SockJS."""

from __future__ import annotations

import json
import subprocess

import pytest

from livedata.demo.bookstore.models import Author, Book
from tests.server.test_js_clients import JS, node_clients

__all__ = ["node_clients"]  # the session fixture, used here by name

pytestmark = pytest.mark.django_db(transaction=True)

CLIENTS = ["ddp", "simpleddp", "ddp.js", "ddp.js-sockjs-xhr-streaming", "ddp.js-sockjs-websocket"]


@pytest.mark.parametrize("which", CLIENTS)
def test_npm_client_sees_raw_sql_changes_live(which, server, node_clients, connect):
    janet = Author.objects.create(name="Janet Evanovich", email="janet@evanovich.com")
    Book.objects.create(title="One for the Money", author=janet)
    other = Author.objects.create(name="Terry", email="terry@discworld.example")
    proc = subprocess.Popen(
        ["node", "live.js", which, f"ws://{server}/websocket", janet.email],
        cwd=JS,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )

    def next_line() -> dict:
        line = proc.stdout.readline()
        assert line, proc.stderr.read()
        return json.loads(line)

    sql = connect()  # another service, no Django: psql, say
    try:
        assert next_line() == {"subscribed": ["One for the Money"]}
        # each change once the client saw the previous one: a re-queried publication
        # shows the state it reads, so an insert deleted before it looked is never shown
        sql.execute(
            "INSERT INTO livedata_demo_book (title, author_id) VALUES ('Not hers', %s)", [other.pk]
        )
        book_id = sql.execute(
            "INSERT INTO livedata_demo_book (title, author_id) VALUES (%s, %s) RETURNING id",
            ["Live from SQL", janet.pk],
        ).fetchone()[0]
        added = next_line()["seen"]
        sql.execute(
            "UPDATE livedata_demo_book SET title = 'Renamed in SQL' WHERE id = %s", [book_id]
        )
        changed = next_line()["seen"]
        sql.execute("DELETE FROM livedata_demo_book WHERE id = %s", [book_id])
        removed = next_line()["seen"]
        report = next_line()  # the final report
        proc.wait(timeout=30)
    finally:
        proc.kill()
    assert "failure" not in report, report["failure"]
    fields = {"title": "Live from SQL"} | ({} if which == "simpleddp" else {"author_id": janet.pk})
    assert [added, changed, removed] == [
        ["added", str(book_id), fields],
        ["changed", str(book_id), {"title": "Renamed in SQL"}],
        ["removed", str(book_id), None],
    ]
    if "sockjs" in which:
        assert ["transport", which.rsplit("-sockjs-", 1)[1]] in report["events"]
