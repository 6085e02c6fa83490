"""django-ddp's API: ``Collection``, ``Publication`` and ``API.register``.

A project written for django-ddp works after changing its import line::

    from livedata.api import API, Collection, Publication

    class Book(Collection):
        model = models.Book

    class BooksByAuthorEmail(Publication):
        def get_queries(self, author_email):
            return [models.Book.objects.filter(author__email=author_email)]

    API.register([Book, BooksByAuthorEmail])

- A ``Collection`` publishes a model as collection ``app_label.model_name``: document id
  = primary key as a string; fields = the model's concrete fields (foreign keys as
  ``<name>_id``), minus ``exclude`` and always minus secrets (password hashes); ``fields``
  limits them and ``rename`` maps field → published name.
- A ``Publication`` is subscribed by its class name (or ``name``) with a static
  ``queries`` list or ``get_queries(self, *params)``; ``self.user`` is the connection's
  user (None when anonymous). Parameters that don't fit ``get_queries`` → ``nosub`` 400.
  ``fields = {"app_label.model": [...]}`` limits fields further for this publication.
- Registering a model's Collection declares its change capture (``@livedata.track``).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from typing import Any, ClassVar

from django.db import models
from django.db.models import QuerySet

from livedata.ddp.errors import DDPError

#: Never published, whatever a Collection says.
SECRET_FIELDS = frozenset({"password"})


class Collection:
    model: ClassVar[type[models.Model]]
    #: Only these fields (model field names); None: all concrete fields.
    fields: ClassVar[Iterable[str] | None] = None
    exclude: ClassVar[Iterable[str]] = ()
    #: {"field_name": "publishedName"}
    rename: ClassVar[dict[str, str]] = {}

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


class Publication:
    #: Subscription name; default: the class name (as django-ddp).
    name: ClassVar[str | None] = None
    queries: ClassVar[list[QuerySet[Any]] | None] = None
    #: {"app_label.model": ["field", ...]}: fields this publication sends, per collection.
    fields: ClassVar[dict[str, Iterable[str]]] = {}

    def __init__(self, user: Any = None) -> None:
        self.user = user

    @classmethod
    def publication_name(cls) -> str:
        return cls.name or cls.__name__

    def get_queries(self, *params: Any) -> list[QuerySet[Any]]:
        if self.queries is None:
            raise NotImplementedError(f"{type(self).__name__} needs queries or get_queries()")
        return list(self.queries)

    def resolve(self, params: list[Any]) -> list[QuerySet[Any]]:
        """The querysets for these params (400 when they do not fit ``get_queries``)."""
        try:
            inspect.signature(self.get_queries).bind(*params)
        except TypeError as exc:
            raise DDPError(400, "Match failed", f"{self.publication_name()}: {exc}") from None
        queries = self.get_queries(*params)
        if isinstance(queries, QuerySet):
            queries = [queries]
        out = []
        for qs in queries:
            if not isinstance(qs, QuerySet):
                raise TypeError(f"{self.publication_name()} returned {qs!r}, not a QuerySet")
            out.append(qs.all())  # a fresh clone: static queries are shared
        return out


class _API:
    """The registry of collections and publications the server serves."""

    def __init__(self) -> None:
        self.collections: dict[str, type[Collection]] = {}
        self.publications: dict[str, type[Publication]] = {}

    def register(self, items: Iterable[type[Collection] | type[Publication]]) -> None:
        from livedata.capture.declare import is_captured, track

        for item in items:
            if issubclass(item, Collection):
                model = item.model
                self.collections[item.name()] = item
                if not is_captured(model):
                    track(model)
            elif issubclass(item, Publication):
                self.publications[item.publication_name()] = item
            else:
                raise TypeError(f"cannot register {item!r}: not a Collection or Publication")

    def collection_for(self, model: type[models.Model]) -> type[Collection]:
        name = model._meta.label_lower
        found = self.collections.get(name)
        if found is None:
            # a developer error: logged with this text, the client sees a plain 500
            raise LookupError(
                f"a publication returned {name} rows but no Collection of {name} is registered"
            )
        return found

    def clear(self) -> None:
        self.collections.clear()
        self.publications.clear()


API = _API()


def publish(func: Callable[..., Any] | None = None, *, name: str | None = None) -> Any:
    """The function form: ``@publish def latest_books(pub, n): return [Book.objects...]``."""

    def decorate(f: Callable[..., Any]) -> Callable[..., Any]:
        def get_queries(self: Publication, *params: Any) -> Any:
            return f(self, *params)

        get_queries.__signature__ = inspect.signature(f)  # type: ignore[attr-defined]
        cls = type(name or f.__name__, (Publication,), {"get_queries": get_queries})
        API.register([cls])
        return f

    return decorate(func) if func is not None else decorate
