"""One header parser (``livedata.server.headers``) for every transport: repeats joined
with ", ", Cookie repeats with "; " (RFC 9110 §5.3, RFC 9113 §8.2.3)."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client as DjangoClient

from livedata.server.headers import Headers, headers_of
from tests.accounts.test_ddp_login import connected

pytestmark = pytest.mark.django_db(transaction=True)


def test_repeats_are_joined_and_names_are_case_insensitive():
    h = headers_of(
        {
            "headers": [
                (b"Accept", b"text/html"),
                (b"cookie", b"a=1"),
                (b"ACCEPT", b"application/json"),
                (b"Cookie", b"sessionid=xyz"),
                (b"Host", b"example.com"),
            ]
        }
    )
    assert h["accept"] == "text/html, application/json"
    assert h["Cookie"] == "a=1; sessionid=xyz"  # ", " would glue two cookies into one
    assert h.getall("accept") == ["text/html", "application/json"]
    assert h.getall("x-none") == [] and h.get("x-none") is None and "HOST" in h
    assert dict(h) == {"accept": "text/html, application/json", "cookie": "a=1; sessionid=xyz",
                       "host": "example.com"}  # fmt: skip
    assert len(Headers()) == 0 and not Headers()


def test_session_cookie_in_a_repeated_cookie_header_logs_in_over_websocket(server):
    """A client (or proxy) sending its cookies in two Cookie fields: the session cookie in
    the first must still log the DDP connection in (websocket.py kept only the last)."""
    user = User.objects.create_user("demo", "demo@example.com", "demo-password")
    browser = DjangoClient()
    browser.force_login(user)
    c = connected(
        server,
        additional_headers=[
            ("Cookie", f"sessionid={browser.cookies['sessionid'].value}"),
            ("Cookie", "theme=dark"),
            ("Origin", f"http://{server}"),
        ],
    )
    got = c.until(lambda m: m.get("collection") == "users", timeout=10)
    assert got[-1]["msg"] == "added" and got[-1]["id"] == str(user.pk)
    c.close()
