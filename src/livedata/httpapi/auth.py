"""Who is calling: a Django user from HTTP Basic, a bearer login token, or the session.

Credentials travel in clear over plain HTTP, so they are refused there unless the client
is on a loopback address or ``LIVEDATA["HTTP_API_REQUIRE_TLS"]`` is False (behind a TLS
proxy, set Django's ``SECURE_PROXY_SSL_HEADER`` so ``request.is_secure()`` knows).

Basic runs the password hasher on every request (Django's PBKDF2: hundreds of ms by
design); services that call often should use a bearer token (``livedata token``).
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
from typing import Any

from django.contrib import auth
from django.db import models

from livedata.accounts import tokens
from livedata.conf import livedata_settings
from livedata.httpapi.errors import ApiError

CHALLENGE = 'Basic realm="livedata", Bearer realm="livedata"'


def _unauthenticated(message: str) -> ApiError:
    return ApiError(401, message, headers={"WWW-Authenticate": CHALLENGE})


def _loopback(request: Any) -> bool:
    try:
        return ipaddress.ip_address(request.META.get("REMOTE_ADDR", "")).is_loopback
    except ValueError:
        return False


def authenticate(request: Any) -> Any:
    """The calling user, or None when no credentials were given.

    Raises ``ApiError`` 401 for wrong or unacceptable credentials (one message for an
    unknown user and a wrong password: no user enumeration).
    """
    header = request.META.get("HTTP_AUTHORIZATION", "")
    if not header:
        user = getattr(request, "user", None)
        if request.method in ("GET", "HEAD") and user is not None and user.is_authenticated:
            return user  # a browser logged in to the site; unsafe methods need credentials
        return None
    if (
        livedata_settings().HTTP_API_REQUIRE_TLS
        and not request.is_secure()
        and not _loopback(request)
    ):
        raise _unauthenticated("credentials over plain HTTP are refused: use https")
    scheme, _, value = header.partition(" ")
    scheme, value = scheme.lower(), value.strip()
    if scheme == "bearer":
        token = tokens.lookup(value)
        if token is None:
            raise _unauthenticated("invalid or expired token")
        tokens.touch(token)
        return token.user
    if scheme == "basic":
        try:
            username, sep, password = base64.b64decode(value, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise _unauthenticated("malformed Basic credentials") from None
        user = auth.authenticate(request, username=username, password=password) if sep else None
        if user is None:
            raise _unauthenticated("invalid username or password")
        return user
    raise _unauthenticated(f"unsupported authorization scheme {scheme!r}: use Basic or Bearer")


def require_perm(user: Any, model: type[models.Model], action: str = "view") -> None:
    """Raise 403 unless ``user`` has Django's ``<action>`` permission on ``model``."""
    opts = model._meta
    perm = f"{opts.app_label}.{action}_{opts.model_name}"
    if not user.has_perm(perm):
        raise ApiError(403, f"you need the {perm} permission")
