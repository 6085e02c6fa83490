"""Reading the change log by snapshot difference, without gaps, and pruning it.

The ordering trap: ids are assigned at insert, not at commit, so a reader that moved past
id 11 may never see id 10 of a transaction that commits later. Reading only below the
oldest transaction in flight (``pg_snapshot_xmin``) avoids it but lets one long
transaction anywhere in the database hold back every change.

So we read as Skype's PgQ does. A reader's position is the snapshot of its previous read
(``livedata.capture.position``). The next read takes ``cur = pg_current_snapshot()`` in
the reading statement and returns exactly the rows whose transaction ``cur`` sees and the
previous snapshot did not:

    (txid = ANY(xip(prev)) OR txid >= xmax(prev)) AND pg_visible_in_snapshot(txid, cur)

- A transaction is delivered by the first read after it commits, whatever else is open:
  a long transaction is one entry of ``xip``, probed once per read.
- Reads come in visibility (commit) order; inside a read, rows are in id order, which is
  write order for any one row (two writers of a row are serialised by its row lock).
- Gap-free and exactly once: visibility only grows, and consecutive snapshots partition
  the committed transactions. Every row of a transaction ``cur`` sees is visible to the
  statement itself (its snapshot is ``cur``), so nothing is half-read.

How one read stays cheap and bounded (one statement):

- The transactions to read are those of ``xip(prev)`` that ``cur`` sees (an array
  filter), and those in ``[xmax(prev), xmax(cur))`` with rows, found by a loose index scan
  of ``(txid, id)``: one probe per transaction, never a scan of a transaction in flight.
- Rows come per transaction by ``(txid, id)``, ``LIMIT`` each, merged by id. A *step*
  (from one snapshot to the next) of more than ``limit`` rows (a huge transaction, or a
  backlog) is returned in batches: the position then fixes the step's end snapshot and
  the last row id, and the next batches scan the primary key from there, keeping the
  rows of the step's transactions. A step is never cut by txid: a transaction with a
  lower txid can commit later than one with a higher txid (it took its xid first), so
  only whole snapshots keep commit order, and with it each row's write order.

Pruning (``prune``) removes the rows of transactions that had committed before the
retention cutoff, judged by *marks*: snapshots recorded with their time. Rows of a
transaction that started long ago but committed recently are kept; a position whose
oldest unreceived transaction is below the pruned horizon gets ``PositionExpired``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from livedata.capture.position import START, Position, PositionError, Snapshot

__all__ = [
    "START",
    "Batch",
    "Behind",
    "ChangeRow",
    "MissingLogTable",
    "Position",
    "PositionError",
    "PositionExpired",
    "Snapshot",
    "behind",
    "head",
    "head_async",
    "prune",
    "read",
    "read_batch",
    "read_batch_async",
]

LOG_TABLE = "livedata_change"
HORIZON_TABLE = "livedata_log_horizon"
MARK_TABLE = "livedata_log_mark"

_COLUMNS = (
    "id, txid::text::bigint AS txid, model, table_name, op, pk, old, new, changed, context, at"
)

# One statement, one snapshot: a new step from the previous snapshot (xmax, xip) to the
# current one (or a fixed end, catching up to a known position), the first batch of it.
READ_SQL = f"""
WITH RECURSIVE
cur AS (
    SELECT COALESCE(%(until)s::pg_snapshot, pg_current_snapshot()) AS s
),
walk(x) AS (  -- transactions with rows in [xmax(prev), xmax(cur)) that cur sees
    SELECT (SELECT l.txid FROM {LOG_TABLE} l
            WHERE l.txid >= %(xmax)s::xid8 AND l.txid < pg_snapshot_xmax((SELECT s FROM cur))
              AND pg_visible_in_snapshot(l.txid, (SELECT s FROM cur))
            ORDER BY l.txid LIMIT 1)
    UNION ALL
    SELECT (SELECT l.txid FROM {LOG_TABLE} l
            WHERE l.txid > w.x AND l.txid < pg_snapshot_xmax((SELECT s FROM cur))
              AND pg_visible_in_snapshot(l.txid, (SELECT s FROM cur))
            ORDER BY l.txid LIMIT 1)
    FROM walk w WHERE w.x IS NOT NULL
),
txs AS (
    SELECT x FROM pg_snapshot_xip(%(prev)s::pg_snapshot) AS x
    WHERE pg_visible_in_snapshot(x, (SELECT s FROM cur))
    UNION ALL
    SELECT x FROM walk WHERE x IS NOT NULL
),
batch AS (
    SELECT c.* FROM txs, LATERAL (
        SELECT {_COLUMNS} FROM {LOG_TABLE} r
        WHERE r.txid = txs.x {{models}}
        ORDER BY r.txid, r.id LIMIT %(limit)s + 1  -- the index's order: no sort
    ) c
    ORDER BY c.id LIMIT %(limit)s + 1
)
SELECT (SELECT s::text FROM cur),
       (SELECT txid::text::bigint FROM {HORIZON_TABLE} WHERE name = 'pruned'),
       batch.*
