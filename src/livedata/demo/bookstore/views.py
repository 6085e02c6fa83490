from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from livedata.demo.bookstore.models import Author, Book


def index(request: HttpRequest) -> HttpResponse:
    """The live books page: a DDP client in the browser (ddp.js) subscribed to AllBooks."""
    return render(
        request,
        "bookstore/index.html",
        {
            "books": Book.objects.select_related("author"),
            "authors": Author.objects.all(),
        },
    )
