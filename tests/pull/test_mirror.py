"""``livedata mirror`` against a live ``livedata serve`` while many writers run long,
interleaved transactions that commit out of order: once the writers stop, the mirror
equals the source row for row. Also across kills of the mirror (mid-snapshot and
mid-stream) and a restart of PostgreSQL."""

from __future__ import annotations

import random
import subprocess
import threading
import time
from collections.abc import Callable

import psycopg
import pytest

from tests.conftest import ROOT, livedata_cmd, private_database, spawn_livedata
from tests.server.conftest import free_port, stop, wait_listening

SOURCE = "SELECT id, title, author_id FROM livedata_demo_book ORDER BY id"
MIRROR = "SELECT id, title, author_id FROM testapp_bookcopy ORDER BY id"


class Writers:
    """Threads that insert, update and delete books in transactions of random length;
    some take their xid first and write last, so commit order differs from xid order."""

    def __init__(self, connect: Callable[[], psycopg.Connection], authors: list[int], n: int):
        self.connect = connect
        self.authors = authors
        self.stopping = threading.Event()
        self.commits = 0
        self.errors: list[BaseException] = []
        self.threads = [threading.Thread(target=self._run, args=(i,)) for i in range(n)]

    def __enter__(self) -> Writers:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join()
        assert not self.errors, self.errors

    def _run(self, seed: int) -> None:
        rng = random.Random(seed)
        conn: psycopg.Connection | None = None
        try:
            while not self.stopping.is_set():
                try:
                    if conn is None or conn.closed:
                        conn = self.connect()
                    self._transaction(conn, rng)
                except (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure):
                    conn.rollback()
                except psycopg.OperationalError:  # the database restarting
                    if conn is not None:
                        conn.close()
                    conn = None
                    time.sleep(0.2)
                except BaseException as exc:  # pragma: no cover - reported by stop()
                    self.errors.append(exc)
                    return
        finally:
            if conn is not None:
                conn.close()

    def _transaction(self, conn: psycopg.Connection, rng: random.Random) -> None:
        if rng.random() < 0.3:  # take an xid early, write late: commits out of xid order
            conn.execute("SELECT pg_current_xact_id()")
            time.sleep(rng.uniform(0.05, 0.4))
        for _ in range(rng.randint(1, 6)):
            roll = rng.random()
            ids = [
                r[0]
                for r in conn.execute(
                    "SELECT id FROM livedata_demo_book TABLESAMPLE SYSTEM (5) LIMIT 3"
                )
            ]
            if roll < 0.4 or not ids:
                conn.execute(
                    "INSERT INTO livedata_demo_book (title, author_id) SELECT 'w' || g, %s "
                    "FROM generate_series(1, %s) g",
                    [rng.choice(self.authors), rng.randint(1, 3)],
                )
            elif roll < 0.8:
                conn.execute(
                    "UPDATE livedata_demo_book SET title = %s, author_id = %s WHERE id = %s",
                    [f"u{rng.random():.6f}", rng.choice(self.authors), rng.choice(ids)],
                )
            else:
                conn.execute("DELETE FROM livedata_demo_book WHERE id = %s", [rng.choice(ids)])
            time.sleep(rng.uniform(0, 0.05))
        if rng.random() < 0.1:
            conn.rollback()
        else:
            conn.commit()
            self.commits += 1


def _seed(db: psycopg.Connection, rows: int) -> list[int]:
    authors = [
        db.execute(
            "INSERT INTO livedata_demo_author (name, email) VALUES (%s, %s) RETURNING id",
            [f"A{i}", f"a{i}-{time.time_ns()}@example.com"],
        ).fetchone()[0]
        for i in range(5)
    ]
    db.execute(
        "INSERT INTO livedata_demo_book (title, author_id) "
        "SELECT 'seed ' || g, (%s::bigint[])[1 + g %% 5] FROM generate_series(1, %s) g",
        [authors, rows],
    )
    return authors


def _position(db: psycopg.Connection) -> tuple[str, int, int] | None:
    row = db.execute(
        "SELECT phase, snapshot_rows, changes FROM livedata_mirror_position"
    ).fetchone()
    return (row[0], row[1], row[2]) if row else None


