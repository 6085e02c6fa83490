"""``api_view``: the decorator every livedata HTTP endpoint goes through."""

from __future__ import annotations

import functools
import json
import logging
import math
from collections.abc import Callable
from typing import Any

from asgiref.sync import iscoroutinefunction
from django.core.exceptions import (
    ObjectDoesNotExist,
    PermissionDenied,
    RequestDataTooBig,
    ValidationError,
)
from django.http import Http404, HttpResponse
from django.views.decorators.csrf import csrf_exempt

from livedata import dbthreads
from livedata.conf import livedata_settings
from livedata.httpapi.auth import API_KINDS, acheck_basic, authenticate
from livedata.httpapi.errors import ApiError

logger = logging.getLogger("livedata.httpapi")

View = Callable[..., Any]

#: Threads that authenticate async views (and do their other database work). Each keeps
#: its connection between calls, so many concurrent requests (held long-polls coming
#: back) share a few connections instead of opening one per request.
_db_threads = dbthreads.LazyPool("livedata-api", lambda: 4)
#: Run sync database code for an async view in one of those threads.
run_in_db_thread = _db_threads.run


def close_db_threads() -> None:
    """Close the pooled threads' connections and the pool (before dropping a database)."""
    _db_threads.close()


def api_view(
    *methods: str,
    login_required: bool = True,
    token_kinds: tuple[str, ...] = API_KINDS,
) -> Callable[[View], View]:
    """Make ``view`` a JSON API endpoint answering only ``methods``.

    The caller is in ``request.api_user`` (None when anonymous and allowed); bearer
    tokens of ``token_kinds`` authenticate (API tokens by default). Sync and
    async views both work; for async ones authentication runs in ``run_in_db_thread``
    (a few threads with lasting connections, not a thread per request). CSRF does not
    apply: unsafe methods need explicit credentials (see ``auth``), never a cookie.
    """
    allowed = {m.upper() for m in methods} | ({"HEAD"} if "GET" in methods else set())

    def check(request: Any) -> None:
        if request.method not in allowed:
            raise ApiError(
                405,
                f"{request.method} is not allowed here; use {', '.join(sorted(allowed))}",
                headers={"Allow": ", ".join(sorted(allowed))},
            )

    def who(request: Any) -> Any:
        user = authenticate(request, token_kinds)
        if user is None and login_required:
            raise ApiError(
                401,
                "authentication required (HTTP Basic or Authorization: Bearer <token>)",
                headers={"WWW-Authenticate": 'Basic realm="livedata", Bearer realm="livedata"'},
            )
        return user

    def decorate(view: View) -> View:
        if iscoroutinefunction(view):

            @functools.wraps(view)
            async def async_wrapper(request: Any, *args: Any, **kwargs: Any) -> Any:
                try:
                    check(request)
                    await acheck_basic(request)  # the hash waits on its own threads
                    request.api_user = await run_in_db_thread(who, request)
                    return await view(request, *args, **kwargs)
                except Exception as exc:
                    return _error_response(request, exc)

            # see server.without_middleware
            async_wrapper.livedata_api = True  # type: ignore[attr-defined]
            return csrf_exempt(async_wrapper)

        @functools.wraps(view)
        def wrapper(request: Any, *args: Any, **kwargs: Any) -> Any:
            try:
                check(request)
                request.api_user = who(request)
                return view(request, *args, **kwargs)
            except Exception as exc:
                return _error_response(request, exc)

        wrapper.livedata_api = True  # type: ignore[attr-defined]
        return csrf_exempt(wrapper)

    return decorate


def _error_response(request: Any, exc: Exception) -> HttpResponse:
    if isinstance(exc, ApiError):
        return exc.response()
    if isinstance(exc, Http404 | ObjectDoesNotExist):
        return ApiError(404, str(exc) or "not found").response()
    if isinstance(exc, PermissionDenied):
        return ApiError(403, str(exc) or "permission denied").response()
    if isinstance(exc, RequestDataTooBig):
        return ApiError(413, "request body too large").response()
    if isinstance(exc, ValidationError):
        return ApiError(400, "; ".join(exc.messages)).response()
    logger.exception("livedata: %s %s failed", request.method, request.path)
    return ApiError(500, "internal server error").response()


def read_json(request: Any) -> Any:
    """The request body parsed as strict JSON (no NaN or infinite numbers); 413 past
    ``HTTP_API_MAX_BODY_BYTES``, 400 if bad."""
    limit = livedata_settings().HTTP_API_MAX_BODY_BYTES
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        raise ApiError(400, "invalid Content-Length") from None
    if declared > limit:
        raise ApiError(413, f"request body over {limit} bytes")
    body = request.body
    if len(body) > limit:
        raise ApiError(413, f"request body over {limit} bytes")
    content_type = request.content_type or ""
    if body and content_type not in ("application/json", "") and not content_type.endswith("+json"):
        raise ApiError(415, f"send JSON (Content-Type: application/json), not {content_type}")
    if not body:
        raise ApiError(400, "request body is empty: send a JSON object")
    try:
        return json.loads(body, parse_constant=_not_json, parse_float=_finite_float)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"malformed JSON: {exc}") from None


def _not_json(token: str) -> Any:
    """``NaN``/``Infinity`` are not JSON (Python accepts them; PostgreSQL's jsonb does not,
    so a stored filter holding one was a 500)."""
    raise ValueError(f"{token} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e400
        raise ValueError(f"number {text} out of range")
    return value
