"""The delivery engine of one process: claims subscriptions, feeds them, records progress.

One ``Dispatcher`` runs in each ``livedata serve`` process (fed by its runtime's listener)
and in each ``livedata deliver`` worker (fed by a listener of its own). Workers on any
number of hosts cooperate through PostgreSQL only:

- **Claiming** is a session-level advisory lock per subscription
  (``pg_try_advisory_lock``) taken on the dispatcher's own connection: no transaction and
  no xid is held, so the change log's readers are never held back, and the lock goes
  away by itself when a worker's connection dies (crash, SIGKILL): another worker claims
  the subscription at its next reload and redelivers what was not acknowledged, with
  the same ``webhook-id``. Right after locking, the subscription's row is read again, so
  the new holder starts exactly where the last one's acknowledgements end. A worker
  takes at most its fair share (subscriptions / live workers, each worker holding a
  shared presence lock) and at most ``concurrency``; idle extras are handed back.
- **Reading**: each claimed subscription has a ``Runner`` with its own position. A
  runner that is caught up takes the listener's batches from memory (one log read per
  process, whatever the number of subscriptions); one that is behind (new, recovering,
  buffer full) reads the log itself from its position until it joins the listener's
  stream again. Nothing is lost when NOTIFYs are: the listener also polls.
- **Delivering**: one request at a time per subscription (so in log order), all
  subscriptions concurrently (a slow receiver only holds its own runner). Retries
  follow ``WEBHOOK_RETRY_SCHEDULE``; runners waiting long for a retry are handed back.
- **Recording**: acknowledged positions, retry state and the delivery log are written
  by the flusher every ``WEBHOOK_FLUSH_INTERVAL`` in one statement (an implicit
  sub-millisecond transaction, ``synchronous_commit = off``: losing one in a database
  crash only means a redelivery). The durable cursor only moves forward, and only for
  the subscription's current ``generation`` (a position set through the API wins).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import random
import socket
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from livedata.capture import log
from livedata.capture.listener import Listener, connection_params
from livedata.capture.log import ChangeRow, Cursor
from livedata.conf import LivedataSettings, livedata_settings
from livedata.webhooks.selection import Selection, batch_payload, encode
from livedata.webhooks.signing import Signer
from livedata.webhooks.transport import Result, Transport

logger = logging.getLogger("livedata.webhooks")

#: advisory lock namespaces (the two-int4 form): one lock per subscription, and a shared
#: presence lock every live dispatcher holds (to count workers for the fair share)
LOCK_SUBSCRIPTION = 0x6C647768  # "ldwh"
LOCK_PRESENCE = 0x6C647777  # "ldww"
MAX_ID = 2**63 - 1
#: a runner whose next retry is further away than this is handed back until then
PARK_AFTER = 10.0
#: how often owners' permissions and models' exposure are checked again (s)
RECHECK_EVERY = 60.0
PRUNE_EVERY = 600.0

SUB_TABLE = "livedata_webhook_subscription"
DELIVERY_TABLE = "livedata_webhook_delivery"
SUB_COLUMNS = (
    "id, owner_id, url, model_labels, operations, filter, fields, batch, secret, "
    "cursor_txid, cursor_id, generation, epoch, attempts, next_attempt_at, updated"
)

#: dispatchers running in this process (the API pokes them after a change)
RUNNING: set[Dispatcher] = set()


def poke_all() -> None:
    for dispatcher in list(RUNNING):
        dispatcher.poke_threadsafe()


def webhook_id(sub_id: int, epoch: int, first: Cursor, last: Cursor | None = None) -> str:
    """Stable across retries and workers: subscription, position epoch, change cursor."""
    base = f"msg_{sub_id}_{epoch}_{first.txid}_{first.id}"
    return base if last is None or last == first else f"{base}_{last.txid}_{last.id}"


@dataclass
class Config:
    """A subscription's row, as a worker needs it."""

    id: int
    owner_id: int
    url: str
    labels: list[str]
    operations: list[str]
    filter: dict[str, Any]
    fields: Any
    batch: int
    secret: str
    cursor: Cursor
    generation: int
    epoch: int
    attempts: int
    next_attempt_at: datetime | None
    updated: datetime

    @classmethod
    def from_row(cls, r: tuple[Any, ...]) -> Config:
        return cls(
            r[0], r[1], r[2], list(r[3]), list(r[4]), r[5] or {}, r[6], r[7], r[8],
            Cursor(r[9], r[10]), r[11], r[12], r[13], r[14], r[15],
        )  # fmt: skip

    @property
    def version(self) -> tuple[int, datetime]:
        return (self.generation, self.updated)

    def due(self, now: datetime) -> bool:
        return self.next_attempt_at is None or (self.next_attempt_at - now).total_seconds() < 1


