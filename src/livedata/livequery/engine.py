"""The live-query engine: publications kept up to date from the change log alone.

Data flow: listener batch → ``Engine.on_changes`` → each affected ``Observer`` re-reads
what changed (``observer.py``: how) → the difference goes to every subscribed session's
mergebox → clients.

- Work is shared: subscriptions to the same publication with the same parameters (and
  user) share one ``Observer``; a batch is matched once per observer, not per client.
- Changes are routed: an observer whose queries require ``column = constant`` (say
  ``author_id = 7``) only receives rows whose old or new value has that key, so a change
  costs the same with 10 or 10,000 such observers; others receive every change of the
  models they depend on. The column may be a joined one (``author__email = X``): a
  book's row then reaches the observers of the email its author has in the join
  indexes, an author's row those of its old and new email (``exposure.joins.Via``).
- Join indexes (``joins.py``): the joined rows' columns that join queries read, shared
  by all observers, are brought up to date with each batch before it is routed.
- Fed only by the change log (never Django signals): raw SQL, bulk writes and other
  services' writes reach clients, and only committed data is ever sent.
- How a query is refreshed (in memory, by re-querying the changed keys, or in full) is
  ``observer.py``'s.
- Subscribing and refreshing are serialised by one lock, so a subscription's initial
  query and the batches around it can never interleave badly; a refresh re-reads the
  current state, so seeing a change twice is harmless. A batch takes the lock once for
  the observers matched in memory, then once per re-queried observer, in turns across
  clients, so one client's many observers cannot hold everyone else back.
- What a client may hold is bounded (limits.py): distinct observers per connection and
  per address, observer starts per second, documents per connection.
- Encode once, send many (issue 14): a change of an observer is encoded once (DDP's
  ``added``/``changed``/``removed``, EJSON) and the same frame goes to every session
  whose mergebox agrees it is exactly its own diff (``Mergebox.apply``: the session's
  only provider of the document); sessions with overlapping subscriptions get their own
  messages, with Meteor's semantics. An observer's initial documents are encoded once
  too (kept per document while it is unchanged), so N clients subscribing at once cost
  one encoding, not N.
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
from typing import TYPE_CHECKING, Any

from livedata.capture.log import ChangeRow
from livedata.dbthreads import with_connection
from livedata.dbwait import run_waiting
from livedata.ddp.mergebox import message_for
from livedata.ddp.messages import serialize
from livedata.exposure.joins import Via
from livedata.exposure.matching import routing_value
from livedata.livequery.joins import JoinIndexes
from livedata.livequery.limits import Holdings, size
from livedata.livequery.observer import Observer, QueryObserver
from livedata.memory import give_back
from livedata.publish.publication import API, Publication
from livedata.runtime.figures import Figure, Labels

if TYPE_CHECKING:
    from livedata.livequery.subscriber import Subscriber
    from livedata.runtime import Runtime

#: named before the engine left ``publish``; kept, since logging configurations name it
logger = logging.getLogger("livedata.publish")

#: Observers with more documents than this do not keep their initial documents encoded:
#: each subscriber encodes its own as it streams them (no encoded copy of a huge result
#: held for as long as the observer lives: issue 19's 70,000 books).
SHARED_INITIAL_MAX = 10_000


class Engine:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.observers: dict[tuple[str, str, Any], Observer] = {}
        #: label → observers that see every change of that model
        self.by_model: dict[str, set[Observer]] = {}
        #: (label, via, key) → observers that only see rows leading to that key (old or new)
        self.by_key: dict[tuple[str, Via, str], set[Observer]] = {}
        #: label → the ways (``Via``) of reading a routing key from its rows
        self.route_vias: dict[str, dict[Via, None]] = {}
        #: the joined rows join queries are matched against, shared by all observers
        self.joins = JoinIndexes()
        #: label → every observer depending on it (TRUNCATE reaches all)
        self.all_by_model: dict[str, set[Observer]] = {}
        self._lock = asyncio.Lock()
        #: which observer serves each subscription, and the limits on what clients hold
        self.holdings = Holdings(runtime.settings)
        #: observers whose refresh failed (database away): fully re-read when possible
        self.stale: set[Observer] = set()
        self._healer: asyncio.Task[None] | None = None
        #: observer → (collection, id) → (fields, the encoded ``added``) of its documents
        #: sent to a subscriber since they last changed (see ``_initial_frames``)
        self._initial: dict[Observer, dict[tuple[str, str], tuple[dict[str, Any], str]]] = {}
        #: refreshes of observers dropped since (the figures' totals go on counting them)
        self._refreshes_dropped = {"memory": 0, "query": 0}

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
        into ``nosub``: ``admission.Busy`` when it waited ``DDP_SUBSCRIBE_WAIT`` for a
        turn among the ``DDP_SUBSCRIBE_CONCURRENCY`` being set up.
        """
        # admission: at most DDP_SUBSCRIBE_CONCURRENCY set up at once, so a reconnect
        # storm's subscriptions queue here (``Busy`` past the wait). The slot is given
        # back before streaming: a client that reads nothing must not hold it.
        async with self.runtime.subscribe_slots.slot():
            await self.runtime.listening()  # the initial query must not predate the listener
            async with self._lock:
                observer = await self._observer_for(name, params, session)
                self._attach(session, sub_id, observer)
                docs = observer.documents()
                session.publish_added(sub_id, docs, self._initial_frames(observer, docs))
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
                self._start_observer, key, publication_cls, params, user, self.joins
            )
            existing = self.observers.get(observer.key)
            if existing is None:
                try:
                    self.holdings.admit_documents(session, observer)
                except BaseException:
                    observer.release()
                    raise
                self.observers[observer.key] = observer
                self._index(observer)
                return observer
            observer.release()
            observer = existing  # a user-independent publication already observed
        self.holdings.admit_documents(session, observer)
        return observer

    def _initial_frames(
        self, observer: Observer, docs: list[tuple[str, str, dict[str, Any]]]
    ) -> list[str] | None:
        """The encoded ``added`` of each of ``docs`` (the observer's documents), encoded
        once per document while it is unchanged (None: too many documents to keep).

        A document is known unchanged by identity: a refresh replaces the fields dict of
        a document that changed, never mutates it; ``_publish`` also drops its entry."""
        if len(docs) > SHARED_INITIAL_MAX:
            return None
        cache = self._initial.setdefault(observer, {})
        out = []
        for collection, doc_id, fields in docs:
            hit = cache.get((collection, doc_id))
            if hit is None or hit[0] is not fields:
                frame = serialize(message_for(collection, "added", doc_id, fields))
                hit = cache[(collection, doc_id)] = (fields, frame)
            out.append(hit[1])
        return out

    def _attach(self, session: Subscriber, sub_id: str, observer: Observer) -> None:
        observer.subscribers[(session, sub_id)] = None
        self.holdings.attach(session, sub_id, observer)

    @staticmethod
    def _start_observer(
        key: tuple[str, str, Any],
        publication_cls: type[Publication],
        params: list[Any],
        user: Any,
        joins: JoinIndexes,
    ) -> Observer:
        publication = publication_cls(user)
        querysets = publication.resolve(params)
        per_user = publication.used_user
        if not per_user:
            key = (*key[:2], None)
        queries: list[QueryObserver] = []
        try:
            for qs in querysets:
                queries.append(QueryObserver.build(qs, publication, joins))
            for q in queries:
                q.docs = q.fetch()
        except BaseException:
            for q in queries:
                q.release()  # the join indexes it took
            raise
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
            for q in observer.queries:
                self._refreshes_dropped["memory"] += q.in_memory
                self._refreshes_dropped["query"] += q.queried
            observer.release()
            self._initial.pop(observer, None)
            give_back(size(observer))  # its documents are freed now: return the pages
        for label in observer.dependencies:
            _discard(self.all_by_model, label, observer)
            _discard(self.by_model, label, observer)
            for via, value in observer.routes(label) or ():
                _discard(self.by_key, (label, via, value), observer)

    def _index(self, observer: Observer) -> None:
        for label in observer.dependencies:
            self.all_by_model.setdefault(label, set()).add(observer)
            routes = observer.routes(label)
            if routes is None:
                self.by_model.setdefault(label, set()).add(observer)
                continue
            for via, value in routes:
                self.by_key.setdefault((label, via, value), set()).add(observer)
                self.route_vias.setdefault(label, {})[via] = None

    def route(self, rows: list[ChangeRow]) -> dict[Observer, list[ChangeRow]]:
        """Which observers each row may affect, keeping the rows' order per observer."""
        out: dict[Observer, list[ChangeRow]] = {}
        for row in rows:
            label = row.model
            if row.op == "truncate":
                targets: set[Observer] = set(self.all_by_model.get(label, ()))
            else:
                targets = set(self.by_model.get(label, ()))
                for via in self.route_vias.get(label, ()):
                    for values in (row.new, row.old):
                        value = None if values is None else self.joins.follow(via, values)
                        if value is not None:
                            key = routing_value(value)
                            targets |= self.by_key.get((label, via, key), set())
            for observer in targets:
                out.setdefault(observer, []).append(row)
        return out

    # --- the listener's consumer --------------------------------------------------------

    async def on_changes(self, rows: list[ChangeRow]) -> None:
        async with self._lock:
            self.joins.apply(rows)  # before routing: join routes read the indexes
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

    def _publish(self, observer: Observer, diffs: list[list[Any]]) -> None:
        """Send an observer's changes to its subscribers, each change encoded once
        (``frames``, aligned with ``diffs``) for the sessions it is exactly the diff of."""
        if not any(diffs):
            return
        cache = self._initial.get(observer)
        frames = []
        for changes in diffs:
            frames.append([serialize(message_for(*change)) for change in changes])
            if cache:
                for collection, _op, doc_id, _fields in changes:
                    cache.pop((collection, doc_id), None)
        for session, sub_id in list(observer.subscribers):
            session.publish_diffs(sub_id, diffs, frames)

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

    # --- figures ------------------------------------------------------------------------

    def figures(self) -> list[Figure]:
        """Observers, subscriptions and how they refresh, by publication (a source of
        ``runtime.figures``: read on demand from the engine's own indexes)."""
        observers: dict[str, int] = {}
        subscriptions: dict[str, int] = {}
        documents: dict[str, int] = {}
        queries: dict[tuple[str, str], int] = {}
        refreshes = dict(self._refreshes_dropped)
        for observer in list(self.observers.values()):
            name = observer.key[0]
            observers[name] = observers.get(name, 0) + 1
            subscriptions[name] = subscriptions.get(name, 0) + len(observer.subscribers)
            for q in observer.queries:
                documents[name] = documents.get(name, 0) + len(q.docs)
                kind = (name, q.how_refreshed)
                queries[kind] = queries.get(kind, 0) + 1
                refreshes["memory"] += q.in_memory
                refreshes["query"] += q.queried

        def by_publication(counts: dict[str, int]) -> list[tuple[Labels, float]]:
            return [((("publication", name),), n) for name, n in sorted(counts.items())]

        return [
            Figure(
                "subscriptions",
                "gauge",
                "DDP subscriptions served, by publication",
                by_publication(subscriptions),
            ),
            Figure(
                "observers",
                "gauge",
                "live queries running (one per publication, parameters and user if it reads it)",
                by_publication(observers),
            ),
            Figure(
                "observer_queries",
                "gauge",
                "querysets of the observers by how a change reaches them: memory (log rows "
                "alone), joins (in memory against join indexes), keys (re-query of the "
                "changed keys), full (re-run)",
                [
                    ((("publication", name), ("refresh", how)), n)
                    for (name, how), n in sorted(queries.items())
                ],
            ),
            Figure(
                "observer_documents",
                "gauge",
                "documents the observers hold, by publication",
                by_publication(documents),
            ),
            Figure.one(
                "observers_stale",
                "gauge",
                "observers whose refresh failed (database away), waiting to be re-read",
                len(self.stale),
            ),
            Figure(
                "observer_refreshes_total",
                "counter",
                "observer refreshes: done in memory, or with a query",
                [((("how", how),), n) for how, n in refreshes.items()],
            ),
        ]

    def observer_details(self) -> list[dict[str, Any]]:
        """Each observer as the operators' dashboard shows it: publication, parameters,
        whether it is per user, its subscribers, and how each of its queries refreshes.

        A source of its own beside ``figures`` (``runtime.figures``' rule: parameters
        are unbounded, so they are no Prometheus labels); read on demand."""
        out = []
        for observer in list(self.observers.values()):
            name, params, user = observer.key
            out.append(
                {
                    "publication": name,
                    "params": params,
                    "per_user": observer.per_user,
                    "user": None if user is None else str(user),
                    "subscribers": len(observer.subscribers),
                    "refresh": [q.how_refreshed for q in observer.queries],
                    "documents": sum(len(q.docs) for q in observer.queries),
                }
            )
        out.sort(key=lambda d: (d["publication"], d["params"], d["user"] or ""))
        return out


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
