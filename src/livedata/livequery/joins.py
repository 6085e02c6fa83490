"""The shared index of joined rows that join querysets are matched against in memory.

A queryset filtering through foreign keys (``author__email=X``; its ``JoinPlan``, see
``livedata.exposure.joins``) needs, for each table it joins, the columns it reads of the
rows its keys lead to. ``JoinIndexes`` keeps them, one ``JoinIndex`` per (model, key
column, set of columns), shared by every observer of one engine (one per process) that
needs that set: 400 observers of ``BooksByAuthorEmail`` share one index of the authors'
emails.

- An index is loaded once, by one query, when the first observer needing it starts
  (under the engine's lock, so no batch is applied meanwhile), and dropped when the last
  one goes.
- It is then maintained from the change log only: the engine applies every batch to it
  (``apply``) before refreshing observers, so an observer evaluates a batch against the
  joined rows as of that batch's end (a refresh re-reads the current state, and the
  writes still unread come in later batches).
- A joined model with more than ``JOIN_INDEX_LIMIT`` rows is not indexed: its observers
  re-query instead (``acquire`` says no).

Values are held as the ORM returns them (``exposure.matching.to_python`` converts the
log's JSON the same way), keyed by the key column's value.
"""

from __future__ import annotations

from typing import Any

from livedata.capture.log import ChangeRow
from livedata.exposure.joins import Hop, IndexKey, JoinPlan, RowLookup, Via
from livedata.exposure.matching import to_python

#: Joined models with more rows than this are not indexed (observers re-query instead).
JOIN_INDEX_LIMIT = 200_000


class _TooLarge(Exception):
    pass


class JoinIndex:
    """Some columns of every row of one model, by one key column."""

    def __init__(self, hop: Hop) -> None:
        self.key = hop.target
        self.columns = dict(hop.columns)
        self.model = hop.model
        self.rows: dict[Any, dict[str, Any]] = {}
        self.users = 0

    def load(self, using: str, limit: int) -> bool:
        """Read the rows from the database; False when there are more than ``limit``."""
        names = list(self.columns)
        attnames = [self.columns[c].attname for c in names]
        manager = self.model._base_manager.using(using)
        values = manager.order_by().values_list(self.key.attname, *attnames)
        rows: dict[Any, dict[str, Any]] = {}
        for record in values[: limit + 1]:
            rows[record[0]] = dict(zip(names, record[1:], strict=True))
        if len(rows) > limit:
            return False
        self.rows = rows
        return True

    def apply(self, row: ChangeRow) -> None:
        if row.op == "truncate":
            self.rows.clear()
            return
        if row.old is not None:
            self.rows.pop(to_python(self.key, row.old.get(self.key.column)), None)
        if row.new is not None:
            key = to_python(self.key, row.new.get(self.key.column))
            if key is not None:
                self.rows[key] = {c: to_python(f, row.new.get(c)) for c, f in self.columns.items()}


class JoinIndexes:
    """Every join index of one engine, by ``IndexKey``, fed by its batches."""

    def __init__(self, limit: int = JOIN_INDEX_LIMIT) -> None:
        self.limit = limit
        self.indexes: dict[IndexKey, JoinIndex] = {}
        self.by_label: dict[str, list[JoinIndex]] = {}

    def acquire(self, plan: JoinPlan, using: str) -> bool:
        """Take (loading if need be) the indexes ``plan`` reads; False (and nothing
        taken) when one of them is too large to keep."""
        taken: list[IndexKey] = []
        try:
            for hop in plan.hops:
                key = hop.index_key
                index = self.indexes.get(key)
                if index is None:
                    index = JoinIndex(hop)
                    if not index.load(using, self.limit):
                        raise _TooLarge
                    self.indexes[key] = index
                    self.by_label.setdefault(hop.label, []).append(index)
                index.users += 1
                taken.append(key)
        except BaseException as exc:  # too large, or the database failed: give back
            for done in taken:
                self._release(done)
            if isinstance(exc, _TooLarge):
                return False
            raise
        return True

    def release(self, plan: JoinPlan) -> None:
        for hop in plan.hops:
            self._release(hop.index_key)

    def _release(self, key: IndexKey) -> None:
        index = self.indexes.get(key)
        if index is None:
            return
        index.users -= 1
        if index.users <= 0:
            del self.indexes[key]
            label = key[0]
            self.by_label[label].remove(index)
            if not self.by_label[label]:
                del self.by_label[label]

    def apply(self, rows: list[ChangeRow]) -> None:
        """Bring the indexes up to date with a batch (in log order)."""
        if not self.by_label:
            return
        for row in rows:
            for index in self.by_label.get(row.model, ()):
                index.apply(row)

    def lookup(self, plan: JoinPlan) -> RowLookup:
        """The plan's ``(hop number, key) → joined row`` function over these indexes."""
        rows = [self.indexes[hop.index_key].rows for hop in plan.hops]
        return lambda i, key: rows[i].get(key)

    def follow(self, via: Via, values: dict[str, Any]) -> Any:
        """The value a route reads from a changed row (``Via``), or None."""
        value = values.get(via.column)
        if value is None:
            return None
        value = to_python(via.field, value)
        for key, column in via.steps:
            index = self.indexes.get(key)
            found = None if index is None or value is None else index.rows.get(value)
            if found is None:
                return None
            value = found.get(column)
        return value
