from django.http import HttpRequest, HttpResponse
from django.utils.html import escape

from livedata.demo.bookstore.models import Author


def index(request: HttpRequest) -> HttpResponse:
    """A plain page listing the catalogue; the admin at /admin/ edits it."""
    rows = []
    for author in Author.objects.prefetch_related("books"):
        titles = ", ".join(escape(b.title) for b in author.books.all())
        rows.append(
            f"<li><b>{escape(author.name)}</b> &lt;{escape(author.email)}&gt;: {titles}</li>"
        )
    html = (
        "<!doctype html><title>livedata bookstore</title><h1>livedata bookstore</h1>"
        f"<ul>{''.join(rows)}</ul><p><a href='/admin/'>admin</a> · "
        "<a href='/admin/livedata/change/'>change log</a></p>"
    )
    return HttpResponse(html)
