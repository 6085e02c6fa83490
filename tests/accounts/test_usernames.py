"""``createUser`` takes only usernames the user model accepts, and no lookalike of an
existing user (issue 19, finding 9). The penetration test got ``admin\\u200b``,
``admin`` with a Cyrillic a, ``" admin"`` and HTML accepted, and a 500 for a NUL."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth.models import User

from tests.accounts.test_ddp_login import AMBIGUOUS, connected, digest, login, result_of
from tests.server.conftest import _serve

pytestmark = pytest.mark.django_db(transaction=True)

REJECTED = [
    "admin\u200b",  # a zero-width space after it
    "\u202eadmin",  # a right-to-left override before it
    " admin",
    "admin\x00",
    "<b>admin</b>",
    "<script>alert(1)</script>",
    "ad min",
]
MIXED = ["\u0430dmin", "adm\u0456n", "\u03b1dmin"]  # Cyrillic a, Ukrainian i, Greek alpha
LOOKALIKES = [
    "\uff41\uff44\uff4d\uff49\uff4e",  # fullwidth: NFKC makes it "admin"
    "ADMIN",
    "\u0430\u0441\u0435",  # all Cyrillic, drawn like the Latin "ace"
]


@pytest.fixture
def signup_server(transactional_db: None) -> Iterator[str]:
    # no rate limits: these tests make many calls from one address on purpose
    settings = '{"DDP_RATE_LIMITS": [], "ACCOUNTS_ALLOW_SIGNUP": true}'
    yield from _serve("1", LIVEDATA_SETTINGS=settings)


def create(c: Any, method_id: str, username: str, **more: Any) -> dict:
    options = {"username": username, "password": digest("pw"), **more}
    return result_of(c.call(method_id, "createUser", options), method_id)


def test_usernames_the_user_model_rejects_get_400(signup_server):
    User.objects.create_user("admin", "admin@example.com", "admin-password")
    c = connected(signup_server)
    for i, username in enumerate(REJECTED):
        reply = create(c, str(i), username)
        assert reply["error"]["error"] == 400, (username, reply)
        assert reply["error"]["reason"].startswith("Invalid username"), (username, reply)
    for i, username in enumerate(MIXED):
        reply = create(c, f"m{i}", username)
        assert reply["error"]["error"] == 400, (username, reply)
        assert "script" in reply["error"]["reason"], (username, reply)
    # nothing was created, and the connection is still served
    assert list(User.objects.values_list("username", flat=True)) == ["admin"]
    assert c.call("x", "hello")[-1]["result"] == "hello world"
    c.close()


def test_lookalikes_of_existing_users_are_taken(signup_server):
    User.objects.create_user("admin", "admin@example.com", "admin-password")
    User.objects.create_user("ace", "ace@example.com", "ace-password")
    c = connected(signup_server)
    for i, username in enumerate(LOOKALIKES):
        reply = create(c, str(i), username)
        # Meteor's answer for a taken name (ambiguous by default)
        assert (reply["error"]["error"], reply["error"]["reason"]) == (403, AMBIGUOUS), reply
    assert User.objects.count() == 2
    c.close()


def test_good_usernames_are_stored_normalised(signup_server):
    c = connected(signup_server)
    good = ["bob", "jos\u00e9", "\u0438\u0432\u0430\u043d", "\u5c71\u7530\u592a\u90ce", "a.b-c+d@e"]
    for i, name in enumerate(good):
        reply = create(c, str(i), name)
        assert "result" in reply, (name, reply)
    decomposed = create(c, "d", "rene\u0301")  # e + combining acute: NFKC composes it
    assert "result" in decomposed, decomposed
    assert User.objects.filter(username="ren\u00e9").exists()
    options = {"user": {"username": "ren\u00e9"}, "password": digest("pw")}
    reply, _ = login(connected(signup_server), "1", options)
    assert "result" in reply, reply
    c.close()


def test_nul_anywhere_is_a_precise_error_not_a_500(signup_server):
    User.objects.create_user("admin", "admin@example.com", "admin-password")
    c = connected(signup_server)
    calls = [
        ("createUser", {"username": "ok", "email": "a\x00@example.com", "password": digest("x")}),
        ("createUser", {"username": "ok2", "password": digest("x"), "profile": {"name": "A\x00"}}),
        ("login", {"user": {"username": "admin\x00"}, "password": digest("x")}),
        ("login", {"user": {"email": "admin\x00@example.com"}, "password": digest("x")}),
        ("forgotPassword", {"email": "admin\x00@example.com"}),
    ]
    for i, (name, options) in enumerate(calls):
        reply = result_of(c.call(str(i), name, options), str(i))
        assert reply["error"]["error"] == 400, (name, reply)
    assert c.call("x", "hello")[-1]["result"] == "hello world"
    assert User.objects.count() == 1
    c.close()


def test_scripts_and_skeletons():
    from livedata.accounts import usernames

    assert usernames.scripts("admin") == {"LATIN"}
    assert usernames.scripts("\u0430dmin") == {"CYRILLIC", "LATIN"}
    assert usernames.scripts("bob_42.x@y") == {"LATIN"}
    assert usernames.scripts("\u5c71\u7530\u3072\u308d\u3057") == {"HAN", "HIRAGANA"}
    assert usernames.skeleton("\u0430\u0441\u0435") == "ace"
    assert usernames.skeleton("\u0438\u0432\u0430\u043d") is None  # not drawn like a Latin name
