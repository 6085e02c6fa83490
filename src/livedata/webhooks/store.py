"""Every statement the delivery engine runs: reading and claiming subscriptions, and
writing a worker's progress back (positions, retry state and the delivery log).

The dispatcher drives; this module holds its SQL, so the rules of claiming and writing
can be read in one place.

**Claiming** is a session-level advisory lock per subscription (``LOCK_SUBSCRIPTION``,
the two-int4 form), and every live dispatcher holds a shared presence lock
(``LOCK_PRESENCE``) so workers can count each other for the fair share.

**Writing**: one statement per flush (an implicit sub-millisecond transaction on the
dispatcher's connection, which runs with ``synchronous_commit = off``: a flush lost in a
database crash only means a redelivery). Retry state and disabling apply only if the
subscription was not replaced meanwhile (a PUT resets them).

**The durable position only moves forward.** Positions are snapshots, and "forward" is
``Snapshot.covers``, which SQL cannot compare; it is not needed. A subscription's
positions form a chain: its state starts from the stored one, its follower hands it a
gap-free chain of batches from there, and ``DeliveryState.position()`` only moves along
that chain (the position before the first unacknowledged event, or the end of what was
examined). So each value a worker writes is at or after the one it wrote before. The
update is a compare-and-set on that: the position is written only where the row still
holds the one this worker last wrote (or started from), and only for the
``generation`` it started from (a position set through the API changes it, and wins).
Who else could write? Only the holder of the subscription's advisory lock runs a
runner, and it writes on the connection holding the lock: when that connection dies, so
do its writes; a new holder reads the row under the lock and starts from there. A
compare-and-set that fails anyway (it should not) leaves the row alone and is reported,
and the runner is handed back to start again from what is stored.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from livedata.capture import log
from livedata.webhooks.state import Attempt, SubscriptionRow, Update

SUB_TABLE = "livedata_webhook_subscription"
DELIVERY_TABLE = "livedata_webhook_delivery"
LOCK_SUBSCRIPTION = 0x6C647768  # "ldwh"
LOCK_PRESENCE = 0x6C647777  # "ldww"

SUB_COLUMNS = (
    "id, owner_id, url, model_labels, operations, filter, fields, batch, secret, "
    "position, generation, epoch, attempts, next_attempt_at, updated"
)
_THIS_DATABASE = "(SELECT oid FROM pg_database WHERE datname = current_database())"


# --- reading and claiming ------------------------------------------------------------------
async def connect(params: dict[str, Any], name: str) -> psycopg.AsyncConnection:
    """The dispatcher's connection: autocommit (no xid held), generic plans, and the
    presence lock taken."""
    options = " ".join(
        filter(None, [params.get("options"), "-c plan_cache_mode=force_generic_plan"])
    )
    conn = await psycopg.AsyncConnection.connect(
        **{**params, "options": options},
        autocommit=True,
        application_name=f"livedata webhooks {name}"[:63],
    )
    await conn.execute("SET synchronous_commit = off")
    await conn.execute("SELECT pg_advisory_lock_shared(%s, 0)", [LOCK_PRESENCE])
    return conn


@dataclass(frozen=True)
class Overview:
    """What a dispatcher's reload looks at, read in one statement (``overview``)."""

    #: every active subscription, by id
    active: dict[int, SubscriptionRow]
    #: the log's pruned horizon (``livedata.capture.log.horizon``)
    horizon: int | None
    #: live dispatchers (holders of the presence lock), at least this one
    workers: int
    #: lock keys (``id % 2**31``) of subscriptions some worker holds
    locked: set[int]


_OVERVIEW_SQL = f"""
SELECT ({log.HORIZON_SQL}),
       (SELECT count(DISTINCT pid) FROM pg_locks WHERE locktype = 'advisory'
          AND classid = %(presence)s AND objid = 0 AND database = {_THIS_DATABASE}),
       ARRAY(SELECT objid::bigint FROM pg_locks WHERE locktype = 'advisory'
          AND classid = %(sub)s AND objsubid = 2 AND granted AND database = {_THIS_DATABASE}),
       s.*
FROM (SELECT 1) one
LEFT JOIN (SELECT {SUB_COLUMNS} FROM {SUB_TABLE} WHERE state = 'active') s ON true
ORDER BY s.id
"""


async def overview(conn: psycopg.AsyncConnection) -> Overview:
    """The active subscriptions, the horizon, the live workers and who holds what: one
    statement (a reload every second was four)."""
    rows = await (
        await conn.execute(_OVERVIEW_SQL, {"presence": LOCK_PRESENCE, "sub": LOCK_SUBSCRIPTION})
    ).fetchall()
    horizon, workers, locked = rows[0][:3]
    active = {r[3]: SubscriptionRow.from_row(r[3:]) for r in rows if r[3] is not None}
    return Overview(
        active=active,
        horizon=None if horizon is None else int(horizon),
        workers=max(1, int(workers or 1)),
        locked=set(locked),
    )


