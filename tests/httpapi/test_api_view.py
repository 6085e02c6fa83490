"""The shared HTTP API layer: who is calling, and JSON errors for everything else."""

from __future__ import annotations

import base64
import io
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.test import Client
from django.utils import timezone

from livedata.accounts import tokens
from livedata.accounts.models import LoginToken

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def no_lookup_cache(settings) -> None:
    """These tests change tokens behind the process's back (no listener here to tell it):
    look every request up. The cache has its own test."""
    settings.LIVEDATA = {**settings.LIVEDATA, "HTTP_API_AUTH_CACHE_SECONDS": 0}


@pytest.fixture
def user() -> User:
    return User.objects.create_user("svc", "svc@example.com", "svc-password")


def basic(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def test_no_credentials_is_401_with_a_challenge(client: Client) -> None:
    response = client.get("/t/api/")
    assert response.status_code == 401
    assert response.json()["error"] == "unauthenticated"
    assert "Basic" in response["WWW-Authenticate"] and "Bearer" in response["WWW-Authenticate"]


@pytest.mark.django_db(transaction=True)  # Basic checks have their own threads
def test_basic(client: Client, user: User) -> None:
    ok = client.get("/t/api/", HTTP_AUTHORIZATION=basic("svc", "svc-password"))
    assert ok.status_code == 200 and ok.json()["user"] == "svc"
    wrong = client.get("/t/api/", HTTP_AUTHORIZATION=basic("svc", "nope"))
    unknown = client.get("/t/api/", HTTP_AUTHORIZATION=basic("nobody", "nope"))
    # one answer for both: no user enumeration
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json()
    garbled = client.get("/t/api/", HTTP_AUTHORIZATION="Basic !!!")
    assert garbled.status_code == 401 and "malformed" in garbled.json()["message"]


def test_bearer_token_from_the_command(client: Client, user: User) -> None:
    out = io.StringIO()
    call_command("token", "svc", "--name", "billing", stdout=out)
    secret = out.getvalue().strip()
    assert len(secret) == 43
    stored = LoginToken.objects.get(user=user)
    assert stored.kind == "api" and stored.name == "billing" and secret not in stored.hashed_token
    ok = client.get("/t/api/", HTTP_AUTHORIZATION=f"Bearer {secret}")
    assert ok.status_code == 200 and ok.json()["user"] == "svc"
    stored.refresh_from_db()
    assert stored.last_used is not None
    assert client.get("/t/api/", HTTP_AUTHORIZATION="Bearer x" * 2).status_code == 401
    LoginToken.objects.filter(pk=stored.pk).update(expires=timezone.now() - timedelta(seconds=1))
    expired = client.get("/t/api/", HTTP_AUTHORIZATION=f"Bearer {secret}")
    assert expired.status_code == 401 and "expired" in expired.json()["message"]


def test_inactive_users_tokens_are_refused(client: Client, user: User) -> None:
    secret, _ = tokens.issue(user, kind="api")
    user.is_active = False
    user.save()
    assert client.get("/t/api/", HTTP_AUTHORIZATION=f"Bearer {secret}").status_code == 401


def test_credentials_in_clear_from_another_host_are_refused(client: Client, user: User) -> None:
    secret, _ = tokens.issue(user, kind="api")
    remote = {"REMOTE_ADDR": "203.0.113.9", "HTTP_AUTHORIZATION": f"Bearer {secret}"}
    response = client.get("/t/api/", **remote)
    assert response.status_code == 401 and "https" in response.json()["message"]
    assert client.get("/t/api/", secure=True, **remote).status_code == 200


def test_session_only_for_safe_methods(client: Client, user: User) -> None:
    client.force_login(user)
    assert client.get("/t/api/").json()["user"] == "svc"
    put = client.put("/t/api/", b"{}", content_type="application/json")
    assert put.status_code == 401  # a cookie alone never authorises a write (no CSRF hole)


@pytest.mark.django_db(transaction=True)  # Basic checks have their own threads
def test_method_body_and_errors(client: Client, user: User) -> None:
    auth = {"HTTP_AUTHORIZATION": basic("svc", "svc-password")}
    assert client.put("/t/api/", b'{"a": 1}', content_type="application/json", **auth).json()[
        "body"
    ] == {"a": 1}
    delete = client.delete("/t/api/", **auth)
    assert delete.status_code == 405 and delete["Allow"] == "GET, HEAD, PUT"
    bad = client.put("/t/api/", b"{nope", content_type="application/json", **auth)
    assert bad.status_code == 400 and bad.json()["message"].startswith("malformed JSON")
    big = client.put("/t/api/", b" " * 70_000 + b"{}", content_type="application/json", **auth)
    assert big.status_code == 413
    for number in (b"NaN", b"Infinity", b"-Infinity", b"1e400"):  # Python parses them
        odd = client.put("/t/api/", b'{"a": %s}' % number, content_type="application/json", **auth)
        assert odd.status_code == 400 and odd.json()["message"].startswith("malformed JSON")
    form = client.put("/t/api/", b"a=1", content_type="application/x-www-form-urlencoded", **auth)
    assert form.status_code == 415
    failed = client.get("/t/api/?fail=1", **auth)
    assert failed.status_code == 500
    assert failed.json() == {"error": "internal-error", "message": "internal server error"}


@pytest.mark.django_db(transaction=True)  # the view's thread has its own connection
def test_async_views(async_client, user: User) -> None:
    import asyncio

    from asgiref.sync import sync_to_async
    from django.db import connections

    async def go():
        try:
            return await async_client.get(
                "/t/api-async/", headers={"Authorization": basic("svc", "svc-password")}
            )
        finally:
            await sync_to_async(connections.close_all)()

    response = asyncio.run(go())
    assert response.status_code == 200 and response.json() == {"user": "svc"}


def test_bearer_lookups_are_cached_for_a_few_seconds(client: Client, user: User, settings) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from livedata.httpapi.auth import forget_tokens

    settings.LIVEDATA = {**settings.LIVEDATA, "HTTP_API_AUTH_CACHE_SECONDS": 60}
    secret, token = tokens.issue(user, kind="api")
    auth = {"HTTP_AUTHORIZATION": f"Bearer {secret}"}
    assert client.get("/t/api/", **auth).status_code == 200
    with CaptureQueriesContext(connection) as queries:
        assert client.get("/t/api/", **auth).json()["user"] == "svc"
    assert not [q for q in queries.captured_queries if "livedata_login_token" in q["sql"]]
    LoginToken.objects.filter(pk=token.pk).delete()
    assert client.get("/t/api/", **auth).status_code == 200  # cached: no listener here
    forget_tokens([token.hashed_token])  # what `livedata serve`'s listener does on delete
    assert client.get("/t/api/", **auth).status_code == 401


def test_the_system_check_catches_malformed_basic_limits(settings) -> None:
    from livedata.httpapi.checks import basic_limits_configured

    assert basic_limits_configured() == []
    settings.LIVEDATA = {
        **settings.LIVEDATA,
        "HTTP_API_BASIC_RATE_LIMITS": [{"per": "connection", "calls": 5, "seconds": 10}],
        "HTTP_API_BASIC_THREADS": 0,
    }
    assert [e.id for e in basic_limits_configured()] == ["livedata.E003", "livedata.E004"]