def _wait(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def _converge(db: psycopg.Connection, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while True:
        source, mirror = db.execute(SOURCE).fetchall(), db.execute(MIRROR).fetchall()
        if source == mirror:
            return
        if time.monotonic() > deadline:
            missing = set(source) - set(mirror)
            extra = set(mirror) - set(source)
            raise AssertionError(
                f"mirror differs: {len(source)} vs {len(mirror)} rows; "
                f"missing {sorted(missing)[:5]}, extra {sorted(extra)[:5]}"
            )
        time.sleep(0.2)


@pytest.mark.slow
def test_mirror_equals_source_with_out_of_order_writers_and_kills(
    server, token, connect, db_params
):
    db = connect()
    authors = _seed(db, 20_000)

    def mirror() -> subprocess.Popen:
        return spawn_livedata(
            "mirror",
            f"http://{server}/livedata/",
            "livedata_demo.book",
            "--into",
            "testapp.BookCopy",
            "--limit",
            "100",
            stderr=subprocess.STDOUT,
            LIVEDATA_TOKEN=token,
        )

    outputs: list[str] = []

    def kill(proc: subprocess.Popen) -> None:
        proc.kill()
        outputs.append(proc.communicate()[0])
        print(outputs[-1])

    with Writers(lambda: psycopg.connect(**db_params), authors, n=6) as writers:
        proc = mirror()
        try:
            _wait(lambda: (_position(db) or ("", 0, 0))[1] >= 2000, 60, "snapshot rows")
            assert _position(db)[0] == "snapshot"
            kill(proc)  # mid-snapshot
            proc = mirror()
            _wait(lambda: (_position(db) or ("", 0, 0))[0] == "changes", 120, "the stream")
            _wait(lambda: _position(db)[2] >= 50, 60, "changes applied")
            kill(proc)  # mid-stream
            time.sleep(1.0)  # writers go on while no mirror runs
            proc = mirror()
            time.sleep(2.0)
            writers.stop()
            assert writers.commits > 50
            _converge(db)
        finally:
            kill(proc)
    output = "".join(outputs)
    assert "snapshot: " in output and "snapshot done: " in output
    assert "live: up to date" in output


@pytest.mark.slow
def test_mirror_survives_a_postgresql_restart(tmp_path):
    """Source, server and mirror on a private PostgreSQL that restarts mid-stream."""
    from livedata.embedded.server import ensure_server

    pg = ensure_server(tmp_path / "pgdata")
    env = private_database(pg, "restart_pull", LIVEDATA_TEST_OVERRIDES="1")
    params = {"host": pg.socket_dir, "dbname": "restart_pull", "user": "postgres"}
    db = psycopg.connect(**params, autocommit=True)
    authors = _seed(db, 500)
    token = (
        subprocess.run(
            livedata_cmd("shell", "-c", _TOKEN_SCRIPT),
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    port = free_port()
    run = {
        "env": env,
        "cwd": ROOT,
        "stdout": subprocess.PIPE,
        "stderr": subprocess.STDOUT,
        "text": True,
    }
    serve = subprocess.Popen(
        livedata_cmd("serve", "--port", str(port), "--log-level", "warning"), **run
    )
    mirror = None
    try:
        wait_listening(port, serve)
        mirror = subprocess.Popen(
            livedata_cmd(
                "mirror",
                f"http://127.0.0.1:{port}/livedata/",
                "livedata_demo.book",
                "--into",
                "testapp.BookCopy",
                "--limit",
                "100",
            ),
            **{**run, "env": {**env, "LIVEDATA_TOKEN": token}},
        )
        with Writers(lambda: psycopg.connect(**params), authors, n=3) as writers:
            _wait(lambda: (_position(db) or ("", 0, 0))[0] == "changes", 60, "the stream")
            time.sleep(1.0)
            db.close()
            pg.stop()
            time.sleep(1.5)
            pg.start()
            db = psycopg.connect(**params, autocommit=True)
            time.sleep(3.0)  # writers write again; server and mirror reconnect
            writers.stop()
            assert writers.commits > 10
        _converge(db)
    finally:
        if mirror is not None:
            mirror.kill()
            print(mirror.communicate()[0])
        stop(serve)
        db.close()
        pg.discard()


_TOKEN_SCRIPT = """
from django.contrib.auth.models import Permission, User
from livedata.accounts import tokens
user = User.objects.create_user("mirror")
user.user_permissions.add(Permission.objects.get(codename="view_book"))
print(tokens.issue(user, kind="api")[0])
"""
