"""Join querysets matched in memory: random writes, and every observer equals the database.

The engine's own path is driven: each batch is applied to its shared join indexes, routed
(``Engine.route``), and each observer refreshes with only the rows routed to it. The
in-memory observers make no query unless a joined row changed in a column they read
(then one, for the affected keys only); the fallback ones (a reverse relation) re-query.
"""

from __future__ import annotations

import random
from types import SimpleNamespace

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.db.models import Q
from django.test.utils import CaptureQueriesContext

from livedata.api import API, Collection, Publication
from livedata.capture import log
from livedata.conf import livedata_settings
from livedata.demo.bookstore.models import Author, Book
from livedata.livequery.engine import Engine
from livedata.livequery.observer import Observer, QueryObserver
from tests.testapp.models import Loan

pytestmark = pytest.mark.django_db(transaction=True)


class LoanC(Collection):
    model = Loan


API.register([LoanC])

EMAILS = [f"e{i}@x.com" for i in range(8)]
NAMES = ["ann", "bob", "cat", "dan"]


def querysets() -> dict[str, tuple[object, bool, bool]]:
    """name → (queryset, matched in memory?, routed for every model it reads?)"""
    e0, e1 = EMAILS[0], EMAILS[1]
    return {
        "one hop": (Book.objects.filter(author__email=e0), True, True),
        "one hop, other": (Book.objects.filter(author__email=e1), True, True),
        "in": (Book.objects.filter(author__name__in=["ann", "bob"]), True, True),
        "two hops": (Loan.objects.filter(book__author__email=e0), True, True),
        "two hops, in": (Loan.objects.filter(book__author__name__in=["cat"]), True, True),
        "two hops, startswith": (
            Loan.objects.filter(book__author__name__startswith="d"),
            True,
            False,
        ),
        "isnull on a relation": (Loan.objects.filter(book__added_by__isnull=True), True, False),
        "isnull through an outer join": (
            Loan.objects.filter(previous__book__isnull=True),
            True,
            False,
        ),
        "three hops": (
            Loan.objects.filter(previous__book__author__name__in=["ann", "bob"]),
            True,
            True,
        ),
        "exclude": (Book.objects.exclude(author__email=e0), True, False),
        "or": (Book.objects.filter(Q(author__email=e1) | Q(title="t1")), True, False),
        "and own column": (
            Book.objects.filter(author__name="ann", title__startswith="t"),
            True,
            True,
        ),
        "reverse (fallback)": (Author.objects.filter(books__title="t2"), False, False),
    }


def engine() -> Engine:
    return Engine(SimpleNamespace(settings=livedata_settings()))  # type: ignore[arg-type]


def test_random_writes_through_join_querysets(read_since):
    rng = random.Random(14)
    user = get_user_model().objects.create(username="u")
    authors = [Author.objects.create(name=NAMES[i % 4], email=EMAILS[i]) for i in range(6)]
    for i in range(12):
        Book.objects.create(title=f"t{i % 4}", author=authors[i % 6])
    for i in range(8):
        Loan.objects.create(book=rng.choice(list(Book.objects.order_by("pk"))), reader=f"r{i}")

    eng = engine()
    observers: dict[str, Observer] = {}
    for name, (qs, in_memory, routed) in querysets().items():
        q = QueryObserver.build(qs, Publication(), eng.joins)
        assert (q.matcher is not None) == in_memory, name
        q.docs = q.fetch()
        observer = Observer(key=(name, "[]", None), queries=[q])
        assert all(observer.routes(label) is not None for label in q.dependencies) == routed, name
        eng.observers[observer.key] = observer
        eng._index(observer)
        observers[name] = observer

    def write() -> None:
        books, loans = list(Book.objects.order_by("pk")), list(Loan.objects.order_by("pk"))
        authors = list(Author.objects.order_by("pk"))
        choice = rng.randrange(24)
        if choice >= 14:  # mostly writes of the queried models' own rows
            choice = rng.choice([0, 1, 2, 3, 9, 10, 11])
        if choice == 0 or not books:
            Book.objects.create(title=f"t{rng.randrange(5)}", author=rng.choice(authors))
        elif choice == 1:
            Book.objects.filter(pk=rng.choice(books).pk).update(title=f"t{rng.randrange(5)}")
        elif choice == 2:
            Book.objects.filter(pk=rng.choice(books).pk).update(author=rng.choice(authors))
        elif choice == 3:
            Book.objects.filter(pk=rng.choice(books).pk).update(added_by=rng.choice([None, user]))
        elif choice == 4 and len(books) > 4:
            rng.choice(books).delete()
        elif choice == 5:
            free = [e for e in EMAILS if e not in {a.email for a in authors}]
            if free:
                Author.objects.filter(pk=rng.choice(authors).pk).update(email=rng.choice(free))
        elif choice == 6:
            Author.objects.filter(pk=rng.choice(authors).pk).update(name=rng.choice(NAMES))
        elif choice == 7:
            free = [e for e in EMAILS if e not in {a.email for a in authors}]
            if free:
                Author.objects.create(name=rng.choice(NAMES), email=rng.choice(free))
        elif choice == 8 and len(authors) > 3:
            rng.choice(authors).delete()  # its books and their loans go too
        elif choice == 9 or not loans:
            previous = rng.choice([None, *loans])
            Loan.objects.create(book=rng.choice(books), reader="r", previous=previous)
        elif choice == 10:
            Loan.objects.filter(pk=rng.choice(loans).pk).update(book=rng.choice(books))
        elif choice == 11:
            Loan.objects.filter(pk=rng.choice(loans).pk).update(previous=rng.choice([None, *loans]))
        elif choice == 12 and len(loans) > 3:
            rng.choice(loans).delete()
        else:
            Author.objects.filter(pk=rng.choice(authors).pk).update(
                name=rng.choice(NAMES), email=f"tmp{rng.randrange(10**6)}@x.com"
            )

    from django.db import transaction

    for batch in range(80):
        before = log.head(connection)
        for _ in range(rng.randrange(1, 5)):
            if rng.random() < 0.3:
                with transaction.atomic():
                    write()
                    write()
            else:
                write()
        rows = read_since(before)
        eng.joins.apply(rows)
        work = eng.route(rows)
        for name, observer in observers.items():
            q = observer.queries[0]
            mine = work.get(observer, [])
            allowed = 0 if q.in_memory_for(mine) else 1
            with CaptureQueriesContext(connection) as queries:
                q.refresh(mine)
            if q.matcher is not None:
                assert len(queries) <= allowed, (name, batch, queries.captured_queries)
            expected, _links = q._fetch(None)
            assert q.docs == expected, f"{name} diverged in batch {batch}"
    for name, observer in observers.items():
        q = observer.queries[0]
        if q.matcher is not None:
            assert q.in_memory > 0, name
    assert observers["reverse (fallback)"].queries[0].queried > 0


