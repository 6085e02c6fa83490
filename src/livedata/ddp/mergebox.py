"""The mergebox: the exact document view Meteor's server keeps per connection.

Several subscriptions may publish the same document. The client must see one document
whose fields merge them: for each field, the subscription that provided it first wins
(later providers queue behind it and take over when it goes). ``changed`` carries only
fields whose visible value changed (``UNDEFINED`` for cleared ones), ``removed`` comes
only when no subscription provides the document any more, and removing a subscription
retracts exactly what only it provided.

Pure data structure (sans-I/O): each call returns the DDP data messages to send.
Mirrors Meteor's SessionCollectionView / SessionDocumentView (docs/ddp-wire-reference.md §8).

Memory shape: a server holds one mergebox per connection and one entry per document it
shows, so this is the biggest structure in the process and what Python's cyclic GC must
walk at every full collection. Most documents have one provider: they are kept as a
tuple ``(sub, pickled fields)``, so the dicts holding them contain only strings, bytes
and tuples of those, which the GC stops tracking; only documents that several
subscriptions provide get a full ``_DocumentView``. Measured with bench/gcprobe.py and
bench/live_queries.py (see the commits). The pickled fields are shared: connections
applying the same change (one fan-out: the same ``fields`` object, the same pickled
state before it) get the same bytes object, pickled once (``_dump``, ``_change_shared``),
so 1000 clients of one publication hold one copy of each document's fields, not 1000.

Encode once, send many (issue 14): a shared live query's change is the same for every
connection that has the document from that subscription alone, so the server encodes
``message_for`` the change once and ``Mergebox.apply`` tells each connection whether that
message is exactly its own diff (then it sends the shared frame) or gives the messages
its view needs instead (overlapping subscriptions: Meteor's semantics, as above).
"""

from __future__ import annotations

import math
import pickle
from dataclasses import dataclass, field
from typing import Any

from livedata.ddp.messages import UNDEFINED

Message = dict[str, Any]


