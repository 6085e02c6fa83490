"""Worker threads that keep their database connection between jobs.

Methods, live-query refreshes and the HTTP APIs' async views run Django's (sync) ORM in
a few pooled threads. Each thread keeps its connection: reconnecting per job cost more
than the job. ``usable_connection`` runs first in every job (``with_connection``: the
code submitting a job wraps it, so the job itself need not check again) and drops a
connection that broke since (the database restarted), so it is reopened on first use;
``close_all`` closes every thread's connection when the pool is done (before a test
database is dropped, at shutdown). ``LazyPool`` is such a pool made on first use, for
the HTTP API views (processes that never serve them start no threads).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


def usable_connection() -> None:
    """Drop this thread's connections that broke since their last use."""
    from django.db import connections

    for conn in connections.all(initialized_only=True):
        if conn.connection is not None and (conn.errors_occurred or not conn.is_usable()):
            conn.close()
        conn.errors_occurred = False


def with_connection(func: Any, *args: Any) -> Any:
    """``func(*args)`` in a pool thread, on a usable connection."""
    usable_connection()
    return func(*args)


def close_all(pool: ThreadPoolExecutor, workers: int) -> None:
    """Close the connection of each of the pool's ``workers`` threads (one job per
    thread, held together by a barrier so no thread takes two)."""
    from django.db import connections

    barrier = threading.Barrier(workers, timeout=5)

    def close() -> None:
        connections.close_all()
        with contextlib.suppress(threading.BrokenBarrierError):
            barrier.wait()

    for job in [pool.submit(close) for _ in range(workers)]:
        job.result()


class LazyPool:
    """Worker threads with lasting connections, started on the first job."""

    def __init__(self, name: str, size: Callable[[], int]) -> None:
        self.name = name
        self._size = size
        self._pool: tuple[ThreadPoolExecutor, int] | None = None

    async def run(self, func: Callable[..., T], *args: Any) -> T:
        """``func(*args)`` in one of the pool's threads, on a usable connection."""
        if self._pool is None:
            size = self._size()
            self._pool = (ThreadPoolExecutor(size, thread_name_prefix=self.name), size)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool[0], with_connection, func, *args)

    def close(self) -> None:
        """Close the threads' connections and the pool (it is made again if used)."""
        pool, self._pool = self._pool, None
        if pool is not None:
            close_all(*pool)
            pool[0].shutdown()
