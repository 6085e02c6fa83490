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
- **Reading**: each claimed subscription has a ``Runner`` fed by its own ``Follower`` on
  the process's listener (``livedata.capture.follower``), started at the subscription's
  durable position and limited to its models. A follower that is caught up takes the
  listener's batches from memory (one log read per process, whatever the number of
  subscriptions); one that is behind (just claimed, its queue overflowed while the
  receiver was slow) reads the log itself from its position until it joins the
  listener's stream again. Contiguity and catch-up live there, not here. Catch-ups share
  at most ``CATCH_UP_CONNECTIONS`` connections per dispatcher
  (``ConnectionLimit``). Nothing is lost when NOTIFYs are: the listener also polls.
- **Delivering**: one request at a time per subscription (so in log order), all
  subscriptions concurrently (a slow receiver only holds its own runner). Retries
  follow ``WEBHOOK_RETRY_SCHEDULE``; runners waiting long for a retry are handed back.
- **Recording**: acknowledged positions, retry state and the delivery log are written
  by the flusher every ``WEBHOOK_FLUSH_INTERVAL`` in one statement (``progress``): the
  durable position only moves forward, and only for the subscription's current
  ``generation`` (a position set through the API wins).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import random
import socket
import time
from datetime import UTC, datetime
from typing import Any

import psycopg

from livedata.capture import log
from livedata.capture.follower import ConnectionLimit, Follower, first_line
from livedata.capture.listener import Listener, connection_params
from livedata.capture.position import Position
from livedata.conf import LivedataSettings, livedata_settings
from livedata.webhooks.progress import DELIVERY_TABLE, SUB_TABLE, write
from livedata.webhooks.runner import Attempt, Config, Progress, Runner
from livedata.webhooks.selection import Selection
from livedata.webhooks.transport import Transport

logger = logging.getLogger("livedata.webhooks")

#: advisory lock namespaces (the two-int4 form): one lock per subscription, and a shared
#: presence lock every live dispatcher holds (to count workers for the fair share)
#: Owners holding it receive the audit context of models whose Collection exposes it.
CONTEXT_PERMISSION = "livedata.view_change_context"
LOCK_SUBSCRIPTION = 0x6C647768  # "ldwh"
LOCK_PRESENCE = 0x6C647777  # "ldww"
PRUNE_EVERY = 600.0
#: catch-up connections a dispatcher's followers share (claiming 100 subscriptions at
#: once must not open 100 connections)
CATCH_UP_CONNECTIONS = 2

SUB_COLUMNS = (
    "id, owner_id, url, model_labels, operations, filter, fields, batch, secret, "
    "position, generation, epoch, attempts, next_attempt_at, updated"
)

#: dispatchers running in this process (the API pokes them after a change)
RUNNING: set[Dispatcher] = set()


