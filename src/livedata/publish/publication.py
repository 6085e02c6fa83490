"""Publications and their registry, as django-ddp declares them: ``Collection``,
``Publication``, ``API.register`` and the ``@publish`` function form.

A project written for django-ddp works after changing its import line::

    from livedata.api import API, Collection, Publication

    class Book(Collection):
        model = models.Book

    class BooksByAuthorEmail(Publication):
        def get_queries(self, author_email):
            return [models.Book.objects.filter(author__email=author_email)]

    API.register([Book, BooksByAuthorEmail])

- A ``Collection`` publishes a model as collection ``app_label.model_name`` (what it
  exposes, to DDP, webhooks and pull alike, is defined in ``livedata.exposure``; the
  class is re-exported here).
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

Each installed app's ``ddp.py`` is imported when Django starts (like ``admin.py``).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from typing import Any, ClassVar

from django.db import models
from django.db.models import QuerySet

from livedata.ddp.errors import DDPError
from livedata.exposure import registry
from livedata.exposure.collection import SECRET_FIELDS, Collection
from livedata.publish.access import as_perms, require_access

__all__ = ["API", "SECRET_FIELDS", "Collection", "Publication", "publish"]


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
    """The registry of collections and publications the server serves.

    Collections live in ``livedata.exposure.registry`` (webhooks and pull read them
    there); ``collections`` is that same dict."""

    def __init__(self) -> None:
        self.collections: dict[str, type[Collection]] = registry.COLLECTIONS
        self.publications: dict[str, type[Publication]] = {}

    def register(self, items: Iterable[type[Collection] | type[Publication]]) -> None:
        for item in items:
            if issubclass(item, Collection):
                registry.register(item)
            elif issubclass(item, Publication):
                self.publications[item.publication_name()] = item
            else:
                raise TypeError(f"cannot register {item!r}: not a Collection or Publication")

    def collection_for(self, model: type[models.Model]) -> type[Collection]:
        return registry.collection_for(model)

    def exposed(self, label: str, channel: registry.Channel) -> type[Collection] | None:
        """The Collection of model ``label`` if it is exposed on ``channel``
        (``"webhooks"`` or ``"pull"``), else None."""
        return registry.exposed(label, channel)

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
        # _function: the code written, for readers of its source (accounts.usage)
        attrs = {"get_queries": get_queries, "_function": staticmethod(f)}
        cls = type(name or f.__name__, (Publication,), attrs)
        API.register([cls])
        return f

    return decorate(func) if func is not None else decorate
