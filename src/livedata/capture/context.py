"""The audit context: who and what request caused a change, stamped on its change-log row.

The trigger reads ``current_setting('livedata.context', true)``. We set it with
``SET LOCAL`` prepended to each data-changing statement while a context is active, as
django-pghistory does: transaction-local, so it works in autocommit mode (where each
statement is its own transaction) and inside ``atomic()``; and read from a ContextVar at
execution time, so concurrent async requests sharing one thread's connection never see
each other's context. SELECTs are left alone, so reads cost nothing.

- ``ContextMiddleware`` sets the request's context (user, method, path, remote address,
  request id) for sync and async views.
- ``livedata.context(**fields)`` does the same for scripts, commands and task workers,
  as a context manager or decorator; nested contexts merge. The DDP server uses it for
  methods (``server.ddp_session``: user, ``ddp_method``, ``ddp_session``, remote address),
  and the runtime carries it into the worker thread that runs a sync method.
"""

from __future__ import annotations

import contextvars
import functools
import json
import uuid
from collections.abc import Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.core.serializers.json import DjangoJSONEncoder
from django.db.backends.signals import connection_created

_current: contextvars.ContextVar[Context | None] = contextvars.ContextVar(
    "livedata_context", default=None
)

# Statements that never change rows: no context needed.
_SKIP = ("select", "savepoint", "release", "rollback", "set ", "show", "begin", "commit")


class Context:
    """Fields for the change log; values may be callables resolved at first write."""

    __slots__ = ("_fields", "_json")

    def __init__(self, fields: dict[str, Any]) -> None:
        self._fields = fields
        self._json: str | None = None

    def merged(self, **more: Any) -> Context:
        return Context({**self._fields, **more})

    def as_json(self) -> str:
        if self._json is None:
            # Resolving may run queries (request.user): do it with no context active.
            token = _current.set(None)
            try:
                resolved: dict[str, Any] = {}
                for key, value in self._fields.items():
                    value = value() if callable(value) else value
                    if isinstance(value, dict):
                        resolved.update(value)
                    elif value is not None:
                        resolved[key] = value
            finally:
                _current.reset(token)
            self._json = json.dumps(resolved, cls=DjangoJSONEncoder, separators=(",", ":"))
        return self._json


class context:
    """Stamp ``fields`` on every change made inside, for code outside a request.

    >>> with livedata.context(task="nightly-import", batch=42):
    ...     Book.objects.filter(...).update(...)

    Also usable as ``@livedata.context(job="sync")`` on sync and async functions.
    """

    def __init__(self, **fields: Any) -> None:
        self.fields = fields
        self._tokens: list[contextvars.Token[Context | None]] = []

    def __enter__(self) -> context:
        parent = _current.get()
        ctx = parent.merged(**self.fields) if parent else Context(dict(self.fields))
        self._tokens.append(_current.set(ctx))
        return self

    def __exit__(self, *exc: object) -> None:
        _current.reset(self._tokens.pop())

    def __call__(self, func: Callable[..., Any]) -> Callable[..., Any]:
        if iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                with context(**self.fields):
                    return await func(*args, **kwargs)

            return async_wrapper

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with context(**self.fields):
                return func(*args, **kwargs)

        return wrapper


def _inject(execute: Callable[..., Any], sql: Any, params: Any, many: bool, ctx: Any) -> Any:
    """Django execute wrapper: prefix data-changing SQL with ``SET LOCAL livedata.context``."""
    active = _current.get()
    if active is None or not isinstance(sql, str) or sql.lstrip()[:9].lower().startswith(_SKIP):
        return execute(sql, params, many, ctx)
    payload = active.as_json()
    cursor = ctx["cursor"]
    if many:
        # executemany cannot carry a prefix: set it for the session around the call
        # (the connection is this thread's alone meanwhile), then clear it.
        cursor.execute("SELECT set_config('livedata.context', %s, false)", [payload])
        try:
            return execute(sql, params, many, ctx)
        finally:
            cursor.execute("SELECT set_config('livedata.context', '', false)")
    # Inlined as a literal: SET takes no bind parameters. Quote doubling makes it safe.
    literal = "'" + payload.replace("'", "''").replace("%", "%%") + "'"
    if params is None:
        literal = literal.replace("%%", "%")
    result = execute(f"SET LOCAL livedata.context = {literal};\n{sql}", params, many, ctx)
    # psycopg leaves the cursor on the first result (the SET); move to the statement's own,
    # so fetchone(), rowcount and RETURNING behave exactly as without the prefix.
    cursor.nextset()
    return result


def _on_connection_created(sender: Any, connection: Any, **kwargs: Any) -> None:
    if connection.vendor == "postgresql" and _inject not in connection.execute_wrappers:
        connection.execute_wrappers.append(_inject)


def install() -> None:
    """Attach the context wrapper to every PostgreSQL connection Django opens."""
    connection_created.connect(_on_connection_created, dispatch_uid="livedata.context")
    from django.db import connections

    for conn in connections.all(initialized_only=True):
        if conn.connection is not None:
            _on_connection_created(None, conn)


def user_fields(user: Any) -> dict[str, Any]:
    """``user_id`` and ``username`` of a logged-in user; nothing for anonymous or None."""
    if user is None or not getattr(user, "is_authenticated", False):
        return {}
    return {"user_id": user.pk, "username": user.get_username()}


def _request_fields(request: Any) -> dict[str, Any]:
    from livedata.conf import livedata_settings

    header = livedata_settings().REQUEST_ID_HEADER
    request_id = request.headers.get(header) or uuid.uuid4().hex
    request.livedata_request_id = request_id[:200]

    return {
        "user": lambda: user_fields(getattr(request, "user", None)),
        "method": request.method,
        "path": request.path,
        "remote_addr": request.META.get("REMOTE_ADDR"),
        "request_id": request.livedata_request_id,
    }


class ContextMiddleware:
    """Stamp the request's context on every change made while handling it.

    Place it after ``AuthenticationMiddleware`` so the user is known. The request id comes
    from ``LIVEDATA["REQUEST_ID_HEADER"]`` (``X-Request-ID``) or is generated, and is echoed
    in the response's header of the same name.
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[..., Any]) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: Any) -> Any:
        if self.is_async:
            return self.__acall__(request)
        with context(**_request_fields(request)):
            response = self.get_response(request)
        return self._stamp(request, response)

    async def __acall__(self, request: Any) -> Any:
        with context(**_request_fields(request)):
            response = await self.get_response(request)
        return self._stamp(request, response)

    @staticmethod
    def _stamp(request: Any, response: Any) -> Any:
        from livedata.conf import livedata_settings

        response.headers.setdefault(
            livedata_settings().REQUEST_ID_HEADER, request.livedata_request_id
        )
        return response
