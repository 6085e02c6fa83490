"""Django permissions in publications and methods; settings that change the accounts."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth.models import Permission, User

from tests.accounts.test_ddp_login import connected, digest, login, result_of
from tests.server.conftest import _serve

pytestmark = pytest.mark.django_db(transaction=True)


def sub(c, sub_id: str, name: str) -> dict:
    c.send({"msg": "sub", "id": sub_id, "name": name, "params": []})
    return c.until(
        lambda m: m["msg"] in ("ready", "nosub") and sub_id in (m.get("subs") or [m.get("id")])
    )[-1]


def test_permissions_on_publications_and_methods(server):
    plain = User.objects.create_user("plain", password="pw")
    staff = User.objects.create_user("staff", password="pw")
    staff.user_permissions.add(
        *Permission.objects.filter(codename__in=["view_book", "change_book"])
    )
    anonymous = connected(server)
    assert sub(anonymous, "s", "Whoami")["error"]["reason"] == "You must be logged in"
    assert sub(anonymous, "t", "BooksForStaff")["error"]["error"] == 403
    assert result_of(anonymous.call("1", "test.staffOnly"), "1")["error"]["error"] == 403

    c = connected(server)
    login(c, "1", {"user": {"username": "plain"}, "password": digest("pw")})
    assert sub(c, "w", "Whoami") == {"msg": "ready", "subs": ["w"]}
    denied = sub(c, "s", "BooksForStaff")["error"]
    assert (denied["error"], denied["reason"]) == (403, "Permission denied")
    assert result_of(c.call("2", "test.staffOnly"), "2")["error"]["reason"] == "Permission denied"

    s = connected(server)
    login(s, "1", {"user": {"username": "staff"}, "password": digest("pw")})
    assert sub(s, "s", "BooksForStaff") == {"msg": "ready", "subs": ["s"]}
    assert result_of(s.call("2", "test.staffOnly"), "2")["result"] == "staff"
    # logging out re-runs the subscription: it now fails, and the client is told
    got = s.call("3", "logout")
    nosub = next(m for m in got if m["msg"] == "nosub")
    assert nosub["id"] == "s" and nosub["error"]["error"] == 403
    for client in (anonymous, c, s):
        client.close()
    assert plain.pk


@pytest.fixture
def strict_server(transactional_db):
    settings = {
        "ACCOUNTS_ALLOW_SIGNUP": False,
        "ACCOUNTS_AMBIGUOUS_ERRORS": False,
        "DDP_RATE_LIMITS": [{"methods": ["hello"], "per": "connection", "calls": 2, "seconds": 60}],
    }
    yield from _serve("1", LIVEDATA_SETTINGS=json.dumps(settings))


def test_signups_off_specific_errors_and_custom_rate_limits(strict_server):
    User.objects.create_user("demo", password="pw")
    c = connected(strict_server)
    refused = result_of(c.call("1", "createUser", {"username": "x", "password": digest("x")}), "1")
    assert refused["error"]["reason"] == "Signups forbidden"
    wrong, _ = login(c, "2", {"user": {"username": "demo"}, "password": digest("bad")})
    unknown, _ = login(c, "3", {"user": {"username": "nobody"}, "password": digest("bad")})
    assert (wrong["error"]["reason"], unknown["error"]["reason"]) == (
        "Incorrect password",
        "User not found",
    )
    # the rule set replaced Meteor's: logins are not limited here, hello is
    for i in range(6):
        login(c, f"l{i}", {"user": {"username": "demo"}, "password": digest("bad")})
    results = [result_of(c.call(f"h{i}", "hello"), f"h{i}") for i in range(3)]
    assert [r.get("result") for r in results[:2]] == ["hello world"] * 2
    assert results[2]["error"]["error"] == "too-many-requests"
    c.close()


def test_logout_other_clients(server):
    User.objects.create_user("demo", password="pw")
    a, b = connected(server), connected(server)
    first, _ = login(a, "1", {"user": {"username": "demo"}, "password": digest("pw")})
    login(b, "1", {"user": {"username": "demo"}, "password": digest("pw")})
    got = result_of(a.call("2", "logoutOtherClients"), "2")["result"]
    assert set(got) == {"token", "tokenExpires"} and got["token"] != first["result"]["token"]
    from websockets.exceptions import ConnectionClosed

    with pytest.raises(ConnectionClosed):
        b.until(lambda m: False, timeout=10)
    assert a.call("3", "hello")[-1]["result"] == "hello world"  # the caller stays in
    resumed, _ = login(connected(server), "1", {"resume": got["token"]})
    assert resumed["result"]["type"] == "resume"
