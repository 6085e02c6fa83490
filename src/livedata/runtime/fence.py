"""The write fence's SQL, and a sync method's transaction (in a pool thread).

A method's writes are fenced on a snapshot taken after they committed: ``updated`` is
sent once the live queries were handed everything that snapshot sees. Methods reach
this module as ``Invocable`` (``livedata.publish.methods.Method`` is one): the runtime
runs them without knowing the method registry.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Protocol

from livedata import dbthreads
from livedata.capture.log import Snapshot
from livedata.dbwait import (
    commit_unknown,
    connection_lost,
    ensure_connection,
    forget_connection,
    run_waiting,
)

logger = logging.getLogger("livedata.server")

__all__ = ["Invocable", "fence_snapshot", "run_sync", "run_waiting"]


class Invocable(Protocol):
    """What the runtime needs of a method to run it."""

    func: Callable[..., Any]
    pool: str
    atomic: bool
    login_required: bool
    permission_required: Any

    @property
    def is_async(self) -> bool: ...

    def bind(self, call: Any, params: list[Any]) -> Any: ...

    def check_access(self, user: Any) -> None: ...


def run_sync(method: Invocable, call: Any, bound: Any, wait: float) -> tuple[Any, Snapshot | None]:
    """A sync method in a worker thread, in a transaction; returns (result, fence).

    While the database is away (``DDP_DATABASE_WAIT``, see ``livedata.dbwait``) the access
    check and the method's transaction are run again; a method outside a transaction
    only waits for its first connection."""
    run_waiting(wait, _prepare, method, call)
    if not method.atomic:
        result = method.func(*bound.args, **bound.kwargs)
        return result, fence_snapshot()
    result, wrote = run_waiting(wait, _in_transaction, method, bound)
    return result, fence_snapshot() if wrote else None


def _prepare(method: Invocable, call: Any) -> None:
    ensure_connection()
    method.check_access(call.user)


def _in_transaction(method: Invocable, bound: Any) -> tuple[Any, bool]:
    """The method in a transaction: (result, whether it wrote)."""
    from django.db import connection, transaction

    committing = False
    try:
        with transaction.atomic():
            result = method.func(*bound.args, **bound.kwargs)
            with connection.cursor() as cur:
                cur.execute("SELECT pg_current_xact_id_if_assigned() IS NOT NULL")
                wrote = cur.fetchone()[0]
            committing = True
    except Exception as exc:
        if committing and connection_lost(exc):
            raise commit_unknown() from None  # it may have committed: never run it again
        raise
    return result, wrote


def fence_snapshot() -> Snapshot | None:
    """The fence after a commit (None when the database went away since: then
    ``updated`` is not held back)."""
    from django.db import connection

    try:
        dbthreads.usable_connection()
        return _current_snapshot(connection)
    except Exception as exc:
        if not connection_lost(exc):
            raise
        forget_connection()
        logger.warning("livedata: no write fence (the database went away after the commit)")
        return None


def _current_snapshot(connection: Any) -> Snapshot:
    """A snapshot taken now: it sees every write that has committed (the fence for
    writes we cannot name, and for a transaction right after its commit)."""
    with connection.cursor() as cur:
        cur.execute("SELECT pg_current_snapshot()::text")
        return Snapshot.parse(cur.fetchone()[0])
