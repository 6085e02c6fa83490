"""Matching a changed row against a queryset in memory, with no query.

The change log carries each changed row's full new value, so for a queryset that only
filters the model's own columns with simple lookups, whether the row belongs to the
result, and its published fields, can be computed from the log row alone.

Matched in memory (``compile_matcher`` returns a function), when the queryset has:
- no joins, slicing, DISTINCT, ``extra()``, annotations, or set operations;
- only these lookups on the model's own columns, combined with AND/OR/NOT
  (``filter``/``exclude``/``Q``): ``exact``, ``iexact``, ``in``, ``isnull``, ``range``,
  ``gt``/``gte``/``lt``/``lte`` (not on text: PostgreSQL's collation orders text
  differently from Python), ``contains``/``icontains``/``startswith``/``istartswith``/
  ``endswith``/``iendswith``;
- constant values (no ``F()`` or subqueries);
- columns of supported types (text, numbers, booleans, dates and times, UUIDs, foreign
  keys, and NOT NULL JSON columns with ``exact``/``isnull``); every other field type
  makes the query fall back to re-querying.
Querysets that also filter through foreign keys are matched by ``joins.py`` with the
same lookups (``compile_where`` with a ``ValueOf`` reading the joined rows); everything
else is refreshed by re-querying (see ``livedata.livequery.observer``).
SQL's three-valued logic is kept: a comparison with NULL is unknown, never true.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from django.db import models
from django.db.models.expressions import Col
from django.db.models.lookups import Lookup
from django.db.models.sql.where import AND, OR, WhereNode
from django.utils.dateparse import parse_date, parse_datetime, parse_time

Row = dict[str, Any]
Matcher = Callable[[Row], bool | None]  # True, False, or None (SQL unknown)

_TEXT = (models.CharField, models.TextField)
_SUPPORTED = (
    models.CharField,
    models.TextField,
    models.IntegerField,  # includes Small/Big/Positive and AutoFields
    models.FloatField,
    models.DecimalField,
    models.BooleanField,
    models.DateTimeField,
    models.DateField,
    models.TimeField,
    models.UUIDField,
    models.JSONField,
    models.ForeignKey,
)


def supported(field: models.Field) -> bool:
    return isinstance(field, _SUPPORTED) and not getattr(field, "many_to_many", False)


def to_python(field: models.Field, value: Any) -> Any:
    """The value the ORM would return for ``field``, from its JSON form in the log."""
    if value is None:
        return None
    if isinstance(field, models.ForeignKey):
        return to_python(field.target_field, value)
    if isinstance(field, models.DecimalField):
        number = Decimal(repr(value)) if isinstance(value, float) else Decimal(str(value))
        if field.decimal_places is not None:
            number = number.quantize(Decimal(1).scaleb(-field.decimal_places))
        return number
    if isinstance(field, models.DateTimeField):
        return parse_datetime(value)
    if isinstance(field, models.DateField):
        return parse_date(value)
    if isinstance(field, models.TimeField):
        return parse_time(value)
    if isinstance(field, models.UUIDField):
        return uuid.UUID(value)
    if isinstance(field, models.FloatField):
        return float(value)
    return value


def _cmp(op: Callable[[Any, Any], bool]) -> Callable[[Any, Any], bool | None]:
    def compare(a: Any, b: Any) -> bool | None:
        if a is None or b is None:
            return None
        return op(a, b)

    return compare


def _text(op: Callable[[str, str], bool], fold: bool) -> Callable[[Any, Any], bool | None]:
    def compare(a: Any, b: Any) -> bool | None:
        if a is None or b is None:
            return None
        a, b = str(a), str(b)
        if fold:
            a, b = a.upper(), b.upper()
        return op(a, b)

    return compare


def _in(a: Any, values: Any) -> bool | None:
    if a is None:
        return None
    values = [v for v in values if v is not None]
    return a in values


def _range(a: Any, bounds: Any) -> bool | None:
    low, high = bounds
    if a is None or low is None or high is None:
        return None
    return low <= a <= high


_LOOKUPS: dict[str, Callable[[Any, Any], bool | None]] = {
    "exact": _cmp(lambda a, b: a == b),
    "iexact": _text(lambda a, b: a == b, fold=True),
    "in": _in,
    "range": _range,
    "gt": _cmp(lambda a, b: a > b),
    "gte": _cmp(lambda a, b: a >= b),
    "lt": _cmp(lambda a, b: a < b),
    "lte": _cmp(lambda a, b: a <= b),
    "contains": _text(lambda a, b: b in a, fold=False),
    "icontains": _text(lambda a, b: b in a, fold=True),
    "startswith": _text(lambda a, b: a.startswith(b), fold=False),
    "istartswith": _text(lambda a, b: a.startswith(b), fold=True),
    "endswith": _text(lambda a, b: a.endswith(b), fold=False),
    "iendswith": _text(lambda a, b: a.endswith(b), fold=True),
}
_ORDERED = {"gt", "gte", "lt", "lte", "range"}


def compile_matcher(qs: models.QuerySet[Any]) -> Matcher | None:
    """A function deciding membership from a log row's ``new`` dict, or None (re-query)."""
    query = qs.query
    if not plain(query) or sum(1 for a in query.alias_map if query.alias_refcount.get(a)) > 1:
        return None
    return compile_where(query.where, own_columns(query.get_initial_alias()))


def plain(query: Any) -> bool:
    """No slicing, DISTINCT, set operation, ``extra()`` or annotation: a WHERE alone."""
    return not (
        query.low_mark
        or query.high_mark is not None
        or query.distinct
        or query.combinator
        or query.extra
        or query.annotations
        or query.extra_tables
    )


