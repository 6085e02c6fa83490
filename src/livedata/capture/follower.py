"""A consumer's own ordered view of the log: queue, contiguity, catch-up, write fences.

The process's ``Listener`` reads the log once and offers each ``Batch`` to every
``Follower``. A follower runs its consumer on its own task, from its own bounded queue,
so a slow consumer (a live query re-running a large query, a webhook dispatcher waiting
on its database) never delays the listener or another consumer.

Each follower keeps its position and hands its consumer a gap-free chain of batches:

- a batch that starts where the follower is goes to the consumer as it is;
- one that starts behind (a follower whose position is ahead, e.g. a durable consumer
  that resumed later than the listener) is filtered to the transactions the follower
  has not received;
- one that ends where the follower already is adds nothing and is dropped;
- anything else is a gap (the queue overflowed and was cut, the follower started from a
  saved position, the listener reconnected, batches came from another reader: a new
  leader, the broker after an outage): the follower reads the log itself, on a
  connection of its own, from its position to the end of that batch, then goes on.

So batches may come from any reader of the log, in any mix: the follower hands its
consumer each committed row once, in order.

When its queue holds more than ``max_rows`` rows, it keeps only the newest batch: the
follower catches up from the log, which costs one read per ``limit`` rows instead of
memory without bound.

    follower = listener.follow(consumer, name="live queries")   # consumer(Batch)
    await follower.wait_seen(txid)                              # a write fence

Many followers that may all catch up at once (a webhook worker claiming its
subscriptions, each from its saved position) can share a ``ConnectionLimit``: at most
``size`` catch-up connections open at a time, reused between catch-ups.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable

import psycopg

from livedata.capture import log
from livedata.capture.log import Batch, Position, Snapshot

logger = logging.getLogger("livedata.listener")

Consumer = Callable[[Batch], Awaitable[None]]
#: Opens a connection for catching up (autocommit, async psycopg).
Connect = Callable[[], Awaitable[psycopg.AsyncConnection]]

DEFAULT_MAX_ROWS = 10_000
RETRY_MIN = 0.2


def first_line(exc: BaseException) -> str:
    """A database error in one line for a log message (its type when it says nothing)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class ConnectionLimit:
    """A ``Connect`` shared by many followers: at most ``size`` connections at a time.

    ``limit.connect`` waits for a free connection; the follower's ``close()`` hands it
    back (kept open for the next catch-up, up to ``size`` of them) instead of closing
    it. A broken or closed connection is dropped and a new one made next time.
    """

    def __init__(self, connect: Connect, size: int) -> None:
        if size < 1:
            raise ValueError("a ConnectionLimit needs a size of at least 1")
        self._open = connect
        self.size = size
        self._slots = asyncio.Semaphore(size)
        self._idle: list[psycopg.AsyncConnection] = []
        self.opened = 0  # connections made so far
        self.in_use = 0  # leases not handed back yet

    async def connect(self) -> psycopg.AsyncConnection:
        await self._slots.acquire()
        try:
            while self._idle:
                conn = self._idle.pop()
                if not conn.closed and not conn.broken:
                    break
            else:
                conn = await self._open()
                self.opened += 1
        except BaseException:
            self._slots.release()
            raise
        self.in_use += 1
        return _Lease(conn, self)  # type: ignore[return-value]

    def _release(self, conn: psycopg.AsyncConnection) -> None:
        if not conn.closed and not conn.broken and len(self._idle) < self.size:
            self._idle.append(conn)
        self.in_use -= 1
        self._slots.release()

    async def close(self) -> None:
        """Close the idle connections (leases in use close when handed back)."""
        idle, self._idle = self._idle, []
        for conn in idle:
            await conn.close()


