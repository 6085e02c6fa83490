"""The bookstore's DDP API (discovered at start-up, like django-ddp's ``ddp.py``)."""

from __future__ import annotations

from livedata.ddp.errors import DDPError
from livedata.demo.bookstore.models import Author, Book
from livedata.publish.methods import MethodCall, method


@method(name="addBook")
def add_book(call: MethodCall, title: str, author_email: str) -> str:
    """Add a book by an existing author; returns its id."""
    if not isinstance(title, str) or not title.strip() or len(title) > 200:
        raise DDPError(400, "title must be a non-empty string of at most 200 characters")
    author = Author.objects.filter(email=author_email).first()
    if author is None:
        raise DDPError(404, f"No author with email {author_email!r}")
    return str(Book.objects.create(title=title.strip(), author=author).pk)


@method
def hello(call: MethodCall, name: str = "world") -> str:
    return f"hello {name}"
