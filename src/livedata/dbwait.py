"""Waiting out a database outage in methods, logins and new subscriptions.

When PostgreSQL restarts or fails over, the work a DDP client asked for would fail with
the driver's ``OperationalError`` (a 500 to the client). Instead, ``run_waiting`` retries
it with back-off for up to ``LIVEDATA["DDP_DATABASE_WAIT"]`` seconds, and then raises
``DatabaseUnavailable``: Meteor's error 503 "Database unavailable", which the client may
retry (Meteor's clients resubscribe after a ``nosub`` error on reconnect, and an app
calls the method again), and which is neither a traceback nor a closed connection.

Only work that is safe to run again is retried, and only when the connection was lost
(no connection, or a broken or closed one: not a deadlock or a constraint):

- reading (a subscription's initial query, a permission check);
- a method's transaction that had not started to commit: its writes were rolled back
  by the server with the connection, so the method runs again from the start. Keep a
  method's effects outside the database after the commit (``transaction.on_commit``), as
  Django advises anyway;
- never a commit whose answer was lost (it may have committed: ``commit_unknown`` says
  so to the client), nor a method that runs outside a transaction (``atomic=False``)
  once it started: only the wait for a first connection is retried there.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

from livedata.ddp.errors import DDPError

T = TypeVar("T")

logger = logging.getLogger("livedata.server")

#: Back-off between attempts: first and longest sleep (s).
FIRST_DELAY = 0.05
LONGEST_DELAY = 1.0


class DatabaseUnavailable(DDPError):
    """The database stayed away longer than ``DDP_DATABASE_WAIT``: retry later."""

    def __init__(self, waited: float) -> None:
        super().__init__(
            503,
            "Database unavailable",
            {"retryable": True, "waited": round(waited, 3)},
        )


def commit_unknown() -> DDPError:
    """The connection was lost while committing: the method may have taken effect."""
    return DDPError(
        503,
        "Database connection lost while committing: the method may or may not have taken effect",
        {"retryable": False},
    )


def is_database_error(exc: BaseException) -> bool:
    from django.db import InterfaceError, OperationalError

    return isinstance(exc, OperationalError | InterfaceError)


def connection_lost(exc: BaseException) -> bool:
    """Whether ``exc`` (raised in this thread) means this thread's connection is gone."""
    if not is_database_error(exc):
        return False
    from django.db import connection

    raw = connection.connection
    return raw is None or bool(getattr(raw, "closed", False) or getattr(raw, "broken", False))


def forget_connection() -> None:
    """Drop this thread's broken connection; the next use connects again."""
    from django.db import connections

    for conn in connections.all(initialized_only=True):
        try:
            conn.close()
        except Exception:  # closing a dead connection may fail: it is gone anyway
            conn.connection = None


def ensure_connection() -> None:
    """Connect now, when no connection is open (so the wait happens before any work)."""
    from django.db import connection

    connection.ensure_connection()


def run_waiting(wait: float, func: Callable[..., T], *args: Any) -> T:
    """``func(*args)`` in this (pool) thread, run again while the database is away, for
    up to ``wait`` seconds from the first failure; then ``DatabaseUnavailable``."""
    from livedata.dbthreads import usable_connection

    started: float | None = None
    delay = FIRST_DELAY
    while True:
        try:
            usable_connection()
            return func(*args)
        except Exception as exc:
            if not connection_lost(exc):
                raise
            now = time.monotonic()
            if started is None:
                started = now
                logger.warning(
                    "livedata: the database is unreachable (%s); waiting up to %.1f s",
                    _first_line(exc),
                    wait,
                )
            forget_connection()
            left = started + wait - now
            if left <= 0:
                logger.warning(
                    "livedata: the database stayed unreachable for %.1f s: "
                    "answering 503 Database unavailable",
                    now - started,
                )
                raise DatabaseUnavailable(now - started) from None
            time.sleep(min(delay, left))
            delay = min(delay * 2, LONGEST_DELAY)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:200]