async def try_lock(conn: psycopg.AsyncConnection, ids: list[int]) -> list[int]:
    """Those of ``ids`` this connection could lock (without waiting)."""
    rows = await (
        await conn.execute(
            "SELECT k FROM unnest(%s::bigint[]) AS k "
            "WHERE pg_try_advisory_lock(%s, (k %% 2147483648)::int)",
            [ids, LOCK_SUBSCRIPTION],
        )
    ).fetchall()
    return [r[0] for r in rows]


async def read_active(conn: psycopg.AsyncConnection, ids: list[int]) -> dict[int, SubscriptionRow]:
    """The rows of ``ids`` that are still active (read again under the lock: the
    previous holder may have moved on meanwhile)."""
    rows = await (
        await conn.execute(
            f"SELECT {SUB_COLUMNS} FROM {SUB_TABLE} WHERE id = ANY(%s) AND state = 'active'",
            [ids],
        )
    ).fetchall()
    return {r[0]: SubscriptionRow.from_row(r) for r in rows}


async def unlock(conn: psycopg.AsyncConnection, sub_id: int) -> None:
    await conn.execute(
        "SELECT pg_advisory_unlock(%s, (%s %% 2147483648)::int)", [LOCK_SUBSCRIPTION, sub_id]
    )


async def disable(
    conn: psycopg.AsyncConnection, subscription: SubscriptionRow, reason: str
) -> None:
    """Disable a subscription this worker could not start (of the generation it read)."""
    await conn.execute(
        f"UPDATE {SUB_TABLE} SET state = 'disabled', disabled_reason = %s "
        "WHERE id = %s AND generation = %s",
        [reason, subscription.id, subscription.generation],
    )


async def prune(conn: psycopg.AsyncConnection, cutoff: datetime) -> None:
    """Delivery-log rows older than ``cutoff`` (at most 10,000 a call: short locks)."""
    await conn.execute(
        f"DELETE FROM {DELIVERY_TABLE} WHERE id IN "
        f"(SELECT id FROM {DELIVERY_TABLE} WHERE at < %s LIMIT 10000)",
        [cutoff],
    )


# --- writing back ---------------------------------------------------------------------------


async def write(
    conn: psycopg.AsyncConnection,
    updates: list[Update],
    attempts: list[Attempt],
    worker: str,
) -> set[int]:
    """Rows travel as two JSON documents (json_to_recordset): one parameter each,
    dumped by the C json encoder; per-column arrays cost 3x more to send.

    Returns the ids of subscriptions (of the current generation) whose stored position
    was not the worker's previous one, so was left alone (see the module docstring)."""
    subs = [
        {
            "id": u.sub_id,
            "gen": u.generation,
            "upd": u.updated.isoformat(),
            "prev": u.previous,
            "pos": str(u.position),
            "att": u.attempts,
            "next": _iso(u.next_attempt_at),
            "dlv": u.progress.delivered,
            "ok": _iso(u.progress.success_at),
            "eat": _iso(u.progress.error_at),
            "err": u.progress.error,
            "st": u.progress.status,
            "dis": u.progress.disable,
        }
        for u in updates
    ]
    log_rows = [
        {
            "sub": a.sub_id,
            "wid": a.webhook_id,
            "pos": a.position,
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
            id bigint, gen int, upd timestamptz, prev text, pos text, att int,
            next timestamptz, dlv bigint, ok timestamptz, eat timestamptz, err text,
            st int, dis text)
    ), upd AS (
        UPDATE {SUB_TABLE} s SET
            -- compare-and-set: only from the position this worker wrote before
            position = CASE WHEN s.position = v.prev THEN v.pos ELSE s.position END,
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
        RETURNING s.id, s.position = v.pos AS moved
    ), log AS (
        INSERT INTO {DELIVERY_TABLE} (subscription_id, webhook_id, position, changes,
            attempt, outcome, status_code, error, response_excerpt, latency_ms, worker, at)
        SELECT d.sub, d.wid, d.pos, d.n, d.att, d.out, d.st, d.err, d.exc, d.ms,
               %(worker)s, d.at
        FROM ROWS FROM (json_to_recordset(%(log)s::json) AS (
            sub bigint, wid text, pos text, n int, att int, out text, st int, err text,
            exc text, ms float8, at timestamptz)) WITH ORDINALITY
            AS d(sub, wid, pos, n, att, out, st, err, exc, ms, at, ord)
        WHERE EXISTS (SELECT 1 FROM {SUB_TABLE} s WHERE s.id = d.sub)
        -- the log's ids in attempt order, whatever the plan: with more subscriptions
        -- than attempts PostgreSQL hashes the attempts for the EXISTS and returns a
        -- subscription's rows in reverse (CI: a retry logged after the next attempt)
        ORDER BY d.ord
    )
    SELECT id FROM upd WHERE NOT moved
    """
    params: dict[str, Any] = {
        "subs": json.dumps(subs),
        "log": json.dumps(log_rows),
        "worker": worker,
    }
    try:
        cur = await conn.execute(sql, params)
    except psycopg.errors.ForeignKeyViolation:
        # a subscription was deleted during the statement: its log rows go with it
        params["log"] = "[]"
        cur = await conn.execute(sql, params)
    return {int(r[0]) for r in await cur.fetchall()}


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()
