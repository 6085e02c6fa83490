"""Meteor's accounts-password methods over a real server: login, tokens, users doc."""

from __future__ import annotations

import contextlib
import hashlib
import re
import time
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.test import Client as DjangoClient
from websockets.exceptions import ConnectionClosed

from livedata.accounts.models import LoginToken
from livedata.demo.bookstore.models import Author, Book
from tests.server.test_websocket import CONNECT, Client

pytestmark = pytest.mark.django_db(transaction=True)

AMBIGUOUS = "Something went wrong. Please check your credentials."


def digest(password: str) -> dict:
    return {"digest": hashlib.sha256(password.encode()).hexdigest(), "algorithm": "sha-256"}


def connected(server: str, **kwargs) -> Client:
    c = Client(server, **kwargs)
    assert c.recv() == {"server_id": "0"}
    c.send(CONNECT)
    assert c.recv()["msg"] == "connected"
    return c


def result_of(messages: list[dict], method_id: str) -> dict:
    return next(m for m in messages if m["msg"] == "result" and m["id"] == method_id)


def login(c: Client, method_id: str, options: dict) -> tuple[dict, list[dict]]:
    got = c.call(method_id, "login", options)
    return result_of(got, method_id), got


@pytest.fixture
def demo_user() -> User:
    user = User.objects.create_user("demo", "demo@example.com", "demo-password")
    user.first_name, user.last_name = "Demo", "User"
    user.save()
    return user


@pytest.fixture
def clients(accounts_server):
    opened: list[Client] = []

    def make(**kwargs) -> Client:
        c = connected(accounts_server, **kwargs)
        opened.append(c)
        return c

    yield make
    for c in opened:
        with contextlib.suppress(Exception):
            c.close()


def test_login_by_username_email_id_and_plaintext(clients, demo_user):
    c = clients()
    reply, got = login(c, "1", {"user": {"username": "demo"}, "password": digest("demo-password")})
    result = reply["result"]
    assert set(result) == {"id", "token", "tokenExpires", "type"}
    assert result["id"] == str(demo_user.pk) and result["type"] == "password"
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", result["token"])
    expires_days = (result["tokenExpires"]["$date"] / 1000 - time.time()) / 86400
    assert 89.9 < expires_days <= 90
    # the user's document arrives before the result (Meteor's client waits for it)
    users = [m for m in got if m.get("collection") == "users"]
    assert users == [
        {
            "msg": "added",
            "collection": "users",
            "id": str(demo_user.pk),
            "fields": {
                "username": "demo",
                "emails": [{"address": "demo@example.com", "verified": False}],
                "profile": {"name": "Demo User"},
            },
        }
    ]
    assert got.index(users[0]) < got.index(reply)
    stored = LoginToken.objects.get(user=demo_user)
    assert result["token"] not in stored.hashed_token and stored.kind == "resume"

    for i, options in enumerate(
        [
            {"user": {"email": "demo@example.com"}, "password": digest("demo-password")},
            {"user": {"email": "DEMO@example.com"}, "password": digest("demo-password")},
            {"user": {"id": str(demo_user.pk)}, "password": digest("demo-password")},
            {"user": {"username": "demo"}, "password": "demo-password"},  # plaintext form
        ]
    ):
        reply, _ = login(clients(), f"x{i}", options)
        assert reply["result"]["id"] == str(demo_user.pk), options


def test_wrong_password_and_unknown_user_get_one_answer(clients, demo_user):
    c = clients()
    wrong, _ = login(c, "1", {"user": {"username": "demo"}, "password": digest("nope")})
    unknown, _ = login(c, "2", {"user": {"username": "nobody"}, "password": digest("nope")})
    assert wrong["error"] == unknown["error"]
    assert wrong["error"] == {
        "isClientSafe": True,
        "error": 403,
        "reason": AMBIGUOUS,
        "message": f"{AMBIGUOUS} [403]",
        "errorType": "Meteor.Error",
    }
    assert not LoginToken.objects.exists()


