"""What a subscription selects from the change log, and the payload it is sent.

A ``Selection`` is compiled once per subscription from its models, operations, filter
and fields, and then decides in memory, from the log row alone, whether a change is
sent and what its ``data`` is:

- models: only those exposed with ``webhooks = True`` on their ``Collection``;
- filter: Django lookups on the model's own columns, limited to the Collection's
  ``filters``, checked as the pull feed's are (``livedata.exposure.filters``), evaluated
  on the row by ``livedata.exposure.matching`` (the live queries' in-memory matcher).
  An insert is sent when its new row matches, a delete when its old row did, an update
  when either did (so the receiver also learns that a row left the filter); a TRUNCATE
  is always sent (receivers refetch);
- fields: ``Collection.shape`` applies the developer's field choice (exclusions,
  renames, never ``SECRET_FIELDS``); ``fields`` narrows it further
  (``livedata.exposure.collection.narrow``). An update that changed none
  of the fields sent is not sent at all;
- context: the change's audit context (username, user id, address, request path) is
  sent only for models whose Collection says ``audit_context = True``, and only to an
  owner with the ``livedata.view_change_context`` permission (``context=True`` here);
  otherwise it is null. A service allowed to read books is not told who edited them.

Filters and fields are given for the one model, or per model as
``{"app.model": ...}`` when a subscription has several.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from django.db import models

from livedata.capture.log import ChangeRow
from livedata.exposure import registry
from livedata.exposure.collection import Collection, ExposureError, narrow, published_columns
from livedata.exposure.filters import compile_filter
from livedata.exposure.matching import Matcher

OPERATIONS = ("insert", "update", "delete", "truncate")


class SelectionError(ValueError):
    """Input that does not make a valid selection; ``field`` names the part at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass(frozen=True)
class ModelSelection:
    label: str
    collection: type[Collection]
    matcher: Matcher | None  # None: every row
    keep: frozenset[str] | None  # published names sent (None: all the Collection's)
    published: Mapping[str, str]  # table column -> published name, for ``changed``
    context: bool = False  # the audit context is sent

    def narrow(self, values: dict[str, Any] | None) -> dict[str, Any] | None:
        shaped = self.collection.shape(values)
        if shaped is None or self.keep is None:
            return shaped
        return {k: v for k, v in shaped.items() if k in self.keep}

    def matches(self, row: ChangeRow) -> bool:
        if self.matcher is None or row.op == "truncate":
            return True
        if row.new is not None and self.matcher(row.new) is True:
            return True
        return row.old is not None and self.matcher(row.old) is True

    def changed(self, row: ChangeRow) -> list[str] | None:
        if row.changed is None:
            return None
        out = []
        for column in row.changed:
            name = self.published.get(column)
            if name is not None and (self.keep is None or name in self.keep):
                out.append(name)
        return out


class Selection:
    """A compiled subscription: ``select(row)`` gives the event to send, or None."""

    def __init__(
        self,
        labels: Iterable[str],
        operations: Iterable[str] | None = None,
        filter: Mapping[str, Any] | None = None,
        fields: Any = None,
        *,
        context: bool = False,
    ) -> None:
        """``context``: the owner may see audit contexts (the permission); they are then
        sent for the models whose Collection exposes them."""
        self.labels = normalise_models(labels)
        self.operations = normalise_operations(operations)
        filters = _per_model(self.labels, filter or {}, "filter", dict)
        narrowing = _per_model(self.labels, fields, "fields", list) if fields is not None else {}
        self.models: dict[str, ModelSelection] = {}
        for label in self.labels:
            collection = registry.exposed(label, "webhooks")
            if collection is None:
                raise SelectionError(
                    "models", f"{label!r} is not a model exposed for webhooks (app_label.model)"
                )
            try:
                matcher = compile_filter(collection, filters.get(label) or {})
                keep = None
                if label in narrowing:
                    keep = frozenset(c.published for c in narrow(collection, narrowing[label]))
            except ExposureError as exc:
                raise SelectionError(exc.part, exc.message) from None
            self.models[label] = ModelSelection(
                label=label,
                collection=collection,
                matcher=matcher,
                keep=keep,
                published={c.column: c.published for c in published_columns(collection)},
                context=context and collection.audit_context,
            )

    def select(self, row: ChangeRow, position: str | None = None) -> dict[str, Any] | None:
        """The event (``{"type", "timestamp", "data"}``) for this change, or None.

        ``position`` is where a reader that received this change resumes (sent as
        ``data.position``)."""
        selected = self.models.get(row.model)
        if selected is None or row.op not in self.operations or not selected.matches(row):
            return None
        changed = selected.changed(row)
        if row.op == "update" and changed == []:
            return None  # only fields the subscriber does not receive changed
        return {
            "type": f"{row.model}.{row.op}",
            "timestamp": _iso(row),
            "data": {
                "position": position,
                "model": row.model,
                "op": row.op,
                "pk": row.pk,
                "old": selected.narrow(row.old),
                "new": selected.narrow(row.new),
                "changed": changed,
                "context": row.context if selected.context else None,
            },
        }


def _iso(row: ChangeRow) -> str:
    return row.at.isoformat().replace("+00:00", "Z")


def encode(payload: Any) -> bytes:
    """The exact bytes sent (and signed): compact UTF-8 JSON."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False, default=str).encode()


def batch_payload(events: list[dict[str, Any]]) -> dict[str, Any]:
    """Several events in one request (subscriptions with ``batch`` > 1)."""
    return {"type": "livedata.batch", "timestamp": events[0]["timestamp"], "data": events}


def normalise_models(labels: Any) -> list[str]:
    if (
        not isinstance(labels, list | tuple)
        or not labels
        or not all(isinstance(x, str) and x for x in labels)
    ):
        raise SelectionError("models", 'models must be a non-empty list like ["bookstore.book"]')
    out: list[str] = []
    for label in labels:
        if label.lower() not in out:
            out.append(label.lower())
    return out


def normalise_operations(operations: Any) -> tuple[str, ...]:
    if operations is None:
        return OPERATIONS
    if not isinstance(operations, list | tuple) or not operations:
        raise SelectionError("operations", f"operations must be a non-empty list of {OPERATIONS}")
    for op in operations:
        if op not in OPERATIONS:
            raise SelectionError("operations", f"unknown operation {op!r}: use {OPERATIONS}")
    return tuple(op for op in OPERATIONS if op in operations)


def _per_model(labels: list[str], value: Any, name: str, kind: type) -> dict[str, Any]:
    """``value`` for the one model, or ``{label: value}`` for several."""
    if isinstance(value, dict) and value and all(k.lower() in labels for k in value):
        out = {k.lower(): v for k, v in value.items()}
        for label, part in out.items():
            if not isinstance(part, kind):
                raise SelectionError(name, f"{name} of {label} must be a {kind.__name__}")
        return out
    if not isinstance(value, kind):
        raise SelectionError(name, f"{name} must be a {kind.__name__}")
    if not value and kind is dict:
        return {}
    if len(labels) > 1:
        raise SelectionError(
            name, f"with several models, give {name} per model: {{{labels[0]!r}: ...}}"
        )
    return {labels[0]: value}


def model_of(label: str) -> type[models.Model]:
    collection = registry.exposed(label, "webhooks")
    assert collection is not None
    return collection.model