FROM (SELECT 1) AS one LEFT JOIN batch ON true
ORDER BY batch.id
"""
# The next batch of a step begun: its rows after the last id received, by the primary
# key (the step's rows are those of the transactions its end sees and its start did not).
NEXT_SQL = f"""
WITH batch AS (
    SELECT {_COLUMNS} FROM {LOG_TABLE} r
    WHERE r.id > %(after)s
      AND NOT pg_visible_in_snapshot(r.txid, %(prev)s::pg_snapshot)
      AND pg_visible_in_snapshot(r.txid, %(until)s::pg_snapshot) {{models}}
    ORDER BY r.id LIMIT %(limit)s + 1
)
SELECT %(until)s,
       (SELECT txid::text::bigint FROM {HORIZON_TABLE} WHERE name = 'pruned'),
       batch.*
FROM (SELECT 1) AS one LEFT JOIN batch ON true
ORDER BY batch.id
"""
HEAD_SQL = "SELECT pg_current_snapshot()::text"
HORIZON_SQL = f"SELECT txid::text::bigint FROM {HORIZON_TABLE} WHERE name = 'pruned'"
TABLE_EXISTS_SQL = f"SELECT to_regclass('{LOG_TABLE}') IS NOT NULL"


class PositionExpired(Exception):
    """Log rows after this position were pruned: the reader must refetch everything.

    Raised instead of silently skipping the pruned rows.
    """

    def __init__(self, position: Position, horizon: int) -> None:
        self.position = position
        self.horizon = horizon
        super().__init__(
            f"position {position} is older than the oldest kept change (transactions "
            f"below {horizon} were pruned): refetch the current state, then continue "
            "from the log's head"
        )


class MissingLogTable(Exception):
    def __init__(self) -> None:
        super().__init__(
            f"livedata's change log table ({LOG_TABLE}) does not exist in this database: "
            "run `livedata migrate` (or `python manage.py migrate`)"
        )


@dataclass(frozen=True, slots=True)
class ChangeRow:
    """One change as consumers see it (a plain value, independent of the ORM)."""

    id: int
    txid: int
    model: str
    table: str
    op: str
    pk: str | None
    old: dict[str, Any] | None
    new: dict[str, Any] | None
    changed: list[str] | None
    context: dict[str, Any] | None
    at: datetime

    def as_dict(self, position: Position | None = None) -> dict[str, Any]:
        """The row as JSON; ``position`` is where a reader that received it resumes."""
        return {
            "position": None if position is None else str(position),
            "txid": self.txid,
            "model": self.model,
            "table": self.table,
            "op": self.op,
            "pk": self.pk,
            "old": self.old,
            "new": self.new,
            "changed": self.changed,
            "context": self.context,
            "at": self.at.isoformat(),
        }


@dataclass(frozen=True, slots=True)
class Batch:
    """What one read returned: the rows after ``start`` up to ``end``, in order.

    Consecutive batches of one reader chain: each starts where the previous ended. A
    batch may be empty (its snapshot moved: write fences wait for that).
    """

    start: Position
    end: Position
    rows: list[ChangeRow] = field(default_factory=list)
    #: the read reached the snapshot it was taken at (False: more rows were waiting)
    caught_up: bool = True

    def position_after(self, index: int) -> Position:
        """Where a reader that received rows up to ``rows[index]`` resumes."""
        if index == len(self.rows) - 1:
            return self.end
        return Position(
            self.start.snapshot, self.end.until or self.end.snapshot, self.rows[index].id
        )


def _row(r: Sequence[Any]) -> ChangeRow:
    return ChangeRow(*r)


_MODELS_CLAUSE = "AND r.model = ANY(%(models)s)"
_READ_SQL = {False: READ_SQL.format(models=""), True: READ_SQL.format(models=_MODELS_CLAUSE)}
_NEXT_SQL = {False: NEXT_SQL.format(models=""), True: NEXT_SQL.format(models=_MODELS_CLAUSE)}


def _read_query(
    position: Position, limit: int, models: Iterable[str] | None, until: Snapshot | None
) -> tuple[str, dict[str, Any]]:
    prev = position.snapshot
    params: dict[str, Any] = {"limit": limit}
    if models:
        params["models"] = sorted({m.lower() for m in models})
    if position.until is not None:  # a step begun: its end is fixed
        params.update(prev=str(prev), until=str(position.until), after=position.last_id)
        return _NEXT_SQL[bool(models)], params
    params.update(xmax=str(prev.xmax), prev=str(prev), until=None if until is None else str(until))
    return _READ_SQL[bool(models)], params


def _batch(
    position: Position, limit: int, result: list[Sequence[Any]], until: Snapshot | None
) -> Batch:
    cur_text, horizon = result[0][0], result[0][1]
    if position.lost_below(horizon):
        raise PositionExpired(position, horizon)
    rows = [_row(r[2:]) for r in result if r[2] is not None]
    fresh = position.until is None and until is None
    step_end = position.until if position.until is not None else Snapshot.from_pg(cur_text)
    if len(rows) > limit:
        rows = rows[:limit]
        return Batch(position, Position(position.snapshot, step_end, rows[-1].id), rows, False)
    # a snapshot taken now sees all the previous one did; a catch-up target may not (a
    # reader ahead of it): then the union
    end = Position(step_end if fresh else position.snapshot.union(step_end))
    return Batch(position, end, rows, position.until is None)


def read_batch(
    conn: Any,
    position: Position,
    *,
    limit: int = 1000,
    models: Iterable[str] | None = None,
    until: Snapshot | None = None,
) -> Batch:
    """The next batch after ``position``: at most ``limit`` rows, in order.

    ``until`` stops at that snapshot instead of the current one (catching up to a known
    position). Raises ``PositionExpired`` when rows after ``position`` were pruned.
    ``conn`` is a sync psycopg (or Django) connection in autocommit or READ COMMITTED.
    """
    with conn.cursor() as cur:
        sql, params = _read_query(position, limit, models, until)
        cur.execute(sql, params)
        return _batch(position, limit, cur.fetchall(), until)


async def read_batch_async(
    conn: Any,
    position: Position,
    *,
    limit: int = 1000,
    models: Iterable[str] | None = None,
    until: Snapshot | None = None,
) -> Batch:
    """``read_batch`` for an async psycopg connection."""
    async with conn.cursor() as cur:
        sql, params = _read_query(position, limit, models, until)
        await cur.execute(sql, params)
        return _batch(position, limit, await cur.fetchall(), until)


def read(
    conn: Any, position: Position, *, limit: int = 1000, models: Iterable[str] | None = None
) -> list[ChangeRow]:
    """The rows of ``read_batch``."""
    return read_batch(conn, position, limit=limit, models=models).rows


def head(conn: Any) -> Position:
    """Now: a reader starting here receives the transactions that commit from now on."""
    with conn.cursor() as cur:
        cur.execute(HEAD_SQL)
        return Position(Snapshot.parse(cur.fetchone()[0]))


async def head_async(conn: Any) -> Position:
    """``head`` on an async connection."""
    async with conn.cursor() as cur:
        await cur.execute(HEAD_SQL)
        return Position(Snapshot.parse((await cur.fetchone())[0]))


def horizon(conn: Any) -> int | None:
    """Transactions below this xid may have been pruned (None: nothing was)."""
    with conn.cursor() as cur:
        cur.execute(HORIZON_SQL)
        row = cur.fetchone()
    return None if row is None else int(row[0])


# The committed rows a position has not received (of some models), at most ``cap`` of
# them: the index on (txid, id) is entered at the position's xmin.
BEHIND_SQL = f"""
SELECT count(DISTINCT txid), count(*), min(at) FROM (
    SELECT r.txid, r.at FROM {LOG_TABLE} r
    WHERE r.txid >= pg_snapshot_xmin(%(snap)s::pg_snapshot)
      AND NOT pg_visible_in_snapshot(r.txid, %(snap)s::pg_snapshot)
      AND pg_visible_in_snapshot(r.txid, pg_current_snapshot())
      AND NOT (%(until)s::pg_snapshot IS NOT NULL
               AND pg_visible_in_snapshot(r.txid, %(until)s::pg_snapshot)
               AND r.id <= %(last_id)s)
      {{models}}
    LIMIT %(cap)s
) behind
"""


@dataclass(frozen=True, slots=True)
class Behind:
    """How far a position is behind the log's head: committed transactions and rows it
    has not received, and when the oldest of them was written (None: none)."""

    transactions: int
    rows: int
    oldest: datetime | None
    #: ``rows`` reached the cap of the count: there are at least that many
    capped: bool


def behind(
    conn: Any, position: Position, *, models: Iterable[str] | None = None, cap: int = 100_000
) -> Behind:
    """``Behind`` for ``position`` (a consumer's saved one), counting at most ``cap`` rows
    (a position far behind costs a bounded read). ``conn``: a sync connection."""
    params: dict[str, Any] = {
        "snap": str(position.snapshot),
        "until": None if position.until is None else str(position.until),
        "last_id": position.last_id,
        "cap": cap,
    }
    clause = ""
    if models:
        params["models"] = sorted({m.lower() for m in models})
        clause = _MODELS_CLAUSE
    with conn.cursor() as cur:
        cur.execute(BEHIND_SQL.format(models=clause), params)
        transactions, rows, oldest = cur.fetchone()
    return Behind(int(transactions), int(rows), oldest, rows >= cap)


def oldest(conn: Any) -> Position:
    """The oldest position still readable in full (``START`` if nothing was pruned)."""
    return Position.oldest_at(horizon(conn))


def prune(conn: Any, older_than: datetime | None) -> int:
    """Delete the rows of transactions that had committed before ``older_than``.

    ``None`` means now: every transaction committed so far.

    Judged by marks (snapshots recorded with their time, one per call): the newest mark
    taken at or before ``older_than`` sees exactly the transactions committed by then, and
    everything below its ``xmin`` goes. That becomes the horizon: readers whose position
    has not received all of it get ``PositionExpired`` rather than a silent gap. A
    transaction that began before the cutoff but committed after it is kept. Returns
    the number of rows deleted.
    """
    with conn.cursor() as cur:
        cur.execute(
            f"INSERT INTO {MARK_TABLE} (taken_at, snapshot) VALUES (now(), pg_current_snapshot())"
        )
        cur.execute(
            f"""
            WITH mark AS (
                SELECT id, pg_snapshot_xmin(snapshot) AS xmin FROM {MARK_TABLE}
                WHERE %(cutoff)s::timestamptz IS NULL OR taken_at <= %(cutoff)s
                ORDER BY taken_at DESC, id DESC LIMIT 1
            ), gone AS (
                DELETE FROM {LOG_TABLE} WHERE txid < (SELECT xmin FROM mark) RETURNING 1
            ), horizon AS (
                INSERT INTO {HORIZON_TABLE} (name, txid, last_id, pruned_at)
                SELECT 'pruned', xmin, 0, now() FROM mark
                ON CONFLICT (name) DO UPDATE
                    SET txid = GREATEST({HORIZON_TABLE}.txid, EXCLUDED.txid), pruned_at = now()
            ), old_marks AS (
                DELETE FROM {MARK_TABLE} WHERE id < (SELECT id FROM mark)
            )
            SELECT count(*) FROM gone
            """,
            {"cutoff": older_than},
        )
        return int(cur.fetchone()[0])
