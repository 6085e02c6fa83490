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
``.http_headers``), the user (``call.user``: a Django user, ``AnonymousUser`` when not
logged in; Django permissions work: ``call.user.has_perm(...)``) and Meteor's
``call.random_seed``. ``call.set_user(user)`` logs the connection in (or out, with None)
once the method succeeds: its subscriptions re-run as that user (Meteor's
``this.setUserId``). ``@method(login_required=True)`` or ``permission_required="app.perm"``
answer 403 before the function runs. ``@method(rate_limits=[{"per": "user", "calls": 10,
"seconds": 10}])`` limits the calls as Meteor's ``DDPRateLimiter.addRule`` does (per
"connection", "client_address" or "user"; every call counts, refused ones too; past the
limit the client gets Meteor's ``too-many-requests`` error), besides the settings'
``DDP_RATE_LIMITS``. Parameters are bound to the function's signature: a wrong count
or name is a 400 "Match failed" for the client, not a 500. Raise ``DDPError`` for errors
the client should see; Django's ValidationError/PermissionDenied/ObjectDoesNotExist map
to 400/403/404; anything else is 500 "Internal server error" (traceback in the log).

The changes a method writes carry the audit context (``capture.context``): the caller's
``user_id`` and ``username``, ``ddp_method``, ``ddp_session`` and ``remote_addr``.

Each installed app's ``ddp.py`` is imported when Django starts, so methods defined there (or in
modules it imports) are registered.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from asgiref.sync import iscoroutinefunction

from livedata.ddp.errors import DDPError
from livedata.ddp.ratelimit import Rule
from livedata.publish.access import as_perms, require_access


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
    #: hash of the login token the connection is logged in with (None: none)
    login_token: str | None = None
    #: what the session applies once the method succeeded (see ``set_user``)
    pending: dict[str, Any] = field(default_factory=dict)

    def set_user(self, user: Any, login_token: str | None = None) -> None:
        """Log the connection in as ``user`` (None: out), with that token's hash."""
        self.pending["user"] = (user, login_token)


@dataclass(frozen=True)
class Method:
    name: str
    func: Callable[..., Any]
    atomic: bool = True
    #: which thread pool runs it: "default", or "accounts" (bounded password hashing)
    pool: str = "default"
    login_required: bool = False
    permission_required: tuple[str, ...] = ()
    #: its own rate limits (``@method(rate_limits=...)``), counted before it runs
    rate_limits: tuple[Rule, ...] = ()

    def check_access(self, user: Any) -> None:
        """403 before running when the caller may not (may query: call in a thread)."""
        require_access(user, login_required=self.login_required, perms=self.permission_required)

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
        self, func: Callable[..., Any], *, name: str | None = None, **options: Any
    ) -> Method:
        name = name or func.__name__
        existing = self._methods.get(name)
        if existing is not None and existing.func is not func:
            raise ValueError(f"DDP method {name!r} is already registered ({existing.func!r})")
        perms = as_perms(options.pop("permission_required", ()))
        limits = options.pop("rate_limits", ()) or ()
        if isinstance(limits, Mapping):
            limits = (limits,)
        rules = tuple(
            r if isinstance(r, Rule) else Rule.for_method(name, r) for r in limits
        )  # a mistake fails here, at import, not on the first call
        entry = Method(
            name=name, func=func, permission_required=perms, rate_limits=rules, **options
        )
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
    func: Callable[..., Any] | None = None,
    *,
    name: str | None = None,
    atomic: bool = True,
    login_required: bool = False,
    permission_required: str | tuple[str, ...] = (),
    pool: str = "default",
    rate_limits: Mapping[str, Any] | Iterable[Mapping[str, Any]] = (),
) -> Any:
    """Register ``func`` as a DDP method (bare, or with ``name=``, ``atomic=``,
    ``login_required=``, ``permission_required=``, ``rate_limits=``: a rule or a list of
    rules ``{"per": "connection" | "client_address" | "user", "calls", "seconds"}``)."""

    def decorate(f: Callable[..., Any]) -> Callable[..., Any]:
        registry.register(
            f,
            name=name,
            atomic=atomic,
            login_required=login_required,
            permission_required=permission_required,
            pool=pool,
            rate_limits=rate_limits,
        )
        return f

    return decorate(func) if func is not None else decorate