class _Lease:
    """A connection of a ``ConnectionLimit``: ``close()`` hands it back."""

    def __init__(self, conn: psycopg.AsyncConnection, limit: ConnectionLimit) -> None:
        self._conn: psycopg.AsyncConnection | None = conn
        self._limit = limit

    def __getattr__(self, name: str) -> object:
        if self._conn is None:
            raise psycopg.InterfaceError("this catch-up connection was handed back")
        return getattr(self._conn, name)

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            if conn.broken or conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                # broken, or a read was cut short (a cancelled catch-up): not reusable
                await conn.close()
            self._limit._release(conn)


class Follower:
    """One consumer of the listener's batches (see the module docstring)."""

    def __init__(
        self,
        consumer: Consumer,
        *,
        connect: Connect,
        name: str = "",
        position: Position | None = None,
        models: Iterable[str] | None = None,
        limit: int = 1000,
        max_rows: int = DEFAULT_MAX_ROWS,
        wake: Callable[[], None] | None = None,
        on_expired: Callable[[log.PositionExpired], Awaitable[None]] | None = None,
    ) -> None:
        self.consumer = consumer
        self.name = name or getattr(consumer, "__qualname__", repr(consumer))
        #: everything up to here went to the consumer (None: adopt the first batch's start)
        self.position = position
        self.models = sorted({m.lower() for m in models}) if models else None
        self.limit = limit
        self.max_rows = max_rows
        self._connect = connect
        self._wake = wake
        self._on_expired = on_expired
        #: set when its position was pruned: it stopped (see ``on_expired``)
        self.expired: log.PositionExpired | None = None
        self._queue: deque[Batch] = deque()
        self._queued_rows = 0
        self._ready = asyncio.Event()
        self._fences: list[tuple[Callable[[Position], bool], asyncio.Future[None]]] = []
        #: while a step is in progress after a gap: skip batches until one ends here
        self._skip_until: Position | None = None
        self._retry = RETRY_MIN
        self.catch_ups = 0  # how many times it read the log itself
        #: the batch being handed on now (for ``lag``), and whether it is reading the log
        self._current: Batch | None = None
        self.catching_up = False
        self._task = asyncio.get_running_loop().create_task(self._run(), name=self.name)

    # --- the listener's side ----------------------------------------------------------
    def offer(self, batch: Batch) -> None:
        """Queue ``batch`` (never blocks; cuts the queue when it is over its bound)."""
        self._queue.append(batch)
        self._queued_rows += len(batch.rows)
        if self._queued_rows > self.max_rows and len(self._queue) > 1:
            newest = self._queue.pop()
            self._queue.clear()
            self._queue.append(newest)
            self._queued_rows = len(newest.rows)
        self._ready.set()

    # --- the consumer's side ----------------------------------------------------------
    async def wait_seen(self, txid: int) -> None:
        """Return once the consumer was handed every row of committed ``txid``."""
        await self._wait(lambda p: p.sees(txid))

    async def wait_covers(self, snapshot: Snapshot) -> None:
        """Return once the consumer was handed everything ``snapshot`` sees (a write
        fence for writes that cannot be named: take the snapshot after they commit)."""
        await self._wait(lambda p: p.snapshot.covers(snapshot))

    async def _wait(self, reached: Callable[[Position], bool]) -> None:
        if self.position is not None and reached(self.position):
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._fences.append((reached, future))
        if self._wake is not None:
            self._wake()
        try:
            await future
        finally:
            self._fences = [(r, f) for r, f in self._fences if f is not future]

    async def close(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)

    # --- the task ---------------------------------------------------------------------
    async def _run(self) -> None:
        while True:
            if not self._queue:
                self._ready.clear()
                await self._ready.wait()
                continue
            batch = self._queue.popleft()
            self._queued_rows -= len(batch.rows)
            self._current = batch
            try:
                await self._take(batch)
            except log.PositionExpired as exc:
                # rows after its position were pruned: nothing it could read makes up
                # for them; the consumer must refetch (a durable one resets its position)
                logger.error("livedata: %s stopped: %s", self.name, exc)
                self.expired = exc
                if self._on_expired is not None:
                    await self._on_expired(exc)
                return
            except (psycopg.OperationalError, psycopg.InterfaceError, OSError) as exc:
                # catching up needs the database: keep the position, try again
                logger.warning(
                    "livedata: %s could not read the log (%s); retrying in %.1fs",
                    self.name,
                    first_line(exc),
                    self._retry,
                )
                self._current = None  # queued again: counted there while it waits
                self._queue.appendleft(batch)
                self._queued_rows += len(batch.rows)
                await asyncio.sleep(self._retry)
                self._retry = min(self._retry * 2, 5.0)
                continue
            finally:
                self._current = None
            self._retry = RETRY_MIN
            self._release_fences()

    async def _take(self, batch: Batch) -> None:
        if self._skip_until is not None:
            if batch.start.until == self._skip_until.snapshot:
                # the rest of the step it read itself
                if batch.end == self._skip_until:
                    self._skip_until = None
                return
            # another reader's chain (a new leader, a process reading the log itself):
            # the rest of that step will not come; take this batch as it is
            self._skip_until = None
        if self.position is None:
            self.position = batch.start
        if batch.start == self.position:
            await self._hand(batch)
            return
        here = self.position
        if batch.end != batch.start and here.covers(batch.end):
            return  # nothing it has not received (a broker's entry read twice)
        whole = here.complete and batch.start.complete and batch.end.complete
        if whole and here.snapshot.covers(batch.start.snapshot):
            # it starts behind us: hand on only what we have not received
            rows = [r for r in batch.rows if not here.sees(r.txid)]
            await self._hand(Batch(here, Position(here.snapshot.union(batch.end.snapshot)), rows))
            return
        # a gap: read the log ourselves up to the end of this batch's step
        target = batch.end if batch.end.complete else Position(batch.end.end)
        if not batch.end.complete:
            self._skip_until = target
        await self._catch_up(target)

    async def _catch_up(self, target: Position) -> None:
        assert self.position is not None
        self.catch_ups += 1
        self.catching_up = True
        conn = await self._connect()
        try:
            while True:
                batch = await log.read_batch_async(
                    conn,
                    self.position,
                    limit=self.limit,
                    models=self.models,
                    until=target.snapshot,
                )
                await self._hand(batch)
                if batch.end.complete and batch.end.snapshot.covers(target.snapshot):
                    return
        finally:
            self.catching_up = False
            await conn.close()

    async def _hand(self, batch: Batch) -> None:
        rows = batch.rows
        if self.models is not None and rows:
            rows = [r for r in rows if r.model in self.models]
            if len(rows) != len(batch.rows):
                batch = Batch(batch.start, batch.end, rows)
        if rows:
            try:
                await self.consumer(batch)
            except asyncio.CancelledError:
                raise
            except Exception:
                # a consumer's bug: logged, and the others (and this one) go on; durable
                # consumers keep their own positions in the database
                logger.exception("livedata: consumer %s failed on a batch", self.name)
        self.position = batch.end

    def lag(self) -> tuple[int, int, float]:
        """What the listener read that this consumer was not handed yet: (transactions,
        rows, seconds since the oldest of them was written), of its models. Read on
        demand (a scrape), from the queue it keeps anyway. While it catches up from the
        log, the rows it has still to read there are not known: the figures are then at
        least these (``catching_up`` says so)."""
        batches = ([self._current] if self._current is not None else []) + list(self._queue)
        txids: set[int] = set()
        rows = 0
        oldest = None
        for batch in batches:
            for row in batch.rows:
                if self.models is not None and row.model not in self.models:
                    continue
                if self.position is not None and self.position.sees(row.txid):
                    continue  # handed on already (the batch in hand, or one it is ahead of)
                rows += 1
                txids.add(row.txid)
                if oldest is None or row.at < oldest:
                    oldest = row.at
        seconds = 0.0 if oldest is None else max(0.0, time.time() - oldest.timestamp())
        return len(txids), rows, seconds

    def _release_fences(self) -> None:
        if self.position is None:
            return
        for reached, future in self._fences:
            if not future.done() and reached(self.position):
                future.set_result(None)
