"""What one feed request asks for: the exposed model, its fields and filters, the limit.

Parsed from the query string and checked against what the developer exposed on the
model's ``Collection`` (``pull = True``, ``filters``, the published fields), so every
mistake becomes a precise 4xx before any database work. The spec also knows how to
turn table rows and change-log rows into the feed's messages, and fingerprints the
model's published shape (a change of it makes old handles answer must-refetch).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import EmptyResultSet, FieldError, ValidationError
from django.db import models
from django.db.models import Q

from livedata.conf import livedata_settings
from livedata.exposure.lookups import LookupValueError, check_value
from livedata.exposure.matching import Matcher, compile_matcher
from livedata.httpapi import ApiError
from livedata.publish.api import API, SECRET_FIELDS, Collection

#: Query parameters of the protocol; every other parameter is a filter.
RESERVED = frozenset({"offset", "handle", "live", "limit", "fields", "cursor"})


@dataclass(frozen=True)
class Column:
    attname: str  # model attribute (``author_id``)
    column: str  # table column, the key in the change log's old/new
    published: str  # name in the feed's values


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
        return exposed_columns(self.collection)

    def shape(self, values: dict[str, Any] | None) -> dict[str, Any] | None:
        """A change-log row's ``old``/``new`` (table columns) as this feed's value."""
        if values is None:
            return None
        return {c.published: values.get(c.column) for c in self.columns}


def exposed_columns(collection: type[Collection]) -> list[Column]:
    """The pk, then every published field of the Collection, in model order."""
    pk = collection.model._meta.pk
    out = [Column(pk.attname, pk.column, collection.rename.get(pk.name, pk.attname))]
    for attname, published, field in collection.columns():
        out.append(Column(attname, field.column, published))
    return out


def find_collection(label: str) -> type[Collection]:
    collection = API.exposed(label, "pull")
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
    spec = FeedSpec(collection, tuple(columns), filters, limit, capped)
    if filters:
        try:
            matcher = compile_matcher(spec.queryset())
        except (ValidationError, ValueError, TypeError) as exc:
            raise ApiError(400, f"invalid filter value: {_message(exc)}") from None
        if matcher is None:
            raise ApiError(
                400,
                "these filters cannot be followed live: use lookups on the model's own "
                "columns (exact, iexact, in, range, isnull, gt/gte/lt/lte on non-text, "
                "contains/startswith/endswith and their i- forms)",
            )
    return spec


def _message(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(exc.messages)
    return str(exc)


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
    exposed = exposed_columns(collection)
    if raw is None or raw.strip() == "":
        return exposed
    by_name = {c.published: c for c in exposed}
    wanted = [name.strip() for name in raw.split(",") if name.strip()]
    unknown = [name for name in wanted if name not in by_name]
    if unknown:
        raise ApiError(
            400,
            f"not an exposed field of {collection.name()}: {', '.join(unknown)} "
            f"(exposed: {', '.join(by_name)})",
            field="fields",
        )
    keep = set(wanted) | {exposed[0].published}  # the key always comes along
    return [c for c in exposed if c.published in keep]


def _filters(collection: type[Collection], query: Any) -> tuple[tuple[str, str], ...]:
    model = collection.model
    allowed: set[str] = set()
    for name in collection.filters:
        field = model._meta.get_field(name)
        allowed |= {field.name, getattr(field, "attname", field.name)}
    allowed -= SECRET_FIELDS
    out: list[tuple[str, str]] = []
    for key in query:
        if key in RESERVED:
            continue
        values = query.getlist(key)
        if len(values) != 1:
            raise ApiError(
                400, f"give filter {key!r} once (use __in for several values)", field=key
            )
        name, _, lookup = key.partition("__")
        if name not in allowed:
            listed = ", ".join(sorted(allowed)) or "none"
            raise ApiError(
                400,
                f"{key!r} is not a parameter of the feed nor an allowed filter of "
                f"{collection.name()} (filters allowed on: {listed})",
                field=key,
            )
        field = model._meta.get_field(name)
        if "__" in lookup or (lookup and field.get_lookup(lookup) is None):
            raise ApiError(
                400,
                f"filter {key!r}: only lookups on the model's own columns "
                "(author=7, title__startswith=A, id__in=1,2)",
                field=key,
            )
        value = _value(model, name, lookup, values[0], key)
        try:
            check_value(field, lookup, value, key)
        except LookupValueError as exc:
            raise ApiError(400, exc.message, field=key) from None
        out.append((key, value))
    out.sort()
    for key, value in out:  # each alone, for a precise error
        try:
            # compiled too: a number past its column's range makes Django give up on the
            # query (EmptyResultSet), which would otherwise be a 500 on every page
            model._base_manager.filter(**{key: value}).query.sql_with_params()
        except EmptyResultSet:
            raise ApiError(
                400,
                f"filter {key!r} can match no row (an empty list, or a number out of the "
                "column's range)",
                field=key,
            ) from None
        except FieldError as exc:
            raise ApiError(400, f"filter {key!r}: {exc}", field=key) from None
        except (ValidationError, ValueError, TypeError) as exc:
            raise ApiError(400, f"filter {key!r}: {_message(exc)}", field=key) from None
    return tuple(out)


def _value(model: type[models.Model], name: str, lookup: str, raw: str, key: str) -> Any:
    """Query-string text as the lookup's value: lists for in/range, booleans for isnull."""
    if lookup in ("in", "range"):
        parts = [p for p in raw.split(",")] if raw else []
        if lookup == "range" and len(parts) != 2:
            raise ApiError(400, f"filter {key!r}: give two values, low,high", field=key)
        return parts  # type: ignore[return-value]
    if lookup == "isnull":
        if raw.lower() not in ("true", "false", "1", "0"):
            raise ApiError(400, f"filter {key!r}: give true or false", field=key)
        return raw.lower() in ("true", "1")  # type: ignore[return-value]
    return raw
