"""``livedata serve`` processes with a broker: one of them reads the log, and a change
reaches the DDP clients of every process."""

from __future__ import annotations

import contextlib
import json
import time

import psycopg
import pytest

from tests.capture.redis_server import RedisServer, wait_for
from tests.server.conftest import _serve
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
    serve = contextlib.contextmanager(_serve)
    with contextlib.ExitStack() as stack:
        stack.callback(broker.stop)
        db = stack.enter_context(psycopg.connect(**db_params, autocommit=True))
        clients = []
        for _ in range(2):
            client = Client(stack.enter_context(serve("", LIVEDATA_SETTINGS=settings)))
            stack.callback(client.close)
            client.recv()
            client.send(CONNECT)
            client.recv()
            client.send({"msg": "sub", "id": "all", "name": "AllBooks", "params": []})
            assert client.recv()["msg"] == "ready"
            clients.append(client)
        wait_for(lambda: db.execute(LEADER_LOCKS).fetchone()[0] == 1, 10, "one leader")
        author = db.execute(
            "INSERT INTO livedata_demo_author (name, email) VALUES ('J', 'j@x.org') RETURNING id"
        ).fetchone()[0]
        db.execute(
            "INSERT INTO livedata_demo_book (title, author_id) VALUES ('Dune', %s)", [author]
        )
        for client in clients:
            deadline = time.monotonic() + 10
            while True:
                message = client.recv(timeout=max(0.1, deadline - time.monotonic()))
                if message.get("collection") == "livedata_demo.book":
                    break
            assert message["msg"] == "added" and message["fields"]["title"] == "Dune"
        assert db.execute(LEADER_LOCKS).fetchone()[0] == 1
