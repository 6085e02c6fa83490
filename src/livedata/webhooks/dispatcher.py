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
- **Reloading** the subscriptions is one statement (``store.overview``), every
  ``WEBHOOK_REFRESH_INTERVAL`` while any subscription is active. With none, the
  dispatcher waits for its trigger's NOTIFY (a subscription added, enabled, replaced,
  removed), received on the listener's connection: an idle process costs nothing.
- **Delivering**: one request at a time per subscription (so in log order), all
  subscriptions concurrently (a slow receiver only holds its own runner). Retries
  follow ``WEBHOOK_RETRY_SCHEDULE``; runners waiting long for a retry are handed back.
- **Recording**: acknowledged positions, retry state and the delivery log are written
  by the flusher every ``WEBHOOK_FLUSH_INTERVAL`` in one statement (``store.write``):
  the durable position only moves forward, and only for the subscription's current
  ``generation`` (a position set through the API wins).

The dispatcher is a driver: what each subscription sends and writes is decided by its
``DeliveryState`` (``state``, pure), every statement is in ``store``, and the runners
(``runner``) only send and wait. Imports go one way: dispatcher -> runner -> state, and
dispatcher -> store -> state.
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

from livedata.capture.follower import ConnectionLimit, Follower, first_line
from livedata.capture.listener import Listener, connection_params
from livedata.capture.position import Position
from livedata.conf import LivedataSettings, livedata_settings
from livedata.runtime.figures import Figure
from livedata.webhooks import store
from livedata.webhooks.models import NOTIFY_CHANNEL
from livedata.webhooks.owners import Owners
from livedata.webhooks.runner import Runner
from livedata.webhooks.selection import Selection
from livedata.webhooks.state import Attempt, DeliveryState, SubscriptionRow, Update
from livedata.webhooks.transport import Transport

logger = logging.getLogger("livedata.webhooks")

PRUNE_EVERY = 600.0
#: With no active subscription, reload only when the subscriptions' trigger NOTIFYs
#: (``models.NOTIFY_CHANNEL``, through the listener's connection), or after this long
#: (a safety net): an idle process costs the database nothing per second.
IDLE_RELOAD = 60.0
#: catch-up connections a dispatcher's followers share (claiming 100 subscriptions at
#: once must not open 100 connections)
CATCH_UP_CONNECTIONS = 2

#: dispatchers running in this process (the API pokes them after a change)
RUNNING: set[Dispatcher] = set()


def poke_all() -> None:
    for dispatcher in list(RUNNING):
        dispatcher.poke_threadsafe()


