"""The demo's example webhook receiver: what a subscribing service's Django view looks like.

``livedata demo`` subscribes the ``demo`` user to book and author changes with this URL
(subscription ``example-receiver``, secret ``DEMO_WEBHOOK_SECRET``). Each verified PUT is
logged and kept (the last 100, in this process's memory); ``GET /example-receiver/``
shows them, newest first. Change a book in the admin or with ``psql`` and look.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from livedata.webhooks.receiver import webhook_receiver

logger = logging.getLogger("livedata.demo")
RECEIVED: deque[dict[str, Any]] = deque(maxlen=100)


@webhook_receiver(secret=lambda request: settings.DEMO_WEBHOOK_SECRET)
def receive(request: HttpRequest, event: dict[str, Any]) -> None:
    # A real receiver would act here (send the welcome email, update its copy), and use
    # request.webhook_id to ignore a change it already handled (deliveries may repeat).
    data = event["data"]
    logger.info("example receiver: %s pk=%s (%s)", event["type"], data["pk"], request.webhook_id)
    RECEIVED.appendleft({"webhook_id": request.webhook_id, **event})


@csrf_exempt
def example_receiver(request: HttpRequest) -> HttpResponse:
    if request.method == "GET":
        return JsonResponse({"received": list(RECEIVED)})
    return receive(request)
