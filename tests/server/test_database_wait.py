"""A PostgreSQL outage under a live server (issue 19, reliability): methods, logins and
new subscriptions wait for the database up to ``DDP_DATABASE_WAIT``, then get Meteor's
retryable error 503, never a 500 or a traceback, and the connection keeps serving.

The outage is real: a throwaway embedded PostgreSQL of this test's own, stopped and
started again (never the machine's shared server)."""

from __future__ import annotations

import json
import subprocess
import time

import psycopg
import pytest

from tests.conftest import private_database, spawn_livedata
from tests.server.conftest import free_port, wait_listening
from tests.server.test_websocket import CONNECT, Client

#: seconds the server waits for the database (longer than a restart takes here, ~1 s)
WAIT = 6.0


def connected(port: int) -> Client:
    c = Client(f"127.0.0.1:{port}")
    assert c.recv() == {"server_id": "0"}
    c.send(CONNECT)
    assert c.recv()["msg"] == "connected"
    return c


def answer(c: Client, msg_id: str, timeout: float) -> dict:
    """The result (or nosub/ready) for ``msg_id``, whatever comes before it."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        assert left > 0, f"no answer to {msg_id} within {timeout} s"
        m = c.recv(timeout=left)
        if m.get("msg") in ("result", "nosub", "ready") and (
            m.get("id") == msg_id or msg_id in m.get("subs", ())
        ):
            return m


def nothing_yet(c: Client, within: float) -> None:
    """No answer arrives while the database is down (the request waits for it)."""
    try:
        m = c.recv(timeout=within)
    except TimeoutError:
        return
    assert m.get("msg") not in ("result", "nosub", "ready"), m


@pytest.fixture
def outage(tmp_path):
    """A served site on a PostgreSQL of its own: (port, the PostgreSQL, stop the server)."""
    from django.contrib.auth.hashers import make_password

    from livedata.embedded.server import ensure_server

    pg = ensure_server(tmp_path / "pgdata")
    env = private_database(
        pg, "database_wait", LIVEDATA_SETTINGS=json.dumps({"DDP_DATABASE_WAIT": WAIT})
    )
    with psycopg.connect(host=pg.socket_dir, dbname="database_wait", user="postgres") as db:
        db.execute("INSERT INTO livedata_demo_author (name, email) VALUES ('J', 'j@example.com')")
        db.execute(
            "INSERT INTO auth_user (username, email, password, first_name, last_name, "
            "is_staff, is_active, is_superuser, date_joined) VALUES "
            "('demo', 'demo@example.com', %s, '', '', false, true, false, now())",
            [make_password("demo-password")],
        )
    port = free_port()
    proc = spawn_livedata(
        "serve",
        "--port",
        str(port),
        "--log-level",
        "warning",
        stderr=subprocess.STDOUT,
        environ=env,
    )
    output: list[str] = []

    def stop() -> str:
        """Stop the server (once); its output."""
        if not output:
            proc.terminate()
            try:
                output.append(proc.communicate(timeout=20)[0])
            except subprocess.TimeoutExpired:
                proc.kill()
                output.append(proc.communicate()[0])
            print(f"--- livedata serve output ---\n{output[0]}")
        return output[0]

    try:
        wait_listening(port, proc)
        yield port, pg, stop
    finally:
        stop()
        pg.discard()


def login_message(msg_id: str) -> dict:
    return {
        "msg": "method",
        "id": msg_id,
        "method": "login",
        "params": [{"user": {"username": "demo"}, "password": "demo-password"}],
    }


def add_book(msg_id: str, title: str) -> dict:
    return {
        "msg": "method",
        "id": msg_id,
        "method": "test.addBook",
        "params": [title, "j@example.com"],
    }


def test_requests_wait_for_a_database_that_comes_back(outage) -> None:
    port, pg, _ = outage
    writer, reader, user = connected(port), connected(port), connected(port)
    writer.send(add_book("w0", "Before"))
    assert "result" in answer(writer, "w0", 10)
    pg.stop()
    started = time.monotonic()
    writer.send(add_book("w1", "During"))
    reader.send(
        {"msg": "sub", "id": "s1", "name": "BooksByAuthorEmail", "params": ["j@example.com"]}
    )
    user.send(login_message("l1"))
    nothing_yet(writer, 0.5)
    pg.start()
    assert time.monotonic() - started < WAIT, "the restart took longer than the wait"
    result = answer(writer, "w1", WAIT + 10)
    assert "error" not in result and result["result"], result
    ready = answer(reader, "s1", WAIT + 10)
    assert ready["msg"] == "ready", ready
    logged_in = answer(user, "l1", WAIT + 10)
    assert logged_in["result"]["token"], logged_in
    with psycopg.connect(host=pg.socket_dir, dbname="database_wait", user="postgres") as db:
        titles = [r[0] for r in db.execute("SELECT title FROM livedata_demo_book ORDER BY id")]
    assert titles == ["Before", "During"]  # the retried transaction committed once
    for c in (writer, reader, user):
        c.close()


def test_a_longer_outage_answers_retryable_503_and_the_connection_serves_on(outage) -> None:
    port, pg, stop = outage
    writer, reader, user = connected(port), connected(port), connected(port)
    writer.send(add_book("w0", "Before"))
    assert "result" in answer(writer, "w0", 10)
    pg.stop()
    started = time.monotonic()
    writer.send(add_book("w1", "Never"))
    reader.send(
        {"msg": "sub", "id": "s1", "name": "BooksByAuthorEmail", "params": ["j@example.com"]}
    )
    user.send(login_message("l1"))
    failed = answer(writer, "w1", WAIT + 10)
    waited = time.monotonic() - started
    assert failed["error"]["error"] == 503, failed
    assert failed["error"]["reason"] == "Database unavailable"
    assert failed["error"]["details"]["retryable"] is True
    assert waited >= WAIT - 0.5, waited  # it waited for the database first
    nosub = answer(reader, "s1", WAIT + 10)
    assert nosub["msg"] == "nosub" and nosub["error"]["error"] == 503, nosub
    refused = answer(user, "l1", WAIT + 10)
    assert refused["error"]["error"] == 503, refused
    # the connections still serve: a method without the database, then with it again
    writer.send({"msg": "ping", "id": "p"})
    assert writer.until(lambda m: m.get("msg") == "pong")[-1] == {"msg": "pong", "id": "p"}
    writer.send({"msg": "method", "id": "h", "method": "test.sleep", "params": [0]})
    assert answer(writer, "h", 10)["result"] == 0  # async, no query: answered at once
    pg.start()
    writer.send(add_book("w2", "After"))
    assert "result" in answer(writer, "w2", WAIT + 10)
    reader.send(
        {"msg": "sub", "id": "s2", "name": "BooksByAuthorEmail", "params": ["j@example.com"]}
    )
    assert answer(reader, "s2", WAIT + 10)["msg"] == "ready"
    for c in (writer, reader, user):
        c.close()
    log = stop()
    assert "Database unavailable" in log or "stayed unreachable" in log, log
    assert "Internal server error" not in log and "while invoking method" not in log, log
    assert "publication 'BooksByAuthorEmail' failed" not in log, log