#: How a compiled lookup reads a column: ``value_of(col, raw)`` returns a function of the
#: matched context giving the column's value (the ORM's, or with ``raw`` the log's JSON
#: form where that differs), or None when the column cannot be read in memory.
ValueOf = Callable[[Col, bool], Callable[[Any], Any] | None]


def own_columns(alias: str) -> ValueOf:
    """Columns of the queryset's own table, read from a log row's ``new`` dict."""

    def value_of(col: Col, raw: bool) -> Callable[[Any], Any] | None:
        if col.alias != alias:
            return None
        field, column = col.target, col.target.column
        if raw:
            return lambda row: row.get(column)
        return lambda row: to_python(field, row.get(column))

    return value_of


def compile_where(node: Any, value_of: ValueOf) -> Matcher | None:
    """A WHERE node as a function of the context ``value_of`` reads, or None."""
    if isinstance(node, WhereNode):
        parts = [compile_where(child, value_of) for child in node.children]
        if any(p is None for p in parts):
            return None
        if node.connector == AND:
            matcher = _and(parts)  # type: ignore[arg-type]
        elif node.connector == OR:
            matcher = _or(parts)  # type: ignore[arg-type]
        else:
            return None
        return _not(matcher) if node.negated else matcher
    if isinstance(node, Lookup):
        return _lookup(node, value_of)
    return None


def _lookup(node: Lookup, value_of: ValueOf) -> Matcher | None:
    lhs = node.lhs
    if not isinstance(lhs, Col):
        return None
    field = lhs.target
    if not supported(field):
        return None
    name = node.lookup_name
    if isinstance(field, models.JSONField):
        raw = value_of(lhs, True)
        return None if raw is None else _json_lookup(node, field, raw)
    if name == "isnull":
        raw = value_of(lhs, True)
        if raw is None:
            return None
        expected = bool(node.rhs)
        return lambda row: (raw(row) is None) == expected
    compare = _LOOKUPS.get(name)
    if compare is None or (name in _ORDERED and isinstance(field, _TEXT)):
        return None
    rhs = node.rhs
    if hasattr(rhs, "resolve_expression"):
        return None
    if name in ("in", "range"):
        try:
            value: Any = [python_value(field, v) for v in rhs]
        except TypeError:
            return None
        if any(hasattr(v, "resolve_expression") for v in value):
            return None
    else:
        value = python_value(field, rhs)
    get = value_of(lhs, False)
    if get is None:
        return None
    return lambda row: compare(get(row), value)


def _json_lookup(
    node: Lookup, field: models.JSONField, raw: Callable[[Any], Any]
) -> Matcher | None:
    """JSON columns: in the log, SQL NULL and JSON null both read as None, so only
    NOT NULL columns are matched in memory (None is then JSON null, a real value)."""
    if field.null or hasattr(node.rhs, "resolve_expression"):
        return None
    if node.lookup_name == "isnull":
        always = not bool(node.rhs)
        return lambda row: always
    if node.lookup_name != "exact":
        return None
    value = node.rhs.adapted if hasattr(node.rhs, "adapted") else node.rhs
    return lambda row: raw(row) == value


def python_value(field: models.Field, value: Any) -> Any:
    if isinstance(field, models.ForeignKey):
        field = field.target_field
    if value is None or hasattr(value, "resolve_expression"):
        return value
    return field.to_python(value)


def _and(parts: list[Matcher]) -> Matcher:
    def match(row: Row) -> bool | None:
        unknown = False
        for part in parts:
            result = part(row)
            if result is False:
                return False
            if result is None:
                unknown = True
        return None if unknown else True

    return match


def _or(parts: list[Matcher]) -> Matcher:
    def match(row: Row) -> bool | None:
        unknown = False
        for part in parts:
            result = part(row)
            if result is True:
                return True
            if result is None:
                unknown = True
        return None if unknown else False

    return match


def _not(matcher: Matcher) -> Matcher:
    def match(row: Row) -> bool | None:
        result = matcher(row)
        return None if result is None else not result

    return match


#: Field types a route's key may have: the ORM's value of a constant and the log's value
#: convert to equal ``repr``s. Not decimals (``price=5`` is ``Decimal('5')``, the log's
#: ``Decimal('5.00')``), floats, or aware datetimes (their ``repr`` names the time zone).
_ROUTABLE = (
    models.CharField,
    models.TextField,
    models.IntegerField,
    models.BooleanField,
    models.DateField,
    models.UUIDField,
    models.ForeignKey,
)


def routable(field: models.Field) -> bool:
    return isinstance(field, _ROUTABLE) and not isinstance(field, models.DateTimeField)


def route_key(qs: models.QuerySet[Any]) -> tuple[str, models.Field, str] | None:
    """(column, field, key) when the query requires ``column = constant`` at its top level.

    Lets the engine hand a changed row only to observers whose key equals the row's old or
    new value, instead of matching it against every observer of the model.
    """
    query = qs.query
    where = query.where
    if where.negated or where.connector != AND:
        return None
    alias = query.get_initial_alias()
    for child in where.children:
        if (
            isinstance(child, Lookup)
            and child.lookup_name == "exact"
            and isinstance(child.lhs, Col)
            and child.lhs.alias == alias
            and routable(child.lhs.target)
            and child.rhs is not None
            and not hasattr(child.rhs, "resolve_expression")
        ):
            field = child.lhs.target
            return field.column, field, routing_value(python_value(field, child.rhs))
    return None


def routing_value(value: Any) -> str:
    return repr(value)