def poke_all() -> None:
    for dispatcher in list(RUNNING):
        dispatcher.poke_threadsafe()


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
        self.buffer_limit = self.conf.BATCH_SIZE
        self.catch_up = ConnectionLimit(listener.connect, CATCH_UP_CONNECTIONS)
        self.runners: dict[int, Runner] = {}
        self.horizon: int | None = None  # the log's pruned horizon, as of the last reload
        self.conn: psycopg.AsyncConnection | None = None
        self._attempts: list[Attempt] = []
        self._finished: list[Runner] = []
        self._stopping = asyncio.Event()
        self._poke = asyncio.Event()
        self._flush = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._checked: dict[int, tuple[tuple[int, datetime], float, Selection | str]] = {}
        self._last_prune = 0.0
        self._last_recheck = time.monotonic()
        self.recheck_every = self.conf.WEBHOOK_PERMISSION_RECHECK

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

    # --- following the log -------------------------------------------------------------
    def _follow(self, runner: Runner) -> Follower:
        """The runner's follower, from its durable position, with its models, on the
        dispatcher's shared ``ConnectionLimit`` for catching up."""
        return self.listener.follow(
            runner.consume,
            connect=self.catch_up.connect,
            name=f"webhooks subscription {runner.config.id}",
            position=runner.config.position,
            models=runner.config.labels,
        )

    async def _unfollow(self, runner: Runner) -> None:
        if runner.follower is not None:
            await self.listener.unfollow(runner.follower)

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
                        first_line(exc),
                        delay,
                    )
                except Exception:
                    # not migrated, or a bug: say so, and keep trying (slowly)
                    logger.exception("livedata webhooks: delivery failed; retrying in %.1fs", delay)
                    delay = self.conf.RECONNECT_MAX
                finally:
                    await self._drop_all()
                if not self._stopping.is_set():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stopping.wait(), delay)
                    delay = min(delay * 2, self.conf.RECONNECT_MAX)
        finally:
            RUNNING.discard(self)
            await self.catch_up.close()
            await self.transport.close()

    async def _serve(self) -> None:
        # followers start from the listener's position: wait until it has one
        started = asyncio.ensure_future(self.listener.started.wait())
        stopping = asyncio.ensure_future(self._stopping.wait())
        await asyncio.wait({started, stopping}, return_when=asyncio.FIRST_COMPLETED)
        started.cancel()
        stopping.cancel()
        flusher = asyncio.create_task(self._flusher())
        try:
            while not self._stopping.is_set():
                self._poke.clear()  # a poke during the reload means: reload again
                await self._reload()
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
        """Let requests in flight finish (for a few seconds: then they are abandoned and
        delivered again later), write everything back, unlock."""
        for runner in self.runners.values():
            runner.stop()
        tasks = [r.task for r in self.runners.values() if r.task is not None]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=min(self.conf.WEBHOOK_TIMEOUT, 5.0))
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
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
        self.horizon = await log.ahorizon(self.conn)
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
            follower = runner.follower
            if follower is not None and follower.position is not None:
                reason = self._expired(follower.position)
                if reason is not None:  # pruned while it was catching up
                    runner.progress.disable = reason
                    runner.dirty = True
                    runner.stop()
                    logger.warning(
                        "livedata webhooks: subscription %s disabled: %s", sub_id, reason
                    )
                    continue
            if config is None or config.version != runner.config.version:
                runner.stop()  # deleted, disabled or changed: hand it back
                restart = restart or config is not None
        share = min(self.concurrency, math.ceil(len(active) / workers))
        held = [r for r in self.runners.values() if not r.stopping]
        if len(held) > share:  # another worker joined: hand back idle extras
            for runner in [r for r in held if not r.buffer and not r.inflight][: len(held) - share]:
                runner.stop()
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
                runner.stop()
        if room > 0 and candidates:
            random.shuffle(candidates)  # workers starting together spread out
            await self._claim([c.id for c in candidates[:room]])
        await self._recheck(held)
        await self._maybe_prune()
        self.flush_soon()  # positions that only moved past non-matching rows, too
        if restart:
            self.poke()

    async def _recheck(self, held: list[Runner]) -> None:
        """Owners' permissions (and the models' exposure) again, now and then: a lost
        ``view`` disables, a lost (or new) context permission applies from then on."""
        if time.monotonic() - self._last_recheck < self.recheck_every or not held:
            return
        self._last_recheck = time.monotonic()
        self.recheck_every = self.conf.WEBHOOK_PERMISSION_RECHECK
        outcomes = await asyncio.to_thread(self._selections, [r.config for r in held])
        for runner in held:
            reason = outcomes.get(runner.config.id)
            if isinstance(reason, Selection):
                runner.selection = reason  # the owner's context permission may have changed
            elif isinstance(reason, str) and not runner.stopping:
                runner.progress.disable = reason
                runner.dirty = True
                runner.stop()
                logger.warning(
                    "livedata webhooks: subscription %s disabled: %s", runner.config.id, reason
                )

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
            if config is not None and isinstance(outcome, Selection):
                outcome = self._expired(config.position) or outcome
            if config is None or outcome is None:
                await self._unlock(sub_id)
            elif isinstance(outcome, str):
                await self._disable_now(config, outcome)
                await self._unlock(sub_id)
            else:
                self._start(config, outcome)

    def _selections(self, configs: list[Config]) -> dict[int, Selection | str]:
        """Compile each subscription, and check its owner may still see its models
        (Django permissions; in a thread). A string says why it must be disabled. Whether
        audit contexts are sent is decided here too, from the owner's permission."""
        from django.contrib.auth import get_user_model
        from django.db import connections

        from livedata.webhooks.selection import SelectionError, model_of

        out: dict[int, Selection | str] = {}
        try:
            users = get_user_model()._default_manager.in_bulk({c.owner_id for c in configs})
            clock = time.monotonic()
            for config in configs:
                cached = self._checked.get(config.id)
                fresh = clock - cached[1] < self.recheck_every if cached else False
                if cached and cached[0] == config.version and fresh:
                    out[config.id] = cached[2]
                    continue
                user = users.get(config.owner_id)
                try:
                    selection: Selection | str = Selection(
                        config.labels,
                        config.operations,
                        config.filter,
                        config.fields,
                        context=user is not None and user.has_perm(CONTEXT_PERMISSION),
                    )
                except SelectionError as exc:
                    selection = f"its {exc.field} are no longer valid: {exc.message}"
                else:
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
        runner.follower = self._follow(runner)
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

    def _expired(self, position: Position) -> str | None:
        """Why a subscription at ``position`` cannot go on (pruned rows), or None."""
        if not position.lost_below(self.horizon):
            return None
        return (
            f"its position {position} is older than the oldest kept change (transactions "
            f"below {self.horizon} were pruned); set a position (PUT .../position) to continue"
        )

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
            runner.stop()
            if runner.task is not None:
                runner.task.cancel()
        await asyncio.gather(*(r.task for r in runners if r.task), return_exceptions=True)
        for runner in runners:
            await self._unfollow(runner)
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
        updates: list[tuple[Runner, Progress, Position]] = []
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
            refused = await write(self.conn, updates, attempts, self.name)
            for runner, _progress, position in updates:
                if runner.config.id in refused and position != runner.flushed:
                    logger.warning(
                        "livedata webhooks: subscription %s: its stored position is not the "
                        "one this worker wrote; handing it back",
                        runner.config.id,
                    )
                    runner.stop()
                    continue
                runner.flushed = position
                runner.flushed_text = str(position)
                runner.flushed_at = clock
        for runner in finished:
            await self._unfollow(runner)
            await self._unlock(runner.config.id)
            if self.runners.get(runner.config.id) is runner:
                del self.runners[runner.config.id]
            if runner.parked:
                logger.info(
                    "livedata webhooks: subscription %s waits for its retry at %s",
                    runner.config.id,
                    runner.next_attempt_at,
                )
