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
  Django user (``AnonymousUser`` when not logged in): Django permissions work
  (``self.user.has_perm(...)``), and when the user logs in or out every subscription
  re-runs. Parameters that don't fit ``get_queries`` (any, for static ``queries``) →
  ``nosub`` 400.
  ``fields = {"app_label.model": [...]}`` limits fields further for this publication;
  ``login_required = True`` or ``permission_required = "app.perm"`` (or several) answer
  ``nosub`` 403 to others.
- Subscribers share an observer when the publication and parameters are the same and,
  only if ``get_queries`` read ``self.user``, the user too.
- Registering a model's Collection declares its change capture (``@livedata.track``).
- A Collection is also how a model is exposed to services over HTTP, and nothing is
  unless it says so: ``webhooks = True`` (services may subscribe to its changes),
  ``pull = True`` (services may pull its rows and changes), ``filters`` (the columns
  their filters may use). The same field choice applies to those payloads.

Each installed app's ``ddp.py`` is imported when Django starts (like ``admin.py``).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from typing import Any, ClassVar

from django.db import models
from django.db.models import QuerySet

from livedata.ddp.errors import DDPError
from livedata.publish.access import as_perms, require_access

#: Never published, whatever a Collection says.
SECRET_FIELDS = frozenset({"password"})


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
        pk = cls.model._meta.pk
        out = {cls.rename.get(pk.name, pk.attname): values.get(pk.column)}
        for _attname, published, field in cls.columns():
            if field.column in values:
                out[published] = values[field.column]
        return out


class Publication:
    #: Subscription name; default: the class name (as django-ddp).
    name: ClassVar[str | None] = None
    queries: ClassVar[list[QuerySet[Any]] | None] = None
    #: {"app_label.model": ["field", ...]}: fields this publication sends, per collection.
    fields: ClassVar[dict[str, Iterable[str]]] = {}
    #: Subscribers must be logged in / hold these Django permissions (else nosub 403).
    login_required: ClassVar[bool] = False
    permission_required: ClassVar[str | Iterable[str]] = ()

    def __init__(self, user: Any = None) -> None:
        if user is None:
            from django.contrib.auth.models import AnonymousUser

            user = AnonymousUser()
        self._user = user
        #: whether get_queries looked at the user (then its result is per user)
        self.used_user = False

    @property
    def user(self) -> Any:
        self.used_user = True
        return self._user

    @classmethod
    def check_access(cls, user: Any) -> None:
        """403 unless ``user`` may subscribe (may query: call in a thread)."""
        require_access(
            user, login_required=cls.login_required, perms=as_perms(cls.permission_required)
        )

    @classmethod
    def publication_name(cls) -> str:
        return cls.name or cls.__name__

    def get_queries(self, *params: Any) -> list[QuerySet[Any]]:
        if self.queries is None:
            raise NotImplementedError(f"{type(self).__name__} needs queries or get_queries()")
        return list(self.queries)

    def resolve(self, params: list[Any]) -> list[QuerySet[Any]]:
        """The querysets for these params (400 when they do not fit ``get_queries``).

        A publication with static ``queries`` takes no parameters: accepting any would let
        a client start one observer (a copy of every document) per junk parameter.
        """
        if type(self).get_queries is Publication.get_queries and params:
            raise DDPError(400, "Match failed", f"{self.publication_name()} takes no parameters")
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

    def exposed(self, label: str, channel: str) -> type[Collection] | None:
        """The Collection of model ``label`` if it is exposed on ``channel``
        (``"webhooks"`` or ``"pull"``), else None."""
        found = self.collections.get(label.lower())
        if found is None or not getattr(found, channel, False):
            return None
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
