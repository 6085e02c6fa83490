"""A page of another (allowed) site must not act with the browser's Django session."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client as DjangoClient

from tests.accounts.test_ddp_login import connected
from tests.server.conftest import _serve

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def any_origin_server(transactional_db):
    yield from _serve("1", LIVEDATA_SETTINGS='{"DDP_ALLOWED_ORIGINS": ["*"]}')


def test_allowed_foreign_origin_is_not_logged_in_by_cookie(any_origin_server):
    user = User.objects.create_user("demo", "demo@example.com", "demo-password")
    browser = DjangoClient()
    browser.force_login(user)
    cookie = f"sessionid={browser.cookies['sessionid'].value}"
    c = connected(
        any_origin_server,
        additional_headers={"Cookie": cookie, "Origin": "http://evil.example"},
    )
    got = c.call("1", "hello")
    assert not any(m.get("collection") == "users" for m in got)
    c.send({"msg": "sub", "id": "my", "name": "MyBooks", "params": []})
    assert c.until(lambda m: m["msg"] in ("ready", "nosub"))[-1] == {"msg": "ready", "subs": ["my"]}
    c.close()
