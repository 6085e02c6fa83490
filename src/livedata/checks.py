"""System checks of livedata's own settings (the accounts have theirs): valid values, and
deprecated names still in use (``livedata.conf.DEPRECATED``)."""

from __future__ import annotations

from typing import Any

from django.core import checks


@checks.register()
def database_wait_valid(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """``DDP_DATABASE_WAIT`` is how long DDP work waits for the database: a number >= 0."""
    from livedata.conf import livedata_settings

    wait = livedata_settings().DDP_DATABASE_WAIT
    if isinstance(wait, bool) or not isinstance(wait, int | float) or not wait >= 0:
        return [
            checks.Error(
                f"LIVEDATA['DDP_DATABASE_WAIT'] = {wait!r} is not a number of seconds.",
                hint="Seconds (>= 0) that methods, logins and new subscriptions wait for "
                "the database to come back, e.g. 5; 0 answers 503 at once.",
                id="livedata.E002",
            )
        ]
    return []


@checks.register()
def deprecated_names(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """Each deprecated name in ``settings.LIVEDATA`` is a warning: it works, renamed."""
    from django.conf import settings

    from livedata.conf import DEPRECATED

    given = getattr(settings, "LIVEDATA", None) or {}
    return [
        checks.Warning(
            f"LIVEDATA[{old!r}] is a deprecated name of LIVEDATA[{new!r}].",
            hint=f"Rename it {new!r}; the old name is applied to the new one for now.",
            id="livedata.W004",
        )
        for old, new in DEPRECATED.items()
        if old in given
    ]


@checks.register()
def broker_url_valid(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """``LISTENER_BROKER_URL`` is empty (no broker) or a Redis URL the listener can use."""
    from livedata.capture.broker import check_url
    from livedata.conf import livedata_settings

    url = livedata_settings().LISTENER_BROKER_URL
    if url == "":
        return []
    try:
        check_url(url)
    except ValueError as exc:
        return [
            checks.Error(
                f"LIVEDATA['LISTENER_BROKER_URL'] is not usable: {exc}.",
                hint="A Redis URL such as 'redis://127.0.0.1:6379/0' (rediss:// for TLS, "
                "unix:///path/redis.sock), or '' to have each process read PostgreSQL.",
                id="livedata.E006",
            )
        ]
    return []
