"""``Collection``: how a model is exposed, and its published columns.

- A ``Collection`` publishes a model as collection ``app_label.model_name``: document id
  = primary key as a string; fields = the model's concrete fields (foreign keys as
  ``<name>_id``), minus ``exclude`` and always minus ``SECRET_FIELDS`` (password
  hashes); ``fields`` limits them and ``rename`` maps field → published name.
- It is also how a model is exposed to services over HTTP, and nothing is unless it
  says so: ``webhooks = True`` (services may subscribe to its changes), ``pull = True``
  (services may pull its rows and changes), ``filters`` (the columns their filters may
  use), ``audit_context``. The same field choice applies to those payloads.

``published_columns`` and ``narrow`` are what every channel sends: the key first, then
the published fields, narrowed to those a client named (the key always comes along).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

from django.db import models

#: Never published, nor filterable, whatever a Collection says.
SECRET_FIELDS = frozenset({"password"})


class ExposureError(ValueError):
    """A client asked for more than is exposed. ``part`` is ``"fields"`` or ``"filter"``;
    ``key`` the filter lookup at fault (None: the whole filter, or the fields)."""

    def __init__(self, part: str, key: str | None, message: str) -> None:
        super().__init__(message)
        self.part = part
        self.key = key
        self.message = message


class Collection:
    model: ClassVar[type[models.Model]]
    #: Only these fields (model field names); None: all concrete fields.
    fields: ClassVar[Iterable[str] | None] = None
    exclude: ClassVar[Iterable[str]] = ()
    #: {"field_name": "publishedName"}
    rename: ClassVar[dict[str, str]] = {}
    #: Services may subscribe to this model's changes (``livedata.webhooks``).
    webhooks: ClassVar[bool] = False
    #: Services may pull this model's rows, then its changes (``livedata.pull``).
    pull: ClassVar[bool] = False
    #: Field names that webhook and pull filters may use (lookups on the model's columns).
    filters: ClassVar[Iterable[str]] = ()
    #: Webhook deliveries of this model's changes carry their audit context (who made the
    #: change: user, address, request path) to owners holding the
    #: ``livedata.view_change_context`` permission. Off: ``context`` is null for everyone.
    audit_context: ClassVar[bool] = False

    @classmethod
    def name(cls) -> str:
        return cls.model._meta.label_lower

    @classmethod
    def columns(cls) -> list[tuple[str, str, models.Field]]:
        """(attribute, published name, field) of every published field, id excluded."""
        allowed = set(cls.fields) if cls.fields is not None else None
        excluded = set(cls.exclude) | SECRET_FIELDS
        out = []
        for field in cls.model._meta.concrete_fields:
            if field.primary_key or field.name in excluded or field.attname in excluded:
                continue
            if allowed is not None and field.name not in allowed and field.attname not in allowed:
                continue
            published = cls.rename.get(field.name) or cls.rename.get(field.attname) or field.attname
            out.append((field.attname, published, field))
        return out

    @classmethod
    def shape(cls, values: dict[str, Any] | None) -> dict[str, Any] | None:
        """A change-log row's ``old``/``new`` (table columns, JSON) as published fields.

        The primary key is kept under its published name (``id`` unless renamed).
        """
        if values is None:
            return None
        return {
            c.published: values.get(c.column)
            for c in published_columns(cls)
            if c.pk or c.column in values
        }


@dataclass(frozen=True)
class Column:
    attname: str  # model attribute (``author_id``)
    column: str  # table column, the key in the change log's old/new
    published: str  # name sent to clients
    pk: bool = False


def published_columns(collection: type[Collection]) -> list[Column]:
    """The pk, then every published field of the Collection, in model order."""
    pk = collection.model._meta.pk
    out = [Column(pk.attname, pk.column, collection.rename.get(pk.name, pk.attname), pk=True)]
    for attname, published, field in collection.columns():
        out.append(Column(attname, field.column, published))
    return out


def narrow(collection: type[Collection], names: Iterable[Any]) -> list[Column]:
    """The published columns a client named, in model order, the key always included;
    ``ExposureError`` naming every unknown one (and what is exposed) otherwise.

    A foreign key is published by its column (``author_id``), and filters name it either
    way: here too its field's name (``author``) is taken for it, unless renamed."""
    exposed = published_columns(collection)
    by_name = {c.published: c for c in exposed}
    opts = collection.model._meta
    renamed: dict[str, str] = {}  # model name -> published name, where they differ
    shown = []  # what is exposed, with the other name a foreign key goes by
    for c in exposed:
        field = opts.get_field(c.attname)
        also = ""
        for name in sorted({field.name, c.attname} - {c.published}):
            if c.published == c.attname:
                by_name.setdefault(name, c)
                also = f" (or {name})"
            else:
                renamed[name] = c.published
        shown.append(c.published + also)
    wanted = list(names)
    unknown = [
        f"{n} (published as {renamed[n]})" if isinstance(n, str) and n in renamed else str(n)
        for n in wanted
        if not isinstance(n, str) or n not in by_name
    ]
    if unknown:
        raise ExposureError(
            "fields",
            None,
            f"not an exposed field of {collection.name()}: {', '.join(unknown)} "
            f"(exposed: {', '.join(shown)})",
        )
    keep = {by_name[n].published for n in wanted}
    return [c for c in exposed if c.pk or c.published in keep]


def declared_names(collection: type[Collection]) -> list[str]:
    """Each name in the Collection's ``fields``, ``exclude``, ``filters`` and ``rename``
    that is not a field of its model (silently ignored otherwise), as a sentence saying
    what the model's fields are called (both forms of a foreign key)."""
    opts = collection.model._meta
    known: dict[str, str] = {}
    for field in opts.concrete_fields:
        both = field.name if field.name == field.attname else f"{field.name} or {field.attname}"
        known[field.name] = known[field.attname] = both
    known.setdefault("pk", opts.pk.name)
    out = []
    for part in ("fields", "exclude", "filters", "rename"):
        for name in getattr(collection, part) or ():
            if not isinstance(name, str) or name not in known:
                out.append(
                    f"{collection.__name__}.{part} names {name!r}, which is not a field of "
                    f"{opts.label} (its fields: {', '.join(dict.fromkeys(known.values()))})"
                )
    return out
