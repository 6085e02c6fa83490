"""``GET /livedata/metrics``: the process's figures in the Prometheus text format.

Protected like the HTTP APIs (``livedata.httpapi``): credentials are refused in clear
to a non-loopback client, an anonymous request gets 401 and a user who may not see the
figures 403, never a figure. Allowed: a metrics token (``livedata token USER --kind
metrics``: a scraper's, good for nothing else), or a staff user, by HTTP Basic, an API
token or the Django session.

Served on the event loop (an async view), where the figures' owners change them: a
scrape reads them between two of their steps, never in the middle of one.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpResponse

from livedata.accounts.models import LoginToken
from livedata.httpapi import ApiError, api_view
from livedata.metrics.prometheus import exposition, registry
from livedata.runtime import figures

#: livedata's registry, reading the serving runtime's board on each scrape
REGISTRY = registry(figures.current)


@api_view("GET", token_kinds=(LoginToken.Kind.API, LoginToken.Kind.METRICS))
async def metrics(request: Any) -> HttpResponse:
    user = request.api_user
    by_metrics_token = getattr(request, "livedata_token_kind", None) == LoginToken.Kind.METRICS
    if not by_metrics_token and not user.is_staff:
        raise ApiError(403, "the metrics are for staff users and metrics tokens")
    body, content_type = exposition(REGISTRY, request.META.get("HTTP_ACCEPT", ""))
    return HttpResponse(body, content_type=content_type)
