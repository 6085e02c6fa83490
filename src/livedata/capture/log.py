"""Reading the change log without gaps, and pruning it.

The ordering trap: ids are assigned at insert, not at commit, so a reader that moved past
id 11 may never see id 10 of a transaction that commits later. We read by ``(txid, id)``
and only rows of transactions older than every transaction still in flight (the bound
below is ``pg_snapshot_xmin(pg_current_snapshot())``, refined). A transaction's rows then
appear all at once, in order, and everything below the cursor is final.

The refinement: ``xmin`` is cluster-wide, so a long transaction in *another database* on
the same server (a benchmark, another application) would stall our log although it can
never write to it. The bound therefore skips in-flight transactions that
``pg_stat_activity`` (or ``pg_prepared_xacts``) shows belong to another database. Anything
not positively known to be foreign still counts, so the rule stays safe: a role that
cannot see other sessions' ``backend_xid`` (grant ``pg_read_all_stats``) simply gets the
plain ``xmin`` behaviour. The bound is computed in the same statement as the read, from
the same snapshot.

What remains to know: a long-running writing transaction in *this* database delays (never
loses) delivery of later commits until it ends.

Cursors are strings ``"TXID:ID"`` (``Cursor.parse`` / ``str(cursor)``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

LOG_TABLE = "livedata_change"
HORIZON_TABLE = "livedata_log_horizon"

_COLUMNS = (
    "id, txid::text::bigint AS txid, model, table_name, op, pk, old, new, changed, context, at"
)
# The oldest transaction in flight that may write to this database (see the docstring);
# xids of pg_stat_activity are 32-bit, snapshot xids 64-bit: compare the low 32 bits.
_BOUND = """
bound AS (
    SELECT COALESCE(
        (SELECT x FROM pg_snapshot_xip(pg_current_snapshot()) AS x
         WHERE mod(x::text::bigint, 4294967296) NOT IN (
             SELECT backend_xid::text::bigint FROM pg_stat_activity
             WHERE backend_xid IS NOT NULL AND datname IS DISTINCT FROM current_database()
             UNION ALL
             SELECT transaction::text::bigint FROM pg_prepared_xacts
             WHERE database <> current_database()
         )
         ORDER BY x LIMIT 1),
        pg_snapshot_xmax(pg_current_snapshot())
    ) AS xid
)"""
_VISIBLE = "txid < (SELECT xid FROM bound)"

# One statement, one snapshot: the batch, and the bound it was read under (returned even
# when the batch is empty: the listener's write fences need it).
READ_SQL = f"""
WITH {_BOUND}, batch AS (
    SELECT {_COLUMNS} FROM {LOG_TABLE}
    WHERE (txid, id) > (%(txid)s::text::xid8, %(id)s) AND {_VISIBLE}
    {{models}}
    ORDER BY txid, id
    LIMIT %(limit)s
)
SELECT (SELECT xid::text::bigint FROM bound),
       (SELECT txid::text || ':' || last_id FROM {HORIZON_TABLE} WHERE name = 'pruned'),
       batch.*
