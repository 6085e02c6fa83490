"""DDP methods used by the server tests (discovered like any app's ddp.py)."""

from __future__ import annotations

import asyncio
import os
import time

from django.core.exceptions import PermissionDenied, ValidationError

from livedata.api import API, Collection, DDPError, Publication, method
from livedata.demo.bookstore.models import Book
from tests.testapp.models import Gadget, Note


@method(name="test.echo")
def echo(call, *args):
    return {"args": list(args), "seed": call.random_seed, "session": call.connection.id}


@method(name="test.pid")
def pid(call):
    """The serving process's id: which ``--workers`` process this connection reached."""
    return os.getpid()


@method(name="test.fail")
def fail(call, kind: str):
    if kind == "ddp":
        raise DDPError("custom-code", "You asked for it", {"why": "test"})
    if kind == "validation":
        raise ValidationError({"title": ["This field is required."]})
    if kind == "permission":
        raise PermissionDenied("Not yours")
    raise RuntimeError("secret internal detail")


@method(name="test.writeNote")
def write_note(call, text: str):
    return Note.objects.create(text=text).pk


@method(name="test.rollback")
def rollback(call, text: str):
    Note.objects.create(text=text)
    raise DDPError(409, "rolled back")


@method(name="test.sleep")
async def sleep(call, seconds: float):
    await asyncio.sleep(seconds)
    return seconds


@method(name="test.big")
def big(call, size: int):
    return "x" * size


class BooksForStaff(Publication):
    """Only for users with Django's view permission on books."""

    permission_required = "livedata_demo.view_book"
    queries = [Book.objects.all()]


class Whoami(Publication):
    login_required = True

    def get_queries(self):
        return [Book.objects.filter(added_by=self.user)]


class BooksAfterTitle(Publication):
    """Books whose title sorts after ``title``: text ordering is PostgreSQL's collation,
    so each observer re-queries on every book change (tests of what re-queries cost)."""

    def get_queries(self, title):
        return [Book.objects.filter(title__gt=title)]


API.register([BooksForStaff, Whoami, BooksAfterTitle])


@method(name="test.staffOnly", permission_required="livedata_demo.change_book")
def staff_only(call):
    return call.user.get_username()


class AuditedGadget(Collection):
    """Exposed to webhooks with its audit context (for owners allowed to see it)."""

    model = Gadget
    webhooks = True
    audit_context = True


API.register([AuditedGadget])


@method(name="test.addBook")
def add_book(call, title: str, author_email: str):
    """A write for the protocol tests: the demo's ``addBook`` without its login
    requirement and rate limits (which tests/demo and tests/accounts exercise)."""
    from livedata.demo.bookstore.models import Author

    if not isinstance(title, str) or not title.strip():
        raise DDPError(400, "title must be a non-empty string of at most 200 characters")
    author = Author.objects.filter(email=author_email).first()
    if author is None:
        raise DDPError(404, f"No author with email {author_email!r}")
    return str(Book.objects.create(title=title.strip(), author=author).pk)


@method(name="test.addBookAsync")
async def add_book_async(call, title: str, author_email: str):
    """``test.addBook`` as an async method: its ORM call runs in a thread of its own."""
    from asgiref.sync import sync_to_async

    return await sync_to_async(add_book)(call, title, author_email)


@method(name="test.limited", rate_limits={"per": "connection", "calls": 3, "seconds": 60})
def limited(call):
    return "ok"


class SlowBooks(Publication):
    """Every book, its observer built ``seconds`` late (a slow initial query: the
    admission tests); ``tag`` makes distinct observers."""

    def get_queries(self, seconds, tag):
        time.sleep(seconds)
        return [Book.objects.all()]


API.register([SlowBooks])
