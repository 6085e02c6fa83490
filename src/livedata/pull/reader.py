"""Reading the feed from the database: snapshot pages and change pages (sync code).

Runs in the feed's database threads (see ``views``), each with its own Django connection.
The argument for why the result is gap-free and duplicate-free is in the package
docstring (``livedata.pull``); the functions here cite its steps.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import TextField, Value
from django.db.models.expressions import F, Func
from django.db.models.functions import Cast

from livedata.capture import log
from livedata.capture.log import ChangeRow, Position, PositionExpired
from livedata.exposure.matching import Matcher
from livedata.httpapi import ApiError
from livedata.pull.position import Handle, Offset, Snapshot
from livedata.pull.spec import FeedSpec


class MustRefetch(Exception):
    """The client's position cannot be continued: it must start again from -1."""

    def error(self) -> ApiError:
        return ApiError(409, str(self), code="must-refetch")


@dataclass
class Page:
    """One response's worth of the feed."""

    handle: Handle
    messages: list[str]  # each a JSON object, serialized
    offset: Offset  # where the next request starts
    up_to_date: bool = False
    phase: str = "changes"  # or "snapshot"
    estimate: int | None = None  # snapshot rows the source expects (first page)
    extra: dict[str, Any] = field(default_factory=dict)


# --- the snapshot ---------------------------------------------------------------------


def _json_object(spec: FeedSpec) -> Any:
    """The published columns as compact JSON text, built by PostgreSQL: each value with
    ``to_json``, the conversion the capture trigger's ``to_jsonb`` uses too, so snapshot
    rows and changes carry equal values. (Concatenated: a quarter faster than
    ``json_build_object`` and free of its 100-argument limit.)"""
    pieces: list[Any] = []
    for i, c in enumerate(spec.columns):
        key = ("{" if i == 0 else ",") + json.dumps(c.published) + ":"
        pieces.append(Cast(Value(key), TextField()))
        pieces.append(
            Func(
                F(c.attname),
                template="COALESCE(to_json(%(expressions)s)::text, 'null')",
                output_field=TextField(),
            )
        )
    pieces.append(Cast(Value("}"), TextField()))
    return Func(*pieces, template="(%(expressions)s)", arg_joiner=" || ", output_field=TextField())


def _message(spec: FeedSpec) -> Any:
    """``{"op":"insert","pk":"<pk>","value":{...}}`` as text, built in SQL."""
    return Func(
        Cast(Value('{"op":"insert","pk":'), TextField()),
        Func(
            Cast("pk", TextField()),
            template="to_json(%(expressions)s)::text",
            output_field=TextField(),
        ),
        Cast(Value(',"value":'), TextField()),
        _json_object(spec),
        Cast(Value("}"), TextField()),
        template="(%(expressions)s)",
        arg_joiner=" || ",
        output_field=TextField(),
    )


def snapshot_key(spec: FeedSpec, offset: Offset) -> Any:
    """The last key a snapshot offset names, as the pk field's Python value."""
    if offset.key is None:
        return None
    try:
        key = spec.pk_field.to_python(offset.key)
    except ValidationError:
        key = None
    # a number past the column's range is no key either (Django would give up on the query
    # with EmptyResultSet: a 500, issue 19)
    bounds = connection.ops.integer_field_ranges.get(spec.pk_field.get_internal_type())
    if key is None or (bounds is not None and not bounds[0] <= key <= bounds[1]):
        raise ApiError(400, "invalid offset: not a key of this model", field="offset")
    return key


