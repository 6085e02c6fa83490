"""System checks of the HTTP APIs' settings: malformed Basic rate limits would otherwise
surface as a 500 on the first Basic request, not at start-up."""

from __future__ import annotations

from typing import Any

from django.core import checks


@checks.register(checks.Tags.security)
def basic_limits_configured(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    from livedata.conf import livedata_settings
    from livedata.httpapi.basic import rules_from_setting

    conf = livedata_settings()
    errors = []
    try:
        rules_from_setting(conf.HTTP_API_BASIC_RATE_LIMITS)
    except (ValueError, TypeError) as exc:
        errors.append(
            checks.Error(
                f"LIVEDATA['HTTP_API_BASIC_RATE_LIMITS'] is malformed: {exc}",
                hint='Rules like {"per": "user" | "client_address", "calls": 5, "seconds": 10}.',
                id="livedata.E003",
            )
        )
    for name in ("HTTP_API_BASIC_THREADS", "HTTP_API_BASIC_MAX_WAITING"):
        value = getattr(conf, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            errors.append(
                checks.Error(
                    f"LIVEDATA['{name}'] = {value!r} must be a positive integer.",
                    id="livedata.E004",
                )
            )
    return errors
