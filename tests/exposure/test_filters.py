"""One exposure model: webhooks and the pull feed refuse the same mistakes in the same words.

Each mistake is given to both channels' parsers (a webhook ``Selection`` from JSON, a
pull ``parse`` from a query string) on one ``livedata_demo.book`` Collection, with real
Django models; the texts must be equal, so neither channel can drift from the
shared checks in ``livedata.exposure``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.http import QueryDict

from livedata.api import API, Collection
from livedata.demo.bookstore.models import Book
from livedata.exposure import SECRET_FIELDS
from livedata.exposure.collection import ExposureError, narrow, published_columns
from livedata.exposure.filters import NotAFilter, check_lookup, compile_filter, filterable
from livedata.httpapi import ApiError
from livedata.pull import spec
from livedata.webhooks.selection import Selection, SelectionError

pytestmark = pytest.mark.django_db

LABEL = "livedata_demo.book"


class Books(Collection):
    model = Book
    exclude = ["added_by"]
    webhooks = True
    pull = True
    filters = ["author", "title", "id"]


@pytest.fixture(autouse=True)
def books() -> Iterator[None]:
    saved = dict(API.collections)
    API.register([Books])
    yield
    API.collections.clear()
    API.collections.update(saved)


def webhook_error(**body: Any) -> SelectionError:
    with pytest.raises(SelectionError) as caught:
        Selection([LABEL], **body)
    return caught.value


def pull_error(query: str) -> ApiError:
    with pytest.raises(ApiError) as caught:
        spec.parse(LABEL, QueryDict("offset=-1&" + query))
    return caught.value


@pytest.mark.parametrize(
    ("json_filter", "query", "text"),
    [
        ({"author__in": ["1", "x"]}, "author__in=1,x", "'x' is not a valid author"),
        ({"author__in": []}, "author__in=", "at least one value"),
        ({"title__range": ["a"]}, "title__range=a", "two values"),
        ({"title__isnull": "maybe"}, "title__isnull=maybe", "__isnull needs true or false"),
        ({"author__name": "x"}, "author__name=x", "own columns"),
        ({"title__regex": "x"}, "title__regex=x", "cannot be followed live"),
        ({"id": str(10**30)}, f"id={10**30}", "can match no row"),  # past bigint
    ],
)
def test_a_filter_mistake_reads_the_same_on_both_channels(
    json_filter: dict[str, Any], query: str, text: str
) -> None:
    hook = webhook_error(filter=json_filter)
    pulled = pull_error(query)
    assert hook.field == "filter" and pulled.status == 400
    assert text in hook.message
    assert hook.message == pulled.message


def test_a_field_that_is_not_exposed_reads_the_same_on_both_channels() -> None:
    hook = webhook_error(fields=["title", "added_by"])  # excluded by the demo's Book
    pulled = pull_error("fields=title,added_by")
    assert hook.field == "fields" and pulled.field == "fields"
    assert "not an exposed field of livedata_demo.book: added_by" in hook.message
    assert hook.message == pulled.message


def test_a_filter_on_a_field_not_listed_names_what_is_allowed() -> None:
    hook = webhook_error(filter={"added_by": 3})
    pulled = pull_error("added_by=3")
    assert "filters allowed on: author, author_id, id, title" in hook.message
    # every query parameter that is not the protocol's is a filter: pull says both
    assert "not a parameter of the feed nor an allowed filter" in pulled.message
    assert pulled.field == "added_by"


def test_secrets_are_never_filterable_even_when_listed() -> None:
    class Users(Collection):
        model = User
        filters = ["password", "username"]

    assert "password" in SECRET_FIELDS
    assert filterable(Users) == {"username"}
    with pytest.raises(NotAFilter) as caught:
        check_lookup(Users, "password__startswith", "pbkdf2")
    assert caught.value.key == "password__startswith"
    assert "filters allowed on: username" in caught.value.message
    assert compile_filter(Users, {"username": "ann"}) is not None


def test_narrowing_keeps_the_key_and_model_order() -> None:
    class Users(Collection):
        model = User
        rename = {"username": "name"}

    columns = published_columns(Users)
    assert columns[0].pk and columns[0].published == "id"
    assert "password" not in [c.published for c in columns]
    assert [c.published for c in narrow(Users, ["email", "name"])] == ["id", "name", "email"]
    with pytest.raises(ExposureError) as caught:
        narrow(Users, ["password", 5])
    assert caught.value.part == "fields"
    assert "not an exposed field of auth.user: password, 5" in caught.value.message


def test_a_foreign_key_goes_by_either_name_in_fields_and_filters() -> None:
    # issue 16: filters said `author`, fields `author_id`; both work in both places now
    for name in ("author", "author_id"):
        selection = Selection([LABEL], fields={LABEL: [name]}, filter={name: 1})
        assert selection.models[LABEL].keep == frozenset({"id", "author_id"})
        assert selection.models[LABEL].matcher is not None
        pulled = spec.parse(LABEL, QueryDict(f"offset=-1&fields={name}&{name}__in=1,2"))
        assert [c.published for c in pulled.columns] == ["id", "author_id"]
    assert (
        spec.parse(LABEL, QueryDict("offset=-1&fields=author")).params_digest()
        == spec.parse(LABEL, QueryDict("offset=-1&fields=author_id")).params_digest()
    )


def test_a_field_mistake_names_the_forms_expected() -> None:
    hook = webhook_error(fields=["auther"])
    assert hook.message == (
        "not an exposed field of livedata_demo.book: auther"
        " (exposed: id, title, author_id (or author))"
    )

    class Renamed(Collection):
        model = Book
        rename = {"author": "writer"}

    with pytest.raises(ExposureError) as caught:
        narrow(Renamed, ["author_id"])
    assert "author_id (published as writer)" in caught.value.message
    assert [c.published for c in narrow(Renamed, ["writer"])] == ["id", "writer"]


def test_a_collection_naming_no_field_is_a_system_check_error() -> None:
    from livedata.checks import collections_name_fields

    class Typo(Collection):
        model = Book
        exclude = ["added_by_id", "notes"]
        filters = ["author"]

    assert collections_name_fields() == []
    API.register([Typo])
    [error] = collections_name_fields()
    assert error.id == "livedata.E008"
    assert error.msg.startswith(
        "Typo.exclude names 'notes', which is not a field of livedata_demo.Book"
    )
    assert "author or author_id" in error.msg
