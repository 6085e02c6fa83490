"""Every live process's headline figures on the page, whichever process serves it.

With several processes (``livedata serve --workers 4`` shares one port) a page reaches
one of them. While it is open, the process serving it sends ``NOTIFY
livedata_dashboard`` with each refresh (in the refresh's one database call); every
process watches that channel through its listener (``Listener.watch``, NOTIFYs only:
not on connecting, so a start-up or a reconnect starts nothing). A notified process
starts one ``Reporter`` task that upserts its own row of ``livedata_dashboard_process``
(an UNLOGGED table) every ``DASHBOARD_INTERVAL`` and stops after ``QUIET_INTERVALS``
without a notification; the page's refresh reads the rows fresher than that.

**Closed, it costs nothing**: no NOTIFY is sent, so no task starts and no row is
written (``dashboard_cluster_reports_total`` stays 0; ``tests/dashboard/test_idle.py``).
Open, each process makes one upsert (with a ``DELETE`` of rows gone stale: processes
that stopped) per interval, and the page's process one NOTIFY and one read.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from typing import Any

from django.db import connection, transaction

from livedata.dashboard.reading import Reading, Snapshot
from livedata.dbthreads import with_connection
from livedata.runtime.figures import Figure

logger = logging.getLogger("livedata.server")

CHANNEL = "livedata_dashboard"
TABLE = "livedata_dashboard_process"
#: A process reports until this many intervals pass without a notification; a row older
#: than this many intervals is a process that stopped (readers skip it, writers delete it)
QUIET_INTERVALS = 3

_UPSERT = f"""
INSERT INTO {TABLE} (process, figures, at) VALUES (%s, %s::jsonb, now())
ON CONFLICT (process) DO UPDATE SET figures = EXCLUDED.figures, at = EXCLUDED.at
"""
_DELETE_STALE = f"DELETE FROM {TABLE} WHERE at < now() - make_interval(secs => %s)"
_LIVE = f"""
SELECT process, figures, at FROM {TABLE} WHERE at >= now() - make_interval(secs => %s)
ORDER BY process
"""


# --- the SQL (each in a pool thread, on Django's connection) ------------------------------
def notify() -> None:
    """Tell every process a page is open (sent when the transaction commits)."""
    with connection.cursor() as cursor:
        cursor.execute(f"NOTIFY {CHANNEL}")


def report(process: str, figures: dict[str, Any], stale_seconds: float) -> None:
    """This process's row, and rows of processes gone quiet deleted (one transaction)."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(_UPSERT, [process, json.dumps(figures, separators=(",", ":"))])
        cursor.execute(_DELETE_STALE, [stale_seconds])


def live(stale_seconds: float) -> list[dict[str, Any]]:
    """The rows of processes that reported within ``stale_seconds``."""
    with connection.cursor() as cursor:
        cursor.execute(_LIVE, [stale_seconds])
        rows = cursor.fetchall()
    return [
        {"process": p, "figures": f if isinstance(f, dict) else json.loads(f), "at": at}
        for p, f, at in rows
    ]


# --- what a process reports --------------------------------------------------------------
def headline(snapshot: Snapshot) -> dict[str, Any]:
    """A process's row: the figures of its "now" document (and its consumers' worst
    lag from "flow"), compact."""
    now, flow = snapshot.now, snapshot.flow
    cluster = now["leader"] or {}
    return {
        "sessions": now["sessions"],
        "subscriptions": sum(now["subscriptions"].values()),
        "observers": len(now["observers"]),
        "messages_per_s": now["messages_per_s"],
        "memory_bytes": now["memory_bytes"],
        "listener_connected": now["listener_connected"],
        "broker_connected": cluster.get("broker_connected"),
        "max_lag_seconds": max((c["lag_seconds"] for c in flow["consumers"]), default=0.0),
        "leader": cluster.get("is_leader"),
        "dashboard_subscribers": now["dashboard_subscribers"],
    }


class Reporter:
    """This process's reports to the table while some page is open anywhere."""

    def __init__(self, runtime: Any, reading: Reading, subscribers: Callable[[], int]) -> None:
        self.runtime = runtime
        self.reading = reading
        #: how many pages this process serves (a callable: the feed's count)
        self.subscribers = subscribers
        self.interval: float = runtime.settings.DASHBOARD_INTERVAL
        self.process = reading.process
        self.stale_seconds = QUIET_INTERVALS * self.interval
        self._last_notified = 0.0
        self._task: asyncio.Task[None] | None = None
        #: rows written (tests check it stays 0 while no page is open)
        self.reports = 0
        if runtime.listener is not None:
            runtime.listener.watch(CHANNEL, self.notified, on_connect=False)
        runtime.figures.add("dashboard cluster", self.figures)

    def figures(self) -> list[Figure]:
        return [
            Figure.one(
                "dashboard_cluster_reports_total",
                "counter",
                "rows this process wrote to the dashboard's process table (none while no "
                "page is open anywhere)",
                self.reports,
            )
        ]

    def notified(self) -> None:
        """A page is open somewhere (a NOTIFY, or this process's own refresh): report
        until they stop coming (on the event loop)."""
        self._last_notified = time.monotonic()
        if self._task is None:
            self.reading.reset()
            self._task = asyncio.get_running_loop().create_task(self._run())

    def _quiet(self) -> bool:
        return time.monotonic() - self._last_notified > self.stale_seconds

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while not self._quiet():
                row = headline(self.reading.take(dashboard_subscribers=self.subscribers()))
                try:
                    await loop.run_in_executor(
                        self.runtime.executor,
                        with_connection,
                        report,
                        self.process,
                        row,
                        self.stale_seconds,
                    )
                    self.reports += 1
                except Exception:
                    logger.exception("livedata: reporting to the dashboard's table failed")
                await asyncio.sleep(self.interval)
        finally:
            if self._task is asyncio.current_task():
                self._task = None