@pytest.mark.parametrize(
    "params",
    [
        [],
        ["demo"],
        [{"user": {"username": "demo", "email": "demo@example.com"}, "password": "x"}],
        [{"user": {"username": "demo"}, "password": {"digest": "abc", "algorithm": "sha-256"}}],
        [{"user": {"username": "demo"}, "password": {"digest": "0" * 64, "algorithm": "md5"}}],
        [{"user": {"username": "demo"}, "password": "x", "srp": "y"}],
        [{"resume": 42}],
    ],
)
def test_malformed_login_is_400_match_failed(clients, demo_user, params):
    c = clients()
    c.send({"msg": "method", "id": "m", "method": "login", "params": params})
    reply = c.until(lambda m: m["msg"] == "result")[-1]
    assert (reply["error"]["error"], reply["error"]["reason"]) == (400, "Match failed")


def test_unrecognized_login_options(clients):
    reply, _ = login(clients(), "1", {"foo": 1})
    assert reply["error"]["reason"] == "Unrecognized options for login request"


def test_resume_logout_and_revoked_token(clients, demo_user):
    first = clients()
    reply, _ = login(
        first, "1", {"user": {"username": "demo"}, "password": digest("demo-password")}
    )
    token = reply["result"]["token"]

    second = clients()
    resumed, got = login(second, "1", {"resume": token})
    assert resumed["result"]["type"] == "resume" and resumed["result"]["token"] == token
    assert resumed["result"]["tokenExpires"] == reply["result"]["tokenExpires"]
    assert any(m.get("collection") == "users" and m["msg"] == "added" for m in got)

    got = first.call("2", "logout")
    assert {"msg": "removed", "collection": "users", "id": str(demo_user.pk)} in got
    assert not LoginToken.objects.filter(user=demo_user).exists()
    # Meteor closes the other connections logged in with the deleted token
    with pytest.raises(ConnectionClosed):
        second.until(lambda m: False, timeout=10)
    # and the token no longer logs in
    again, _ = login(clients(), "1", {"resume": token})
    assert again["error"]["reason"] == "You've been logged out by the server. Please log in again."
    # the first connection stays open, logged out
    assert first.call("3", "hello")[-1]["result"] == "hello world"


def test_expired_token(clients, demo_user):
    c = clients()
    reply, _ = login(c, "1", {"user": {"username": "demo"}, "password": digest("demo-password")})
    LoginToken.objects.update(expires="2000-01-01T00:00:00Z")
    again, _ = login(clients(), "1", {"resume": reply["result"]["token"]})
    assert again["error"] == {
        "isClientSafe": True,
        "error": 403,
        "reason": "Your session has expired. Please log in again.",
        "message": "Your session has expired. Please log in again. [403]",
        "errorType": "Meteor.Error",
    }


def test_revoking_a_token_in_the_admin_closes_its_connections(clients, demo_user):
    c = clients()
    login(c, "1", {"user": {"username": "demo"}, "password": digest("demo-password")})
    admin = DjangoClient()
    User.objects.create_superuser("root", "root@example.com", "root-password")
    admin.login(username="root", password="root-password")
    token = LoginToken.objects.get(user=demo_user)
    response = admin.post(
        "/admin/livedata/logintoken/",
        {"action": "delete_selected", "_selected_action": [token.pk], "post": "yes"},
    )
    assert response.status_code == 302
    assert not LoginToken.objects.filter(pk=token.pk).exists()
    with pytest.raises(ConnectionClosed):
        c.until(lambda m: False, timeout=10)


def test_per_user_publication_before_and_after_login_sends_only_the_difference(clients, demo_user):
    janet = Author.objects.create(name="Janet", email="janet@evanovich.com")
    other = User.objects.create_user("other", "other@example.com", "other-password")
    mine = Book.objects.create(title="Mine", author=janet, added_by=demo_user)
    Book.objects.create(title="Theirs", author=janet, added_by=other)

    c = clients()
    c.send({"msg": "sub", "id": "all", "name": "AllBooks", "params": []})
    c.until(lambda m: m["msg"] == "ready")
    c.send({"msg": "sub", "id": "my", "name": "MyBooks", "params": []})
    assert c.until(lambda m: m["msg"] in ("ready", "nosub")) == [{"msg": "ready", "subs": ["my"]}]

    _, got = login(c, "1", {"user": {"username": "demo"}, "password": digest("demo-password")})
    data = [m for m in got if m["msg"] in ("added", "changed", "removed")]
    # AllBooks already showed every book: only the user's document is new
    assert [m["collection"] for m in data] == ["users"]

    c.send({"msg": "unsub", "id": "all"})
    got = c.until(lambda m: m["msg"] == "nosub")
    removed = {
        m["id"] for m in got if m["msg"] == "removed" and m["collection"] == "livedata_demo.book"
    }
    assert str(mine.pk) not in removed  # MyBooks still provides it
    assert len(removed) == 1

    # live: a book the user adds appears; on logout MyBooks empties
    got = c.call("2", "addBook", "Mine too", "janet@evanovich.com")
    added = [m for m in got if m["msg"] == "added" and m["collection"] == "livedata_demo.book"]
    assert [m["fields"]["title"] for m in added] == ["Mine too"]
    got = c.call("3", "logout")
    gone = {m["id"] for m in got if m["msg"] == "removed"}
    assert gone == {str(mine.pk), added[0]["id"], str(demo_user.pk)}


