"""Whom a DDP request is for (Host) and where it comes from (Origin).

Django validates ``Host`` against ``ALLOWED_HOSTS`` only for the HTTP requests it serves;
DDP's WebSocket and SockJS requests never reach it, so the same rule is applied here
before anything is accepted. The Origin rule compares whole origins (scheme, host and
port): a page of ``https://site`` is not the same origin as ``http://site``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

_DEFAULT_PORTS = {"http": 80, "https": 443}
_SECURE_SCHEMES = ("https", "wss")


def request_host(scope: dict[str, Any], headers: Mapping[str, str]) -> str:
    """The Host the client asked for, as Django's ``HttpRequest.get_host`` reads it."""
    from django.conf import settings

    if settings.USE_X_FORWARDED_HOST and headers.get("x-forwarded-host"):
        return headers["x-forwarded-host"].split(",")[0].strip()
    if "host" in headers:
        return headers["host"]
    server = scope.get("server")
    if not server:
        return ""
    host, port = server[0], server[1]
    if port is None or port == _DEFAULT_PORTS[_http_scheme(scope)]:
        return host
    return f"{host}:{port}"


def host_allowed(scope: dict[str, Any], headers: Mapping[str, str]) -> bool:
    """``Host`` passes ``ALLOWED_HOSTS`` (with Django's defaults when DEBUG and empty)."""
    from django.conf import settings
    from django.http.request import split_domain_port, validate_host

    allowed = settings.ALLOWED_HOSTS
    if settings.DEBUG and not allowed:
        allowed = [".localhost", "127.0.0.1", "[::1]"]
    domain, _port = split_domain_port(request_host(scope, headers))
    return bool(domain) and validate_host(domain, allowed)


def _http_scheme(scope: dict[str, Any]) -> str:
    return "https" if scope.get("scheme", "http") in _SECURE_SCHEMES else "http"


def is_secure(scheme: str, headers: Mapping[str, str]) -> bool:
    """Served over TLS: the ASGI scheme, or Django's ``SECURE_PROXY_SSL_HEADER``."""
    from django.conf import settings

    if scheme in _SECURE_SCHEMES:
        return True
    proxy = getattr(settings, "SECURE_PROXY_SSL_HEADER", None)
    if proxy:
        name, expected = proxy
        name = name.removeprefix("HTTP_").replace("_", "-").lower()
        value = headers.get(name)
        return value is not None and value.split(",", 1)[0].strip() == expected
    return False


def site_origin(scope: dict[str, Any], headers: Mapping[str, str]) -> str:
    """The origin of this site as the request sees it: ``http(s)://host[:port]``."""
    web = "https" if is_secure(scope.get("scheme", "http"), headers) else "http"
    return f"{web}://{request_host(scope, headers)}"


def _parts(origin: str) -> tuple[str, str, int] | None:
    try:
        url = urlsplit(origin.strip())
        scheme = url.scheme.lower()
        if scheme not in _DEFAULT_PORTS or not url.hostname:
            return None
        return scheme, url.hostname.lower(), url.port or _DEFAULT_PORTS[scheme]
    except ValueError:  # a port that is not a number, a broken IPv6 literal
        return None


def same_origin(origin: str, site: str) -> bool:
    """``origin`` (an Origin header) is ``site`` (see ``site_origin``): scheme, host, port."""
    mine = _parts(origin)
    return mine is not None and mine == _parts(site)


def origin_allowed(origin: str | None, site: str, allowed: tuple[str, ...]) -> bool:
    """No Origin header (non-browser clients): allowed. An empty or ``null`` one is a
    browser hiding where it comes from (sandboxed frames, some redirects): refused unless
    ``"*"``. Otherwise the site's own origin, or one listed in ``DDP_ALLOWED_ORIGINS``."""
    if origin is None:
        return True
    if "*" in allowed:
        return True
    if not origin.strip() or origin.strip() == "null":
        return False
    if origin in allowed:
        return True
    mine = _parts(origin)
    if mine is not None and any(mine == _parts(entry) for entry in allowed):
        return True
    return same_origin(origin, site)


def cookie_login_origin(headers: dict[str, str], site: str) -> bool:
    """The page that opened the connection is the site's own (``site``: scheme, host and
    port), or the request is not from a browser page at all.

    ``DDP_ALLOWED_ORIGINS`` lets other sites' pages connect, but never as the browser's
    logged-in user: that would let any allowed site act for the user. A browser that says
    the request is cross-site (``Sec-Fetch-Site``: a navigation or a script tag of another
    site, which send no Origin) is not logged in either.
    """
    if headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
        return False
    origin = headers.get("origin")
    return origin is None or same_origin(origin, site)
