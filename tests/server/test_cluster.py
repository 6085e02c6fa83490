"""``livedata serve`` processes with a broker: one of them reads the log, and a change
reaches the DDP clients of every process."""

from __future__ import annotations

import json
import subprocess
import time

import psycopg
import pytest

from tests.capture.redis_server import RedisServer, wait_for
from tests.conftest import spawn_livedata
from tests.server.conftest import free_port, stop, wait_listening
from tests.server.test_websocket import CONNECT, Client

pytestmark = pytest.mark.django_db(transaction=True)

#: sessions holding the leader's lock (livedata.capture.leader.LOCK_SQL) in this database
LEADER_LOCKS = (
    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 2 "
    "AND classid::int4 = hashtext('livedata.leader') AND objid::int4 = hashtext('livedata') "
    "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
)


def test_every_process_serves_changes_while_one_reads_the_log(tmp_path, db_params):
    broker = RedisServer(tmp_path)
    broker.start()
    settings = json.dumps({"LISTENER_BROKER_URL": broker.url})
    ports = [free_port() for _ in range(2)]
    procs = [
        spawn_livedata(
            "serve",
            "--port",
            str(port),
            "--log-level",
            "warning",
            stderr=subprocess.STDOUT,
            LIVEDATA_SETTINGS=settings,
        )
        for port in ports
    ]
    db = psycopg.connect(**db_params, autocommit=True)
    try:
        clients = []
        for port, proc in zip(ports, procs, strict=True):
            wait_listening(port, proc)
            client = Client(f"127.0.0.1:{port}")
            client.recv()
            client.send(CONNECT)
            client.recv()
            client.send({"msg": "sub", "id": "all", "name": "AllBooks", "params": []})
            assert client.recv()["msg"] == "ready"
            clients.append(client)
        wait_for(lambda: db.execute(LEADER_LOCKS).fetchone()[0] == 1, 10, "one leader")
        author = db.execute(
            "INSERT INTO bookstore_author (name, email) VALUES ('J', 'j@x.org') RETURNING id"
        ).fetchone()[0]
        db.execute("INSERT INTO bookstore_book (title, author_id) VALUES ('Dune', %s)", [author])
        for client in clients:
            deadline = time.monotonic() + 10
            while True:
                message = client.recv(timeout=max(0.1, deadline - time.monotonic()))
                if message.get("collection") == "bookstore.book":
                    break
            assert message["msg"] == "added" and message["fields"]["title"] == "Dune"
            client.close()
        assert db.execute(LEADER_LOCKS).fetchone()[0] == 1
    finally:
        db.close()
        for proc in procs:
            stop(proc)
        broker.stop()
