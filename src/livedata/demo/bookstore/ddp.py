"""The bookstore's DDP API, discovered at start-up like django-ddp's ``ddp.py``.

The collections and publications are the seed's, unchanged but for the import line.
"""

from __future__ import annotations

from livedata.api import API, Collection, DDPError, MethodCall, Publication, method
from livedata.demo.bookstore import models


class Book(Collection):
    model = models.Book
    exclude = ["added_by"]  # who added what is the user's business (see MyBooks)
    pull = True  # services may pull the books, then their changes (livedata.pull)
    webhooks = True  # services may subscribe to book changes (livedata.webhooks)
    filters = ["author", "title"]


class Author(Collection):
    model = models.Author
    pull = True
    webhooks = True
    filters = ["email", "name"]


class AllBooks(Publication):
    queries = [
        models.Author.objects.all(),
        models.Book.objects.all(),
    ]


class BooksByAuthorEmail(Publication):
    def get_queries(self, author_email):
        return [
            models.Author.objects.filter(email=author_email),
            models.Book.objects.filter(author__email=author_email),
        ]


class BooksOfAuthor(Publication):
    """Books of one author by id: a filter on the book's own column, matched in memory."""

    def get_queries(self, author_id):
        if not isinstance(author_id, int | str):
            raise DDPError(400, "author_id must be an id")
        return [models.Book.objects.filter(author_id=author_id)]


class LatestBooks(Publication):
    """Top-N: the newest ``count`` books, kept so as books come and go."""

    def get_queries(self, count=10):
        if not isinstance(count, int) or not 0 < count <= 100:
            raise DDPError(400, "count must be an integer from 1 to 100")
        return [models.Book.objects.order_by("-id")[:count]]


class MyBooks(Publication):
    """The books the logged-in user added (none when anonymous): per user, live."""

    def get_queries(self):
        if not self.user.is_authenticated:
            return []
        return [models.Book.objects.filter(added_by=self.user)]


API.register([Book, Author, AllBooks, BooksByAuthorEmail, BooksOfAuthor, LatestBooks, MyBooks])


#: How fast one user, and one client address, may add books (issue 19: an anonymous
#: client added 660 in 10 s). Counted per user and per address, as Meteor's
#: DDPRateLimiter rules would be.
ADD_BOOK_LIMITS = [
    {"per": "user", "calls": 10, "seconds": 10},
    {"per": "client_address", "calls": 30, "seconds": 10},
]


@method(name="addBook", login_required=True, rate_limits=ADD_BOOK_LIMITS)
def add_book(call: MethodCall, title: str, author_email: str) -> str:
    """Add a book by an existing author, as the logged-in caller; returns its id."""
    if not isinstance(title, str) or not title.strip() or len(title) > 200:
        raise DDPError(400, "title must be a non-empty string of at most 200 characters")
    author = models.Author.objects.filter(email=author_email).first()
    if author is None:
        raise DDPError(404, f"No author with email {author_email!r}")
    return str(
        models.Book.objects.create(title=title.strip(), author=author, added_by=call.user).pk
    )


@method
def hello(call: MethodCall, name: str = "world") -> str:
    return f"hello {name}"