def test_a_book_change_reaches_only_its_authors_observers(read_since):
    """Routed by the joined key: 30 observers of BooksByAuthorEmail's book query, and a
    book's change reaches one; an author's email change the two of the old and new email;
    neither makes a query."""
    authors = [Author.objects.create(name=f"a{i}", email=f"a{i}@x.com") for i in range(30)]
    eng = engine()
    observers = []
    for a in authors:
        q = QueryObserver.build(
            Book.objects.filter(author__email=a.email), Publication(), eng.joins
        )
        q.docs = q.fetch()
        observer = Observer(key=(a.email, "[]", None), queries=[q])
        eng.observers[observer.key] = observer
        eng._index(observer)
        observers.append(observer)
    assert len(eng.joins.indexes) == 1  # one shared index of the authors' emails

    before = log.head(connection)
    book = Book.objects.create(title="x", author=authors[3])
    rows = read_since(before)
    eng.joins.apply(rows)
    work = eng.route(rows)
    assert set(work) == {observers[3]}
    with CaptureQueriesContext(connection) as queries:
        observers[3].queries[0].refresh(work[observers[3]])
    assert len(queries) == 0
    assert set(observers[3].queries[0].docs) == {str(book.pk)}

    before = log.head(connection)
    Author.objects.filter(pk=authors[3].pk).update(email="new@x.com")
    Author.objects.filter(pk=authors[5].pk).update(name="renamed")  # not a column read
    rows = read_since(before)
    eng.joins.apply(rows)
    work = eng.route(rows)
    assert set(work) == {observers[3], observers[5]}
    assert observers[5].in_memory_for(work[observers[5]])  # the name is not read: no query
    with CaptureQueriesContext(connection) as queries:
        observers[3].queries[0].refresh(work[observers[3]])
    assert len(queries) == 1  # the affected key only
    assert observers[3].queries[0].docs == {}

    for observer in observers:
        eng._maybe_drop(observer)
    assert eng.joins.indexes == {}  # the last observer gave the index back


def test_a_joined_model_too_large_to_index_falls_back_to_re_querying():
    """Over the index's row limit the query is re-queried as before, and what it took of
    the indexes (here the books', loaded before the authors' proved too large) is back."""
    from livedata.livequery.joins import JoinIndexes

    for i in range(3):
        Author.objects.create(name=f"a{i}", email=f"a{i}@x.com")
    joins = JoinIndexes(limit=2)
    qs = Loan.objects.filter(book__author__email="a0@x.com")
    q = QueryObserver.build(qs, Publication(), joins)
    assert q.matcher is None and q.plan is None
    assert joins.indexes == {} and joins.by_label == {}
