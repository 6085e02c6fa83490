"""DDP methods: Python functions clients can call.

    from livedata.publish.methods import method

    @method                       # name: the function's name; or @method(name="books.add")
    def add_book(call, title, author_email):
        ...                       # runs in a worker thread, inside transaction.atomic()
        return book.pk

    @method
    async def slow_hello(call, name):
        return f"hello {name}"

``call`` carries the connection (``call.connection.id``, ``.client_address``,
``.http_headers``), the user (``call.user``: None until accounts exist) and Meteor's
``call.random_seed``. Parameters are bound to the function's signature: a wrong count
or name is a 400 "Match failed" for the client, not a 500. Raise ``DDPError`` for errors
the client should see; Django's ValidationError/PermissionDenied/ObjectDoesNotExist map
to 400/403/404; anything else is 500 "Internal server error" (traceback in the log).

Each installed app's ``ddp.py`` is imported when Django starts, so methods defined there (or in
modules it imports) are registered.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from asgiref.sync import iscoroutinefunction

from livedata.ddp.errors import DDPError


@dataclass(frozen=True)
class ConnectionInfo:
    """What a method may know about the calling connection (Meteor's ``this.connection``)."""

    id: str
    client_address: str | None = None
    http_headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class MethodCall:
    method_id: str
    name: str
    connection: ConnectionInfo
    random_seed: str | None = None
    user: Any = None


@dataclass(frozen=True)
class Method:
    name: str
    func: Callable[..., Any]
    atomic: bool = True

    @property
    def is_async(self) -> bool:
        return iscoroutinefunction(self.func)

    def bind(self, call: MethodCall, params: list[Any]) -> inspect.BoundArguments:
        """Bind client params to the signature, or a 400 saying what is wrong."""
        try:
            return inspect.signature(self.func).bind(call, *params)
        except TypeError as exc:
            raise DDPError(400, "Match failed", f"{self.name}: {exc}") from None


class MethodRegistry:
    def __init__(self) -> None:
        self._methods: dict[str, Method] = {}

    def register(
        self, func: Callable[..., Any], *, name: str | None = None, atomic: bool = True
    ) -> Method:
        name = name or func.__name__
        existing = self._methods.get(name)
        if existing is not None and existing.func is not func:
            raise ValueError(f"DDP method {name!r} is already registered ({existing.func!r})")
        entry = Method(name=name, func=func, atomic=atomic)
        self._methods[name] = entry
        return entry

    def unregister(self, name: str) -> None:
        self._methods.pop(name, None)

    def get(self, name: str) -> Method | None:
        return self._methods.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._methods

    def names(self) -> list[str]:
        return sorted(self._methods)


#: The process-wide registry the server serves.
registry = MethodRegistry()


def method(
    func: Callable[..., Any] | None = None, *, name: str | None = None, atomic: bool = True
) -> Any:
    """Register ``func`` as a DDP method (usable bare or with ``name=``/``atomic=``)."""

    def decorate(f: Callable[..., Any]) -> Callable[..., Any]:
        registry.register(f, name=name, atomic=atomic)
        return f

    return decorate(func) if func is not None else decorate
