"""Matching a queryset that filters through foreign keys in memory: its join plan.

``Book.objects.filter(author__email=X)`` reads the author table, so a book's log row
alone cannot say whether it belongs to the result. But a forward foreign key leads to at
most one row, so if the relevant columns of the joined rows are known (the live-query
engine keeps them in a shared index fed by the log: ``livedata.livequery.joins``), the
WHERE can be evaluated on the book's log row plus the rows its keys lead to, as SQL
would: an INNER join with no row drops the book, a LEFT OUTER one reads NULLs.

``compile_join_plan`` returns a ``JoinPlan`` when the queryset is ``plain`` (see
``matching``) and every table it joins is reached by a forward ``ForeignKey`` or
``OneToOneField`` (chains of any length: ``book__author__email``) of a captured model,
with the lookups ``matching`` lists on columns of supported types (not JSON) of any of
these tables. Anything else (reverse or many-to-many relations, which multiply rows;
filtered relations; joins to models whose changes are not captured) returns None: the
observer re-queries instead.

A plan also says how an observer is routed (``JoinPlan.routes``): a top-level
``path__column = constant`` or ``__in`` conjunct lets a changed row of any model on the
path reach only the observers whose constant its key chain leads to (``Via``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.db import models
from django.db.models.expressions import Col
from django.db.models.lookups import Lookup
from django.db.models.sql.constants import INNER
from django.db.models.sql.datastructures import Join
from django.db.models.sql.where import AND

from livedata.capture.declare import is_captured
from livedata.exposure.matching import (
    Matcher,
    compile_where,
    plain,
    python_value,
    routable,
    routing_value,
    supported,
    to_python,
)

#: the shared index of one joined model: (label, key column, the columns it holds)
IndexKey = tuple[str, str, frozenset[str]]


@dataclass(eq=False)
class Hop:
    """One joined table: the row that ``lhs`` (a column of the parent) leads to."""

    alias: str
    parent: int  # index of the parent hop in ``JoinPlan.hops``; -1: the queryset's model
    lhs: models.Field  # the foreign key followed, on the parent's model
    target: models.Field  # the column it points at, on this hop's model
    model: type[models.Model]
    inner: bool  # INNER JOIN (no row: the base row is out) or LEFT OUTER (NULLs)
    path: str  # the ORM path from the queryset's model, e.g. "author" or "book__author"
    #: the columns of this table the plan reads (column → field), its key included
    columns: dict[str, models.Field] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return self.model._meta.label_lower

    @property
    def index_key(self) -> IndexKey:
        return (self.label, self.target.column, frozenset(self.columns))


@dataclass(frozen=True)
class Via:
    """How a changed row leads to the value an observer is routed by: read ``column``
    (``field`` converts the log's JSON), then follow each step's key through the shared
    index ``IndexKey`` and read that row's column. No steps: an own-column route."""

    column: str
    field: models.Field
    steps: tuple[tuple[IndexKey, str], ...] = ()


#: Looks up the joined row of hop number ``i`` by its key: (i, key) → row or None.
RowLookup = Callable[[int, Any], dict[str, Any] | None]


@dataclass(eq=False)
class JoinPlan:
    hops: list[Hop]
    #: decides membership from (the base row's ``new`` dict, the joined rows)
    matcher: Matcher
    #: label → [(via, routing key)] for the labels a top-level conjunct can route
    routes: dict[str, list[tuple[Via, str]]]

    def resolve(
        self, row: dict[str, Any], lookup: RowLookup, python: bool = False
    ) -> tuple[list[dict[str, Any] | None], tuple[Any, ...], bool]:
        """The joined rows a base row leads to, the key looked up for each (None: a NULL
        foreign key), and False when an INNER join finds no row (SQL drops the base
        row). ``row`` holds the log's JSON values, or with ``python`` the ORM's."""
        joined: list[dict[str, Any] | None] = []
        keys: list[Any] = []
        kept = True
        for hop in self.hops:
            if hop.parent < 0:
                key = row.get(hop.lhs.column)
                if not python:
                    key = to_python(hop.lhs, key)
            else:
                parent = joined[hop.parent]
                key = None if parent is None else parent.get(hop.lhs.column)
            found = None if key is None else lookup(len(keys), key)
            if found is None and hop.inner:
                kept = False
            joined.append(found)
            keys.append(key)
        return joined, tuple(keys), kept

    def match(self, row: dict[str, Any], lookup: RowLookup) -> tuple[bool, tuple[Any, ...]]:
        """Whether a base row (the log's ``new``) belongs to the result, and its join keys."""
        joined, keys, kept = self.resolve(row, lookup)
        return kept and self.matcher((row, joined)) is True, keys


def compile_join_plan(qs: models.QuerySet[Any]) -> JoinPlan | None:
    """The queryset's join plan, or None (no joins, or joins not matched in memory)."""
    query = qs.query
    if not plain(query):
        return None
    base = query.get_initial_alias()
    hops: list[Hop] = []
    position: dict[str, int] = {base: -1}
    paths: dict[str, str] = {base: ""}
    for alias, join in query.alias_map.items():
        if alias == base or not query.alias_refcount.get(alias):
            continue  # the base table, or a join Django set up then trimmed
        if not isinstance(join, Join) or join.filtered_relation is not None:
            return None
        fk = join.join_field
        if not isinstance(fk, models.ForeignKey) or join.parent_alias not in position:
            return None  # a reverse or many-to-many relation: it multiplies rows
        if len(join.join_fields) != 1:
            return None
        lhs, target = join.join_fields[0]
        model = target.model
        if not is_captured(model) or not supported(target):
            return None
        parent_path = paths[join.parent_alias]
        path = f"{parent_path}__{fk.name}" if parent_path else fk.name
        hop = Hop(
            alias, position[join.parent_alias], lhs, target, model, join.join_type == INNER, path
        )
        hop.columns[target.column] = target
        position[alias], paths[alias] = len(hops), path
        hops.append(hop)
    if not hops:
        return None
    for hop in hops:
        if hop.parent >= 0:
            hops[hop.parent].columns[hop.lhs.column] = hop.lhs

    def value_of(col: Col, raw: bool) -> Callable[[Any], Any] | None:
        where = position.get(col.alias)
        if where is None:
            return None
        f, column = col.target, col.target.column
        if where < 0:
            if raw:
                return lambda ctx: ctx[0].get(column)
            return lambda ctx: to_python(f, ctx[0].get(column))
        if isinstance(f, models.JSONField):
            return None  # the index holds ORM values: JSON null and SQL NULL are one
        hops[where].columns[column] = f
        return lambda ctx: (ctx[1][where] or _EMPTY).get(column)

    matcher = compile_where(query.where, value_of)
    if matcher is None:
        return None
    return JoinPlan(hops, matcher, _routes(query, qs.model, hops, position))


_EMPTY: dict[str, Any] = {}


def _routes(
    query: Any, model: type[models.Model], hops: list[Hop], position: dict[str, int]
) -> dict[str, list[tuple[Via, str]]]:
    """For each label a top-level ``column = constant`` (or ``__in``) conjunct covers, how
    its changed rows reach the observer: the first conjunct whose chain of hops holds
    every table of that label the query reads."""
    where = query.where
    if where.negated or where.connector != AND:
        return {}
    labels_at = {-1: model._meta.label_lower, **{i: h.label for i, h in enumerate(hops)}}
    out: dict[str, list[tuple[Via, str]]] = {}
    for child in where.children:
        keys = _constants(child)
        if keys is None or child.lhs.alias not in position:
            continue
        target = position[child.lhs.alias]
        chain = [target]
        while chain[-1] >= 0:
            chain.append(hops[chain[-1]].parent)
        for label in set(labels_at[p] for p in chain) - set(out):
            if any(labels_at[p] == label and p not in chain for p in labels_at):
                continue  # the label is also read off this chain: it cannot route here
            vias = [_via(p, chain, hops, child.lhs.target) for p in chain if labels_at[p] == label]
            out[label] = [(via, key) for via in vias for key in keys]
    return out


def _constants(child: Any) -> list[str] | None:
    """Routing keys of an ``exact`` or ``in`` lookup with constants on a routable column."""
    if not (isinstance(child, Lookup) and isinstance(child.lhs, Col)):
        return None
    f = child.lhs.target
    if not routable(f) or child.lookup_name not in ("exact", "in"):
        return None
    values = [child.rhs] if child.lookup_name == "exact" else child.rhs
    try:
        values = list(values)
    except TypeError:
        return None
    if not values or any(v is None or hasattr(v, "resolve_expression") for v in values):
        return None
    try:
        return [routing_value(python_value(f, v)) for v in values]
    except Exception:  # not a plain value of the column (a model instance...): no route
        return None


def _via(start: int, chain: list[int], hops: list[Hop], target: models.Field) -> Via:
    """From a row at chain position ``start`` down the chain to ``target``'s column."""
    down = chain[: chain.index(start)][::-1]  # the hops after ``start``, nearest first
    if not down:
        return Via(target.column, target)
    first = hops[down[0]]
    steps = []
    for i, hop_index in enumerate(down):
        nxt = hops[down[i + 1]].lhs.column if i + 1 < len(down) else target.column
        steps.append((hops[hop_index].index_key, nxt))
    return Via(first.lhs.column, first.lhs, tuple(steps))
