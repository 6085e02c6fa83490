"""What one feed request asks for: the exposed model, its fields and filters, the limit.

Parsed from the query string and checked against what the developer exposed on the
model's ``Collection`` (``pull = True``, ``filters``, the published fields: the checks
are ``livedata.exposure``'s, shared with webhooks), so every mistake becomes a precise
4xx before any database work. The spec also knows how to
turn table rows and change-log rows into the feed's messages, and fingerprints the
model's published shape (a change of it makes old handles answer must-refetch).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from django.db import models
from django.db.models import Q

from livedata.conf import livedata_settings
from livedata.exposure import registry
from livedata.exposure.collection import (
    Collection,
    Column,
    ExposureError,
    narrow,
    published_columns,
)
from livedata.exposure.filters import NotAFilter, compile_filter
from livedata.exposure.matching import Matcher, compile_matcher
from livedata.httpapi import ApiError

#: Query parameters of the protocol; every other parameter is a filter.
RESERVED = frozenset({"offset", "handle", "live", "limit", "fields", "cursor"})


@dataclass(frozen=True)
class FeedSpec:
    collection: type[Collection]
    columns: tuple[Column, ...]  # the pk first
    filters: tuple[tuple[str, str], ...]  # (lookup, raw value) as given, sorted
    limit: int
    limit_capped: bool

    @property
    def model(self) -> type[models.Model]:
        return self.collection.model

    @property
    def label(self) -> str:
        return self.model._meta.label_lower

    @property
    def pk_field(self) -> models.Field:
        return self.model._meta.pk

    def queryset(self) -> models.QuerySet[Any]:
        """The model's rows this feed covers (the filters applied)."""
        qs = self.model._base_manager.all()
        if self.filters:
            qs = qs.filter(Q(**dict(self.filters)))
        return qs

    def matcher(self) -> Matcher | None:
        """Membership of a log row's values, in memory (None: no filters, all rows)."""
        if not self.filters:
            return None
        matcher = compile_matcher(self.queryset())
        assert matcher is not None, "validated in parse()"
        return matcher

    def params_digest(self) -> str:
        """What a handle is bound to besides the model: the fields and filters asked for."""
        fields = [c.published for c in self.columns]
        raw = json.dumps([fields, list(self.filters)], separators=(",", ":"))
        return hashlib.sha256(raw.encode()).hexdigest()[:16]

    def shape_fingerprint(self) -> str:
        """The model's published shape: table, key, and each column's name and type.

        Changes when a developer changes the exposed fields or a migration changes the
        columns; old handles then answer must-refetch.
        """
        from django.db import connection

        opts = self.model._meta
        cols = [
            (f.attname, f.column, f.db_type(connection))
            for f in opts.concrete_fields
            if f.column in {c.column for c in self.columns}
        ]
        published = [c.published for c in self.collection_columns()]
        raw = json.dumps([opts.db_table, opts.pk.column, cols, published])
        return hashlib.sha256(raw.encode()).hexdigest()[:16]

    def collection_columns(self) -> list[Column]:
        return published_columns(self.collection)

    def shape(self, values: dict[str, Any] | None) -> dict[str, Any] | None:
        """A change-log row's ``old``/``new`` (table columns) as this feed's value."""
        if values is None:
            return None
        return {c.published: values.get(c.column) for c in self.columns}


def find_collection(label: str) -> type[Collection]:
    collection = registry.exposed(label, "pull")
    if collection is None:
        # one answer for unknown and unexposed models: existence is not disclosed
        raise ApiError(404, f"no pullable model {label!r}", code="unknown-model")
    return collection


def parse(label: str, query: Any) -> FeedSpec:
    """The spec of a request (``query``: Django's ``request.GET``); 4xx on bad input."""
    collection = find_collection(label)
    conf = livedata_settings()
    limit, capped = _limit(query.get("limit"), conf.PULL_PAGE_SIZE, conf.PULL_MAX_PAGE_SIZE)
    columns = _columns(collection, query.get("fields"))
    filters = _filters(collection, query)
    return FeedSpec(collection, tuple(columns), filters, limit, capped)


def _limit(raw: str | None, default: int, cap: int) -> tuple[int, bool]:
    if raw is None or raw == "":
        return min(default, cap), False
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, f"limit must be an integer, not {raw!r}", field="limit") from None
    if value < 1:
        raise ApiError(400, "limit must be at least 1", field="limit")
    if value > cap:
        return cap, True
    return value, False


def _columns(collection: type[Collection], raw: str | None) -> list[Column]:
    if raw is None or raw.strip() == "":
        return published_columns(collection)
    try:
        return narrow(collection, [name.strip() for name in raw.split(",") if name.strip()])
    except ExposureError as exc:
        raise ApiError(400, exc.message, field="fields") from None


def _filters(collection: type[Collection], query: Any) -> tuple[tuple[str, Any], ...]:
    """The filters of the query string, checked (4xx naming the parameter at fault)."""
    lookups: dict[str, Any] = {}
    for key in query:
        if key in RESERVED:
            continue
        values = query.getlist(key)
        if len(values) != 1:
            raise ApiError(
                400, f"give filter {key!r} once (use __in for several values)", field=key
            )
        lookups[key] = _value(key, values[0])
    try:
        compile_filter(collection, lookups)
    except NotAFilter as exc:
        # every parameter that is not the protocol's is taken for a filter
        raise ApiError(
            400,
            f"{exc.key!r} is not a parameter of the feed nor an allowed filter of "
            f"{exc.label} (filters allowed on: {exc.allowed})",
            field=exc.key,
        ) from None
    except ExposureError as exc:
        raise ApiError(400, exc.message, field=exc.key) from None
    return tuple(sorted(lookups.items()))


def _value(key: str, raw: str) -> Any:
    """Query-string text as the lookup's value: a list for in/range (split at commas),
    a boolean for isnull when it is one; ``compile_filter`` checks what it makes."""
    lookup = key.partition("__")[2]
    if lookup in ("in", "range"):
        return raw.split(",") if raw else []
    if lookup == "isnull" and raw.lower() in ("true", "false", "1", "0"):
        return raw.lower() in ("true", "1")
    return raw
