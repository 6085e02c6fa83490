"""A page of another (allowed) site must not act with the browser's Django session."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client as DjangoClient

from livedata.demo.bookstore.models import Author, Book
from tests.accounts.test_ddp_login import connected
from tests.server.conftest import _serve

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def any_origin_server(transactional_db):
    yield from _serve("1", LIVEDATA_SETTINGS='{"DDP_ALLOWED_ORIGINS": ["*"]}')


def _my_books(c) -> list[str]:
    """Ids of the books MyBooks sends ``c`` before it is ready."""
    c.send({"msg": "sub", "id": "my", "name": "MyBooks", "params": []})
    got = c.until(lambda m: m["msg"] in ("ready", "nosub"))
    assert got[-1] == {"msg": "ready", "subs": ["my"]}
    return [m["id"] for m in got if m["msg"] == "added" and m["collection"] == "livedata_demo.book"]


def test_allowed_foreign_origin_is_not_logged_in_by_cookie(any_origin_server):
    user = User.objects.create_user("demo", "demo@example.com", "demo-password")
    author = Author.objects.create(name="A", email="a@example.com")
    book = Book.objects.create(title="Mine", author=author, added_by=user)
    browser = DjangoClient()
    browser.force_login(user)
    cookie = f"sessionid={browser.cookies['sessionid'].value}"
    # the same cookie from the server's own origin logs in: MyBooks has the user's book
    same = connected(
        any_origin_server,
        additional_headers={"Cookie": cookie, "Origin": f"http://{any_origin_server}"},
    )
    assert _my_books(same) == [str(book.pk)]
    same.close()

    c = connected(
        any_origin_server,
        additional_headers={"Cookie": cookie, "Origin": "http://evil.example"},
    )
    got = c.call("1", "hello")
    assert not any(m.get("collection") == "users" for m in got)
    assert _my_books(c) == []
    c.close()