@dataclass(slots=True)
class Item:
    event: dict[str, Any]
    cursor: Cursor
    before: Cursor  # everything up to here was handled before this change


@dataclass
class Attempt:
    """A delivery-log row waiting for the flusher."""

    sub_id: int
    webhook_id: str
    cursor: str
    changes: int
    attempt: int
    result: Result
    at: datetime


@dataclass
class Progress:
    """What a runner has to write back (merged by the flusher)."""

    delivered: int = 0
    success_at: datetime | None = None
    error_at: datetime | None = None
    error: str | None = None
    status: int | None = None
    disable: str | None = None


class Runner:
    """Delivers one subscription's changes, in order, one request at a time."""

    def __init__(self, dispatcher: Dispatcher, config: Config, selection: Selection) -> None:
        self.d = dispatcher
        self.config = config
        self.selection = selection
        self.signer = Signer(config.secret)
        self.examined = config.cursor  # last log row looked at (a real cursor)
        self.horizon = config.cursor  # every row up to here was looked at (may be synthetic)
        self.flushed = config.cursor
        self.flushed_at = 0.0
        self.buffer: deque[Item] = deque()
        self.behind = True  # read the log from the position before using the listener's
        self.filling = False
        self.missed = False
        self.wake = asyncio.Event()
        self.attempts = config.attempts
        self.next_attempt_at = config.next_attempt_at
        self.progress = Progress()
        self.dirty = False
        self.inflight = 0  # changes of the request in flight (kept for its retries)
        self.stopping = False
        self.parked = False
        self.idle_since: float | None = None
        self.task: asyncio.Task[None] | None = None

    def idle_for(self, now: float) -> float:
        if self.idle_since is None or self.buffer or self.inflight:
            return 0.0
        return now - self.idle_since

    # --- position -----------------------------------------------------------------------
    def position(self) -> Cursor:
        """Everything up to here was acknowledged or does not match."""
        return self.buffer[0].before if self.buffer else self.examined

    def _examine(self, row: ChangeRow) -> None:
        event = self.selection.select(row)
        if event is not None:
            self.buffer.append(Item(event, row.cursor, self.examined))
        self.examined = row.cursor

    def offer(self, previous: Cursor | None, rows: list[ChangeRow]) -> None:
        """A listener batch (its rows follow ``previous``): take it if contiguous."""
        if self.filling:
            self.missed = True
            return
        if (
            self.behind
            or previous is None
            or self.horizon < previous
            or len(self.buffer) >= self.d.buffer_limit
        ):
            self.behind = True
            self.wake.set()
            return
        before = len(self.buffer)
        for row in rows:
            if row.cursor > self.horizon:
                self._examine(row)
        last = rows[-1].cursor
        self.horizon = max(self.horizon, last)
        self.examined = max(self.examined, last)
        if len(self.buffer) != before:
            self.wake.set()

    async def _fill(self) -> None:
        self.filling, self.missed = True, False
        try:
            rows, bound = await self.d.read(self.horizon, self.config.labels)
        finally:
            self.filling = False
        for row in rows:
            if row.cursor > self.horizon:
                self._examine(row)
        if rows:
            self.horizon = max(self.horizon, rows[-1].cursor)
        if len(rows) < self.d.read_limit:
            # everything below the bound was in this read
            self.horizon = max(self.horizon, Cursor(bound - 1, MAX_ID))
            self.behind = self.missed
        self.missed = False

    # --- the loop -----------------------------------------------------------------------
    async def run(self) -> None:
        while not self.stopping:
            if not self.buffer:
                if self.behind:
                    try:
                        await self._fill()
                    except (psycopg.Error, OSError) as exc:
                        # the dispatcher notices too, reconnects and starts over
                        logger.debug("livedata webhooks: read failed: %s", exc)
                        await asyncio.sleep(self.d.conf.RECONNECT_MIN)
                    continue
                self.wake.clear()
                self.idle_since = time.monotonic()
                try:
                    # normally the listener's batches wake it; reading the log now and
                    # then as well means nothing can wait forever
                    await asyncio.wait_for(self.wake.wait(), self.d.idle_read_interval)
                except TimeoutError:
                    self.behind = True
                self.idle_since = None
                continue
            if self.next_attempt_at is not None:
                delay = (self.next_attempt_at - datetime.now(UTC)).total_seconds()
                if delay > PARK_AFTER:
                    self.parked = True
                    return
                if delay > 0:
                    self.wake.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self.wake.wait(), delay)
                    continue
            await self._attempt()

    async def _attempt(self) -> None:
        count = self.inflight or min(self.config.batch, len(self.buffer))
        self.inflight = count
        items = [self.buffer[i] for i in range(count)]
        if count == 1:
            payload = items[0].event
            wid = webhook_id(self.config.id, self.config.epoch, items[0].cursor)
        else:
            payload = batch_payload([item.event for item in items])
            wid = webhook_id(self.config.id, self.config.epoch, items[0].cursor, items[-1].cursor)
        body = encode(payload)
        headers = self.signer.headers(wid, body)
        result = await self.d.transport.put(self.config.url, body, headers)
        now = datetime.now(UTC)
        self.d.record(
            Attempt(
                self.config.id, wid, str(items[0].cursor), count, self.attempts + 1, result, now
            )
        )
        if result.ok:
            for _ in range(count):
                self.buffer.popleft()
            self.inflight = 0
            self.attempts = 0
            self.next_attempt_at = None
            self.progress.delivered += count
            self.progress.success_at = now
        else:
            self.attempts += 1
            self.progress.error_at = now
            self.progress.error = f"{wid}: {result.error}"[:2000]
            self.progress.status = result.status
            schedule = self.d.conf.WEBHOOK_RETRY_SCHEDULE
            if result.outcome == "gone":
                self._disable(f"the receiver answered 410 Gone at {now:%Y-%m-%d %H:%M:%S}Z")
            elif self.attempts >= len(schedule):
                self._disable(
                    f"{self.attempts} attempts failed (last: {result.error}); re-enable it "
                    "with a PUT to continue from the change that failed"
                )
            else:
                wait = result.retry_after
                if wait is None:
                    wait = schedule[self.attempts]
                self.next_attempt_at = now + timedelta(seconds=wait)
        self.dirty = True
        self.d.flush_soon()

    def _disable(self, reason: str) -> None:
        self.progress.disable = reason
        self.stopping = True
        logger.warning("livedata webhooks: subscription %s disabled: %s", self.config.id, reason)

    def take_progress(self) -> tuple[Progress, Cursor]:
        progress, self.progress = self.progress, Progress()
        self.dirty = False
        return progress, self.position()


