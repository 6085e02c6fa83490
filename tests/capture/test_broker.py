"""A cluster of three processes fed through the broker: one leader reads the log, all
consume; killing the leader, stopping the broker, cutting every database session or
restarting PostgreSQL loses nothing and delivers nothing twice.

Each test runs its own redis-server on a free port (stopped by the test, never the
machine's), three ``tests.capture.broker_node`` processes (a ``ClusterListener`` whose
consumer writes every row id it is handed to a file) and one writer committing a row at
a time; every process must end with exactly the log's rows, in order, each once.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.capture.redis_server import RedisServer, wait_for
from tests.conftest import ROOT, livedata_env, private_database

pytestmark = pytest.mark.django_db(transaction=True)

NODES = ("a", "b", "c")
NODE_APP = "livedata_broker_node"


class Cluster:
    def __init__(self, directory: Path, url: str, env: dict[str, str] | None = None) -> None:
        self.directory = directory
        self.url = url
        self.env = env
        self.procs: dict[str, subprocess.Popen] = {}
        #: the log's last row before the processes started (the flush of an earlier test
        #: may leave rows: a TRUNCATE is captured)
        self.after = 0

    def start(self, name: str) -> None:
        log = (self.directory / f"{name}.log").open("a")
        self.procs[name] = subprocess.Popen(
            [
                os.sys.executable,
                "-m",
                "tests.capture.broker_node",
                str(self.directory),
                name,
                self.url,
            ],
            # their sessions are the ones a test cuts (not this process's own)
            env={**(self.env or livedata_env()), "PGAPPNAME": NODE_APP},
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )

    def state(self, name: str) -> dict[str, Any]:
        try:
            return json.loads((self.directory / f"{name}.json").read_text())
        except (OSError, ValueError):
            return {}

    def rows(self, name: str) -> list[int]:
        path = self.directory / f"{name}.rows"
        return [int(line) for line in path.read_text().split()] if path.exists() else []

    def live(self) -> list[str]:
        return [n for n, p in self.procs.items() if p.poll() is None]

    def leaders(self) -> list[str]:
        return [n for n in self.live() if self.state(n).get("leading")]

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for name, proc in self.procs.items():
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
            print(f"--- {name} ---\n{(self.directory / f'{name}.log').read_text()}")


class Writer:
    """Commits one author at a time until stopped (riding out a database cut)."""

    def __init__(self, params: dict[str, Any]) -> None:
        self.params = params
        self.count = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Writer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        conn: psycopg.Connection | None = None
        while not self._stop.is_set():
            try:
                if conn is None or conn.closed or conn.broken:
                    conn = psycopg.connect(**self.params, autocommit=True)
                conn.execute(
                    "INSERT INTO livedata_demo_author (name, email) VALUES (%s, %s)",
                    [f"w{self.count}", f"w{self.count}@example.com"],
                )
                self.count += 1
            except psycopg.OperationalError:
                conn = None
                time.sleep(0.05)
            time.sleep(0.01)
        if conn is not None:
            conn.close()


def start_cluster(nodes: Cluster, db_params: dict[str, Any]) -> None:
    nodes.after = max(log_ids(db_params), default=0)
    for name in NODES:
        nodes.start(name)
    wait_for(lambda: all(nodes.state(n).get("started") for n in NODES), 60, "3 processes")
    wait_for(lambda: len(nodes.leaders()) == 1, 10, "a leader")


@pytest.fixture
def cluster(tmp_path: Path, db_params: dict[str, Any]) -> Iterator[tuple[Cluster, RedisServer]]:
    broker = RedisServer(tmp_path)
    broker.start()
    nodes = Cluster(tmp_path, broker.url)
    try:
        start_cluster(nodes, db_params)
        yield nodes, broker
    finally:
        nodes.stop()
        broker.stop()


def log_ids(db_params: dict[str, Any], after: int = 0) -> list[int]:
    with psycopg.connect(**db_params) as conn:
        query = "SELECT id FROM livedata_change WHERE id > %s ORDER BY id"
        return [r[0] for r in conn.execute(query, [after]).fetchall()]


def converge(nodes: Cluster, db_params: dict[str, Any], names: list[str]) -> None:
    """Every process in ``names`` ends with exactly the log's rows, in order, each once."""
    expected = log_ids(db_params, nodes.after)
    assert expected, "nothing was written"
    deadline = time.monotonic() + 30
    while any(len(nodes.rows(n)) < len(expected) for n in names):
        got = {n: len(nodes.rows(n)) for n in names}
        assert time.monotonic() < deadline, f"{len(expected)} rows in the log, got {got}"
        time.sleep(0.1)
    time.sleep(0.5)  # a duplicate delivered late would show now
    for name in names:
        assert nodes.rows(name) == expected, name