def test_rate_limit_sixth_login_in_ten_seconds(clients, demo_user):
    c = clients()
    for i in range(5):
        reply, _ = login(c, str(i), {"user": {"username": "demo"}, "password": digest("bad")})
        assert reply["error"]["error"] == 403
    got = c.call("6", "login", {"user": {"username": "demo"}, "password": digest("demo-password")})
    assert got[0] == {"msg": "updated", "methods": ["6"]}  # refused before running
    error = result_of(got, "6")["error"]
    assert error["error"] == "too-many-requests"
    assert error["reason"].startswith("Error, too many requests. Please slow down.")
    assert 0 < error["details"]["timeToReset"] <= 10_000
    # other methods are not limited
    assert c.call("7", "hello")[-1]["result"] == "hello world"


def test_rate_limit_per_client_address_survives_reconnecting(clients, demo_user):
    refused = 0
    for i in range(6):
        c = clients()
        for j in range(2):
            reply, _ = login(c, f"{i}.{j}", {"user": {"username": "demo"}, "password": "bad"})
            refused += reply["error"]["error"] == "too-many-requests"
    assert refused == 2  # 12 calls from one address, 10 allowed per 10 s


def test_create_user_then_django_admin_login_and_django_users_over_ddp(clients):
    c = clients()
    options = {
        "username": "newbie",
        "email": "newbie@example.com",
        "password": digest("newbie-password"),
        "profile": {"name": "New Bie"},
    }
    reply = c.call("1", "createUser", options)
    result = result_of(reply, "1")["result"]
    assert result["type"] == "password"
    user = User.objects.get(username="newbie")
    assert (user.email, user.first_name, user.last_name) == ("newbie@example.com", "New", "Bie")
    assert user.password.startswith("livedata_pbkdf2_sha256digest$")
    # the user created over DDP (only a digest was sent) logs in to Django with the password
    assert DjangoClient().login(username="newbie", password="newbie-password")
    # duplicates: Meteor's ambiguous answer
    again = result_of(
        c.call("2", "createUser", {"username": "NEWBIE", "password": digest("x")}), "2"
    )
    assert again["error"]["reason"] == AMBIGUOUS
    missing = result_of(c.call("3", "createUser", {"password": digest("x")}), "3")
    assert missing["error"]["reason"] == "Need to set a username or email"
    # a user made the Django way (createsuperuser, the admin) logs in with a digest
    User.objects.create_superuser("boss", "boss@example.com", "boss-password")
    reply, _ = login(
        clients(), "1", {"user": {"username": "boss"}, "password": digest("boss-password")}
    )
    assert reply["result"]["type"] == "password"


def test_change_password_keeps_this_login_and_ends_the_others(clients, demo_user):
    c = clients()
    reply, _ = login(c, "1", {"user": {"username": "demo"}, "password": digest("demo-password")})
    other = clients()
    login(other, "1", {"resume": reply["result"]["token"]})
    elsewhere = clients()
    login(elsewhere, "1", {"user": {"email": "demo@example.com"}, "password": "demo-password"})

    not_in = result_of(clients().call("1", "changePassword", digest("x"), digest("y")), "1")
    assert (not_in["error"]["error"], not_in["error"]["reason"]) == (401, "Must be logged in")
    wrong = result_of(c.call("2", "changePassword", digest("bad"), digest("new-password")), "2")
    assert wrong["error"]["reason"] == AMBIGUOUS

    ok = result_of(c.call("3", "changePassword", digest("demo-password"), digest("new-pw")), "3")
    assert ok["result"] == {"passwordChanged": True}
    # the caller's token stays (so does `other`, sharing it); the other login's is gone
    assert LoginToken.objects.filter(user=demo_user).count() == 1
    with pytest.raises(ConnectionClosed):
        elsewhere.until(lambda m: False, timeout=10)
    assert c.call("4", "hello")[-1]["result"] == "hello world"
    assert DjangoClient().login(username="demo", password="new-pw")
    reply, _ = login(clients(), "1", {"user": {"username": "demo"}, "password": digest("new-pw")})
    assert "result" in reply


