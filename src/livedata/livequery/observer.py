"""What one live query holds and how it is refreshed from the change log.

An ``Observer`` is a publication run with given parameters (and user, when
``get_queries`` reads it): its ``QueryObserver`` per queryset holds the documents the
query currently yields, and its subscribers share them (the ``Engine`` in ``engine.py``
indexes observers, routes batches to them and publishes their differences).

How a query is refreshed (``QueryObserver.refresh``): when it only filters its own
model's columns with simple lookups (``livedata.exposure.matching`` lists them), the log
rows alone decide membership and fields: no query at all. Otherwise, for changes to the
query's own model, it re-queries only the affected primary keys
(``qs.filter(pk__in=...)``), once per observer per batch. A change to another table the
query joins (``author__email=...`` depends on the author table), a TRUNCATE, a sliced
query (top-N: "latest 10"), or more than ``REQUERY_THRESHOLD`` changed rows re-runs the
whole query. A refresh re-reads the current state, so seeing a change twice is harmless.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from django.apps import apps
from django.db.models import QuerySet

from livedata.capture.log import ChangeRow
from livedata.ddp.messages import UNDEFINED
from livedata.exposure.matching import Matcher, compile_matcher, route_key, supported, to_python
from livedata.publish.publication import API, Collection, Publication

if TYPE_CHECKING:
    from livedata.livequery.subscriber import Subscriber

Docs = dict[str, dict[str, Any]]  # doc id → published fields

#: More changed rows than this for one re-queried observer in a batch: re-run its whole
#: query instead of an IN list of keys (bursts catch up in bounded work and memory).
REQUERY_THRESHOLD = 500


@dataclass
class QueryObserver:
    """One queryset of a publication and the documents it currently yields."""

    queryset: QuerySet[Any]
    collection: type[Collection]
    columns: list[tuple[str, str]]  # (attname, published name)
    label: str
    dependencies: frozenset[str]  # model labels whose changes may affect the result
    sliced: bool
    #: decides membership from a log row alone (see matching.py); None: re-query
    matcher: Matcher | None = None
    #: (attname, published name, field) when every published column converts from the log
    converters: list[tuple[str, str, Any]] | None = None
    docs: Docs = field(default_factory=dict)
    #: (column, field, key) when the query requires column = key (see route_key)
    route: tuple[str, Any, str] | None = None
    #: refreshes done without a query / with one (for tests and benchmarks)
    in_memory: int = 0
    queried: int = 0
    #: pk → id of the latest write applied in memory, for the last two batches (see
    #: _match_in_memory)
    recent_writes: tuple[dict[str, int], dict[str, int]] = field(default_factory=lambda: ({}, {}))

    @classmethod
    def build(cls, qs: QuerySet[Any], publication: Publication) -> QueryObserver:
        model = qs.model
        collection = API.collection_for(model)
        allowed = publication.fields.get(collection.name())
        columns = [
            (attname, name)
            for attname, name, f in collection.columns()
            if allowed is None or f.name in allowed or attname in allowed
        ]
        query = qs.query
        sliced = query.low_mark != 0 or query.high_mark is not None
        fields = {f.attname: f for f in model._meta.concrete_fields}
        converters = [(attname, name, fields[attname]) for attname, name in columns]
        matcher = compile_matcher(qs)
        if matcher is None or not all(supported(f) for _, _, f in converters):
            matcher, converters = None, None
        return cls(
            queryset=qs,
            collection=collection,
            columns=columns,
            label=model._meta.label_lower,
            dependencies=frozenset({model._meta.label_lower, *_joined_models(qs)}),
            sliced=sliced,
            matcher=matcher,
            converters=converters,
            route=route_key(qs) if not sliced else None,
        )

    def fetch(self, qs: QuerySet[Any] | None = None) -> Docs:
        rows = (qs if qs is not None else self.queryset).values_list(
            "pk", *(attname for attname, _ in self.columns)
        )
        names = [name for _, name in self.columns]
        return {str(row[0]): dict(zip(names, row[1:], strict=True)) for row in rows}

    def refresh(self, rows: list[ChangeRow]) -> list[tuple[str, str, dict[str, Any] | None]]:
        """Re-read what ``rows`` may have changed; returns (op, id, fields) differences."""
        relevant = [r for r in rows if r.model in self.dependencies]
        if not relevant:
            return []
        full = self.sliced or any(r.op == "truncate" or r.model != self.label for r in relevant)
        if self.matcher is None and len(relevant) > REQUERY_THRESHOLD:
            full = True  # a burst: one full query beats a huge IN list
        if not full and self.matcher is not None:
            state = self._match_in_memory(relevant)
            new = {pk: doc for pk, doc in state.items() if doc is not None}
            candidates = set(state)
            self.in_memory += 1
        elif full:
            new = self.fetch()
            candidates: Iterable[str] = set(new) | set(self.docs)
        else:
            pks = {r.pk for r in relevant if r.pk is not None}
            model_pk = self.queryset.model._meta.pk
            keys = [model_pk.to_python(pk) for pk in pks]
            new = self.fetch(self.queryset.filter(pk__in=keys))
            candidates = pks
        if full or self.matcher is None:
            self.queried += 1
        return self._diff(new, candidates)

    def in_memory_for(self, rows: list[ChangeRow]) -> bool:
        if self.matcher is None or self.sliced:
            return not any(r.model in self.dependencies for r in rows)
        return all(
            r.model == self.label and r.op != "truncate"
            for r in rows
            if r.model in self.dependencies
        )

    def resync(self) -> list[tuple[str, str, dict[str, Any] | None]]:
        """Re-read the whole result (after a failed refresh): the client ends up exact."""
        new = self.fetch()
        self.queried += 1
        return self._diff(new, set(new) | set(self.docs))

    def _diff(
        self, new: Docs, candidates: Iterable[str]
    ) -> list[tuple[str, str, dict[str, Any] | None]]:
        """Apply ``new`` for ``candidates`` to the known documents; return the changes."""
        out: list[tuple[str, str, dict[str, Any] | None]] = []
        for doc_id in sorted(candidates, key=str):
            before, after = self.docs.get(doc_id), new.get(doc_id)
            if after is None and before is not None:
                del self.docs[doc_id]
                out.append(("removed", doc_id, None))
            elif after is not None and before is None:
                self.docs[doc_id] = after
                out.append(("added", doc_id, after))
            elif after is not None and before is not None and after != before:
                delta = {k: v for k, v in after.items() if before.get(k, UNDEFINED) != v}
                delta.update({k: UNDEFINED for k in before if k not in after})
                self.docs[doc_id] = after
                out.append(("changed", doc_id, delta))
        return out

    def _match_in_memory(self, rows: list[ChangeRow]) -> dict[str, dict[str, Any] | None]:
        """What ``rows`` leave behind, from their values alone (no query): pk → the
        document, or None when the row left the result.

        Per row, the latest *write* wins. The log is read in commit order and by id
        inside a read, which for one row is write order (writes to a row are serialised
        by its lock, so the higher change id is the later write); the check that an
        older write read after a newer one is skipped stays as a guard (livedata 0.1
        read by (txid, id), where it was not so). Remembering the last two batches
        covers a read cut in two by the batch size.
        """
        assert self.matcher is not None and self.converters is not None
        state: dict[str, dict[str, Any] | None] = {}
        older, newer = self.recent_writes
        latest: dict[str, int] = {}
        for row in rows:
            if row.pk is None:
                continue
            known = latest.get(row.pk) or newer.get(row.pk) or older.get(row.pk) or 0
            if row.id < known:
                continue  # an older write of this row, read after a newer one
            latest[row.pk] = row.id
            if row.op == "delete" or row.new is None or self.matcher(row.new) is not True:
                state[row.pk] = None
            else:
                state[row.pk] = {
                    name: to_python(f, row.new.get(attname)) for attname, name, f in self.converters
                }
        self.recent_writes = (newer, latest)
        return state


def _joined_models(qs: QuerySet[Any]) -> set[str]:
    """Labels of the other models whose tables the query reads (joins, subqueries)."""
    compiler = qs.query.get_compiler(using=qs.db)
    try:
        compiler.as_sql()
    except Exception:  # an empty IN list etc.: no extra tables to know about
        return set()
    query = compiler.query
    # joins Django set up then trimmed (filter(author=obj)) stay in alias_map, unreferenced
    tables = {
        join.table_name
        for alias, join in query.alias_map.items()
        if query.alias_refcount.get(alias) or join.join_type is None
    }
    by_table = {m._meta.db_table: m._meta.label_lower for m in apps.get_models()}
    return {by_table[t] for t in tables if t in by_table} - {qs.model._meta.label_lower}


@dataclass(eq=False)
class Observer:
    """A publication with given parameters (and user, if it reads it), shared by its
    subscribers."""

    key: tuple[str, str, Any]
    queries: list[QueryObserver]
    subscribers: dict[tuple[Subscriber, str], None] = field(default_factory=dict)
    #: get_queries read self.user: the key holds the user's pk (None: anonymous)
    per_user: bool = False

    @property
    def dependencies(self) -> set[str]:
        return {label for q in self.queries for label in q.dependencies}

    def routes(self, label: str) -> list[tuple[str, Any, str]] | None:
        """How changes of ``label`` reach this observer: by key, or None for all of them."""
        routes = []
        for q in self.queries:
            if label not in q.dependencies:
                continue
            if q.label != label or q.route is None:
                return None
            routes.append(q.route)
        return routes

    def in_memory_for(self, rows: list[ChangeRow]) -> bool:
        """Can every query of this observer take ``rows`` without the database?"""
        return all(q.in_memory_for(rows) for q in self.queries)

    def documents(self) -> list[tuple[str, str, dict[str, Any]]]:
        return [
            (q.collection.name(), doc_id, fields)
            for q in self.queries
            for doc_id, fields in q.docs.items()
        ]