class Dispatcher:
    """Claims subscriptions and runs them, fed by ``listener`` (see the module docstring)."""

    def __init__(
        self,
        listener: Listener,
        *,
        concurrency: int | None = None,
        params: dict[str, Any] | None = None,
        name: str | None = None,
        conf: LivedataSettings | None = None,
    ) -> None:
        self.conf = conf or livedata_settings()
        self.listener = listener
        self.concurrency = concurrency or self.conf.WEBHOOK_CONCURRENCY
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self._params = params
        self.transport = Transport(self.conf)
        self.read_limit = self.conf.BATCH_SIZE
        self.buffer_limit = self.conf.BATCH_SIZE
        self.idle_read_interval = max(5 * self.conf.WEBHOOK_REFRESH_INTERVAL, 1.0)
        self.runners: dict[int, Runner] = {}
        self.conn: psycopg.AsyncConnection | None = None
        self._attempts: list[Attempt] = []
        self._finished: list[Runner] = []
        self._stopping = asyncio.Event()
        self._poke = asyncio.Event()
        self._flush = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._checked: dict[int, tuple[tuple[int, datetime], float, Selection | str]] = {}
        self._last_prune = 0.0
        #: set after each reload (tests and benchmarks wait on it)
        self.reloaded = asyncio.Event()

    # --- control ------------------------------------------------------------------------
    def poke(self) -> None:
        self._poke.set()

    def poke_threadsafe(self) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._poke.set)

    def flush_soon(self) -> None:
        self._flush.set()

    def stop(self) -> None:
        self._stopping.set()
        self._poke.set()

    # --- the listener's consumer ----------------------------------------------------------
    async def on_changes(self, rows: list[ChangeRow]) -> None:
        previous = self.listener.cursor  # still the position before this batch
        for runner in self.runners.values():
            runner.offer(previous, rows)

    # --- database -------------------------------------------------------------------------
    async def read(self, cursor: Cursor, labels: list[str]) -> tuple[list[ChangeRow], int]:
        assert self.conn is not None
        return await log.aread_batch(self.conn, cursor, limit=self.read_limit, models=labels)

    async def _connect(self) -> psycopg.AsyncConnection:
        params = self._params or await asyncio.to_thread(connection_params)
        options = " ".join(
            filter(None, [params.get("options"), "-c plan_cache_mode=force_generic_plan"])
        )
        conn = await psycopg.AsyncConnection.connect(
            **{**params, "options": options},
            autocommit=True,
            application_name=f"livedata webhooks {self.name}"[:63],
        )
        await conn.execute("SET synchronous_commit = off")
        await conn.execute("SELECT pg_advisory_lock_shared(%s, 0)", [LOCK_PRESENCE])
        return conn

    # --- main loop ------------------------------------------------------------------------
    async def run(self) -> None:
        """Serve until ``stop()``; reconnects when the database goes away."""
        self._loop = asyncio.get_running_loop()
        RUNNING.add(self)
        self.listener.add_consumer(self.on_changes)
        delay = self.conf.RECONNECT_MIN
        try:
            while not self._stopping.is_set():
                try:
                    self.conn = await self._connect()
                    delay = self.conf.RECONNECT_MIN
                    await self._serve()
                except (psycopg.OperationalError, psycopg.InterfaceError, OSError) as exc:
                    if self._stopping.is_set():
                        break
                    logger.warning(
                        "livedata webhooks: database unavailable (%s); retrying in %.1fs",
                        (str(exc).strip().splitlines() or [type(exc).__name__])[0],
                        delay,
                    )
                finally:
                    await self._drop_all()
                if not self._stopping.is_set():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stopping.wait(), delay)
                    delay = min(delay * 2, self.conf.RECONNECT_MAX)
        finally:
            with contextlib.suppress(ValueError):
                self.listener.remove_consumer(self.on_changes)
            RUNNING.discard(self)
            await self.transport.close()

    async def _serve(self) -> None:
        flusher = asyncio.create_task(self._flusher())
        try:
            while not self._stopping.is_set():
                await self._reload()
                self._poke.clear()
                waiter = asyncio.ensure_future(self._poke.wait())
                done, _ = await asyncio.wait(
                    {waiter, flusher},
                    timeout=self.conf.WEBHOOK_REFRESH_INTERVAL,
                    return_when=asyncio.FIRST_COMPLETED,
                )
                waiter.cancel()
                if flusher in done:
                    flusher.result()  # re-raises the database error
            await self._shutdown()
        finally:
            flusher.cancel()
            await asyncio.gather(flusher, return_exceptions=True)

    async def _shutdown(self) -> None:
        """Let requests in flight finish (bounded), write everything back, unlock."""
        for runner in self.runners.values():
            runner.stopping = True
            runner.wake.set()
        tasks = [r.task for r in self.runners.values() if r.task is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=self.conf.WEBHOOK_TIMEOUT + 1)
        await self._write()

    async def _flusher(self) -> None:
        interval = self.conf.WEBHOOK_FLUSH_INTERVAL
        while True:
            await self._flush.wait()
            self._flush.clear()
            await self._write()
            await asyncio.sleep(interval)

    # --- claiming ---------------------------------------------------------------------------
    async def _reload(self) -> None:
        assert self.conn is not None
        rows = await (
            await self.conn.execute(
                f"SELECT {SUB_COLUMNS} FROM {SUB_TABLE} WHERE state = 'active' ORDER BY id"
            )
        ).fetchall()
        active = {r[0]: Config.from_row(r) for r in rows}
        workers_row = await (
            await self.conn.execute(
                "SELECT count(DISTINCT pid) FROM pg_locks WHERE locktype = 'advisory' "
                "AND classid = %s AND objid = 0 AND database = "
                "(SELECT oid FROM pg_database WHERE datname = current_database())",
                [LOCK_PRESENCE],
            )
        ).fetchone()
        workers = max(1, int(workers_row[0]) if workers_row else 1)
        locked_anywhere = {
            r[0]
            for r in await (
                await self.conn.execute(
                    "SELECT objid::bigint FROM pg_locks WHERE locktype = 'advisory' "
                    "AND classid = %s AND objsubid = 2 AND granted AND database = "
                    "(SELECT oid FROM pg_database WHERE datname = current_database())",
                    [LOCK_SUBSCRIPTION],
                )
            ).fetchall()
        }
        restart = False
        for sub_id, runner in list(self.runners.items()):
            config = active.get(sub_id)
            if runner.stopping:
                continue
            if config is None or config.version != runner.config.version:
                runner.stopping = True  # deleted, disabled or changed: hand it back
                runner.wake.set()
                restart = restart or config is not None
        share = min(self.concurrency, math.ceil(len(active) / workers))
        held = [r for r in self.runners.values() if not r.stopping]
        if len(held) > share:  # another worker joined: hand back idle extras
            for runner in [r for r in held if not r.buffer and not r.inflight][: len(held) - share]:
                runner.stopping = True
                runner.wake.set()
            held = [r for r in self.runners.values() if not r.stopping]
        room = share - len(held)
        now = datetime.now(UTC)
        candidates = [
            c
            for i, c in active.items()
            if i not in self.runners and i % 2**31 not in locked_anywhere and c.due(now)
        ]
        if room <= 0 and candidates:
            # more subscriptions than this worker may hold and nobody holds these: take
            # turns, handing back the ones idle the longest
            clock = time.monotonic()
            idle = sorted(
                (r for r in held if r.idle_for(clock) > self.conf.WEBHOOK_REFRESH_INTERVAL),
                key=lambda r: -r.idle_for(clock),
            )
            for runner in idle[: len(candidates)]:
                runner.stopping = True
                runner.wake.set()
        if room > 0 and candidates:
            random.shuffle(candidates)  # workers starting together spread out
            await self._claim([c.id for c in candidates[:room]])
        await self._maybe_prune()
        self.flush_soon()  # positions that only moved past non-matching rows, too
        if restart:
            self.poke()
        self.reloaded.set()

    async def _claim(self, ids: list[int]) -> None:
        assert self.conn is not None
        locked = [
            r[0]
            for r in await (
                await self.conn.execute(
                    "SELECT k FROM unnest(%s::bigint[]) AS k "
                    "WHERE pg_try_advisory_lock(%s, (k %% 2147483648)::int)",
                    [ids, LOCK_SUBSCRIPTION],
                )
            ).fetchall()
        ]
        if not locked:
            return
        # read again under the lock: the previous holder may have moved on meanwhile
        rows = await (
            await self.conn.execute(
                f"SELECT {SUB_COLUMNS} FROM {SUB_TABLE} WHERE id = ANY(%s) AND state = 'active'",
                [locked],
            )
        ).fetchall()
        fresh = {r[0]: Config.from_row(r) for r in rows}
        selections = await asyncio.to_thread(self._selections, list(fresh.values()))
        for sub_id in locked:
            config = fresh.get(sub_id)
            outcome = selections.get(sub_id)
            if config is None or outcome is None:
                await self._unlock(sub_id)
            elif isinstance(outcome, str):
                await self._disable_now(config, outcome)
                await self._unlock(sub_id)
            else:
                self._start(config, outcome)

    def _selections(self, configs: list[Config]) -> dict[int, Selection | str]:
        """Compile each subscription, and check its owner may still see its models
        (Django permissions; in a thread). A string says why it must be disabled."""
        from django.contrib.auth import get_user_model
        from django.db import connections

        from livedata.webhooks.selection import SelectionError, model_of

        out: dict[int, Selection | str] = {}
        try:
            users = get_user_model()._default_manager.in_bulk({c.owner_id for c in configs})
            clock = time.monotonic()
            for config in configs:
                cached = self._checked.get(config.id)
                if cached and cached[0] == config.version and clock - cached[1] < RECHECK_EVERY:
                    out[config.id] = cached[2]
                    continue
                try:
                    selection: Selection | str = Selection(
                        config.labels, config.operations, config.filter, config.fields
                    )
                except SelectionError as exc:
                    selection = f"its {exc.field} are no longer valid: {exc.message}"
                else:
                    user = users.get(config.owner_id)
                    for label in selection.labels:
                        model = model_of(label)
                        perm = f"{model._meta.app_label}.view_{model._meta.model_name}"
                        if user is None or not user.is_active or not user.has_perm(perm):
                            selection = f"its owner no longer has the {perm} permission"
                            break
                self._checked[config.id] = (config.version, clock, selection)
                out[config.id] = selection
        finally:
            connections.close_all()
        return out

    def _start(self, config: Config, selection: Selection) -> None:
        runner = Runner(self, config, selection)
        self.runners[config.id] = runner
        runner.task = asyncio.create_task(runner.run())
        runner.task.add_done_callback(lambda task, r=runner: self._ended(r, task))

    def _ended(self, runner: Runner, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            logger.error(
                "livedata webhooks: runner of subscription %s failed",
                runner.config.id,
                exc_info=task.exception(),
            )
        if self.runners.get(runner.config.id) is runner:
            self._finished.append(runner)
            self.flush_soon()

    async def _unlock(self, sub_id: int) -> None:
        assert self.conn is not None
        await self.conn.execute(
            "SELECT pg_advisory_unlock(%s, (%s %% 2147483648)::int)", [LOCK_SUBSCRIPTION, sub_id]
        )

    async def _disable_now(self, config: Config, reason: str) -> None:
        assert self.conn is not None
        logger.warning("livedata webhooks: subscription %s disabled: %s", config.id, reason)
        await self.conn.execute(
            f"UPDATE {SUB_TABLE} SET state = 'disabled', disabled_reason = %s "
            "WHERE id = %s AND generation = %s",
            [reason, config.id, config.generation],
        )

    async def _drop_all(self) -> None:
        """The connection is gone (so are the locks): stop every runner at once."""
        runners, self.runners = list(self.runners.values()), {}
        for runner in runners:
            runner.stopping = True
            if runner.task is not None:
                runner.task.cancel()
        await asyncio.gather(*(r.task for r in runners if r.task), return_exceptions=True)
        self._finished.clear()
        self._attempts.clear()
        if self.conn is not None:
            with contextlib.suppress(Exception):
                await self.conn.close()
            self.conn = None

    async def _maybe_prune(self) -> None:
        assert self.conn is not None
        if time.monotonic() - self._last_prune < PRUNE_EVERY:
            return
        self._last_prune = time.monotonic()
        cutoff = datetime.now(UTC) - self.conf.WEBHOOK_DELIVERY_RETENTION
        await self.conn.execute(
            f"DELETE FROM {DELIVERY_TABLE} WHERE id IN "
            f"(SELECT id FROM {DELIVERY_TABLE} WHERE at < %s LIMIT 10000)",
            [cutoff],
        )

    # --- writing back -------------------------------------------------------------------------
    def record(self, attempt: Attempt) -> None:
        if attempt.result.ok and not self.conf.WEBHOOK_LOG_SUCCESSES:
            return
        self._attempts.append(attempt)

    async def _write(self) -> None:
        """One statement: positions and retry state of every runner with news, and the
        delivery log; then unlock the runners that ended."""
        assert self.conn is not None
        finished, self._finished = self._finished, []
        ended = {id(r) for r in finished}
        updates: list[tuple[Runner, Progress, Cursor]] = []
        clock = time.monotonic()
        for runner in list(self.runners.values()):
            position = runner.position()
            moved = position != runner.flushed
            # positions that only moved past non-matching rows are written lazily
            if runner.dirty or (moved and (id(runner) in ended or clock - runner.flushed_at > 1)):
                progress, position = runner.take_progress()
                updates.append((runner, progress, position))
        attempts, self._attempts = self._attempts, []
        if updates or attempts:
            await self._execute_write(updates, attempts)
            for runner, _progress, position in updates:
                runner.flushed = position
                runner.flushed_at = clock
        for runner in finished:
            await self._unlock(runner.config.id)
            if self.runners.get(runner.config.id) is runner:
                del self.runners[runner.config.id]
            if runner.parked:
                logger.info(
                    "livedata webhooks: subscription %s waits for its retry at %s",
                    runner.config.id,
                    runner.next_attempt_at,
                )

    async def _execute_write(
        self, updates: list[tuple[Runner, Progress, Cursor]], attempts: list[Attempt]
    ) -> None:
        """Rows travel as two JSON documents (json_to_recordset): one parameter each,
        dumped by the C json encoder; per-column arrays cost 3x more to send."""
        assert self.conn is not None
        subs = [
            {
                "id": runner.config.id,
                "gen": runner.config.generation,
                "upd": runner.config.updated.isoformat(),
                "txid": position.txid,
                "cid": position.id,
                "att": runner.attempts,
                "next": _iso(runner.next_attempt_at),
                "dlv": p.delivered,
                "ok": _iso(p.success_at),
                "eat": _iso(p.error_at),
                "err": p.error,
                "st": p.status,
                "dis": p.disable,
            }
            for runner, p, position in updates
        ]
        log_rows = [
            {
                "sub": a.sub_id,
                "wid": a.webhook_id,
                "cur": a.cursor,
                "n": a.changes,
                "att": a.attempt,
                "out": a.result.outcome,
                "st": a.result.status,
                "err": a.result.error,
                "exc": a.result.excerpt,
                "ms": a.result.latency_ms,
                "at": a.at.isoformat(),
            }
            for a in attempts
        ]
        sql = f"""
        WITH v AS (
            SELECT * FROM json_to_recordset(%(subs)s::json) AS v(
                id bigint, gen int, upd timestamptz, txid bigint, cid bigint, att int,
                next timestamptz, dlv bigint, ok timestamptz, eat timestamptz, err text,
                st int, dis text)
        ), upd AS (
            UPDATE {SUB_TABLE} s SET
                cursor_txid = CASE WHEN (v.txid, v.cid) > (s.cursor_txid, s.cursor_id)
                                   THEN v.txid ELSE s.cursor_txid END,
                cursor_id = CASE WHEN (v.txid, v.cid) > (s.cursor_txid, s.cursor_id)
                                 THEN v.cid ELSE s.cursor_id END,
                -- retry state only if the subscription was not replaced meanwhile (a PUT
                -- resets it); acknowledgements count whatever the configuration
                attempts = CASE WHEN s.updated = v.upd THEN v.att ELSE s.attempts END,
                next_attempt_at = CASE WHEN s.updated = v.upd THEN v.next
                                       ELSE s.next_attempt_at END,
                delivered = s.delivered + v.dlv,
                last_success_at = COALESCE(v.ok, s.last_success_at),
                last_error_at = COALESCE(v.eat, s.last_error_at),
                last_error = COALESCE(v.err, s.last_error),
                last_status = CASE WHEN v.eat IS NULL THEN s.last_status ELSE v.st END,
                state = CASE WHEN v.dis IS NOT NULL AND s.updated = v.upd THEN 'disabled'
                             ELSE s.state END,
                disabled_reason = CASE WHEN v.dis IS NOT NULL AND s.updated = v.upd THEN v.dis
                                       ELSE s.disabled_reason END
            FROM v WHERE s.id = v.id AND s.generation = v.gen
            RETURNING s.id
        ), log AS (
            INSERT INTO {DELIVERY_TABLE} (subscription_id, webhook_id, cursor, changes,
                attempt, outcome, status_code, error, response_excerpt, latency_ms, worker, at)
            SELECT d.sub, d.wid, d.cur, d.n, d.att, d.out, d.st, d.err, d.exc, d.ms,
                   %(worker)s, d.at
            FROM json_to_recordset(%(log)s::json) AS d(
                sub bigint, wid text, cur text, n int, att int, out text, st int, err text,
                exc text, ms float8, at timestamptz)
            WHERE EXISTS (SELECT 1 FROM {SUB_TABLE} s WHERE s.id = d.sub)
        )
        SELECT count(*) FROM upd
        """
        params: dict[str, Any] = {
            "subs": json.dumps(subs),
            "log": json.dumps(log_rows),
            "worker": self.name,
        }
        try:
            await self.conn.execute(sql, params)
        except psycopg.errors.ForeignKeyViolation:
            # a subscription was deleted during the statement: its log rows go with it
            params["log"] = "[]"
            await self.conn.execute(sql, params)


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


class Service:
    """Webhook delivery inside ``livedata serve``: a dispatcher on the runtime's listener."""

    def __init__(self, listener: Listener) -> None:
        self.dispatcher = Dispatcher(listener)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self.dispatcher.run())

    async def stop(self) -> None:
        self.dispatcher.stop()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)


def runtime_service(runtime: Any) -> Service | None:
    """The factory ``livedata.server.app.Runtime`` calls (when WEBHOOKS_IN_SERVE)."""
    if runtime.listener is None or not runtime.settings.WEBHOOKS_IN_SERVE:
        return None
    return Service(runtime.listener)


async def run_worker(
    concurrency: int | None = None, *, ready: Callable[[], None] | None = None
) -> None:
    """``livedata deliver``: a listener and a dispatcher, until SIGINT/SIGTERM."""
    import signal

    listener = Listener()
    dispatcher = Dispatcher(listener, concurrency=concurrency)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, dispatcher.stop)
    listen = asyncio.create_task(listener.run())
    work = asyncio.create_task(dispatcher.run())
    if ready is not None:
        ready()
    try:
        await work
    finally:
        listener.stop()
        await asyncio.gather(listen, return_exceptions=True)


__all__ = ["Dispatcher", "Runner", "Service", "poke_all", "run_worker", "webhook_id"]
