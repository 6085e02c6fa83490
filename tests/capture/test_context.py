"""The request context middleware stamps who and what request caused each change."""

from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import User
from django.db import connection
from django.test import AsyncClient, Client

import livedata

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def alice() -> User:
    return User.objects.create_user("alice", "alice@example.com", "pw")


def test_sync_view_autocommit_with_user_and_request_id(alice, head, read_since):
    client = Client(REMOTE_ADDR="10.1.2.3")
    client.force_login(alice)
    response = client.post("/t/write-sync/?email=s1@example.com", HTTP_X_REQUEST_ID="req-123")
    assert response.status_code == 200
    assert response["X-Request-ID"] == "req-123"
    [row] = read_since(head, models=["livedata_demo.author"])
    assert row.context == {
        "user_id": alice.pk,
        "username": "alice",
        "method": "POST",
        "path": "/t/write-sync/",
        "remote_addr": "10.1.2.3",
        "request_id": "req-123",
    }


def test_sync_view_inside_atomic_anonymous_generated_request_id(head, read_since):
    response = Client().get("/t/write-sync/?email=s2@example.com&atomic=1")
    rows = read_since(head, models=["livedata_demo.author"])
    assert [r.op for r in rows] == ["insert", "update"]
    generated = response["X-Request-ID"]
    assert len(generated) == 32
    for row in rows:
        assert row.context["request_id"] == generated
        assert "user_id" not in row.context and row.context["method"] == "GET"


def test_async_views_concurrently_never_mix_contexts(alice, head, read_since):
    bob = User.objects.create_user("bob", "bob@example.com", "pw")

    async def main() -> None:
        clients = []
        for user in (alice, bob):
            client = AsyncClient()
            await client.aforce_login(user)
            clients.append((user, client))
        requests = []
        for i in range(6):
            user, client = clients[i % 2]
            requests.append(
                client.get(
                    f"/t/write-async/?email=a{i}@example.com&sleep={0.05 * (6 - i)}",
                    headers={"X-Request-ID": f"r{i}-{user.username}"},
                )
            )
        responses = await asyncio.gather(*requests)
        assert all(r.status_code == 200 for r in responses)
        await sync_to_async(lambda: connection.close())()

    asyncio.run(main())
    rows = read_since(head, models=["livedata_demo.author"])
    assert len(rows) == 6
    for row in rows:
        i = int(row.new["email"][1])
        expected = "alice" if i % 2 == 0 else "bob"
        assert row.context["username"] == expected
        assert row.context["request_id"] == f"r{i}-{expected}"


def test_reads_are_not_touched_and_context_is_reset_after_request(head, read_since):
    Client().get("/t/write-sync/?email=s3@example.com")
    from livedata.demo.bookstore.models import Author

    Author.objects.filter(email="s3@example.com").update(name="outside")
    rows = read_since(head)
    assert rows[0].context["path"] == "/t/write-sync/"
    assert rows[1].context is None
    assert livedata.context  # importable from the package root


def test_history_of_an_object(alice, head):
    client = Client()
    client.force_login(alice)
    client.get("/t/write-sync/?email=h@example.com&atomic=1", HTTP_X_REQUEST_ID="h-1")
    from livedata.demo.bookstore.models import Author

    author = Author.objects.get(email="h@example.com")
    assert [c.op for c in livedata.history(author)] == ["insert", "update"]
    pk = author.pk
    with livedata.context(task="cleanup"):
        author.delete()
    with pytest.raises(ValueError, match="history\\(Model, pk\\)"):
        livedata.history(author)
    changes = list(livedata.history(Author, pk))
    assert [(c.op, (c.context or {}).get("username")) for c in changes] == [
        ("insert", "alice"),
        ("update", "alice"),
        ("delete", None),
    ]
    assert changes[1].changed == ["name"] and changes[2].context == {"task": "cleanup"}


def test_change_log_admin_filters(alice, head):
    admin = User.objects.create_superuser("root", "root@example.com", "pw")
    client = Client()
    client.force_login(alice)
    client.get("/t/write-sync/?email=adm@example.com", HTTP_X_REQUEST_ID="find-me")
    client.force_login(admin)
    base = "/admin/livedata/change/"
    page = client.get(base + "?context__request_id=find-me")
    assert page.status_code == 200
    assert page.content.count(b'class="field-who">alice<') == 1
    assert b'class="field-who">' not in client.get(base + "?context__username=nobody").content
    assert client.get(base + "?model=livedata_demo.author&op=insert").status_code == 200
    assert client.get(base + "?q=alice").status_code == 200
    from livedata.models import Change

    change = Change.objects.filter(context__request_id="find-me").get()
    detail = client.get(f"{base}{change.pk}/change/")
    assert detail.status_code == 200 and b"adm@example.com" in detail.content
    assert client.post(f"{base}{change.pk}/delete/").status_code == 403
