"""The Django session cookie of a browser, as a DDP login (same origin only: the server
checks that with ``livedata.server.origin.cookie_login_origin`` first)."""

from __future__ import annotations

from http.cookies import CookieError, SimpleCookie
from typing import Any


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
