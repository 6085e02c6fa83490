"""What each client's subscriptions hold in the engine, and the limits on it.

A subscription that joins a running observer costs its documents in the connection's
mergebox; one that starts an observer costs an initial query, the observer's documents,
and work on every change the observer depends on (up to a re-query per batch), for as
long as it lives. Without limits one anonymous client could start thousands of observers
and delay every other client's updates (issue 19). So, per connection and per client
address, livedata bounds the distinct observers held and the rate of observer starts,
and per connection the documents its subscriptions hold; each refusal is a Meteor-style
``too-many-requests`` error, which the session answers as ``nosub``.

``Holdings`` is also the engine's index of which observer serves each subscription, so
unsubscribing and disconnecting never scan every observer.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable
from typing import TYPE_CHECKING, Any

from livedata.ddp.errors import DDPError
from livedata.ddp.ratelimit import RateLimiter, Rule

if TYPE_CHECKING:
    from livedata.conf import LivedataSettings
    from livedata.livequery.observer import Observer
    from livedata.livequery.subscriber import Subscriber


def too_many(reason: str) -> DDPError:
    return DDPError("too-many-requests", reason)


class Holdings:
    def __init__(self, settings: LivedataSettings) -> None:
        self.max_per_connection = settings.DDP_MAX_OBSERVERS_PER_CONNECTION
        self.max_per_address = settings.DDP_MAX_OBSERVERS_PER_ADDRESS
        self.max_documents = settings.DDP_MAX_DOCUMENTS_PER_CONNECTION
        self.starts = RateLimiter(
            Rule.from_setting({**spec, "methods": ("*",)})
            for spec in settings.DDP_OBSERVER_RATE_LIMITS
        )
        #: session → sub id → the observer serving it
        self.subs: dict[Subscriber, dict[str, Observer]] = {}
        #: session / client address → observer → subscriptions of it held there
        self.by_session: dict[Subscriber, Counter[Observer]] = {}
        self.by_address: dict[str, Counter[Observer]] = {}

    # --- checks (before the cost is paid) -----------------------------------------------

    def holds(self, session: Subscriber, keys: list[Hashable]) -> bool:
        """Whether the session already holds an observer with one of these keys."""
        return any(o.key in keys for o in self.by_session.get(session, ()))

    def admit(self, session: Subscriber, candidates: list[Hashable]) -> None:
        """Raise too-many-requests unless the session may hold the observer with one of
        the keys ``candidates`` (it holds it already, or may hold one more)."""
        if self.holds(session, candidates):
            return
        held = self.by_session.get(session, ())
        if len(held) >= self.max_per_connection:
            raise too_many(
                f"Too many distinct subscriptions on this connection "
                f"(limit {self.max_per_connection})"
            )
        address = session.client_address
        if address is not None:
            at_address = self.by_address.get(address, {})
            known = any(o.key in candidates for o in at_address)
            if not known and len(at_address) >= self.max_per_address:
                raise too_many(
                    f"Too many distinct subscriptions from this address "
                    f"(limit {self.max_per_address})"
                )

    def admit_start(self, session: Subscriber, name: str, now: float) -> None:
        """Count an observer start against the rate limits (refused ones too)."""
        limited = self.starts.check(
            name,
            now,
            connection=session.connection_id,
            client_address=session.client_address,
            user=None,
        )
        if limited is not None:
            raise limited

    def admit_documents(self, session: Subscriber, observer: Observer) -> None:
        """Raise too-many-requests when this subscription would take the documents the
        session's subscriptions hold past the cap (counted per subscription: each one is
        a provider in the connection's mergebox)."""
        held = sum(size(o) * n for o, n in self.by_session.get(session, {}).items())
        if held + size(observer) > self.max_documents:
            raise too_many(
                f"Too many documents for this connection's subscriptions "
                f"(limit {self.max_documents})"
            )

    # --- bookkeeping --------------------------------------------------------------------

    def attach(self, session: Subscriber, sub_id: str, observer: Observer) -> None:
        self.subs.setdefault(session, {})[sub_id] = observer
        self.by_session.setdefault(session, Counter())[observer] += 1
        if session.client_address is not None:
            self.by_address.setdefault(session.client_address, Counter())[observer] += 1

    def detach(self, session: Subscriber, sub_id: str) -> Observer | None:
        subs = self.subs.get(session)
        observer = subs.pop(sub_id, None) if subs is not None else None
        if observer is None:
            return None
        if not subs:
            del self.subs[session]
        _decrement(self.by_session, session, observer)
        if session.client_address is not None:
            _decrement(self.by_address, session.client_address, observer)
        return observer

    def detach_all(self, session: Subscriber) -> list[Observer]:
        """Forget every subscription of the session; the observers it was in."""
        touched = dict.fromkeys(self.subs.get(session, {}).values())
        for sub_id in list(self.subs.get(session, {})):
            self.detach(session, sub_id)
        return list(touched)


def size(observer: Observer) -> int:
    return sum(len(q.docs) for q in observer.queries)


def _decrement(index: dict[Any, Counter[Observer]], key: Any, observer: Observer) -> None:
    counts = index[key]
    counts[observer] -= 1
    if counts[observer] <= 0:
        del counts[observer]
    if not counts:
        del index[key]
