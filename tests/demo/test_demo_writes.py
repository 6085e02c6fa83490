"""The demo's writes over DDP (issue 19, finding 17: an anonymous client added 660 books
in 10 s): ``addBook`` needs a login and is rate limited per user and per address, with
the declarative ``@method(rate_limits=...)`` rules."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User

from livedata.demo.bookstore.ddp import ADD_BOOK_LIMITS
from livedata.demo.bookstore.models import Author, Book
from tests.accounts.test_ddp_login import connected, digest, login, result_of

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def janet() -> Author:
    return Author.objects.create(name="Janet Evanovich", email="janet@evanovich.com")


def add(c, method_id: str, title: str) -> dict:
    return result_of(c.call(method_id, "addBook", title, "janet@evanovich.com"), method_id)


def test_anonymous_clients_cannot_add_books(server, janet) -> None:
    c = connected(server)
    answers = [add(c, f"a{i}", f"Spam {i}") for i in range(20)]
    assert all(a["error"]["error"] in (403, "too-many-requests") for a in answers), answers
    assert answers[0]["error"]["reason"] == "You must be logged in"
    assert not Book.objects.exists()
    c.send({"msg": "ping", "id": "p"})
    assert c.recv() == {"msg": "pong", "id": "p"}  # the connection still serves
    c.close()


def test_a_logged_in_user_adds_books_at_a_bounded_rate(server, janet) -> None:
    User.objects.create_user("demo", "demo@example.com", "demo-password")
    per_user = next(r["calls"] for r in ADD_BOOK_LIMITS if r["per"] == "user")
    c = connected(server)
    result, _ = login(c, "l", {"user": {"username": "demo"}, "password": digest("demo-password")})
    assert "error" not in result, result
    answers = [add(c, f"b{i}", f"Book {i}") for i in range(per_user + 5)]
    assert all("result" in a for a in answers[:per_user]), answers[:per_user]
    refused = answers[per_user:]
    assert all(a["error"]["error"] == "too-many-requests" for a in refused), refused
    assert refused[0]["error"]["details"]["timeToReset"] > 0
    assert Book.objects.count() == per_user
    assert set(Book.objects.values_list("added_by__username", flat=True)) == {"demo"}
    # another connection of the same user shares the user's budget
    other = connected(server)
    login(other, "l", {"user": {"username": "demo"}, "password": digest("demo-password")})
    assert add(other, "c", "Still too fast")["error"]["error"] == "too-many-requests"
    c.close()
    other.close()


def test_a_method_declares_its_own_rate_limit(server) -> None:
    # tests/testapp: @method(name="test.limited", rate_limits={"per": "connection", ...: 3})
    c = connected(server)
    answers = [result_of(c.call(str(i), "test.limited"), str(i)) for i in range(5)]
    assert [a.get("result") for a in answers[:3]] == ["ok"] * 3
    assert [a["error"]["error"] for a in answers[3:]] == ["too-many-requests"] * 2
    fresh = connected(server)  # per connection: another has its own budget
    assert result_of(fresh.call("x", "test.limited"), "x")["result"] == "ok"
    c.close()
    fresh.close()
