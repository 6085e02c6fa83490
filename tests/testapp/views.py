"""Views that write, for the audit-context tests."""

import asyncio

from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt

from livedata.demo.bookstore.models import Author


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
