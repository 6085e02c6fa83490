"""How an observer refreshes its queries agrees with the database, in memory or queried."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest
from django.db.models import JSONField, Q, Value

from livedata.api import API, Collection, Publication
from livedata.capture import log
from livedata.demo.bookstore.models import Author, Book
from livedata.exposure.matching import compile_matcher
from livedata.livequery.observer import QueryObserver
from tests.testapp.models import Gadget, Widget

pytestmark = pytest.mark.django_db(transaction=True)


class BookC(Collection):
    model = Book


class AuthorC(Collection):
    model = Author


class WidgetC(Collection):
    model = Widget


class GadgetC(Collection):
    model = Gadget


API.register([BookC, AuthorC, WidgetC, GadgetC])


def querysets(a1: Author, g1: Gadget) -> dict[str, tuple[object, bool]]:
    """name → (queryset, matched in memory?)"""
    return {
        "startswith": (Book.objects.filter(title__startswith="A"), True),
        "exclude icontains": (Book.objects.exclude(title__icontains="x"), True),
        "or": (Author.objects.filter(Q(name="a") | Q(email__endswith="@x.com")), True),
        "fk exact": (Book.objects.filter(author=a1), True),
        "in + range": (Book.objects.filter(id__in=[1, 2, 3, 50], id__range=(1, 40)), True),
        "decimal + json isnull": (
            Widget.objects.filter(price__gte=Decimal("5.00"), data__isnull=False),
            True,
        ),
        "json exact, excluded": (Widget.objects.exclude(data={"a": 1}), True),
        "uuid in": (Gadget.objects.filter(id__in=[g1.id, uuid.uuid4()]), True),
        "not (a and b)": (Book.objects.exclude(Q(title="B") & Q(author=a1)), True),
        "join": (Book.objects.filter(author__email="a1@x.com"), True),
        "text ordering": (Book.objects.filter(title__gt="M"), False),
        "sliced": (Book.objects.order_by("-id")[:3], False),
    }


def test_refresh_matches_the_database_with_and_without_queries(head, read_since):
    a1 = Author.objects.create(name="a", email="a1@x.com")
    a2 = Author.objects.create(name="b", email="b2@y.com")
    g1 = Gadget.objects.create(name="g1")
    observers = {}
    for name, (qs, in_memory) in querysets(a1, g1).items():
        q = QueryObserver.build(qs, Publication())
        assert (q.matcher is not None) == in_memory, name
        q.docs = q.fetch()
        observers[name] = q
    from django.db import connection

    steps = [
        lambda: Book.objects.create(title="Alpha", author=a1),
        lambda: Book.objects.create(title="Xylophone", author=a2),
        lambda: Book.objects.create(title="B", author=a1),
        lambda: Book.objects.filter(title="Alpha").update(title="Max"),
        lambda: Book.objects.filter(title="B").update(author=a2),
        lambda: Author.objects.filter(pk=a2.pk).update(email="z@x.com", name="a"),
        lambda: Widget.objects.create(code="w1", price=Decimal("10"), data={"k": [1, 2.5]}),
        lambda: Widget.objects.create(code="w2", price=Decimal("4.99"), data={}),
        lambda: Widget.objects.filter(code="w2").update(price=Decimal("5.00")),
        lambda: Widget.objects.filter(code="w1").update(data=Value(None, JSONField())),
        lambda: Widget.objects.filter(code="w2").update(data={"a": 1}),
        lambda: Gadget.objects.filter(pk=g1.pk).update(name="g1!"),
        lambda: Book.objects.filter(title="Xylophone").delete(),
        lambda: Author.objects.filter(pk=a1.pk).update(email="a1@x.com.au"),
    ]
    for step in steps:
        before = log.head(connection)
        step()
        rows = read_since(before)
        for name, q in observers.items():
            q.refresh(rows)
            assert q.docs == q.fetch(), f"{name} diverged after {step}"
    for name, q in observers.items():
        if q.matcher is not None and q.plan is None:
            assert q.queried == 0, name  # never touched the database
    # the join: a query only for the two authors' email changes, of their keys alone
    assert observers["join"].queried == 2
    assert observers["decimal + json isnull"].docs["w2"]["price"] == Decimal("5.00")


def test_three_valued_logic_of_nulls():
    matcher = compile_matcher(Book.objects.exclude(title="x"))
    assert matcher is not None
    # NULL = 'x' is unknown in SQL, and so is its negation: the row is in neither result
    assert matcher({"id": 1, "title": None, "author_id": 1}) is None
    assert matcher({"id": 1, "title": "y", "author_id": 1}) is True
    assert compile_matcher(Widget.objects.filter(data__has_key="a")) is None


def test_in_memory_matching_keeps_a_rows_latest_write_when_txids_disagree(
    head, read_since, connect
):
    """T1 takes the lower xid, T2 updates the row and commits, then T1 updates it too (it
    read T2's value). The log is read in commit order, so T2's write comes first; the
    in-memory path must end with T1's value, as the table does, also when fed the other
    way round (as livedata 0.1's (txid, id) order had it) or cut between the two."""
    author = Author.objects.create(name="a", email="a@x.com")
    book = Book.objects.create(title="A", author=author)
    q = QueryObserver.build(Book.objects.filter(author=author), Publication())
    assert q.matcher is not None
    q.docs = q.fetch()
    t1, t2 = connect(autocommit=False), connect(autocommit=False)
    t1.execute("SELECT pg_current_xact_id()")  # T1's xid now: the lower one
    t2.execute("SELECT pg_current_xact_id()")
    t2.execute("UPDATE livedata_demo_book SET title = 'B' WHERE id = %s", [book.pk])
    t2.commit()
    t1.execute("UPDATE livedata_demo_book SET title = 'C' WHERE id = %s", [book.pk])
    t1.commit()
    rows = read_since(head)
    rows = [r for r in rows if r.model == "livedata_demo.book" and r.op == "update"]
    assert [r.new["title"] for r in rows] == ["B", "C"]  # commit order: write order here
    reverse = rows[::-1]
    for batches in ([rows], [[rows[0]], [rows[1]]], [reverse], [[reverse[0]], [reverse[1]]]):
        q.docs = {str(book.pk): {"title": "A", "author_id": author.pk}}
        q.recent_writes = ({}, {})
        for batch in batches:
            q.refresh(batch)
        assert q.docs[str(book.pk)]["title"] == "C", batches
    assert q.queried == 0


def test_only_keys_whose_values_compare_exactly_are_routed():
    """``Widget.objects.filter(price=5)`` was routed by ``Decimal('5')`` while its rows
    read ``Decimal('5.00')`` from the log: such an observer never received a change.
    Decimals, floats and aware datetimes are not routed on now (every change of the model
    reaches the observer, matched in memory); integers, text, keys are."""
    from livedata.exposure.matching import route_key

    assert route_key(Widget.objects.filter(price=5)) is None
    assert route_key(Book.objects.filter(title="x")) is not None
    assert route_key(Book.objects.filter(author_id=5)) is not None
