"""Holding live requests: the feed's in-memory view of the process's one listener.

A ``live=true`` request (or an event stream) that is up to date waits here, not in the
database. The ``Notifier`` is a follower of the runtime's listener (the process's one
LISTEN connection, lent to the feed by ``runtime_service`` when the runtime starts): it
gets the listener's batches gap-free on its own task (``livedata.capture.follower``:
contiguity and catch-up are done there), keeps them in a short buffer, and hands each to
every waiter of that model, which builds its messages in memory. A client that comes
back right after an answer (long-polling) is answered from the buffer when its offset is
inside it. So 1000 held clients cost one LISTEN connection and no query per change.

Waiters whose position the buffer does not cover read the database themselves. Without a
runtime listener (another ASGI server), waiters poll the database every
``LISTENER_POLL_INTERVAL``.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass, field
from typing import Any, TypeVar

from livedata import dbthreads
from livedata.capture.log import Batch as LogBatch
from livedata.capture.log import ChangeRow, Position
from livedata.conf import livedata_settings
from livedata.httpapi import ApiError
from livedata.publish.publication import API
from livedata.pull.position import Handle
from livedata.pull.reader import Annotated, MustRefetch, annotate, messages_of
from livedata.pull.spec import FeedSpec
from livedata.runtime.figures import Figure

logger = logging.getLogger("livedata.pull")
T = TypeVar("T")

#: Change rows kept in memory for clients coming back (about 10 s at 1000 changes/s).
BUFFER_ROWS = 10_000

#: The feed's database threads (each keeps its Django connection between jobs).
_db_threads = dbthreads.LazyPool("livedata-pull", lambda: livedata_settings().PULL_DB_THREADS)
in_db_thread = _db_threads.run


@dataclass
class Batch:
    """Rows the listener delivered after ``start`` up to ``end``, by model."""

    start: Position
    end: Position
    by_model: dict[str, list[Annotated]]
    size: int


@dataclass(eq=False)
class Waiter:
    """One held request (or event stream) of ``spec`` at ``position``."""

    spec: FeedSpec
    handle: Handle
    position: Position
    #: (messages, new position), or an exception; None asks the waiter to read the database
    inbox: asyncio.Queue[Any] = field(default_factory=asyncio.Queue)

    def offer(self, batch: Batch) -> None:
        if not self.position.covers(batch.start):
            self.inbox.put_nowait(None)  # a gap between its position and the batch
            return
        items = batch.by_model.get(self.spec.label, [])
        try:
            messages = messages_of(self.spec, items, self.handle.snapshot, self.position)
        except MustRefetch as exc:
            self.inbox.put_nowait(exc)
            return
        if batch.end.covers(self.position):
            self.position = batch.end
        if messages:
            self.inbox.put_nowait((messages, self.position))


class Notifier:
    """The pull feed's follower of the runtime's listener (one per process)."""

    def __init__(self, listener: Any) -> None:
        self.listener = listener
        self.waiters: dict[str, set[Waiter]] = {}
        self.buffer: deque[Batch] = deque()
        self.buffered_rows = 0
        #: the buffer covers (start, position]; None: no batch yet
        self.start: Position | None = None
        self.position: Position | None = None
        self.follower = listener.follow(self._on_batch, name="pull feed")

    @property
    def count(self) -> int:
        return sum(len(w) for w in self.waiters.values())

    async def _on_batch(self, got: LogBatch) -> None:
        by_model: dict[str, list[ChangeRow]] = {}
        for row in got.rows:
            if API.exposed(row.model, "pull") is not None:
                by_model.setdefault(row.model, []).append(row)
        if self.position != got.start:
            # not contiguous with the buffer (the first batch, or one after a failure)
            self.buffer.clear()
            self.buffered_rows = 0
            self.start = got.start
        annotated = {model: annotate(rows) for model, rows in by_model.items()}
        batch = Batch(got.start, got.end, annotated, sum(map(len, by_model.values())))
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

    def answer(
        self, spec: FeedSpec, handle: Handle, position: Position
    ) -> tuple[list[str], Position] | None:
        """What is after ``position`` in memory, or None when the buffer does not cover it."""
        if self.position is None or self.start is None or not position.covers(self.start):
            return None
        messages: list[str] = []
        at = position
        for batch in self.buffer:
            if at.covers(batch.end):
                continue
            messages += messages_of(spec, batch.by_model.get(spec.label, []), handle.snapshot, at)
            at = batch.end
            if len(messages) >= spec.limit:
                return messages, at
        return messages, at

    def register(self, spec: FeedSpec, handle: Handle, position: Position) -> Waiter:
        conf = livedata_settings()
        if self.count >= conf.PULL_MAX_LIVE_CLIENTS:
            raise ApiError(
                503,
                f"this server holds {conf.PULL_MAX_LIVE_CLIENTS} live clients already; retry later",
                headers={"Retry-After": "5"},
            )
        waiter = Waiter(spec, handle, position)
        self.waiters.setdefault(spec.label, set()).add(waiter)
        return waiter

    def unregister(self, waiter: Waiter) -> None:
        waiters = self.waiters.get(waiter.spec.label)
        if waiters is not None:
            waiters.discard(waiter)

    async def close(self) -> None:
        await self.listener.unfollow(self.follower)


_notifiers: dict[int, Notifier] = {}
#: the listener of this process's started runtime (set by its ``Service``; None before)
_listener: Any = None


class Service:
    """Lends the runtime's listener to the feed's long-polls while the runtime runs
    (the notifier itself is made on the first live request)."""

    def __init__(self, listener: Any) -> None:
        self.listener = listener

    async def start(self) -> None:
        global _listener
        _listener = self.listener

    async def stop(self) -> None:
        global _listener
        if _listener is self.listener:
            _listener = None


def runtime_service(runtime: Any) -> Service | None:
    """The factory ``livedata.runtime.Runtime`` calls (registered by the app config)."""
    if runtime.listener is None:
        return None
    runtime.figures.add("pull", lambda: figures(runtime.listener))
    return Service(runtime.listener)


def figures(listener: Any) -> list[Figure]:
    """Held pull clients by model and the feed's buffer (a source of
    ``runtime.figures``; the notifier is made by the first live request)."""
    found = _notifiers.get(id(listener))
    note = found if found is not None and found.listener is listener else None
    waiting = {} if note is None else {m: len(w) for m, w in note.waiters.items() if w}
    return [
        Figure(
            "pull_live_clients",
            "gauge",
            "pull feed requests and event streams held open, by model",
            [((("model", m),), n) for m, n in sorted(waiting.items())],
        ),
        Figure.one(
            "pull_buffer_rows",
            "gauge",
            "change rows the pull feed keeps in memory for clients coming back",
            0 if note is None else note.buffered_rows,
        ),
    ]


def notifier() -> Notifier | None:
    """This process's notifier, made on first use; None without a runtime listener."""
    listener = _listener
    if listener is None:
        return None
    found = _notifiers.get(id(listener))
    if found is None or found.listener is not listener:
        found = _notifiers[id(listener)] = Notifier(listener)
    return found