def read_snapshot(
    spec: FeedSpec, handle: Handle | None, offset: Offset, *, joined: bool = False
) -> Page:
    """One page of the snapshot, consistent with the handle's snapshot S1 (steps 1-2).

    ``joined``: the page's messages as one comma-joined string (a JSON response's body),
    aggregated by PostgreSQL when nothing in the page's range changed since S1.
    """
    after = snapshot_key(spec, offset)
    with transaction.atomic(), connection.cursor() as cur:
        cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        cur.execute("SELECT pg_current_snapshot()::text")
        now = Snapshot.parse(cur.fetchone()[0])
        first = handle is None
        if handle is None:
            handle = Handle(spec.label, now, spec.params_digest(), spec.shape_fingerprint())
        s1 = handle.snapshot
        _check_horizon(Position(s1))
        if offset.kind == "now":  # no rows: only what commits after this snapshot
            return Page(handle, [], Offset("changes", position=Position(s1)), up_to_date=True)

        qs = spec.queryset().order_by("pk")
        if after is not None:
            qs = qs.filter(pk__gt=after)
        # the message text is built by PostgreSQL (jsonb, as the capture trigger's)
        page = qs.annotate(_k=F("pk"), _m=_message(spec)).values_list("_k", "_m")[: spec.limit]
        if joined:
            sql, params = page.query.sql_with_params()
            cur.execute(
                'SELECT count(*), (array_agg("_k" ORDER BY "_k" DESC))[1], '
                f'string_agg("_m", \',\' ORDER BY "_k") FROM ({sql}) AS page',
                params,
            )
            count, last, text = cur.fetchone()
            rows: list[tuple[Any, str]] = []
        else:
            rows = list(page)
            count, last = len(rows), rows[-1][0] if rows else None
        full = count == spec.limit
        upper = last if full else None
        since = {} if first else _since_snapshot(cur, spec, s1, after, upper)
        if since and joined:
            rows = list(page)  # the same rows (one snapshot): rebuilt below
        estimate = _estimate(spec) if first else None

    if since:  # step 2: undo what committed after S1 in this key range
        out = {str(pk): (pk, text) for pk, text in rows if str(pk) not in since}
        for pk_text, old in since.items():
            if old is not None:
                value = json.dumps(spec.shape(old))
                text = f'{{"op":"insert","pk":{json.dumps(pk_text)},"value":{value}}}'
                out[pk_text] = (spec.pk_field.to_python(pk_text), text)
        messages = [text for _, text in sorted(out.values(), key=lambda item: item[0])]
        if joined:
            messages = [",".join(messages)] if messages else []
    elif joined:
        messages = [text] if text else []
    else:
        messages = [text for _, text in rows]
    if full:
        next_offset = Offset("snapshot", key=_json_key(upper))
    else:
        next_offset = Offset("changes", position=Position(s1))
    return Page(handle, messages, next_offset, phase="snapshot", estimate=estimate)


def _json_key(value: Any) -> Any:
    return value if isinstance(value, int | str) else str(value)


def _since_snapshot(
    cur: Any, spec: FeedSpec, s1: Snapshot, after: Any, upper: Any
) -> dict[str, dict[str, Any] | None]:
    """Rows of keys in (after, upper] as they were at S1, for keys changed since S1.

    Value: the S1 state (None: the row did not exist at S1, or does not match the
    filters). Reads the log rows visible now whose transaction S1 did not see.
    """
    pk = spec.pk_field
    cast = pk.db_type(connection)
    collation = getattr(pk, "db_collation", None)
    key = f"pk::{cast}" + (f' COLLATE "{collation}"' if collation else "")
    bounds, params = [], [spec.label, [str(x) for x in s1.xip], str(s1.xmax)]
    if after is not None:
        bounds.append(f"{key} > %s")
        params.append(pk.get_db_prep_value(after, connection))
    if upper is not None:
        bounds.append(f"{key} <= %s")
        params.append(pk.get_db_prep_value(upper, connection))
    in_range = " AND ".join(bounds) or "true"
    cur.execute(
        f"""
        SELECT op, pk, old FROM {log.LOG_TABLE}
        WHERE model = %s
          AND (txid = ANY(%s::text[]::xid8[]) OR txid >= %s::text::xid8)
          AND (op = 'truncate' OR ({in_range}))
        ORDER BY id
        """,
        params,
    )
    matcher = spec.matcher()
    first: dict[str, dict[str, Any] | None] = {}
    for op, pk_text, raw in cur.fetchall():
        old = _json(raw)
        if op == "truncate":
            raise MustRefetch(f"{spec.label} was truncated after this feed's snapshot")
        if pk_text in first:
            continue  # the first change after S1 (by id: per-row write order) has its S1 state
        if op == "insert" or old is None or (matcher is not None and matcher(old) is not True):
            first[pk_text] = None
        else:
            first[pk_text] = old
    return first


