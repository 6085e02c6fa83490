"""The Django session cookie of a browser, as a DDP login (same origin only)."""

from __future__ import annotations

from http.cookies import CookieError, SimpleCookie
from typing import Any


def same_origin(headers: dict[str, str], site: str) -> bool:
    """The page that opened the connection is the site's own (``site``: scheme, host and
    port), or the request is not from a browser page at all.

    ``DDP_ALLOWED_ORIGINS`` lets other sites' pages connect, but never as the browser's
    logged-in user: that would let any allowed site act for the user. A browser that says
    the request is cross-site (``Sec-Fetch-Site``: a navigation or a script tag of another
    site, which send no Origin) is not logged in either.
    """
    from livedata.server.origin import same_origin as is_same

    if headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
        return False
    origin = headers.get("origin")
    return origin is None or is_same(origin, site)


def cookie_user(cookie_header: str) -> Any | None:
    """The user the Django session named in this Cookie header is logged in as (in a
    pool thread: the caller submits it through ``dbthreads.with_connection``)."""
    from django.conf import settings
    from django.contrib.auth import get_user
    from django.http import HttpRequest
    from django.utils.module_loading import import_string

    if "django.contrib.sessions" not in settings.INSTALLED_APPS:
        return None
    try:
        morsel = SimpleCookie(cookie_header).get(settings.SESSION_COOKIE_NAME)
    except CookieError:
        return None
    if morsel is None or not morsel.value:
        return None
    store = import_string(settings.SESSION_ENGINE).SessionStore
    request = HttpRequest()
    request.session = store(morsel.value)
    user = get_user(request)  # checks the session's password hash, as Django's middleware
    return user if user.is_authenticated else None
