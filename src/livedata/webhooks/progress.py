"""Writing a worker's progress back: positions, retry state and the delivery log.

One statement per flush (an implicit sub-millisecond transaction on the dispatcher's
connection, which runs with ``synchronous_commit = off``: a flush lost in a database
crash only means a redelivery). Retry state and disabling apply only if the subscription
was not replaced meanwhile (a PUT resets them).

**The durable position only moves forward.** Positions are snapshots, and "forward" is
``Snapshot.covers``, which SQL cannot compare; it is not needed. A runner's positions
form a chain: it starts from the stored one, its follower hands it a gap-free chain of
batches from there, and ``Runner.position()`` only moves along that chain (the position
before the first unacknowledged event, or the end of what was examined). So each value a
runner writes is at or after the one it wrote before. The update is a compare-and-set on
that: the position is written only where the row still holds the one this runner last
wrote (or started from), and only for the ``generation`` it started from (a position
set through the API changes it, and wins). Who else could write? Only the holder of the
subscription's advisory lock runs a runner, and it writes on the connection holding the
lock: when that connection dies, so do its writes; a new holder reads the row under the
lock and starts from there. A compare-and-set that fails anyway (it should not) leaves
the row alone and is reported, and the runner is handed back to start again from what
is stored.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import psycopg

from livedata.capture.position import Position
from livedata.webhooks.runner import Attempt, Progress, Runner

SUB_TABLE = "livedata_webhook_subscription"
DELIVERY_TABLE = "livedata_webhook_delivery"


async def write(
    conn: psycopg.AsyncConnection,
    updates: list[tuple[Runner, Progress, Position]],
    attempts: list[Attempt],
    worker: str,
) -> set[int]:
    """Rows travel as two JSON documents (json_to_recordset): one parameter each,
    dumped by the C json encoder; per-column arrays cost 3x more to send.

    Returns the ids of subscriptions (of the current generation) whose stored position
    was not the runner's previous one, so was left alone (see the module docstring)."""
    subs = [
        {
            "id": runner.config.id,
            "gen": runner.config.generation,
            "upd": runner.config.updated.isoformat(),
            "prev": runner.flushed_text,
            "pos": str(position),
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
            -- compare-and-set: only from the position this runner wrote before
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
        FROM json_to_recordset(%(log)s::json) AS d(
            sub bigint, wid text, pos text, n int, att int, out text, st int, err text,
            exc text, ms float8, at timestamptz)
        WHERE EXISTS (SELECT 1 FROM {SUB_TABLE} s WHERE s.id = d.sub)
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
