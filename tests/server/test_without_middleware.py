"""livedata's API views are served without the project's middleware; the rest with it."""

from __future__ import annotations

import httpx
import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client as DjangoClient

pytestmark = pytest.mark.django_db(transaction=True)


def test_api_views_skip_middleware_and_still_know_the_browser_session(server):
    page = httpx.get(f"http://{server}/", timeout=30)
    assert page.status_code == 200
    assert page.headers["X-Frame-Options"] == "DENY"  # XFrameOptionsMiddleware ran
    unknown = httpx.get(f"http://{server}/livedata/nope", timeout=30)
    assert unknown.status_code == 404 and "X-Frame-Options" in unknown.headers

    anonymous = httpx.get(f"http://{server}/livedata/pull/livedata_demo.book?offset=-1", timeout=30)
    assert anonymous.status_code == 401 and anonymous.json()["error"] == "unauthenticated"
    assert "X-Frame-Options" not in anonymous.headers  # no middleware on this route

    # a browser logged in to the site: its session cookie still authenticates a GET
    user = User.objects.create_user("reader", password="pw")
    user.user_permissions.add(Permission.objects.get(codename="view_book"))
    browser = DjangoClient()
    browser.force_login(user)
    cookies = {"sessionid": browser.cookies["sessionid"].value}
    feed = httpx.get(
        f"http://{server}/livedata/pull/livedata_demo.book?offset=-1", cookies=cookies, timeout=30
    )
    assert feed.status_code == 200, feed.text
    # but never a write: unsafe methods need credentials
    put = httpx.put(
        f"http://{server}/livedata/subscriptions/x", cookies=cookies, json={}, timeout=30
    )
    assert put.status_code == 401


@pytest.fixture
def long_cache_server(transactional_db):
    from tests.server.conftest import _serve

    yield from _serve("1", LIVEDATA_SETTINGS='{"HTTP_API_AUTH_CACHE_SECONDS": 600}')


def test_a_deleted_token_is_refused_at_once_despite_the_lookup_cache(long_cache_server):
    import time

    from livedata.accounts import tokens
    from livedata.accounts.models import LoginToken

    user = User.objects.create_user("svc", password="pw")
    user.user_permissions.add(Permission.objects.get(codename="view_book"))
    secret, token = tokens.issue(user, kind="api")
    url = f"http://{long_cache_server}/livedata/pull/livedata_demo.book?offset=-1"
    auth = {"Authorization": f"Bearer {secret}"}
    assert httpx.get(url, headers=auth, timeout=30).status_code == 200  # now cached
    LoginToken.objects.filter(pk=token.pk).delete()
    deadline = time.monotonic() + 10  # the listener's latency, not the cache's 600 s
    while httpx.get(url, headers=auth, timeout=30).status_code != 401:
        assert time.monotonic() < deadline, "the deleted token was still accepted"
        time.sleep(0.1)