FROM (SELECT 1) AS one LEFT JOIN batch ON true
ORDER BY batch.txid, batch.id
"""
# The newest visible row, or the pruning horizon when everything was pruned.
HEAD_SQL = f"""
WITH {_BOUND}
SELECT txid::text::bigint, id FROM (
    (SELECT txid, id FROM {LOG_TABLE} WHERE {_VISIBLE} ORDER BY txid DESC, id DESC LIMIT 1)
    UNION ALL
    (SELECT txid, last_id FROM {HORIZON_TABLE} WHERE name = 'pruned')
) h ORDER BY txid DESC, id DESC LIMIT 1
"""
# Transactions below this xid are final for readers of this database.
BOUND_SQL = f"WITH {_BOUND} SELECT xid::text::bigint FROM bound"
HORIZON_SQL = f"SELECT txid::text::bigint, last_id FROM {HORIZON_TABLE} WHERE name = 'pruned'"
TABLE_EXISTS_SQL = f"SELECT to_regclass('{LOG_TABLE}') IS NOT NULL"


class CursorError(ValueError):
    """A cursor string that is not ``TXID:ID``."""


class CursorExpired(Exception):
    """The log rows after this cursor were pruned: the reader must refetch everything.

    Raised instead of silently skipping the pruned rows.
    """

    def __init__(self, cursor: Cursor, horizon: Cursor) -> None:
        self.cursor = cursor
        self.horizon = horizon
        super().__init__(
            f"cursor {cursor} is older than the oldest kept change (rows up to {horizon} "
            "were pruned): refetch the current state, then continue from the log's head"
        )


class MissingLogTable(Exception):
    def __init__(self) -> None:
        super().__init__(
            f"livedata's change log table ({LOG_TABLE}) does not exist in this database: "
            "run `livedata migrate` (or `python manage.py migrate`)"
        )


_CURSOR_RE = re.compile(r"^\s*(\d{1,20}):(\d{1,20})\s*$")


class Cursor(NamedTuple):
    """A position in the log: everything at or below ``(txid, id)`` has been read."""

    txid: int
    id: int

    def __str__(self) -> str:
        return f"{self.txid}:{self.id}"

    @classmethod
    def parse(cls, value: str | Cursor) -> Cursor:
        if isinstance(value, Cursor):
            return value
        match = _CURSOR_RE.match(str(value))
        if not match:
            raise CursorError(
                f"invalid cursor {value!r}: expected TXID:ID as printed in the 'cursor' field"
            )
        return cls(int(match[1]), int(match[2]))


START = Cursor(0, 0)


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

    @property
    def cursor(self) -> Cursor:
        return Cursor(self.txid, self.id)

    def as_dict(self) -> dict[str, Any]:
        return {
            "cursor": str(self.cursor),
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


def _row(r: Sequence[Any]) -> ChangeRow:
    return ChangeRow(*r[:1], r[1], *r[2:])


def _read_query(cursor: Cursor, limit: int, models: Iterable[str] | None) -> tuple[str, dict]:
    params: dict[str, Any] = {"txid": str(cursor.txid), "id": cursor.id, "limit": limit}
    clause = ""
    if models:
        params["models"] = sorted({m.lower() for m in models})
        clause = "AND model = ANY(%(models)s)"
    return READ_SQL.format(models=clause), params


def _check_horizon(cursor: Cursor, row: Sequence[Any] | None) -> None:
    if row is not None:
        horizon = Cursor(int(row[0]), int(row[1]))
        if cursor < horizon:
            raise CursorExpired(cursor, horizon)


def _batch(cursor: Cursor, result: list[Sequence[Any]]) -> tuple[list[ChangeRow], int]:
    """Rows and bound of one READ_SQL result; CursorExpired if ``cursor`` lost rows."""
    bound, horizon = int(result[0][0]), result[0][1]
    if horizon is not None:
        _check_horizon(cursor, horizon.split(":"))
    return [_row(r[2:]) for r in result if r[2] is not None], bound


def read_batch(
    conn: Any, cursor: Cursor, *, limit: int = 1000, models: Iterable[str] | None = None
) -> tuple[list[ChangeRow], int]:
    """Committed changes after ``cursor``, oldest first, and the visibility bound.

    Every transaction with a txid below the bound is final: when fewer than ``limit`` rows
    come back, the reader has seen all of them. Raises ``CursorExpired`` when rows after
    ``cursor`` were pruned. ``conn`` is a sync psycopg (or Django) connection.
    """
    with conn.cursor() as cur:
        sql, params = _read_query(cursor, limit, models)
        cur.execute(sql, params)
        return _batch(cursor, cur.fetchall())


async def aread_batch(
    conn: Any, cursor: Cursor, *, limit: int = 1000, models: Iterable[str] | None = None
) -> tuple[list[ChangeRow], int]:
    """``read_batch`` for an async psycopg connection."""
    async with conn.cursor() as cur:
        sql, params = _read_query(cursor, limit, models)
        await cur.execute(sql, params)
        return _batch(cursor, await cur.fetchall())


def read(
    conn: Any, cursor: Cursor, *, limit: int = 1000, models: Iterable[str] | None = None
) -> list[ChangeRow]:
    """Committed changes after ``cursor``, oldest first (see ``read_batch``)."""
    return read_batch(conn, cursor, limit=limit, models=models)[0]


async def aread(
    conn: Any, cursor: Cursor, *, limit: int = 1000, models: Iterable[str] | None = None
) -> list[ChangeRow]:
    return (await aread_batch(conn, cursor, limit=limit, models=models))[0]


def head(conn: Any) -> Cursor:
    """The newest committed position (``START`` for a log that never had a row)."""
    with conn.cursor() as cur:
        cur.execute(HEAD_SQL)
        row = cur.fetchone()
    return Cursor(*row) if row else START


async def ahead(conn: Any) -> Cursor:
    async with conn.cursor() as cur:
        await cur.execute(HEAD_SQL)
        row = await cur.fetchone()
    return Cursor(*row) if row else START


def prune(conn: Any, older_than: datetime) -> int:
    """Delete rows written before ``older_than`` (only finished transactions' rows).

    Records the newest deleted position as the horizon, so readers behind it get
    ``CursorExpired`` rather than a silent gap. Returns the number of rows deleted.
    """
    with conn.cursor() as cur:
        cur.execute(
            f"""
            WITH {_BOUND}, gone AS (
                DELETE FROM {LOG_TABLE} WHERE at < %s AND {_VISIBLE}
                RETURNING txid, id
            ), newest AS (
                SELECT txid, id FROM gone ORDER BY txid DESC, id DESC LIMIT 1
            ), horizon AS (
                INSERT INTO {HORIZON_TABLE} (name, txid, last_id, pruned_at)
                SELECT 'pruned', txid, id, now() FROM newest
                ON CONFLICT (name) DO UPDATE
                    SET txid = GREATEST({HORIZON_TABLE}.txid, EXCLUDED.txid),
                        last_id = CASE WHEN EXCLUDED.txid > {HORIZON_TABLE}.txid
                                           OR (EXCLUDED.txid = {HORIZON_TABLE}.txid
                                               AND EXCLUDED.last_id > {HORIZON_TABLE}.last_id)
                                       THEN EXCLUDED.last_id ELSE {HORIZON_TABLE}.last_id END,
                        pruned_at = now()
            )
            SELECT count(*) FROM gone
            """,
            [older_than],
        )
        return int(cur.fetchone()[0])