def ejson_equals(a: Any, b: Any) -> bool:
    """EJSON.equals: like ==, but NaN equals NaN and bool is not a number."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, bool) != isinstance(b, bool):
        return False
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(ejson_equals(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(ejson_equals(x, y) for x, y in zip(a, b, strict=True))
    if _number(a) and _number(b):
        return a == b
    return type(a) is type(b) and a == b


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


@dataclass(slots=True)
class _DocumentView:
    """A document several subscriptions provide (one provider: a ``(sub, fields)`` tuple)."""

    exists_in: dict[Any, None] = field(default_factory=dict)  # ordered set of subscriptions
    # field -> [[subscription, value], ...]; element 0 is the visible value
    data: dict[str, list[list[Any]]] = field(default_factory=dict)

    @classmethod
    def of(cls, sub: Any, fields: dict[str, Any]) -> _DocumentView:
        return cls({sub: None}, {key: [[sub, value]] for key, value in fields.items()})

    def single(self) -> tuple[Any, dict[str, Any]] | None:
        """The compact form, when only one subscription is left providing everything."""
        if len(self.exists_in) != 1:
            return None
        (sub,) = self.exists_in
        if any(len(entries) != 1 or entries[0][0] != sub for entries in self.data.values()):
            return None
        return (sub, self.fields())

    def fields(self) -> dict[str, Any]:
        return {key: entries[0][1] for key, entries in self.data.items()}

    def change_field(
        self, sub: Any, key: str, value: Any, collector: dict[str, Any], is_add: bool
    ) -> None:
        if key == "_id":
            return
        entries = self.data.get(key)
        if entries is None:
            self.data[key] = [[sub, value]]
            collector[key] = value
            return
        if not is_add:
            for i, entry in enumerate(entries):
                if entry[0] == sub:
                    if i == 0 and not ejson_equals(value, entry[1]):
                        collector[key] = value
                    entry[1] = value
                    return
        entries.append([sub, value])

    def clear_field(self, sub: Any, key: str, collector: dict[str, Any]) -> None:
        if key == "_id":
            return
        entries = self.data.get(key)
        if entries is None:
            return
        removed = UNDEFINED
        for i, entry in enumerate(entries):
            if entry[0] == sub:
                if i == 0:
                    removed = entry[1]
                del entries[i]
                break
        if not entries:
            del self.data[key]
            collector[key] = UNDEFINED
        elif removed is not UNDEFINED and not ejson_equals(removed, entries[0][1]):
            collector[key] = entries[0][1]


#: a one-provider document: (its subscription, its pickled fields)
Compact = tuple[Any, bytes]
View = _DocumentView | Compact

# Caches shared by every connection's mergebox: a fan-out applies the same changes (the
# same objects) to each connection in turn, and subscribers of one publication get the
# same initial documents. Keyed by identity; each entry holds the objects it is keyed by,
# so those ids cannot be reused meanwhile. Emptied when full (a fan-out is short).
CACHE_SIZE = 1024
_dumped: dict[int, tuple[dict[str, Any], bytes]] = {}
_changed: dict[tuple[int, int], tuple[bytes, dict[str, Any], bytes, dict[str, Any]]] = {}


def _dump(fields: dict[str, Any]) -> bytes:
    """The pickle of ``fields``: the same bytes object for the same dict (callers never
    change a dict once they passed it here: the live queries replace a changed
    document's fields, never mutate them)."""
    hit = _dumped.get(id(fields))
    if hit is not None and hit[0] is fields:
        return hit[1]
    if len(_dumped) >= CACHE_SIZE:
        _dumped.clear()
    packed = pickle.dumps(fields, pickle.HIGHEST_PROTOCOL)
    _dumped[id(fields)] = (fields, packed)
    return packed


def _pack(sub: Any, fields: dict[str, Any]) -> Compact:
    return (sub, pickle.dumps(fields, pickle.HIGHEST_PROTOCOL))


def _unpack(view: Compact) -> tuple[Any, dict[str, Any]]:
    return view[0], pickle.loads(view[1])


def _change_shared(packed: bytes, fields: dict[str, Any]) -> tuple[bytes, dict[str, Any]]:
    """A one-provider document's pickled fields after ``fields`` changed, and what visibly
    changed (not to be modified: the next connection may get the same dict)."""
    key = (id(packed), id(fields))
    hit = _changed.get(key)
    if hit is not None and hit[0] is packed and hit[1] is fields:
        return hit[2], hit[3]
    if len(_changed) >= CACHE_SIZE:
        _changed.clear()
    own = pickle.loads(packed)
    collector = Mergebox._change_own(own, fields)
    after = pickle.dumps(own, pickle.HIGHEST_PROTOCOL)
    _changed[key] = (packed, fields, after, collector)
    return after, collector


def _fields(view: View) -> dict[str, Any]:
    return _unpack(view)[1] if type(view) is tuple else view.fields()  # type: ignore[arg-type,union-attr]


def message_for(collection: str, op: str, doc_id: str, fields: dict[str, Any] | None) -> Message:
    """The data message of one change (``op``: added, changed or removed) as a view whose
    only provider of the document is the changing subscription sends it: the message
    ``Mergebox.apply`` returns None for (fields in the same order, so the same frame)."""
    if op == "removed":
        return {"msg": "removed", "collection": collection, "id": doc_id}
    return {"msg": op, "collection": collection, "id": doc_id, "fields": fields}


class Mergebox:
    """One connection's view: collection → document id → merged fields."""

    #: keep single-provider documents as tuples (False: always full views; the tests
    #: check both give the same messages)
    COMPACT = True

    def __init__(self) -> None:
        self.collections: dict[str, dict[str, View]] = {}
        # subscription → collection → {id}: what each subscription currently provides
        # (nested dicts of strings: nothing here for the GC to walk)
        self.provided: dict[Any, dict[str, dict[str, None]]] = {}

    def added(
        self, sub: Any, collection: str, doc_id: str, fields: dict[str, Any]
    ) -> list[Message]:
        docs = self.collections.setdefault(collection, {})
        view = docs.get(doc_id)
        self.provided.setdefault(sub, {}).setdefault(collection, {})[doc_id] = None
        if view is None and self.COMPACT:
            own = {key: value for key, value in fields.items() if key != "_id"}
            docs[doc_id] = _pack(sub, own)
            return [{"msg": "added", "collection": collection, "id": doc_id, "fields": own}]
        is_new = view is None
        if view is None:
            view = docs[doc_id] = _DocumentView()
        elif type(view) is tuple:
            view = docs[doc_id] = _DocumentView.of(*_unpack(view))
        view.exists_in[sub] = None
        collector: dict[str, Any] = {}
        for key, value in fields.items():
            view.change_field(sub, key, value, collector, is_add=True)
        if is_new:
            return [{"msg": "added", "collection": collection, "id": doc_id, "fields": collector}]
        return self._changed_message(collection, doc_id, collector)

    def changed(
        self, sub: Any, collection: str, doc_id: str, fields: dict[str, Any]
    ) -> list[Message]:
        """``fields`` maps names to new values, or to ``UNDEFINED`` to clear them."""
        docs = self.collections.get(collection, {})
        view = docs.get(doc_id)
        if view is None:
            raise KeyError(f"Could not find element with id {doc_id} to change")
        collector: dict[str, Any] = {}
        if type(view) is tuple:
            owner, own = _unpack(view)
            if owner == sub:  # the one provider: its values are the visible ones
                collector = self._change_own(own, fields)
                docs[doc_id] = _pack(owner, own)
                return self._changed_message(collection, doc_id, collector)
            view = docs[doc_id] = _DocumentView.of(owner, own)
        for key, value in fields.items():
            if value is UNDEFINED:
                view.clear_field(sub, key, collector)
            else:
                view.change_field(sub, key, value, collector, is_add=False)
        return self._changed_message(collection, doc_id, collector)

    def apply(
        self, sub: Any, collection: str, op: str, doc_id: str, fields: dict[str, Any] | None
    ) -> list[Message] | None:
        """Apply one change of ``sub`` (``op``: added, changed or removed); None when the
        client's diff is exactly ``message_for`` the change, else the messages to send
        (``added``, ``changed``, ``removed`` give the same, and raise the same KeyError).

        None is the common case, checked without building a message: a document only
        ``sub`` provides (new, changed in every given field, or removed). A document
        other subscriptions also provide takes the general path."""
        docs = self.collections.get(collection)
        view = docs.get(doc_id) if docs is not None else None
        if not self.COMPACT or (fields is not None and "_id" in fields):
            pass
        elif op == "added":
            if view is None:
                if docs is None:
                    docs = self.collections[collection] = {}
                self.provided.setdefault(sub, {}).setdefault(collection, {})[doc_id] = None
                docs[doc_id] = (sub, _dump(fields))  # type: ignore[arg-type]
                return None
        elif type(view) is tuple:
            owner = view[0]  # type: ignore[index]
            if owner == sub and op == "removed":
                return None if self.removed(sub, collection, doc_id) else []
            if owner == sub and op == "changed":
                assert fields is not None
                packed, collector = _change_shared(view[1], fields)  # type: ignore[index]
                docs[doc_id] = (owner, packed)  # type: ignore[index]
                if collector and len(collector) == len(fields):
                    return None  # every field changed visibly: the message itself
                return self._changed_message(collection, doc_id, dict(collector))
        if op == "added":
            return self.added(sub, collection, doc_id, fields)  # type: ignore[arg-type]
        if op == "changed":
            return self.changed(sub, collection, doc_id, fields)  # type: ignore[arg-type]
        return self.removed(sub, collection, doc_id)

    @staticmethod
    def _change_own(own: dict[str, Any], fields: dict[str, Any]) -> dict[str, Any]:
        """Change the fields of a document with one provider; what visibly changed."""
        collector: dict[str, Any] = {}
        for key, value in fields.items():
            if key == "_id":
                continue
            if value is UNDEFINED:
                if key in own:
                    del own[key]
                    collector[key] = UNDEFINED
            else:
                if key not in own or not ejson_equals(own[key], value):
                    collector[key] = value
                own[key] = value
        return collector

    def removed(self, sub: Any, collection: str, doc_id: str) -> list[Message]:
        docs = self.collections.get(collection, {})
        view = docs.get(doc_id)
        single = type(view) is tuple
        if view is None or (view[0] != sub if single else sub not in view.exists_in):  # type: ignore[index,operator]
            raise KeyError(f"Removed nonexistent document {doc_id}")
        ids = self.provided.get(sub, {}).get(collection)
        if ids is not None:
            ids.pop(doc_id, None)
            if not ids:
                del self.provided[sub][collection]
        if not single:
            del view.exists_in[sub]
        if single or not view.exists_in:
            del docs[doc_id]
            if not docs:
                del self.collections[collection]
            return [{"msg": "removed", "collection": collection, "id": doc_id}]
        collector: dict[str, Any] = {}
        for key in list(view.data):
            view.clear_field(sub, key, collector)
        compact = view.single() if self.COMPACT else None
        if compact is not None:
            docs[doc_id] = _pack(*compact)
        return self._changed_message(collection, doc_id, collector)

    def remove_subscription(self, sub: Any) -> list[Message]:
        """Retract everything ``sub`` provided (unsub, error, stop)."""
        out: list[Message] = []
        for collection, ids in list(self.provided.get(sub, {}).items()):
            for doc_id in list(ids):
                out.extend(self.removed(sub, collection, doc_id))
        self.provided.pop(sub, None)
        return out

    def document(self, collection: str, doc_id: str) -> dict[str, Any] | None:
        view = self.collections.get(collection, {}).get(doc_id)
        return None if view is None else _fields(view)

    @staticmethod
    def _changed_message(collection: str, doc_id: str, collector: dict[str, Any]) -> list[Message]:
        if not collector:
            return []
        return [{"msg": "changed", "collection": collection, "id": doc_id, "fields": collector}]

    def diff_to(self, new: Mergebox) -> list[Message]:
        """The messages that turn what the client sees from this view into ``new``.

        For re-running every subscription at once (the user logged in or out): the
        client is sent only what differs, as Meteor's ``_diffCollectionViews``.
        """
        out: list[Message] = []
        for collection in {**self.collections, **new.collections}:
            before, after = (
                self.collections.get(collection, {}),
                new.collections.get(collection, {}),
            )
            for doc_id in {**before, **after}:
                old_view, new_view = before.get(doc_id), after.get(doc_id)
                if new_view is None:
                    out.append({"msg": "removed", "collection": collection, "id": doc_id})
                    continue
                fields = _fields(new_view)
                if old_view is None:
                    out.append(
                        {"msg": "added", "collection": collection, "id": doc_id, "fields": fields}
                    )
                    continue
                old_fields = _fields(old_view)
                collector = {
                    k: v
                    for k, v in fields.items()
                    if k not in old_fields or not ejson_equals(old_fields[k], v)
                }
                collector.update({k: UNDEFINED for k in old_fields if k not in fields})
                out.extend(self._changed_message(collection, doc_id, collector))
        return out
