"""Holding live requests: the feed's in-memory view of the process's one listener.

A ``live=true`` request (or an event stream) that is up to date waits here, not in the
database. The ``Notifier`` is a consumer of ``Runtime.current.listener`` (the process's
one LISTEN connection): for each batch the listener reads it runs the order checks once
(``reader.annotate``: one query per batch and model, whoever waits), keeps the batch in
a short buffer, and hands it to every waiter of that model, which builds its messages in
memory. A client that comes back right after an answer (long-polling) is answered from
the buffer when its offset is inside it. So 1000 held clients cost one LISTEN
connection and one query per batch, not a query per client per change.

The buffer is contiguous: each batch starts where the previous ended. When it is not
(the notifier started mid-stream, the listener reconnected elsewhere), it restarts, and
waiters behind its start read the database themselves. Without a runtime listener
(another ASGI server), waiters poll the database every ``POLL_INTERVAL``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from dataclasses import dataclass, field
from typing import Any, TypeVar

from livedata import dbthreads
from livedata.capture.log import ChangeRow, Cursor
from livedata.conf import livedata_settings
from livedata.httpapi import ApiError
from livedata.publish.api import API
from livedata.pull.position import Handle
from livedata.pull.reader import Annotated, MustRefetch, annotate, messages_of
from livedata.pull.spec import FeedSpec

logger = logging.getLogger("livedata.pull")
T = TypeVar("T")

#: Change rows kept in memory for clients coming back (about 10 s at 1000 changes/s).
BUFFER_ROWS = 10_000

#: The feed's database threads (each keeps its Django connection between jobs).
_db_threads = dbthreads.LazyPool("livedata-pull", lambda: livedata_settings().PULL_DB_THREADS)
in_db_thread = _db_threads.run


@dataclass
class Batch:
    """Rows the listener delivered after ``start`` up to ``end``, by model, annotated."""

    start: Cursor
    end: Cursor
    by_model: dict[str, list[Annotated]]
    size: int


@dataclass(eq=False)
class Waiter:
    """One held request (or event stream) of ``spec`` at ``cursor``."""

    spec: FeedSpec
    handle: Handle
    cursor: Cursor
    #: (messages, new cursor), or an exception; None asks the waiter to read the database
    inbox: asyncio.Queue[Any] = field(default_factory=asyncio.Queue)

    def offer(self, batch: Batch) -> None:
        if batch.start > self.cursor:
            self.inbox.put_nowait(None)  # a gap between its position and the batch
            return
        items = batch.by_model.get(self.spec.label, [])
        try:
            messages = messages_of(self.spec, items, self.handle.snapshot, self.cursor)
        except MustRefetch as exc:
            self.inbox.put_nowait(exc)
            return
        self.cursor = max(self.cursor, batch.end)
        if messages:
            self.inbox.put_nowait((messages, self.cursor))


class Notifier:
    """The pull feed's consumer of the runtime's listener (one per process)."""

    def __init__(self, listener: Any) -> None:
        self.listener = listener
        self.waiters: dict[str, set[Waiter]] = {}
        self.buffer: deque[Batch] = deque()
        self.buffered_rows = 0
        #: everything up to here was processed (offered to waiters); None: not yet known
        self.position: Cursor | None = listener.cursor
        self.start: Cursor | None = self.position  # the buffer covers (start, position]
        self._queue: asyncio.Queue[tuple[Cursor | None, list[ChangeRow]]] = asyncio.Queue()
        self._task = asyncio.get_running_loop().create_task(self._run())
        listener.add_consumer(self._on_rows)

    @property
    def count(self) -> int:
        return sum(len(w) for w in self.waiters.values())

    async def _on_rows(self, rows: list[ChangeRow]) -> None:
        # called by the listener before it moves its cursor: that is where the batch starts
        self._queue.put_nowait((self.listener.cursor, rows))

    async def _run(self) -> None:
        while True:
            start, rows = await self._queue.get()
            try:
                await self._process(start, rows)
            except Exception:
                logger.exception("livedata pull: could not process a listener batch")
                self._restart(None)

    async def _process(self, start: Cursor | None, rows: list[ChangeRow]) -> None:
        if start is None or start != self.position:
            self._restart(start)
        by_model: dict[str, list[ChangeRow]] = {}
        for row in rows:
            if API.exposed(row.model, "pull") is not None:
                by_model.setdefault(row.model, []).append(row)
        annotated = {}
        for model, model_rows in by_model.items():
            annotated[model] = await in_db_thread(_annotate, model, model_rows, start)
        batch = Batch(start, rows[-1].cursor, annotated, sum(map(len, by_model.values())))
        self.buffer.append(batch)
        self.buffered_rows += batch.size
        while self.buffered_rows > BUFFER_ROWS and len(self.buffer) > 1:
            gone = self.buffer.popleft()
            self.buffered_rows -= gone.size
            self.start = self.buffer[0].start
        self.position = batch.end
        for model in annotated:
            for waiter in list(self.waiters.get(model, ())):
                waiter.offer(batch)

    def _restart(self, start: Cursor | None) -> None:
        """Drop the buffer; waiters read the database (they may be behind ``start``)."""
        self.buffer.clear()
        self.buffered_rows = 0
        self.start = self.position = start
        for waiters in self.waiters.values():
            for waiter in waiters:
                waiter.inbox.put_nowait(None)

    def answer(
        self, spec: FeedSpec, handle: Handle, cursor: Cursor
    ) -> tuple[list[str], Cursor] | None:
        """What is after ``cursor`` in memory, or None when the buffer does not cover it."""
        if self.position is None or self.start is None or cursor < self.start:
            return None
        messages: list[str] = []
        for batch in self.buffer:
            if batch.end <= cursor:
                continue
            messages += messages_of(
                spec, batch.by_model.get(spec.label, []), handle.snapshot, cursor
            )
            if len(messages) >= spec.limit:
                return messages, batch.end
        return messages, max(cursor, self.position)

    def register(self, spec: FeedSpec, handle: Handle, cursor: Cursor) -> Waiter:
        conf = livedata_settings()
        if self.count >= conf.PULL_MAX_LIVE_CLIENTS:
            raise ApiError(
                503,
                f"this server holds {conf.PULL_MAX_LIVE_CLIENTS} live clients already; retry later",
                headers={"Retry-After": "5"},
            )
        waiter = Waiter(spec, handle, cursor)
        self.waiters.setdefault(spec.label, set()).add(waiter)
        return waiter

    def unregister(self, waiter: Waiter) -> None:
        waiters = self.waiters.get(waiter.spec.label)
        if waiters is not None:
            waiters.discard(waiter)

    async def close(self) -> None:
        with contextlib.suppress(ValueError):
            self.listener.remove_consumer(self._on_rows)
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


def _annotate(model: str, rows: list[ChangeRow], start: Cursor) -> list[Annotated]:
    from django.db import connection

    return annotate(connection, model, rows, start)


_notifiers: dict[int, Notifier] = {}


def notifier() -> Notifier | None:
    """This process's notifier, made on first use; None without a runtime listener."""
    from livedata.server.app import Runtime

    runtime = Runtime.current
    listener = runtime.listener if runtime is not None else None
    if listener is None:
        return None
    found = _notifiers.get(id(listener))
    if found is None or found.listener is not listener:
        found = _notifiers[id(listener)] = Notifier(listener)
    return found
