"""The receiving side, for Django projects: a view decorator that checks the signature.

    from livedata.webhooks.receiver import webhook_receiver

    @webhook_receiver(secret=settings.BOOKS_WEBHOOK_SECRET)
    def book_changed(request, event):
        # event: {"type": "bookstore.book.update", "timestamp": ..., "data": {...}}
        # request.webhook_id: the same on every retry of this change (deduplicate on it)
        ...
        return None  # -> 204; or any HttpResponse

The decorator answers PUT (and POST), verifies ``webhook-signature`` against the secret
(several during a rotation; or a callable ``secret(request)``) in constant time, refuses
a ``webhook-timestamp`` more than ``tolerance`` seconds from now (replays), and only then
parses the body. Failures are JSON 401/400 answers, which the sender retries.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterable
from typing import Any

from asgiref.sync import iscoroutinefunction
from django.http import HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from livedata.webhooks.signing import VerificationError, verify

Secrets = str | Iterable[str] | Callable[[Any], str | Iterable[str]]


def _secrets(secret: Secrets, request: Any) -> list[str]:
    value = secret(request) if callable(secret) else secret
    return [value] if isinstance(value, str) else list(value)


def _error(status: int, code: str, message: str) -> JsonResponse:
    return JsonResponse({"error": code, "message": message}, status=status)


def webhook_receiver(
    secret: Secrets, *, tolerance: float = 300.0, methods: Iterable[str] = ("PUT", "POST")
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Verify Standard Webhooks requests, then call ``view(request, event, ...)``."""
    allowed = {m.upper() for m in methods}

    def check(request: Any) -> tuple[dict[str, Any] | None, HttpResponse | None]:
        if request.method not in allowed:
            response = _error(405, "method-not-allowed", f"use {', '.join(sorted(allowed))}")
            response["Allow"] = ", ".join(sorted(allowed))
            return None, response
        try:
            request.webhook_id = verify(
                request.body, request.headers, _secrets(secret, request), tolerance=tolerance
            )
        except VerificationError as exc:
            return None, _error(401, "invalid-signature", str(exc))
        try:
            event = json.loads(request.body)
        except ValueError:
            return None, _error(400, "bad-request", "the body is not JSON")
        if not isinstance(event, dict) or "type" not in event:
            return None, _error(400, "bad-request", "the body is not a webhook event")
        return event, None

    def decorate(view: Callable[..., Any]) -> Callable[..., Any]:
        if iscoroutinefunction(view):

            @functools.wraps(view)
            async def async_wrapper(request: Any, *args: Any, **kwargs: Any) -> HttpResponse:
                event, refusal = check(request)
                if refusal is not None:
                    return refusal
                response = await view(request, event, *args, **kwargs)
                return HttpResponse(status=204) if response is None else response

            return csrf_exempt(async_wrapper)

        @functools.wraps(view)
        def wrapper(request: Any, *args: Any, **kwargs: Any) -> HttpResponse:
            event, refusal = check(request)
            if refusal is not None:
                return refusal
            response = view(request, event, *args, **kwargs)
            return HttpResponse(status=204) if response is None else response

        return csrf_exempt(wrapper)

    return decorate