def test_forgot_and_reset_password_by_email(clients, demo_user, mail_dir: Path):
    c = clients()
    assert "error" not in result_of(
        c.call("1", "forgotPassword", {"email": "demo@example.com"}), "1"
    )
    # an unknown address gets the same answer (no user enumeration), and no mail
    assert "error" not in result_of(c.call("2", "forgotPassword", {"email": "x@example.com"}), "2")
    mails = list(mail_dir.iterdir())
    assert len(mails) == 1
    text = mails[0].read_text()
    assert "To: demo@example.com" in text
    token = re.search(r"/#/reset-password/([A-Za-z0-9_-]{43})", text).group(1)

    bad = result_of(c.call("3", "resetPassword", "x" * 43, digest("reset-pw")), "3")
    assert (bad["error"]["error"], bad["error"]["reason"]) == (403, "Token expired")
    reply = result_of(c.call("4", "resetPassword", token, digest("reset-pw")), "4")
    assert reply["result"]["type"] == "password" and reply["result"]["id"] == str(demo_user.pk)
    # used once
    again = result_of(c.call("5", "resetPassword", token, digest("reset-pw")), "5")
    assert again["error"]["reason"] == "Token expired"
    assert DjangoClient().login(username="demo", password="reset-pw")


def test_tokens_of_the_logged_in_user(clients, demo_user):
    c = clients()
    reply, _ = login(c, "1", {"user": {"username": "demo"}, "password": digest("demo-password")})
    not_logged = result_of(clients().call("1", "getNewToken"), "1")
    assert not_logged["error"]["error"] == "You are not logged in."
    fresh = result_of(c.call("2", "getNewToken"), "2")["result"]
    assert (
        set(fresh) == {"id", "token", "tokenExpires"} and fresh["token"] != reply["result"]["token"]
    )
    assert fresh["tokenExpires"] == reply["result"]["tokenExpires"]
    assert "error" not in result_of(c.call("3", "removeOtherTokens"), "3")
    assert LoginToken.objects.filter(user=demo_user).count() == 1
    resumed, _ = login(clients(), "1", {"resume": fresh["token"]})
    assert resumed["result"]["type"] == "resume"


def test_django_session_cookie_logs_in_same_origin_only(accounts_server, demo_user):
    browser = DjangoClient()
    browser.force_login(demo_user)
    cookie = f"sessionid={browser.cookies['sessionid'].value}"
    host = accounts_server

    same = connected(host, additional_headers={"Cookie": cookie, "Origin": f"http://{host}"})
    got = same.until(lambda m: m.get("collection") == "users", timeout=10)
    assert got[-1]["id"] == str(demo_user.pk)
    same.send({"msg": "sub", "id": "my", "name": "MyBooks", "params": []})
    assert same.until(lambda m: m["msg"] in ("ready", "nosub"))[-1]["msg"] == "ready"
    # logging out of DDP does not need a token
    assert {"msg": "removed", "collection": "users", "id": str(demo_user.pk)} in same.call(
        "1", "logout"
    )
    same.close()

    # no Origin (a non-browser client presenting the cookie itself): logged in too
    bare = connected(host, additional_headers={"Cookie": cookie})
    assert bare.until(lambda m: m.get("collection") == "users")[-1]["msg"] == "added"
    bare.close()

    # a garbage or foreign cookie: anonymous, and the connection works
    for header in ("sessionid=nope", "other=1", "=;;"):
        c = connected(host, additional_headers={"Cookie": header})
        assert c.call("1", "hello")[-1]["result"] == "hello world"
        c.close()