def fair_share(subscriptions: int, workers: int, concurrency: int) -> int:
    """How many subscriptions one of ``workers`` live workers may hold."""
    return min(concurrency, math.ceil(subscriptions / workers))


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
        self.buffer_limit = self.conf.LISTENER_BATCH_SIZE
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
        self.owners = Owners()
        self._last_prune = 0.0
        self._last_recheck = time.monotonic()
        self.recheck_every = self.conf.WEBHOOK_PERMISSION_RECHECK
        #: some subscription is active: reload every WEBHOOK_REFRESH_INTERVAL (to claim
        #: what a dead worker held, take turns, see a horizon move) instead of IDLE_RELOAD
        self.watching = True
        listener.watch(NOTIFY_CHANNEL, self.poke)
        #: attempts made by this dispatcher, by outcome (for the figures)
        self.outcomes: dict[str, int] = {}

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
            name=f"webhooks subscription {runner.subscription.id}",
            position=runner.subscription.position,
            models=runner.subscription.labels,
        )

    async def _unfollow(self, runner: Runner) -> None:
        if runner.follower is not None:
            await self.listener.unfollow(runner.follower)

    async def _connect(self) -> psycopg.AsyncConnection:
        params = self._params or await asyncio.to_thread(connection_params)
        return await store.connect(params, self.name)

    # --- main loop ------------------------------------------------------------------------
    async def run(self) -> None:
        """Serve until ``stop()``; reconnects when the database goes away."""
        self._loop = asyncio.get_running_loop()
        RUNNING.add(self)
        delay = self.conf.LISTENER_RECONNECT_MIN
        try:
            while not self._stopping.is_set():
                try:
                    self.conn = await self._connect()
                    delay = self.conf.LISTENER_RECONNECT_MIN
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
                    delay = self.conf.LISTENER_RECONNECT_MAX
                finally:
                    await self._drop_all()
                if not self._stopping.is_set():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stopping.wait(), delay)
                    delay = min(delay * 2, self.conf.LISTENER_RECONNECT_MAX)
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
                    timeout=self.conf.WEBHOOK_REFRESH_INTERVAL if self.watching else IDLE_RELOAD,
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
        """Read the subscriptions, hand back what changed or is more than the fair
        share, claim what is free (or take turns), re-check permissions, prune."""
        assert self.conn is not None
        seen = await store.overview(self.conn)
        active, workers, locked = seen.active, seen.workers, seen.locked
        self.horizon = seen.horizon
        self.watching = bool(active)
        restart = self._hand_back_changed(active)
        share = fair_share(len(active), workers, self.concurrency)
        held = self._hand_back_extras(share)
        candidates = self._candidates(active, locked)
        room = share - len(held)
        if room <= 0 and candidates:
            self._take_turns(held, len(candidates))
        if room > 0 and candidates:
            random.shuffle(candidates)  # workers starting together spread out
            await self._claim([c.id for c in candidates[:room]])
        await self._recheck(held)
        await self._maybe_prune()
        self.flush_soon()  # positions that only moved past non-matching rows, too
        if restart:
            self.poke()

    def _held(self) -> list[Runner]:
        return [r for r in self.runners.values() if not r.stopping]

    def _hand_back_changed(self, active: dict[int, SubscriptionRow]) -> bool:
        """Stop runners whose subscription was deleted, disabled or changed (or pruned
        from under a catch-up: disabled). True: one changed, reload soon to restart it."""
        restart = False
        for sub_id, runner in list(self.runners.items()):
            subscription = active.get(sub_id)
            if runner.stopping:
                continue
            follower = runner.follower
            if follower is not None and follower.position is not None:
                reason = self._expired(follower.position)
                if reason is not None:  # pruned while it was catching up
                    runner.disable(reason)
                    continue
            if subscription is None or subscription.version != runner.subscription.version:
                runner.stop()  # deleted, disabled or changed: hand it back
                restart = restart or subscription is not None
        return restart

    def _hand_back_extras(self, share: int) -> list[Runner]:
        """Another worker joined: hand back idle runners above ``share``. Returns the
        runners still held."""
        held = self._held()
        if len(held) > share:
            idle = [r for r in held if not r.state.buffer and not r.state.inflight]
            for runner in idle[: len(held) - share]:
                runner.stop()
            held = self._held()
        return held

    def _candidates(
        self, active: dict[int, SubscriptionRow], locked: set[int]
    ) -> list[SubscriptionRow]:
        """Subscriptions nobody holds, due now (not waiting for a far retry)."""
        now = datetime.now(UTC)
        return [
            c
            for i, c in active.items()
            if i not in self.runners and i % 2**31 not in locked and c.due(now)
        ]

    def _take_turns(self, held: list[Runner], waiting: int) -> None:
        """More subscriptions than this worker may hold, and nobody holds ``waiting`` of
        them: hand back the ones idle the longest (up to ``waiting``)."""
        clock = time.monotonic()
        idle = sorted(
            (r for r in held if r.state.idle_for(clock) > self.conf.WEBHOOK_REFRESH_INTERVAL),
            key=lambda r: -r.state.idle_for(clock),
        )
        for runner in idle[:waiting]:
            runner.stop()

    async def _recheck(self, held: list[Runner]) -> None:
        """Owners' permissions (and the models' exposure) again, now and then: a lost
        ``view`` disables, a lost (or new) context permission applies from then on."""
        if time.monotonic() - self._last_recheck < self.recheck_every or not held:
            return
        self._last_recheck = time.monotonic()
        self.recheck_every = self.conf.WEBHOOK_PERMISSION_RECHECK
        outcomes = await asyncio.to_thread(
            self.owners.check, [r.subscription for r in held], self.recheck_every
        )
        for runner in held:
            reason = outcomes.get(runner.subscription.id)
            if isinstance(reason, Selection):
                runner.selection = reason  # the owner's context permission may have changed
            elif isinstance(reason, str) and not runner.stopping:
                runner.disable(reason)

    async def _claim(self, ids: list[int]) -> None:
        """Lock what is free of ``ids``, read it again under the lock, and start it (or
        disable it: its owner lost the permission, its position was pruned)."""
        assert self.conn is not None
        locked = await store.try_lock(self.conn, ids)
        if not locked:
            return
        # read again under the lock: the previous holder may have moved on meanwhile
        fresh = await store.read_active(self.conn, locked)
        selections = await asyncio.to_thread(
            self.owners.check, list(fresh.values()), self.recheck_every
        )
        for sub_id in locked:
            subscription = fresh.get(sub_id)
            outcome = selections.get(sub_id)
            if subscription is not None and isinstance(outcome, Selection):
                outcome = self._expired(subscription.position) or outcome
            if subscription is None or outcome is None:
                await store.unlock(self.conn, sub_id)
            elif isinstance(outcome, str):
                logger.warning(
                    "livedata webhooks: subscription %s disabled: %s", subscription.id, outcome
                )
                await store.disable(self.conn, subscription, outcome)
                await store.unlock(self.conn, sub_id)
            else:
                self._start(subscription, outcome)

    def _start(self, subscription: SubscriptionRow, selection: Selection) -> None:
        state = DeliveryState(
            subscription,
            buffer_limit=self.buffer_limit,
            retry_schedule=self.conf.WEBHOOK_RETRY_SCHEDULE,
        )
        runner = Runner(
            state,
            selection,
            transport=self.transport,
            record=self.record,
            flush_soon=self.flush_soon,
        )
        self.runners[subscription.id] = runner
        runner.follower = self._follow(runner)
        runner.task = asyncio.create_task(runner.run())
        runner.task.add_done_callback(lambda task, r=runner: self._ended(r, task))

    def _ended(self, runner: Runner, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            logger.error(
                "livedata webhooks: runner of subscription %s failed",
                runner.subscription.id,
                exc_info=task.exception(),
            )
        if self.runners.get(runner.subscription.id) is runner:
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
        await store.prune(self.conn, datetime.now(UTC) - self.conf.WEBHOOK_DELIVERY_RETENTION)

    # --- figures ------------------------------------------------------------------------
    def figures(self) -> list[Figure]:
        """The subscriptions this dispatcher holds, their backlog and retries (a source
        of ``runtime.figures``; how far each is behind the log is its follower's lag,
        ``consumer_lag_*{consumer="webhooks subscription N"}``)."""
        held = [r for r in list(self.runners.values()) if not r.stopping]
        backlog = Figure(
            "webhook_backlog",
            "gauge",
            "changes a webhook subscription received from the log, not yet acknowledged",
        )
        age = Figure(
            "webhook_backlog_seconds",
            "gauge",
            "seconds since the oldest change of the backlog was written (0: none)",
        )
        failed = Figure(
            "webhook_failed_attempts",
            "gauge",
            "failed attempts in a row at a subscription's next change (0: delivering)",
        )
        now = datetime.now(UTC)
        for runner in held:
            labels = (("subscription", str(runner.subscription.id)),)
            buffer = runner.state.buffer
            backlog.values.append((labels, len(buffer)))
            oldest = datetime.fromisoformat(buffer[0].event["timestamp"]) if buffer else now
            age.values.append((labels, max(0.0, (now - oldest).total_seconds())))
            failed.values.append((labels, runner.state.attempts))
        return [
            Figure.one(
                "webhook_subscriptions_held",
                "gauge",
                "webhook subscriptions this process delivers now",
                len(held),
            ),
            backlog,
            age,
            failed,
            Figure(
                "webhook_attempts_total",
                "counter",
                "delivery attempts by outcome (delivered, failed, error, gone)",
                [((("outcome", o),), n) for o, n in sorted(self.outcomes.items())],
            ),
        ]

    # --- writing back -------------------------------------------------------------------------
    def record(self, attempt: Attempt) -> None:
        outcome = attempt.result.outcome
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1
        if attempt.result.ok and not self.conf.WEBHOOK_LOG_SUCCESSES:
            return
        self._attempts.append(attempt)

    async def _write(self) -> None:
        """One statement: positions and retry state of every runner with news, and the
        delivery log; then unlock the runners that ended."""
        assert self.conn is not None
        finished, self._finished = self._finished, []
        ended = {id(r) for r in finished}
        updates: list[tuple[Runner, Update]] = []
        clock = time.monotonic()
        for runner in list(self.runners.values()):
            followed = None if runner.follower is None else runner.follower.position
            if runner.state.wants_write(followed, clock, id(runner) in ended):
                updates.append((runner, runner.state.take_update(followed)))
        attempts, self._attempts = self._attempts, []
        if updates or attempts:
            refused = await store.write(self.conn, [u for _, u in updates], attempts, self.name)
            for runner, update in updates:
                if runner.subscription.id in refused and update.position != runner.state.flushed:
                    logger.warning(
                        "livedata webhooks: subscription %s: its stored position is not the "
                        "one this worker wrote; handing it back",
                        runner.subscription.id,
                    )
                    runner.stop()
                    continue
                runner.state.flushed_to(update.position, clock)
        for runner in finished:
            await self._unfollow(runner)
            await store.unlock(self.conn, runner.subscription.id)
            if self.runners.get(runner.subscription.id) is runner:
                del self.runners[runner.subscription.id]
            if runner.state.parked:
                logger.info(
                    "livedata webhooks: subscription %s waits for its retry at %s",
                    runner.subscription.id,
                    runner.state.next_attempt_at,
                )
