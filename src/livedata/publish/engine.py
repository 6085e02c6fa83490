"""The live-query engine: publications kept up to date from the change log alone.

Data flow: listener batch → ``Engine.on_changes`` → each affected ``Observer`` re-reads
what changed → the difference goes to every subscribed session's mergebox → clients.

- Work is shared: subscriptions to the same publication with the same parameters (and
  user) share one ``Observer``; a batch is matched once per observer, not per client.
- Changes are routed: an observer whose queries require ``column = constant`` (say
  ``author_id = 7``) only receives rows whose old or new value has that key, so a change
  costs the same with 10 or 10,000 such observers; others receive every change of the
  models they depend on.
- Fed only by the change log (never Django signals): raw SQL, bulk writes and other
  services' writes reach clients, and only committed data is ever sent.
- How a query is refreshed: when it only filters its own model's columns with simple
  lookups (matching.py lists them), the log rows alone decide membership and fields: no
  query at all. Otherwise, for changes to the query's own model, it re-queries only the
  affected primary keys (``qs.filter(pk__in=...)``), once per observer per batch. A change
  to another table the query joins (``author__email=...`` depends on the author table), a
  TRUNCATE, or a sliced query (top-N: "latest 10") re-runs the whole query.
- Subscribing and refreshing are serialised by one lock, so a subscription's initial
  query and the batches around it can never interleave badly; a refresh re-reads the
  current state, so seeing a change twice is harmless. A batch takes the lock once for
  the observers matched in memory, then once per re-queried observer, in turns across
  clients, so one client's many observers cannot hold everyone else back.
- What a client may hold is bounded (limits.py): distinct observers per connection and
  per address, observer starts per second, documents per connection.
- Users: an observer is shared by everyone subscribing with the same publication and
  parameters, unless ``get_queries`` read ``self.user``: then only by the same user.
  When a connection logs in or out, ``rerun`` moves each of its subscriptions to the
  observer of the new user and sends the client only the difference.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from django.apps import apps
from django.db.models import QuerySet

from livedata.capture.log import ChangeRow
from livedata.dbthreads import with_connection
from livedata.dbwait import run_waiting
from livedata.ddp.messages import UNDEFINED
from livedata.exposure.matching import (
    Matcher,
    compile_matcher,
    route_key,
    routing_value,
    supported,
    to_python,
)
from livedata.memory import give_back
from livedata.publish.api import API, Collection, Publication
from livedata.publish.limits import Holdings, size

if TYPE_CHECKING:
    from livedata.publish.subscriber import Subscriber
    from livedata.runtime import Runtime

logger = logging.getLogger("livedata.publish")

Docs = dict[str, dict[str, Any]]  # doc id → published fields


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


#: More changed rows than this for one re-queried observer in a batch: re-run its whole
#: query instead of an IN list of keys (bursts catch up in bounded work and memory).
REQUERY_THRESHOLD = 500


class Engine:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.observers: dict[tuple[str, str, Any], Observer] = {}
        #: label → observers that see every change of that model
        self.by_model: dict[str, set[Observer]] = {}
        #: (label, column, key) → observers that only see rows with that key (old or new)
        self.by_key: dict[tuple[str, str, str], set[Observer]] = {}
        #: label → {column: field} of the keys routed on
        self.route_columns: dict[str, dict[str, Any]] = {}
        #: label → every observer depending on it (TRUNCATE reaches all)
        self.all_by_model: dict[str, set[Observer]] = {}
        self._lock = asyncio.Lock()
        #: which observer serves each subscription, and the limits on what clients hold
        self.holdings = Holdings(runtime.settings)
        #: observers whose refresh failed (database away): fully re-read when possible
        self.stale: set[Observer] = set()
        self._healer: asyncio.Task[None] | None = None

    # --- subscriptions ------------------------------------------------------------------

    async def subscribe(
        self, session: Subscriber, sub_id: str, name: str, params: list[Any]
    ) -> None:
        """Start (or join) the observer, send its documents, then ``ready``.

        The documents enter the session's mergebox under the lock (so changes applied
        after it are consistent with them), and are streamed to the client after it, at
        the pace it reads them: a slow client holds no one else back, and however many
        there are they never overflow its outgoing buffer (issue 19).

        Raises ``DDPError`` (or any error from the publication) for the caller to turn
        into ``nosub``.
        """
        await self.runtime.listening()  # the initial query must not predate the listener
        async with self._lock:
            observer = await self._observer_for(name, params, session)
            self._attach(session, sub_id, observer)
            session.publish_added(sub_id, observer.documents())
        await session.stream()
        session.ready(sub_id)

    async def _observer_for(self, name: str, params: list[Any], session: Subscriber) -> Observer:
        """The observer the session's subscription joins, started if need be (lock held).

        The limits on what one client holds are checked before any cost is paid: the
        distinct observers and the start rate before the initial query, the documents
        once they are known (a refused new observer is dropped at once).
        """
        user = session.user
        publication_cls = API.publications[name]
        if publication_cls.login_required or publication_cls.permission_required:
            await self._run_waiting(publication_cls.check_access, user)
        shared = (name, json.dumps(params, sort_keys=True, default=str), None)
        key = (*shared[:2], user.pk)
        observer = self.observers.get(shared)
        if observer is None or observer.per_user:
            observer = self.observers.get(key)
        self.holdings.admit(session, [shared, key])
        if observer is None:
            self.holdings.admit_start(session, name, time.monotonic())
            observer = await self._run_waiting(
                self._start_observer, key, publication_cls, params, user
            )
            existing = self.observers.get(observer.key)
            if existing is None:
                self.holdings.admit_documents(session, observer)
                self.observers[observer.key] = observer
                self._index(observer)
                return observer
            observer = existing  # a user-independent publication already observed
        self.holdings.admit_documents(session, observer)
        return observer

    def _attach(self, session: Subscriber, sub_id: str, observer: Observer) -> None:
        observer.subscribers[(session, sub_id)] = None
        self.holdings.attach(session, sub_id, observer)

    @staticmethod
    def _start_observer(
        key: tuple[str, str, Any], publication_cls: type[Publication], params: list[Any], user: Any
    ) -> Observer:
        publication = publication_cls(user)
        querysets = publication.resolve(params)
        per_user = publication.used_user
        if not per_user:
            key = (*key[:2], None)
        queries = [QueryObserver.build(qs, publication) for qs in querysets]
        for q in queries:
            q.docs = q.fetch()
        return Observer(key=key, queries=queries, per_user=per_user)

    async def rerun(
        self, session: Subscriber, subs: dict[str, tuple[str, list[Any]]], universal: Any
    ) -> list[tuple[str, BaseException]]:
        """The session's user changed: re-run its subscriptions as ``session.user``.

        The session's mergebox is rebuilt from the new observers (plus ``universal``:
        documents published without a subscription, the user's own) and the client is
        sent only the difference. Returns the subscriptions that failed (for ``nosub``).
        """
        from livedata.ddp.mergebox import Mergebox

        failed: list[tuple[str, BaseException]] = []
        await self.runtime.listening()
        async with self._lock:
            old = self._detach(session)  # dropped only after: the new user may share them
            box = Mergebox()
            for sub_id, (name, params) in subs.items():
                try:
                    observer = await self._observer_for(name, params, session)
                except Exception as exc:
                    failed.append((sub_id, exc))
                    continue
                self._attach(session, sub_id, observer)
                for collection, doc_id, fields in observer.documents():
                    box.added(sub_id, collection, doc_id, fields)
            for sub_key, collection, doc_id, fields in universal:
                box.added(sub_key, collection, doc_id, fields)
            for observer in old:
                self._maybe_drop(observer)
            session.replace_view(box)
        return failed

    async def unsubscribe(self, session: Subscriber, sub_id: str) -> None:
        async with self._lock:
            observer = self.holdings.detach(session, sub_id)
            if observer is not None:
                observer.subscribers.pop((session, sub_id), None)
                self._maybe_drop(observer)

    async def drop_session(self, session: Subscriber) -> None:
        """A connection went away: forget its subscriptions (memory back to baseline)."""
        async with self._lock:
            for observer in self._detach(session):
                self._maybe_drop(observer)

    def _detach(self, session: Subscriber) -> list[Observer]:
        """Remove the session's subscriptions from their observers; the ones it was in."""
        touched = self.holdings.detach_all(session)
        for observer in touched:
            for sub in [s for s in observer.subscribers if s[0] is session]:
                del observer.subscribers[sub]
        return touched

    def _maybe_drop(self, observer: Observer) -> None:
        if observer.subscribers:
            return
        if self.observers.get(observer.key) is observer:
            del self.observers[observer.key]
            give_back(size(observer))  # its documents are freed now: return the pages
        for label in observer.dependencies:
            _discard(self.all_by_model, label, observer)
            _discard(self.by_model, label, observer)
            for column, _field, value in observer.routes(label) or ():
                _discard(self.by_key, (label, column, value), observer)

    def _index(self, observer: Observer) -> None:
        for label in observer.dependencies:
            self.all_by_model.setdefault(label, set()).add(observer)
            routes = observer.routes(label)
            if routes is None:
                self.by_model.setdefault(label, set()).add(observer)
                continue
            for column, field_, value in routes:
                self.by_key.setdefault((label, column, value), set()).add(observer)
                self.route_columns.setdefault(label, {})[column] = field_

    def route(self, rows: list[ChangeRow]) -> dict[Observer, list[ChangeRow]]:
        """Which observers each row may affect, keeping the rows' order per observer."""
        out: dict[Observer, list[ChangeRow]] = {}
        for row in rows:
            label = row.model
            if row.op == "truncate":
                targets: set[Observer] = set(self.all_by_model.get(label, ()))
            else:
                targets = set(self.by_model.get(label, ()))
                for column, field_ in self.route_columns.get(label, {}).items():
                    for values in (row.new, row.old):
                        if values is not None and values.get(column) is not None:
                            key = routing_value(to_python(field_, values[column]))
                            targets |= self.by_key.get((label, column, key), set())
            for observer in targets:
                out.setdefault(observer, []).append(row)
        return out

    # --- the listener's consumer --------------------------------------------------------

    async def on_changes(self, rows: list[ChangeRow]) -> None:
        async with self._lock:
            work = self.route(rows)
        await self._apply(work)
        if self.stale:
            await self.heal()

    async def _apply(self, work: dict[Observer, list[ChangeRow]]) -> None:
        """Refresh the observers a batch reaches, so that no client waits behind another's.

        Observers matched in memory go first, in one hold of the lock (pure computation on
        the log rows: no thread hop, no database). Re-queried ones follow one at a time,
        in turns across clients (``fair_order``), releasing the lock between them: a client
        holding 300 re-queried observers (300 queries per change, measured with
        bench/client_cost.py) delays neither others' updates nor new subscriptions by more
        than a query. Between two observers the engine is consistent: each observer's
        documents are what its subscribers were sent. One that started or was dropped
        meanwhile is skipped (a new one's initial query already saw the batch).
        """
        cheap: dict[Observer, list[ChangeRow]] = {}
        costly: dict[Observer, list[ChangeRow]] = {}
        for observer, mine in work.items():
            (cheap if observer.in_memory_for(mine) else costly)[observer] = mine
        async with self._lock:
            for observer, mine in cheap.items():
                if self._current(observer):
                    self._publish(observer, self._refresh(observer, mine))
        for observer in fair_order(costly):
            async with self._lock:
                if self._current(observer):
                    await self._update(observer, self._refresh, costly[observer])

    def _current(self, observer: Observer) -> bool:
        return observer not in self.stale and self.observers.get(observer.key) is observer

    async def heal(self) -> None:
        """Fully re-read observers whose refresh failed; retried until the database answers."""
        async with self._lock:
            for observer in list(self.stale):
                if observer.key in self.observers:
                    await self._update(observer, self._resync)
                else:
                    self.stale.discard(observer)
        if self.stale and (self._healer is None or self._healer.done()):
            self._healer = asyncio.get_running_loop().create_task(self._heal_later())

    async def _heal_later(self) -> None:
        await asyncio.sleep(self.runtime.settings.LISTENER_POLL_INTERVAL)
        await self.heal()

    async def _update(self, observer: Observer, how: Any, *args: Any) -> None:
        try:
            diffs = await self._run(how, observer, *args)
        except Exception as exc:
            if observer not in self.stale:
                logger.warning(
                    "livedata: refreshing publication %s failed (%s); it will be re-read",
                    observer.key[0],
                    exc,
                )
            self.stale.add(observer)
            return
        self.stale.discard(observer)
        self._publish(observer, diffs)

    @staticmethod
    def _publish(observer: Observer, diffs: list[list[Any]]) -> None:
        if any(diffs):
            for session, sub_id in list(observer.subscribers):
                session.publish_diffs(sub_id, diffs)

    @staticmethod
    def _refresh(observer: Observer, rows: list[ChangeRow]) -> list[list[Any]]:
        return [
            [(q.collection.name(), *change) for change in q.refresh(rows)] for q in observer.queries
        ]

    @staticmethod
    def _resync(observer: Observer) -> list[list[Any]]:
        return [[(q.collection.name(), *change) for change in q.resync()] for q in observer.queries]

    async def _run(self, func: Any, *args: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.runtime.executor, with_connection, func, *args)

    async def _run_waiting(self, func: Any, *args: Any) -> Any:
        """``func`` (reads only) run again while the database is away, for up to
        ``DDP_DATABASE_WAIT``; then ``DatabaseUnavailable`` (the subscription's nosub 503)."""
        loop = asyncio.get_running_loop()
        wait = self.runtime.settings.DDP_DATABASE_WAIT
        return await loop.run_in_executor(self.runtime.executor, run_waiting, wait, func, *args)


def fair_order(observers: Iterable[Observer]) -> list[Observer]:
    """Observers in turns across clients: every client's first observer, then every
    client's second, and so on. A client is a client address (a connection without one:
    itself); an observer shared by several clients comes at its earliest turn."""
    queues: dict[Any, list[Observer]] = {}
    for observer in observers:
        owners = {s.client_address or s for s, _sub in observer.subscribers} or {None}
        for owner in owners:
            queues.setdefault(owner, []).append(observer)
    out: dict[Observer, None] = {}
    turn = 0
    while queues:
        for owner in list(queues):
            queue = queues[owner]
            if turn >= len(queue):
                del queues[owner]
                continue
            out.setdefault(queue[turn], None)
        turn += 1
    return list(out)


def _discard(index: dict[Any, set[Observer]], key: Any, observer: Observer) -> None:
    group = index.get(key)
    if group is not None:
        group.discard(observer)
        if not group:
            del index[key]
