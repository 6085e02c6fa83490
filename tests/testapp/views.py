"""Views that write, for the audit-context tests; and a probe of the pull feed's held requests."""

import asyncio

from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from livedata.demo.bookstore.models import Author
from livedata.httpapi import api_view, read_json


@csrf_exempt
def write_sync(request: HttpRequest) -> HttpResponse:
    email = request.GET["email"]
    if request.GET.get("atomic"):
        with transaction.atomic():
            author = Author.objects.create(name="sync", email=email)
            author.name = "sync2"
            author.save()
    else:
        Author.objects.create(name="sync", email=email)
    return HttpResponse("ok")


@csrf_exempt
async def write_async(request: HttpRequest) -> HttpResponse:
    email = request.GET["email"]
    # Interleave with other requests on purpose: the context must not leak between them.
    await asyncio.sleep(float(request.GET.get("sleep", "0")))
    await Author.objects.acreate(name="async", email=email)
    return HttpResponse("ok")


@api_view("GET", "PUT")
def api_echo(request: HttpRequest) -> JsonResponse:
    """An API endpoint for the shared HTTP API tests."""
    if request.GET.get("fail"):
        raise RuntimeError("secret internal detail")
    user = request.api_user
    body = read_json(request) if request.method == "PUT" else None
    return JsonResponse({"user": user.get_username() if user else None, "body": body})


@api_view("GET")
async def api_echo_async(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"user": request.api_user.get_username()})


async def pull_waiters(request: HttpRequest) -> JsonResponse:
    """How many pull requests this server process holds right now (long-polls and event
    streams registered with the feed's notifier): lets a test prove a request is *held*
    (registered, waiting for a change) before it commits the change that must wake it.

    Async, so it runs on the server's event loop, where the notifier lives. It only
    looks: a process that has not held any request yet has no notifier (0).
    """
    from livedata.pull import live

    listener = live._listener
    note = live._notifiers.get(id(listener)) if listener is not None else None
    held = note.count if note is not None and note.listener is listener else 0
    return JsonResponse({"held": held})
