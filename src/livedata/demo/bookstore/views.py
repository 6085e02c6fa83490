from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from livedata.conf import livedata_settings
from livedata.demo.bookstore.models import Author, Book


def index(request: HttpRequest) -> HttpResponse:
    """The live books page: a DDP client in the browser (ddp.js) subscribed to AllBooks."""
    return render(
        request,
        "bookstore/index.html",
        {
            "books": Book.objects.select_related("author"),
            "authors": Author.objects.all(),
            # where DDP is served (LIVEDATA["DDP_PATH_PREFIX"])
            "ddp_prefix": livedata_settings().DDP_PATH_PREFIX.rstrip("/"),
        },
    )
