"""The publication ``livedata.dashboard``: the process's figures and recent events, for
staff, served from memory by the DDP server itself.

Not a live query: its documents are made here and go to each subscriber's mergebox
(``session.publish_added`` / ``publish_diffs``, the ``Subscriber`` interface the engine
uses too). One ``Feed`` per DDP service; its documents are shared by every subscriber.

**Nothing runs without a subscriber.** The first subscription reads the last change rows
and starts one task that, every ``DASHBOARD_INTERVAL``, reads the board
(``runtime.figures``: what the Prometheus endpoint reads), the database's webhook and
mirror state (one pool-thread call), and sends what changed; the last one leaving stops
the task and drops the documents. Change rows reach the page as the listener hands the
live queries their batch (``on_batch``, called by ``server.app``), so an insert shows at
once; without subscribers a batch costs one counter addition per row (``changes_total``
by model, a figure of the board, kept always so the rates and the endpoint agree).

**Every process's figures.** The refresh's database call also sends ``NOTIFY
livedata_dashboard`` and reads the table of live processes (``cluster``): each process
notified reports its headline figures there for as long as refreshes go on, and each
row becomes a document of ``documents.PROCESSES``, removed when its process goes quiet.

Access: ``access.may_view`` (active staff with ``livedata.view_dashboard``), checked on
subscribe and again when the connection's user changes; others get ``nosub`` 403.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import Any

from livedata.capture.log import Batch
from livedata.dashboard import documents as docs
from livedata.dashboard import store
from livedata.dashboard.access import may_view_now
from livedata.dashboard.cluster import Reporter
from livedata.dashboard.reading import Reading
from livedata.dbthreads import with_connection
from livedata.ddp.errors import DDPError
from livedata.ddp.mergebox import message_for
from livedata.ddp.messages import serialize
from livedata.runtime.figures import Figure

logger = logging.getLogger("livedata.server")

PUBLICATION = "livedata.dashboard"

Key = tuple[str, str]  # (collection, id)


class Feed:
    """The dashboard publication of one process (see the module docstring)."""

    name = PUBLICATION

    def __init__(self, runtime: Any, engine: Any = None) -> None:
        self.runtime = runtime
        self.engine = engine
        conf = runtime.settings
        self.interval: float = conf.DASHBOARD_INTERVAL
        self.recent: int = conf.DASHBOARD_RECENT_CHANGES
        self.reading = Reading(runtime, engine, lambda: self.changes_by_model)
        self.process = self.reading.process
        #: this process's row in the cluster's table, while a page is open anywhere
        self.reporter = Reporter(
            runtime,
            Reading(runtime, engine, lambda: self.changes_by_model),
            lambda: len(self.subscribers),
        )
        #: (session, sub id) of every subscription, in arrival order
        self.subscribers: dict[tuple[Any, str], None] = {}
        #: the documents every subscriber holds: (collection, id) → fields
        self.documents: dict[Key, dict[str, Any]] = {}
        self._changes: deque[str] = deque()  # ids of the change rows shown, oldest first
        self._samples: deque[str] = deque()
        self._sample_seq = 0
        #: change rows read by the listener, by model (always counted: a board figure)
        self.changes_by_model: dict[str, int] = {}
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        #: while the first subscriber's documents are read: the rows arriving meanwhile
        self._arrived: list[Any] | None = None
        #: times the refresh task woke (tests check it stays 0 without subscribers)
        self.wakeups = 0
        runtime.figures.add("dashboard", self.figures)

    # --- figures ------------------------------------------------------------------------
    def figures(self) -> list[Figure]:
        return [
            Figure(
                "changes_total",
                "counter",
                "change rows read from the log, by model",
                [((("model", m),), n) for m, n in sorted(self.changes_by_model.items())],
            ),
            Figure.one(
                "dashboard_refreshes_total",
                "counter",
                "wake-ups of the dashboard's refresh task (none while nobody has it open)",
                self.wakeups,
            ),
            Figure.one(
                "dashboard_subscribers",
                "gauge",
                "open dashboard pages (subscriptions to livedata.dashboard)",
                len(self.subscribers),
            ),
        ]

    # --- subscriptions (called by the DDP session) ----------------------------------------
    async def subscribe(self, session: Any, sub_id: str, params: list[Any]) -> None:
        """Check access, send the current documents, then ``ready``; the first
        subscriber starts the refresh task. Raises ``DDPError`` (→ ``nosub``)."""
        if params:
            raise DDPError(400, "Match failed", f"{PUBLICATION} takes no parameters")
        await self._check(session.user)
        async with self._lock:
            if not self.subscribers:
                self._arrived = []  # rows of batches handed over while the seed is read
                try:
                    await self._seed()
                    for row in self._arrived:
                        self._add_change(row)
                except BaseException:
                    self._idle()  # nothing half-read stays for the next subscriber
                    raise
                finally:
                    self._arrived = None
            self.subscribers[(session, sub_id)] = None
            session.publish_added(sub_id, self._all())
            if self._task is None:
                self._task = asyncio.get_running_loop().create_task(self._run())
        await session.stream()
        session.ready(sub_id)

    async def rerun(self, session: Any, sub_id: str) -> None:
        """The connection's user changed (its view was rebuilt without these documents):
        check access again and send them again. Raises ``DDPError`` (→ ``nosub``)."""
        self.unsubscribe(session, sub_id)
        await self.subscribe(session, sub_id, [])

    def unsubscribe(self, session: Any, sub_id: str) -> None:
        self.subscribers.pop((session, sub_id), None)
        if not self.subscribers:
            self._idle()

    def drop_session(self, session: Any) -> None:
        for key in [k for k in self.subscribers if k[0] is session]:
            del self.subscribers[key]
        if not self.subscribers:
            self._idle()

    def owns(self, session: Any, sub_id: str) -> bool:
        return (session, sub_id) in self.subscribers

    async def _check(self, user: Any) -> None:
        loop = asyncio.get_running_loop()
        allowed = await loop.run_in_executor(
            self.runtime.executor, with_connection, may_view_now, user
        )
        if not allowed:
            raise DDPError(403, "The dashboard is for staff with livedata.view_dashboard")

    def _idle(self) -> None:
        """Nobody is subscribed: stop the task, forget the documents."""
        if self._task is not None:
            self._task.cancel()
            self._task = None
        self.documents.clear()
        self._changes.clear()
        self._samples.clear()
        self.reading.reset()

    def _all(self) -> list[tuple[str, str, dict[str, Any]]]:
        return [(c, i, f) for (c, i), f in self.documents.items()]

    # --- the documents --------------------------------------------------------------------
    async def _seed(self) -> None:
        """The first subscriber's documents: the last change rows and a first refresh."""
        loop = asyncio.get_running_loop()
        rows = await loop.run_in_executor(
            self.runtime.executor, with_connection, store.recent_changes, self.recent
        )
        for row in rows:
            self._add_change(row)
        await self._refresh(send=False)

    async def _run(self) -> None:
        try:
            while self.subscribers:
                await asyncio.sleep(self.interval)
                self.wakeups += 1
                try:
                    await self._refresh(send=True)
                except Exception:
                    logger.exception("livedata: refreshing the dashboard failed")
        finally:
            if self._task is asyncio.current_task():
                self._task = None

    async def _refresh(self, *, send: bool) -> None:
        self.reporter.notified()  # this process reports too, whatever its listener hears
        loop = asyncio.get_running_loop()
        state = await loop.run_in_executor(
            self.runtime.executor, with_connection, store.state, self.reporter.stale_seconds
        )
        snapshot = self.reading.take(dashboard_subscribers=len(self.subscribers))
        figures, flow = snapshot.figures, snapshot.flow
        out: list[tuple[str, str, str, dict[str, Any] | None]] = []
        self._set(out, docs.COLLECTION, "now", snapshot.now)
        self._set(out, docs.COLLECTION, "flow", flow)
        self._set(out, docs.COLLECTION, "webhooks", {"subscriptions": state["webhooks"]})
        self._set(out, docs.COLLECTION, "pull", docs.pull_document(figures, state["mirrors"]))
        lags = [c["lag_seconds"] for c in flow["consumers"]]
        sample = {
            "t": time.time(),
            "changes_per_s": round(sum(snapshot.changes_per_s.values()), 2),
            "messages_per_s": round(snapshot.messages_per_s, 2),
            "max_lag_seconds": max(lags, default=0.0),
        }
        self._sample_seq += 1
        sample_id = str(self._sample_seq)
        self._set(out, docs.SAMPLES, sample_id, sample)
        self._samples.append(sample_id)
        keep = max(1, int(self.runtime.settings.DASHBOARD_HISTORY / self.interval))
        while len(self._samples) > keep:
            self._remove(out, docs.SAMPLES, self._samples.popleft())
        self._processes(out, state["processes"])
        if send:
            self._broadcast(out)

    def _processes(self, out: list[Any], rows: list[dict[str, Any]]) -> None:
        """One document per live process (``cluster``): added, changed, removed as
        processes come, report and go quiet."""
        live = set()
        for row in rows:
            live.add(row["process"])
            fields = dict(row["figures"], at=row["at"].isoformat())
            self._set(out, docs.PROCESSES, row["process"], fields)
        for collection, doc_id in list(self.documents):
            if collection == docs.PROCESSES and doc_id not in live:
                self._remove(out, collection, doc_id)

    def _set(self, out: list[Any], collection: str, doc_id: str, fields: dict[str, Any]) -> None:
        key = (collection, doc_id)
        old = self.documents.get(key)
        self.documents[key] = fields
        if old is None:
            out.append((collection, "added", doc_id, fields))
        else:
            diff = docs.changed_fields(old, fields)
            if diff:
                out.append((collection, "changed", doc_id, diff))

    def _remove(self, out: list[Any], collection: str, doc_id: str) -> None:
        if self.documents.pop((collection, doc_id), None) is not None:
            out.append((collection, "removed", doc_id, None))

    def _add_change(self, row: Any, out: list[Any] | None = None) -> None:
        doc_id = str(row.id)
        if (docs.CHANGES, doc_id) in self.documents:
            return
        self._set(out if out is not None else [], docs.CHANGES, doc_id, docs.change_document(row))
        self._changes.append(doc_id)
        while len(self._changes) > self.recent:
            self._remove(out if out is not None else [], docs.CHANGES, self._changes.popleft())

    # --- the log's batches (``server.app`` hands over the live queries' batch) -------------
    def on_batch(self, batch: Batch) -> None:
        counts = self.changes_by_model
        for row in batch.rows:
            counts[row.model] = counts.get(row.model, 0) + 1
        if self._arrived is not None:  # the first subscriber's seed is being read
            self._arrived.extend(batch.rows[-self.recent :])
        if not self.subscribers or not batch.rows:
            return  # nobody looks
        out: list[Any] = []
        for row in batch.rows[-self.recent :]:
            self._add_change(row, out)
        self._broadcast(out)

    def _broadcast(self, out: list[tuple[str, str, str, dict[str, Any] | None]]) -> None:
        if not out:
            return
        frames = [serialize(message_for(c, op, i, f)) for c, op, i, f in out]
        for session, sub_id in list(self.subscribers):
            session.publish_diffs(sub_id, [out], [frames])
