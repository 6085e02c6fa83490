"""System checks of the server's settings: each limit must be a number, 0 or more (0:
off), since a typo here would silently leave the server open to held connections (issue
19); its trusted proxies (``HTTP_FORWARDED_ALLOW_IPS``), where a typo would silently
trust no one, or the wrong peers; and ``DDP_PATH_PREFIX`` must be a path DDP's clients
can be pointed at, since a malformed one would silently serve DDP nowhere a client looks."""

from __future__ import annotations

import re
from typing import Any

from django.core import checks

from livedata.server.proxies import parse

#: ``DDP_PATH_PREFIX``: empty, or "/" and URL path segments (no empty, "." or ".."
#: segment; one trailing "/" is ignored), of the characters a path needs no escaping for
_PREFIX = re.compile(r"(/(?!\.\.?(?:/|$))[A-Za-z0-9._~!$&'()*+,;=:@-]+)*/?")

#: settings that bound held connections and sessions: numbers, 0 (no limit) or more
LIMITS = (
    "HTTP_HEADER_TIMEOUT",
    "HTTP_KEEP_ALIVE_TIMEOUT",
    "HTTP_MAX_HEADER_BYTES",
    "HTTP_MAX_CONNECTIONS_PER_ADDRESS",
    "DDP_CONNECT_TIMEOUT",
    "DDP_SOCKJS_MAX_SESSIONS_PER_ADDRESS",
    "DDP_ACCEPT_RATE",
    "DDP_SUBSCRIBE_CONCURRENCY",
    "HTTP_SHUTDOWN_PERIOD",
)
#: admission's other numbers (0 or more too), with what 0 means for them
OTHERS = {
    "DDP_ACCEPT_BURST": "one at a time",
    "DDP_ACCEPT_WAIT": "never wait",
    "DDP_SUBSCRIBE_WAIT": "never wait",
}


@checks.register(checks.Tags.security)
def server_limits(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    from livedata.conf import livedata_settings

    conf = livedata_settings()
    errors: list[checks.CheckMessage] = []
    for name, zero in {**dict.fromkeys(LIMITS, "no limit"), **OTHERS}.items():
        value = getattr(conf, name)
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            errors.append(
                checks.Error(
                    f"LIVEDATA[{name!r}] must be a number, 0 ({zero}) or more, not {value!r}.",
                    id="livedata.E005",
                )
            )
    thresholds = conf.HTTP_GC_THRESHOLDS
    if thresholds is not None and not (
        isinstance(thresholds, list | tuple)
        and len(thresholds) == 3
        and all(isinstance(t, int) and not isinstance(t, bool) and t >= 0 for t in thresholds)
    ):
        errors.append(
            checks.Error(
                "LIVEDATA['HTTP_GC_THRESHOLDS'] must be None or three whole numbers, 0 or more "
                f"(gc.set_threshold's), not {thresholds!r}.",
                id="livedata.E005",
            )
        )
    try:
        parse(conf.HTTP_FORWARDED_ALLOW_IPS)
    except ValueError as exc:
        errors.append(
            checks.Error(
                f"LIVEDATA['HTTP_FORWARDED_ALLOW_IPS']: {exc}.",
                hint='Trusted proxies, e.g. ("127.0.0.1", "10.0.0.0/8", "unix").',
                id="livedata.E005",
            )
        )
    return errors


@checks.register()
def path_prefix(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    from livedata.conf import livedata_settings

    prefix = livedata_settings().DDP_PATH_PREFIX
    if isinstance(prefix, str) and _PREFIX.fullmatch(prefix):
        return []
    return [
        checks.Error(
            f"LIVEDATA['DDP_PATH_PREFIX'] must be '' or a path such as '/live', not {prefix!r}.",
            hint="It starts with '/' and has no query or fragment, no empty, '.' or '..' "
            "segment, no spaces or characters that need escaping; DDP is then served at "
            "PREFIX/websocket and PREFIX/sockjs.",
            id="livedata.E009",
        )
    ]
