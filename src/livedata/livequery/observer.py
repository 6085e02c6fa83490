"""What one live query holds and how it is refreshed from the change log.

An ``Observer`` is a publication run with given parameters (and user, when
``get_queries`` reads it): its ``QueryObserver`` per queryset holds the documents the
query currently yields, and its subscribers share them (the ``Engine`` in ``engine.py``
indexes observers, routes batches to them and publishes their differences).

How a query is refreshed (``QueryObserver.refresh``):

- When it only filters its own model's columns with simple lookups
  (``livedata.exposure.matching`` lists them), the log rows alone decide membership and
  fields: no query at all.
- When it also filters through forward foreign keys (``author__email=X``,
  ``book__author__name__in=[...]``, ``author__isnull``; ``livedata.exposure.joins`` says
  which), a change of its own model is matched in memory against the joined rows of the
  engine's shared index (``joins.py``): no query either. A change of a joined row
  that touches a column the query reads (or inserts or deletes it) re-queries only the
  affected keys: the rows whose join leads to it (``qs.filter(author__id__in=...)``,
  candidates for leaving known from the keys each document's join went through).
- Otherwise (the fallback), for changes to the query's own model, it re-queries only the
  affected primary keys (``qs.filter(pk__in=...)``), once per observer per batch; a
  change to another table the query joins re-runs the whole query.
- A TRUNCATE, a sliced query (top-N: "latest 10"), or more than ``REQUERY_THRESHOLD``
  changed rows re-runs the whole query.

A refresh re-reads the current state, so seeing a change twice is harmless.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from django.apps import apps
from django.db.models import Q, QuerySet

from livedata.capture.log import ChangeRow
from livedata.ddp.messages import UNDEFINED
from livedata.exposure.joins import JoinPlan, Via, compile_join_plan
from livedata.exposure.matching import Matcher, compile_matcher, route_key, supported, to_python
from livedata.livequery.joins import JoinIndexes
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
    #: label → [(via, key)]: a changed row of that label reaches this query only if
    #: ``via`` leads from its old or new value to a key (see route_key, JoinPlan.routes)
    routes: dict[str, list[tuple[Via, str]]] = field(default_factory=dict)
    #: matched in memory through its joins: the plan, the indexes it reads (taken), and
    #: per document the keys its join went through (``JoinPlan.resolve``)
    plan: JoinPlan | None = None
    joins: JoinIndexes | None = None
    links: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    #: the indexes are this observer's own (no engine feeds them): refresh applies rows
    own_joins: bool = False
    #: refreshes done without a query / with one (for tests and benchmarks)
    in_memory: int = 0
    queried: int = 0
    #: pk → id of the latest write applied in memory, for the last two batches (see
    #: _match_in_memory)
    recent_writes: tuple[dict[str, int], dict[str, int]] = field(default_factory=lambda: ({}, {}))

    @classmethod
    def build(
        cls, qs: QuerySet[Any], publication: Publication, joins: JoinIndexes | None = None
    ) -> QueryObserver:
        """The observer of ``qs``; a join query takes the indexes it reads from
        ``joins`` (the engine's; None: indexes of its own, fed by ``refresh``), to be
        given back with ``release``."""
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
        plan = compile_join_plan(qs) if matcher is None and not sliced else None
        if not all(supported(f) for _, _, f in converters):
            matcher, plan = None, None
        own_joins = False
        if plan is not None:
            if joins is None:
                joins, own_joins = JoinIndexes(), True
            if joins.acquire(plan, qs.db):
                matcher = plan.matcher
            else:
                plan = None  # a joined model too large to index: re-query
        if matcher is None:
            converters = None
        label = model._meta.label_lower
        routes: dict[str, list[tuple[Via, str]]] = {}
        if plan is not None:
            routes = plan.routes
        elif not sliced:
            own = route_key(qs)
            if own is not None:
                column, field_, key = own
                routes = {label: [(Via(column, field_), key)]}
        return cls(
            queryset=qs,
            collection=collection,
            columns=columns,
            label=label,
            dependencies=frozenset({label, *_joined_models(qs)}),
            sliced=sliced,
            matcher=matcher,
            converters=converters,
            routes=routes,
            plan=plan,
            joins=joins if plan is not None else None,
            own_joins=own_joins and plan is not None,
        )

    @property
    def how_refreshed(self) -> str:
        """How a change reaches its documents (the module docstring's cases), for the
        figures: ``memory`` (the log rows alone), ``joins`` (in memory against the join
        indexes; a joined row's change re-queries the keys it leads to), ``keys``
        (re-queries the changed primary keys; a joined table's change re-runs it),
        ``full`` (re-runs the whole query: a sliced query)."""
        if self.sliced:
            return "full"
        if self.plan is not None:
            return "joins"
        return "memory" if self.matcher is not None else "keys"

    def release(self) -> None:
        """Give back the join indexes this query took (it is dropped)."""
        if self.plan is not None and self.joins is not None:
            self.joins.release(self.plan)
            self.joins = None

    def fetch(self, qs: QuerySet[Any] | None = None) -> Docs:
        """The documents ``qs`` (default: the whole query) yields; for a join query, the
        keys each one's join went through are recorded (``links``) too."""
        docs, links = self._fetch(qs)
        if self.plan is not None:
            if qs is None:
                self.links = links
            else:
                self.links.update(links)
        return docs

    def _fetch(self, qs: QuerySet[Any] | None) -> tuple[Docs, dict[str, tuple[Any, ...]]]:
        roots = [] if self.plan is None else [h.lhs for h in self.plan.hops if h.parent < 0]
        rows = list(
            (qs if qs is not None else self.queryset).values_list(
                "pk", *(attname for attname, _ in self.columns), *(f.attname for f in roots)
            )
        )
        names = [name for _, name in self.columns]
        n = len(names) + 1
        docs = {str(row[0]): dict(zip(names, row[1:n], strict=True)) for row in rows}
        links: dict[str, tuple[Any, ...]] = {}
        if self.plan is not None and self.joins is not None:
            lookup = self.joins.lookup(self.plan)
            for row in rows:
                base = {f.column: value for f, value in zip(roots, row[n:], strict=True)}
                links[str(row[0])] = self.plan.resolve(base, lookup, python=True)[1]
        return docs, links

    def refresh(self, rows: list[ChangeRow]) -> list[tuple[str, str, dict[str, Any] | None]]:
        """Re-read what ``rows`` may have changed; returns (op, id, fields) differences."""
        relevant = [r for r in rows if r.model in self.dependencies]
        if not relevant:
            return []
        if self.own_joins:
            self.joins.apply(relevant)  # type: ignore[union-attr]
        if self.plan is not None:
            return self._refresh_joined(relevant)
        full = self.sliced or any(r.op == "truncate" or r.model != self.label for r in relevant)
        if self.matcher is None and len(relevant) > REQUERY_THRESHOLD:
            full = True  # a burst: one full query beats a huge IN list
        if full:
            return self.resync()
        if self.matcher is not None:
            state = self._match_in_memory(relevant)
            new = {pk: doc for pk, doc in state.items() if doc is not None}
            candidates: Iterable[str] = set(state)
            self.in_memory += 1
        else:
            pks = {r.pk for r in relevant if r.pk is not None}
            model_pk = self.queryset.model._meta.pk
            keys = [model_pk.to_python(pk) for pk in pks]
            new = self.fetch(self.queryset.filter(pk__in=keys))
            candidates = pks
            self.queried += 1
        return self._diff(new, candidates)

    def _refresh_joined(
        self, rows: list[ChangeRow]
    ) -> list[tuple[str, str, dict[str, Any] | None]]:
        """A join query's refresh: its own rows in memory against the join indexes (which
        already hold ``rows``), then a re-query of only the rows whose join leads to a
        joined row whose relevant columns changed."""
        assert self.plan is not None
        changed = self._joined_changes(rows)
        if any(r.op == "truncate" for r in rows) or (
            sum(map(len, changed.values())) > REQUERY_THRESHOLD
        ):
            return self.resync()
        links: dict[str, tuple[Any, ...]] = {}
        state = self._match_in_memory([r for r in rows if r.model == self.label], links)
        if changed:
            # rows whose join now goes through an affected key are re-read (those the
            # query no longer yields leave); the others keep what memory decided
            hops = self.plan.hops
            current = {**self.links, **links}
            leaving = {
                doc_id
                for doc_id, keys in current.items()
                if any(keys[i] in affected for i, affected in changed.items())
            }
            where = Q()
            for i, affected in changed.items():
                where |= Q(**{f"{hops[i].path}__{hops[i].target.name}__in": list(affected)})
            fetched, fetched_links = self._fetch(self.queryset.filter(where))
            for doc_id in leaving | set(fetched):
                state[doc_id] = fetched.get(doc_id)
            links.update(fetched_links)
            self.queried += 1
        else:
            self.in_memory += 1
        for doc_id, doc in state.items():
            if doc is None:
                self.links.pop(doc_id, None)
            else:
                self.links[doc_id] = links[doc_id]
        new = {pk: doc for pk, doc in state.items() if doc is not None}
        return self._diff(new, set(state))

    def _joined_changes(self, rows: list[ChangeRow]) -> dict[int, set[Any]]:
        """Hop number → keys of its joined rows that ``rows`` insert, delete, or change
        in a column the query reads."""
        assert self.plan is not None
        out: dict[int, set[Any]] = {}
        for row in rows:
            for i, hop in enumerate(self.plan.hops):
                if hop.label != row.model or row.op == "truncate":
                    continue
                if (
                    row.op == "update"
                    and row.changed is not None
                    and hop.columns.keys().isdisjoint(row.changed)
                ):
                    continue  # none of the columns the query reads
                for values in (row.old, row.new):
                    key = None if values is None else values.get(hop.target.column)
                    if key is not None:
                        out.setdefault(i, set()).add(to_python(hop.target, key))
        return out

    def in_memory_for(self, rows: list[ChangeRow]) -> bool:
        if self.matcher is None or self.sliced:
            return not any(r.model in self.dependencies for r in rows)
        mine = [r for r in rows if r.model in self.dependencies]
        if self.plan is not None:
            return not any(r.op == "truncate" for r in mine) and not self._joined_changes(mine)
        return all(r.model == self.label and r.op != "truncate" for r in mine)

    def resync(self) -> list[tuple[str, str, dict[str, Any] | None]]:
        """Re-read the whole result (a failed refresh, a truncate, a change the rows alone
        cannot decide, a burst): the client ends up exact."""
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

    def _match_in_memory(
        self, rows: list[ChangeRow], links: dict[str, tuple[Any, ...]] | None = None
    ) -> dict[str, dict[str, Any] | None]:
        """What ``rows`` leave behind, from their values alone (no query): pk → the
        document, or None when the row left the result. A join query reads the joined
        rows from its indexes, and puts in ``links`` the join keys of each document.

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
        plan = self.plan
        lookup = self.joins.lookup(plan) if plan is not None and self.joins else None
        for row in rows:
            if row.pk is None:
                continue
            known = latest.get(row.pk) or newer.get(row.pk) or older.get(row.pk) or 0
            if row.id < known:
                continue  # an older write of this row, read after a newer one
            latest[row.pk] = row.id
            if row.op == "delete" or row.new is None:
                state[row.pk] = None
                continue
            if plan is not None and lookup is not None and links is not None:
                kept, links[row.pk] = plan.match(row.new, lookup)
            else:
                kept = self.matcher(row.new) is True
            if not kept:
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

    def routes(self, label: str) -> list[tuple[Via, str]] | None:
        """How changes of ``label`` reach this observer: by key, or None for all of them."""
        routes: list[tuple[Via, str]] = []
        for q in self.queries:
            if label not in q.dependencies:
                continue
            mine = q.routes.get(label)
            if mine is None:
                return None
            routes.extend(mine)
        return routes

    def release(self) -> None:
        """Give back what its queries took of the shared join indexes (it is dropped)."""
        for q in self.queries:
            q.release()

    def in_memory_for(self, rows: list[ChangeRow]) -> bool:
        """Can every query of this observer take ``rows`` without the database?"""
        return all(q.in_memory_for(rows) for q in self.queries)

    def documents(self) -> list[tuple[str, str, dict[str, Any]]]:
        return [
            (q.collection.name(), doc_id, fields)
            for q in self.queries
            for doc_id, fields in q.docs.items()
        ]
