"""django-ddp's API surface: collections' fields, publications' parameters, decorator form."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User

from livedata.api import API, Collection, Publication, publish
from livedata.ddp.errors import DDPError
from livedata.demo.bookstore.models import Author, Book
from tests.testapp.models import Widget


def test_collection_fields_rename_exclude_and_secrets():
    class Users(Collection):
        model = User
        exclude = ["email"]
        rename = {"username": "name"}

    published = [name for _, name, _ in Users.columns()]
    assert "password" not in published and "email" not in published
    assert "name" in published and "username" not in published
    assert Users.name() == "auth.user"

    class Books(Collection):
        model = Book
        fields = ["title"]

    assert [(attname, name) for attname, name, _ in Books.columns()] == [("title", "title")]

    class Widgets(Collection):
        model = Widget

    # the primary key is the document id, not a field; foreign keys publish as <name>_id
    assert [name for _, name, _ in Widgets.columns()] == ["data", "price"]


def test_parameters_are_validated_against_get_queries():
    class ByTitle(Publication):
        def get_queries(self, title, limit=10):
            return [Book.objects.filter(title=title)[:limit]]

    pub = ByTitle()
    assert len(pub.resolve(["x"])) == 1
    with pytest.raises(DDPError) as error:
        pub.resolve([])
    assert (error.value.error, error.value.reason) == (400, "Match failed")
    with pytest.raises(DDPError):
        pub.resolve(["x", 1, 2])


def test_static_queries_are_cloned_per_subscription():
    class Everything(Publication):
        queries = [Book.objects.all()]

    first, second = Everything().resolve([]), Everything().resolve([])
    assert first[0] is not second[0] and first[0] is not Everything.queries[0]


def test_a_publication_with_static_queries_takes_no_parameters():
    """Issue 19: AllBooks subscribed with junk params [0], [1]... started one observer (a
    copy of every book) per param: 200 of them took the server from 194 to 735 MB."""

    class Everything(Publication):
        queries = [Book.objects.all()]

    assert len(Everything().resolve([])) == 1
    for junk in ([0], [None], ["x", 1]):
        with pytest.raises(DDPError) as error:
            Everything().resolve(junk)
        assert (error.value.error, error.value.reason) == (400, "Match failed")
        assert "takes no parameters" in error.value.details


def test_publish_decorator_registers_a_publication():
    @publish(name="test.booksTitled")
    def books_titled(pub, title):
        return [Book.objects.filter(title=title)]

    cls = API.publications["test.booksTitled"]
    assert [str(q.query) for q in cls().resolve(["A"])] == [
        str(Book.objects.filter(title="A").query)
    ]
    with pytest.raises(DDPError):
        cls().resolve([])
    del API.publications["test.booksTitled"]


def test_exposure_to_services_is_explicit_and_shapes_log_rows():
    class Books(Collection):
        model = Book
        exclude = ["title"]
        rename = {"author": "writer"}
        pull = True

    class Authors(Collection):  # says nothing: exposed to DDP only
        model = Author

    saved = API.collections.get("livedata_demo.book"), API.collections.get("livedata_demo.author")
    try:
        API.register([Books, Authors])
        assert API.exposed("livedata_demo.book", "pull") is Books
        assert API.exposed("livedata_demo.book", "webhooks") is None  # not said: not exposed
        assert API.exposed("livedata_demo.author", "pull") is None
        row = {"id": 7, "title": "secret", "author_id": 3}
        assert Books.shape(row) == {"id": 7, "writer": 3}
        assert Books.shape(None) is None
    finally:  # the registrations of the demo's ddp.py (whatever ran before)
        for label, collection in zip(
            ("livedata_demo.book", "livedata_demo.author"), saved, strict=True
        ):
            if collection is None:
                API.collections.pop(label, None)
            else:
                API.collections[label] = collection
