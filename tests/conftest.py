"""Shared fixtures: real PostgreSQL connections to the test database, log helpers."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from livedata.capture import log
from livedata.capture.listener import connection_params
from livedata.capture.log import ChangeRow, Position

ROOT = Path(__file__).resolve().parent.parent
#: PYTHONPATH of child processes: this checkout's code first (the venv may hold an
#: editable install of another checkout), and the tests' settings
CHILD_PYTHONPATH = os.pathsep.join([str(ROOT / "src"), str(ROOT)])


@pytest.fixture(scope="session", autouse=True)
def _close_api_threads(django_db_setup: None, django_db_blocker: Any) -> Iterator[None]:
    """Async API views in this process leave pooled connections open: close them before
    pytest-django drops the test database."""
    yield
    from livedata.httpapi.views import close_db_threads

    with django_db_blocker.unblock():
        close_db_threads()


@pytest.fixture
def db_params(transactional_db: None) -> dict[str, Any]:
    """psycopg.connect() arguments for the test database (tables flushed after the test)."""
    return connection_params()


@pytest.fixture
def connect(db_params: dict[str, Any]) -> Iterator[Callable[..., psycopg.Connection]]:
    """Open extra real connections (another service, psql, a second writer)."""
    opened: list[psycopg.Connection] = []

    def _connect(autocommit: bool = True) -> psycopg.Connection:
        conn = psycopg.connect(**db_params, autocommit=autocommit)
        opened.append(conn)
        return conn

    yield _connect
    for conn in opened:
        conn.close()


@pytest.fixture
def head(connect: Callable[..., psycopg.Connection]) -> Position:
    """The log's head when the test starts: tests look only at what they wrote."""
    return log.head(connect())


def settle(conn: psycopg.Connection, timeout: float = 30.0) -> None:
    """Wait until every transaction that had started by now has ended.

    Any transaction with an xid (e.g. autovacuum's ANALYZE on a fresh test database) holds
    back the log's visibility horizon; tests that assert exact results wait it out.
    """
    import time

    target = conn.execute("SELECT pg_snapshot_xmax(pg_current_snapshot())").fetchone()[0]
    deadline = time.monotonic() + timeout
    while conn.execute("SELECT pg_snapshot_xmin(pg_current_snapshot()) < %s", [target]).fetchone()[
        0
    ]:
        if time.monotonic() > deadline:
            raise AssertionError("a transaction stayed open: the log cannot become visible")
        time.sleep(0.01)


@pytest.fixture
def read_since(connect: Callable[..., psycopg.Connection]) -> Callable[..., list[ChangeRow]]:
    """Everything committed after ``position`` (waits for transactions still in flight)."""
    conn = connect()

    def _read(position: Position, models: list[str] | None = None) -> list[ChangeRow]:
        settle(conn)
        rows: list[ChangeRow] = []
        while True:
            batch = log.read_batch(conn, position, limit=1000, models=models)
            rows.extend(batch.rows)
            position = batch.end
            if batch.caught_up:
                return rows

    return _read


def livedata_env(**extra: str) -> dict[str, str]:
    """Environment for a child ``livedata`` process using the test database."""
    from django.db import connection

    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "PYTHONPATH": CHILD_PYTHONPATH,
        "LIVEDATA_DB_NAME": connection.settings_dict["NAME"],
        "PYTHONUNBUFFERED": "1",
    }
    env.update(extra)
    return env


def private_database(pg: Any, dbname: str, **extra: str) -> dict[str, str]:
    """Migrate ``dbname`` on a throwaway embedded PostgreSQL (``pg``, which a test may
    stop and start); returns the environment for livedata child processes using it.
    ``extra`` adds variables (``LIVEDATA_SETTINGS``, ``LIVEDATA_TEST_OVERRIDES``...)."""
    ignored = ("DATABASE_URL", "LIVEDATA_TEST_OVERRIDES", "LIVEDATA_SETTINGS")
    env = {k: v for k, v in os.environ.items() if k not in ignored}
    env.update(
        DJANGO_SETTINGS_MODULE="tests.settings",
        PYTHONPATH=CHILD_PYTHONPATH,
        LIVEDATA_PGDATA=str(pg.data_dir),
        LIVEDATA_DB_NAME=dbname,
        **extra,
    )
    subprocess.run(livedata_cmd("migrate", "-v0"), env=env, check=True, cwd=ROOT, timeout=120)
    return env


def livedata_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "livedata", *args]


def spawn_livedata(
    *args: str,
    stderr: int = subprocess.PIPE,
    environ: dict[str, str] | None = None,
    **env: str,
) -> subprocess.Popen:
    """Start a ``livedata`` child process (text pipes) on the test database, or in
    ``environ`` when given (``private_database``'s, for a throwaway PostgreSQL)."""
    return subprocess.Popen(
        livedata_cmd(*args),
        env=livedata_env(**env) if environ is None else {**environ, **env},
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
        cwd=ROOT,
    )


def run_livedata(*args: str, timeout: float = 60, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        livedata_cmd(*args),
        env=livedata_env(**env),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )


# `livedata serve` fixtures (defined with the server tests), for every test directory
from tests.server.conftest import ddp, fast_heartbeat_server, server  # noqa: E402, F401