def _json(value: Any) -> Any:
    """jsonb from Django's connection arrives as text (its JSONField parses it)."""
    return json.loads(value) if isinstance(value, str) else value


def _parsed(row: ChangeRow) -> ChangeRow:
    if isinstance(row.old, str) or isinstance(row.new, str):
        return replace(row, old=_json(row.old), new=_json(row.new))
    return row


def _estimate(spec: FeedSpec) -> int | None:
    """The planner's row estimate for the feed (for progress and ETA only)."""
    try:
        plan = json.loads(spec.queryset().explain(format="json"))
        return int(plan[0]["Plan"]["Plan Rows"])
    except Exception:
        return None


def _check_horizon(position: Position) -> None:
    if position.lost_below(log.horizon(connection)):
        raise MustRefetch(
            "the change log after this position was pruned (retention): start again from -1"
        )


# --- the changes ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Annotated:
    """A change row as the feed turns it into a message."""

    row: ChangeRow


def annotate(rows: Sequence[ChangeRow]) -> list[Annotated]:
    """``rows`` (in feed order) ready for ``messages_of``.

    No query: one row's changes reach the feed in write order (step 4 of the argument),
    so no change is ever older than one sent before it.
    """
    return [Annotated(r) for r in rows]


def change_message(
    spec: FeedSpec, matcher: Matcher | None, item: Annotated, s1: Snapshot
) -> str | None:
    """The feed message of one change, or None when this feed shows nothing of it.

    Step 5 (filters): a row enters with insert/update while its new value matches; a row
    that stops matching leaves with a delete.
    """
    row = item.row
    if s1.visible(row.txid):
        return None  # in the snapshot already (a TRUNCATE before it too)
    if row.op == "truncate":
        raise MustRefetch(f"{spec.label} was truncated: start again from -1")
    new_in = row.new is not None and (matcher is None or matcher(row.new) is True)
    old_in = row.old is not None and (matcher is None or matcher(row.old) is True)
    if new_in:
        op = row.op if matcher is None else ("update" if old_in else "insert")
        message: dict[str, Any] = {"op": op, "pk": row.pk, "value": spec.shape(row.new)}
        if op == "update" and row.old is not None:
            message["old"] = spec.shape(row.old)
        return json.dumps(message)
    if not (old_in or (row.op == "delete" and matcher is None)):
        return None
    values = row.old if row.old is not None else row.new or {}
    key = spec.columns[0]
    message = {"op": "delete", "pk": row.pk, "value": {key.published: values.get(key.column)}}
    if row.old is not None:
        message["old"] = spec.shape(row.old)
    return json.dumps(message)


def messages_of(
    spec: FeedSpec, items: Iterable[Annotated], s1: Snapshot, after: Position
) -> list[str]:
    """The messages of ``items`` that a client at ``after`` has not had yet."""
    matcher = spec.matcher()
    out = []
    for item in items:
        if after.has(item.row.txid, item.row.id):
            continue
        text = change_message(spec, matcher, item, s1)
        if text is not None:
            out.append(text)
    return out


def read_changes(spec: FeedSpec, handle: Handle, position: Position) -> Page:
    """The changes after ``position`` (steps 3-5): at most ``spec.limit`` of them."""
    s1 = handle.snapshot
    try:
        batch = log.read_batch(connection, position, limit=spec.limit, models=[spec.label])
    except PositionExpired as exc:
        raise MustRefetch(
            "the change log after this offset was pruned (retention): start again from -1"
        ) from exc
    items = annotate([_parsed(r) for r in batch.rows])
    messages = messages_of(spec, items, s1, position)
    return Page(handle, messages, Offset("changes", position=batch.end), up_to_date=batch.caught_up)
