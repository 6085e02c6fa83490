"""Serving livedata's own HTTP API views (the pull feed, webhook subscriptions) without
the project's middleware: ``is_api_request`` tells their requests apart, and
``ViewOnlyHandler`` is Django's ASGI handler with an empty middleware chain.

Those views authenticate themselves (``livedata.httpapi``) and need none of what
middleware adds. Under ASGI every sync middleware is one hop to Django's single sync
thread, each way: with the demo's eight that is ~30 hops per request, all queued on that
one thread. A held long-poll comes back after every change, so 1000 held clients made
30,000 hops per change (bench/pull.py: p50 25 s); without them the same clients are
answered at once. Requests are recognised by resolving the path against the project's
URLconf: only views marked by ``api_view`` take this route, everything else goes through
the project's handler and middleware as usual.
"""

from __future__ import annotations

from typing import Any

from django.core.handlers.asgi import ASGIHandler
from django.core.handlers.exception import convert_exception_to_response
from django.urls import Resolver404, resolve


class ViewOnlyHandler(ASGIHandler):
    """Django's ASGI handler (request objects, URL resolving, exception responses,
    ``request_started``/``request_finished``) with an empty middleware chain, and without
    a ``ThreadSensitiveContext`` per request: that makes asgiref start (and stop) a new
    thread for each request's sync signal receivers, ~13% of the process's time with
    1000 long-polls coming back (py-spy); these views run their database work in
    livedata's own pooled threads, so the shared sync thread serves the rest."""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        await self.handle(scope, receive, send)

    async def get_response_async(self, request: Any) -> Any:
        # HTTP Basic is checked here, before a sync view would take Django's one sync
        # thread for the length of a password hash (issue 19: a flood of wrong passwords
        # made every request wait its turn on it)
        from livedata.httpapi.auth import acheck_basic

        await acheck_basic(request)
        return await super().get_response_async(request)

    def load_middleware(self, is_async: bool = False) -> None:
        self._view_middleware = []
        self._template_response_middleware = []
        self._exception_middleware = []
        get_response = self._get_response_async if is_async else self._get_response
        self._middleware_chain = convert_exception_to_response(get_response)


def is_api_request(scope: dict[str, Any]) -> bool:
    """An HTTP request for a view marked ``livedata_api`` (see ``httpapi.api_view``)."""
    path = scope["path"]
    root = scope.get("root_path") or ""
    if root and path.startswith(root):
        path = path[len(root) :]
    try:
        match = resolve(path)
    except Resolver404:
        return False
    return getattr(match.func, "livedata_api", False)
