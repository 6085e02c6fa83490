"""PostgreSQL restarts under a live server: subscribed clients end with exactly the
database's state (changes made while the listener reconnects are not lost)."""

from __future__ import annotations

import subprocess
import time

import psycopg

from tests.conftest import private_database, spawn_livedata
from tests.server.conftest import free_port, stop, wait_listening
from tests.server.test_websocket import CONNECT, Client


def test_clients_converge_to_the_database_after_a_restart(tmp_path):
    from livedata.embedded.server import ensure_server

    server = ensure_server(tmp_path / "pgdata")
    env = private_database(server, "restart_serve")
    params = {"host": server.socket_dir, "dbname": "restart_serve", "user": "postgres"}
    db = psycopg.connect(**params, autocommit=True)
    author_id = db.execute(
        "INSERT INTO livedata_demo_author (name, email) VALUES ('J', 'j@example.com') RETURNING id"
    ).fetchone()[0]
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
    view: dict[tuple[str, str], dict] = {}

    def apply(message: dict) -> None:
        key = (message.get("collection"), message.get("id"))
        if message["msg"] == "added":
            view[key] = dict(message.get("fields", {}))
        elif message["msg"] == "changed":
            view[key].update(message.get("fields", {}))
            for name in message.get("cleared", []):
                view[key].pop(name, None)
        elif message["msg"] == "removed":
            del view[key]

    def database_state() -> dict:
        rows = db.execute("SELECT id, title, author_id FROM livedata_demo_book").fetchall()
        state = {("livedata_demo.book", str(i)): {"title": t, "author_id": a} for i, t, a in rows}
        state[("livedata_demo.author", str(author_id))] = {"name": "J", "email": "j@example.com"}
        return state

    def converge(client: Client, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while view != database_state():
            assert time.monotonic() < deadline, (view, database_state())
            try:
                message = client.recv(timeout=0.5)
            except TimeoutError:
                continue
            if message.get("msg") == "ping":
                client.send({"msg": "pong"})
            apply(message)

    try:
        wait_listening(port, proc)
        client = Client(f"127.0.0.1:{port}")
        client.recv()
        client.send(CONNECT)
        client.recv()
        client.send({"msg": "sub", "id": "all", "name": "AllBooks", "params": []})
        for i in range(5):
            db.execute(
                "INSERT INTO livedata_demo_book (title, author_id) VALUES (%s, %s)",
                [f"a{i}", author_id],
            )
        converge(client)

        db.close()
        server.stop()
        time.sleep(1.0)
        server.start()
        db = psycopg.connect(**params, autocommit=True)
        for i in range(5):  # right after the restart: the listener may still be away
            db.execute(
                "INSERT INTO livedata_demo_book (title, author_id) VALUES (%s, %s)",
                [f"b{i}", author_id],
            )
        db.execute("UPDATE livedata_demo_book SET title = 'changed' WHERE title = 'a0'")
        db.execute("DELETE FROM livedata_demo_book WHERE title = 'a1'")
        converge(client)
        assert len([k for k in view if k[0] == "livedata_demo.book"]) == 9
        client.close()
    finally:
        stop(proc)
        db.close()
        server.discard()
