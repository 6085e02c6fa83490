"""Worker threads that keep their database connection between jobs.

Methods, live-query refreshes and the HTTP APIs' async views run Django's (sync) ORM in
a few pooled threads. Each thread keeps its connection: reconnecting per job cost more
than the job. ``usable_connection`` runs first in every job and drops a connection that
broke since (the database restarted), so it is reopened on first use; ``close_all``
closes every thread's connection when the pool is done (before a test database is
dropped, at shutdown).
"""

from __future__ import annotations

import contextlib
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any


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
