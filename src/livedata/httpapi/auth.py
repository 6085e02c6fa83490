"""Who is calling: a Django user from HTTP Basic, a bearer API token, or the session.

Bearer tokens must be API tokens (``livedata token USERNAME``): a DDP resume token or a
password-reset token is refused like an unknown one (issue 19: both reached the pull
feed and created webhook subscriptions). An endpoint may accept other kinds too (the
metrics endpoint takes metrics tokens: ``api_view(token_kinds=...)``); the kind that
authenticated is in ``request.livedata_token_kind``.

Credentials travel in clear over plain HTTP, so they are refused there unless the client
is on a loopback address or ``LIVEDATA["HTTP_API_REQUIRE_TLS"]`` is False. Behind a TLS
proxy listed in ``HTTP_FORWARDED_ALLOW_IPS`` the address and ``request.is_secure()`` are
the client's (``server.proxies`` rewrites the request's scope), so a proxy on the same
host does not make every request loopback.

Basic runs the password hasher on every request (Django's PBKDF2: hundreds of ms by
design); services that call often should use a bearer token (``livedata token``). The
checks are rate limited and run on their own threads (``livedata.httpapi.basic``); async
code checks them with ``acheck_basic`` first, so no thread waits for a hash.

Bearer tokens are looked up once per ``HTTP_API_AUTH_CACHE_SECONDS`` per process, with
their user (and so the user's permissions, which Django caches on it): a held long-poll
that returns after every change would otherwise cost two queries per client per change.
A deleted token is forgotten at once where the process's listener runs (``livedata
serve``: the log carries the deletion); a deactivated user or a removed permission takes
effect within those seconds.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import time
from collections.abc import Iterable
from typing import Any

from django.db import models

from livedata.accounts import tokens
from livedata.accounts.models import LoginToken
from livedata.conf import livedata_settings
from livedata.httpapi import basic
from livedata.httpapi.errors import ApiError

CHALLENGE = 'Basic realm="livedata", Bearer realm="livedata"'


def _unauthenticated(message: str) -> ApiError:
    return ApiError(401, message, headers={"WWW-Authenticate": CHALLENGE})


def _loopback(request: Any) -> bool:
    try:
        return ipaddress.ip_address(request.META.get("REMOTE_ADDR", "")).is_loopback
    except ValueError:
        return False


API_KINDS = (LoginToken.Kind.API,)


def authenticate(request: Any, token_kinds: tuple[str, ...] = API_KINDS) -> Any:
    """The calling user, or None when no credentials were given.

    Raises ``ApiError`` 401 for wrong or unacceptable credentials (one message for an
    unknown user and a wrong password: no user enumeration). Bearer tokens of
    ``token_kinds`` only are accepted.
    """
    header = request.META.get("HTTP_AUTHORIZATION", "")
    if not header:
        if request.method not in ("GET", "HEAD"):
            return None  # unsafe methods need credentials, never just a cookie
        user = getattr(request, "user", None)  # set by AuthenticationMiddleware, if it ran
        if user is None and request.META.get("HTTP_COOKIE"):
            from livedata.accounts.sessions import cookie_user

            user = cookie_user(request.META["HTTP_COOKIE"])  # served without middleware
        return user if user is not None and user.is_authenticated else None
    checked = getattr(request, "_livedata_basic", None)
    if checked is not None:  # by ``acheck_basic`` before the view (``livedata serve``)
        if isinstance(checked, ApiError):
            raise checked
        return checked
    credentials = basic_credentials(request)
    if credentials is not None:
        return _basic_user(basic.check(request, *credentials))
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer":
        found = _bearer_user(value.strip(), token_kinds)
        if found is None:
            raise _unauthenticated("invalid or expired token")
        request.livedata_token_kind = found[1]
        return found[0]
    raise _unauthenticated(f"unsupported authorization scheme {scheme!r}: use Basic or Bearer")


def _require_tls(request: Any) -> None:
    if (
        livedata_settings().HTTP_API_REQUIRE_TLS
        and not request.is_secure()
        and not _loopback(request)
    ):
        raise _unauthenticated("credentials over plain HTTP are refused: use https")


def basic_credentials(request: Any) -> tuple[str, str] | None:
    """(username, password) when the request authenticates with HTTP Basic, else None.

    Raises ``ApiError`` 401 for credentials in clear (see the TLS rule) or malformed.
    """
    header = request.META.get("HTTP_AUTHORIZATION", "")
    if not header:
        return None
    _require_tls(request)
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise _unauthenticated("malformed Basic credentials") from None
    username, sep, password = decoded.partition(":")
    if not sep or not username or "\x00" in decoded:
        raise _unauthenticated("malformed Basic credentials")
    return username, password


def _basic_user(user: Any) -> Any:
    if user is None:
        raise _unauthenticated("invalid username or password")
    return user


async def acheck_basic(request: Any) -> bool:
    """Check HTTP Basic credentials without a thread of the caller's (async code, before
    the view): the outcome is kept on the request for ``authenticate``. False when the
    request does not use Basic."""
    if getattr(request, "_livedata_basic", None) is not None:
        return True  # checked already (server.without_middleware, then the async view's wrapper)
    try:
        credentials = basic_credentials(request)
        if credentials is None:
            return False
        request._livedata_basic = _basic_user(await basic.acheck(request, *credentials))
    except ApiError as exc:
        request._livedata_basic = exc
    return True


#: hashed token → (when looked up, its user, when the token expires, its kind)
_users_by_token: dict[str, tuple[float, Any, float | None, str]] = {}
_MAX_CACHED = 10_000


def _bearer_user(secret: str, kinds: tuple[str, ...]) -> tuple[Any, str] | None:
    """(user, token kind) of a live token of one of ``kinds``, or None."""
    ttl = livedata_settings().HTTP_API_AUTH_CACHE_SECONDS
    hashed = tokens.hash_token(secret) if isinstance(secret, str) else ""
    now = time.monotonic()
    cached = _users_by_token.get(hashed)
    if (
        cached is not None
        and now - cached[0] < ttl
        and (cached[2] is None or cached[2] > time.time())
    ):
        return (cached[1], cached[3]) if cached[3] in kinds else None
    token = tokens.lookup(secret)
    if token is None or token.kind not in kinds:  # never a resume or reset token
        if token is None:
            _users_by_token.pop(hashed, None)
        return None
    tokens.touch(token)
    if ttl > 0:
        if len(_users_by_token) >= _MAX_CACHED:
            _users_by_token.clear()
        expires = token.expires.timestamp() if token.expires is not None else None
        _users_by_token[hashed] = (now, token.user, expires, token.kind)
    return token.user, token.kind


def forget_tokens(hashed: Iterable[str] | None = None) -> None:
    """Drop cached lookups of these hashed tokens (None: all), e.g. once deleted."""
    if hashed is None:
        _users_by_token.clear()
    else:
        for h in hashed:
            _users_by_token.pop(h, None)


def require_perm(user: Any, model: type[models.Model], action: str = "view") -> None:
    """Raise 403 unless ``user`` has Django's ``<action>`` permission on ``model``."""
    opts = model._meta
    perm = f"{opts.app_label}.{action}_{opts.model_name}"
    if not user.has_perm(perm):
        raise ApiError(403, f"you need the {perm} permission")
