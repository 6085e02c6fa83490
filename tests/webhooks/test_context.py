"""The audit context reaches only receivers whose owner may see it (issue 19, finding 8).

A service with only ``view_book`` received the admin's username, user id, address and
request path in every delivery. The context is now sent only for models whose Collection
says ``audit_context = True``, and only to owners with ``livedata.view_change_context``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from django.contrib.auth.models import Permission, User

import livedata
from livedata.demo.bookstore.models import Author, Book
from livedata.publish.publication import API
from tests.testapp.ddp import AuditedGadget
from tests.testapp.models import Gadget
from tests.webhooks.conftest import subscribe

pytestmark = pytest.mark.django_db(transaction=True)

WHO = {
    "username": "admin",
    "user_id": 1,
    "remote_addr": "198.51.100.7",
    "path": "/admin/livedata_demo/book/add/",
}


@pytest.fixture
def audited() -> Iterator[None]:
    """The Collection the worker processes load from tests/testapp/ddp.py, here too
    (other test modules register their own for the same model)."""
    saved = API.collections.get("testapp.gadget")
    API.register([AuditedGadget])
    yield
    if saved is not None:
        API.collections["testapp.gadget"] = saved


def user_with(username: str, *codenames: str) -> User:
    user = User.objects.create_user(username, f"{username}@example.com", "pw")
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    return User.objects.get(pk=user.pk)


def contexts(receiver, path: str) -> list:
    return [json.loads(r.body)["data"]["context"] for r in receiver.requests if r.path == path]


def test_context_is_sent_only_where_exposed_and_permitted(
    svc, receiver, start_worker, audited
) -> None:
    boss = User.objects.create_superuser("boss", "boss@example.com", "pw")
    gadgets_only = user_with("gadgets", "view_gadget")
    auditor = user_with("auditor", "view_gadget", "view_change_context")
    subscribe(svc, "books", f"{receiver.url}/svc")  # svc: view_book, view_author only
    subscribe(boss, "books", f"{receiver.url}/boss")  # may see everything, but Book
    for owner in (gadgets_only, auditor):  # does not expose its context
        subscribe(owner, "g", f"{receiver.url}/{owner.username}", models=["testapp.gadget"])
    start_worker()
    with livedata.context(**WHO):
        author = Author.objects.create(name="A", email="a@example.com")
        Book.objects.create(title="Small Gods", author=author)
        Gadget.objects.create(name="sprocket")
    receiver.wait_for(4)
    assert contexts(receiver, "/hook/svc") == [None]
    assert contexts(receiver, "/hook/boss") == [None]
    assert contexts(receiver, "/hook/gadgets") == [None]
    [seen] = contexts(receiver, "/hook/auditor")
    assert {k: seen[k] for k in WHO} == WHO
    everything = b"".join(r.body for r in receiver.requests if r.path != "/hook/auditor")
    assert b"198.51.100.7" not in everything and b"/admin/" not in everything