def progress(nodes: Cluster, names: list[str]) -> Callable[[], bool]:
    """True once every process in ``names`` got rows it did not have when asked."""
    before = {n: len(nodes.rows(n)) for n in names}
    return lambda: all(len(nodes.rows(n)) > before[n] for n in names)


def test_killing_the_leader_hands_the_stream_to_another_and_loses_nothing(cluster, db_params):
    nodes, _ = cluster
    with Writer(db_params):
        wait_for(progress(nodes, list(NODES)), 10, "rows through the broker")
        (leader,) = nodes.leaders()
        os.kill(nodes.procs[leader].pid, signal.SIGKILL)
        killed = time.monotonic()
        nodes.procs[leader].wait(timeout=10)
        wait_for(lambda: len(nodes.leaders()) == 1, 5, "a new leader within 5 s")
        assert time.monotonic() - killed < 5
        rest = nodes.live()
        wait_for(progress(nodes, rest), 10, "rows from the new leader")
    assert all(nodes.state(n)["source"] == "broker" for n in rest)
    converge(nodes, db_params, rest)


def test_stopping_the_broker_falls_back_to_postgresql_and_returns(cluster, db_params):
    nodes, broker = cluster
    with Writer(db_params):
        wait_for(progress(nodes, list(NODES)), 10, "rows through the broker")
        broker.stop()
        stopped = time.monotonic()
        wait_for(
            lambda: all(nodes.state(n).get("source") == "database" for n in NODES),
            5,
            "every process reading PostgreSQL",
        )
        wait_for(progress(nodes, list(NODES)), 5, "rows read from PostgreSQL")
        time.sleep(max(0.0, 10 - (time.monotonic() - stopped)))  # a 10 s outage
        assert not nodes.leaders()
        taken = {n: nodes.state(n)["broker_batches"] for n in NODES}
        broker.start()
        wait_for(
            lambda: all(
                nodes.state(n).get("source") == "broker"
                and nodes.state(n)["broker_batches"] > taken[n]
                for n in NODES
            ),
            15,
            "every process back on the broker",
        )
        wait_for(lambda: len(nodes.leaders()) == 1, 5, "a leader")
    converge(nodes, db_params, list(NODES))


def test_cutting_postgresql_loses_nothing(cluster, db_params):
    nodes, _ = cluster
    with Writer(db_params):
        wait_for(progress(nodes, list(NODES)), 10, "rows through the broker")
        with psycopg.connect(**db_params, autocommit=True) as conn:
            # every session of the cluster: the leader's lock and reads, the standbys',
            # catch-ups (and only theirs: pytest's own goes on)
            cut = conn.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND application_name = %s",
                [NODE_APP],
            ).fetchone()[0]
        assert cut >= 3  # one lock session per process at least
        wait_for(lambda: len(nodes.leaders()) == 1, 10, "a leader again")
        wait_for(progress(nodes, list(NODES)), 10, "rows after the cut")
    converge(nodes, db_params, list(NODES))


def test_restarting_postgresql_loses_nothing(tmp_path):
    """A real restart, on a throwaway embedded server as tests/server/test_restart.py does
    (the machine's PostgreSQL is shared): every session goes, and connecting fails until
    it is back."""
    from livedata.embedded.server import ensure_server

    server = ensure_server(tmp_path / "pgdata")
    env = private_database(server, "restart_broker")
    params = {"host": server.socket_dir, "dbname": "restart_broker", "user": "postgres"}
    broker = RedisServer(tmp_path)
    broker.start()
    nodes = Cluster(tmp_path, broker.url, env)
    try:
        start_cluster(nodes, params)
        with Writer(params):
            wait_for(progress(nodes, list(NODES)), 10, "rows through the broker")
            server.stop()
            time.sleep(1.0)
            server.start()
            wait_for(lambda: len(nodes.leaders()) == 1, 15, "a leader again")
            wait_for(progress(nodes, list(NODES)), 15, "rows after the restart")
        converge(nodes, params, list(NODES))
    finally:
        nodes.stop()
        broker.stop()
        server.discard()
