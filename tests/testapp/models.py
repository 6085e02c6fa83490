"""Models that exercise capture beyond the demo's: non-integer keys, JSON, no capture."""

import uuid

from django.db import models

import livedata


@livedata.track
class Widget(models.Model):
    code = models.CharField(primary_key=True, max_length=40)
    data = models.JSONField(default=dict)
    price = models.DecimalField(max_digits=10, decimal_places=2, default=0)


class Gadget(models.Model):
    """Captured through settings: LIVEDATA["TRACK"]."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4)
    name = models.CharField(max_length=100)


class Note(models.Model):
    """Not captured: its changes must never reach the log."""

    text = models.TextField()


class BookCopy(models.Model):
    """A local copy of the demo's books, kept by ``livedata mirror`` in the pull tests."""

    id = models.BigIntegerField(primary_key=True)
    title = models.CharField(max_length=200)
    author_id = models.BigIntegerField()


@livedata.track
class Loan(models.Model):
    """A book lent to a reader, after an earlier loan: queries joining two hops (loan →
    book → author) and a nullable relation to itself (tests/livequery/test_joins.py)."""

    #: no database constraint: tests TRUNCATE the books (the ORM still cascades deletes)
    book = models.ForeignKey(
        "livedata_demo.Book", on_delete=models.CASCADE, related_name="+", db_constraint=False
    )
    reader = models.CharField(max_length=100)
    previous = models.ForeignKey("self", null=True, on_delete=models.SET_NULL, related_name="+")
