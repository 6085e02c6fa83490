"""Reset links come from SITE_URL, never from the request (issue 19, finding 2)."""

from __future__ import annotations

import re
import socket
from pathlib import Path

import pytest
from django.core import checks
from django.test import override_settings

from livedata.accounts.checks import site_url_configured
from tests.accounts.test_ddp_login import connected, result_of
from tests.server.conftest import _serve

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_forged_host_and_origin_do_not_reach_the_mailed_link(accounts_server, mail_dir: Path):
    from django.contrib.auth.models import User

    User.objects.create_user("demo", "demo@example.com", "demo-password")
    # the test server allows every host ("*"), the worst case: the link still is the site's.
    # One Host header, evil.example's (a repeated Host is refused outright, as RFC 9112 says)
    host, port = accounts_server.split(":")
    c = connected(
        f"evil.example:{port}",
        sock=socket.create_connection((host, int(port)), timeout=10),
        origin=f"http://evil.example:{port}",
    )
    reply = result_of(c.call("1", "forgotPassword", {"email": "demo@example.com"}), "1")
    assert "error" not in reply
    c.close()
    [mail] = list(mail_dir.iterdir())
    text = mail.read_text()
    assert "evil.example" not in text
    assert re.search(r"http://site\.example/#/reset-password/[A-Za-z0-9_-]{43}", text), text


@pytest.fixture
def no_site_server(transactional_db, mail_dir: Path):
    yield from _serve(
        "1",
        LIVEDATA_SETTINGS='{"SITE_URL": ""}',
        LIVEDATA_EMAIL_BACKEND="django.core.mail.backends.filebased.EmailBackend",
        LIVEDATA_EMAIL_DIR=str(mail_dir),
    )


def test_without_site_url_forgot_password_is_a_clear_error(no_site_server, mail_dir: Path):
    from django.contrib.auth.models import User

    User.objects.create_user("demo", "demo@example.com", "demo-password")
    c = connected(no_site_server, additional_headers={"Origin": f"http://{no_site_server}"})
    for i, email in enumerate(("demo@example.com", "unknown@example.com")):
        error = result_of(c.call(str(i), "forgotPassword", {"email": email}), str(i))["error"]
        assert (error["error"], error["reason"]) == (
            503,
            "Password reset by email is not configured on this server",
        )
    c.close()
    assert list(mail_dir.iterdir()) == []


def test_the_system_check_asks_for_site_url():
    with override_settings(LIVEDATA={"SITE_URL": ""}):
        [warning] = site_url_configured()
        assert warning.id == "livedata.W003" and warning.level == checks.WARNING
    with override_settings(
        LIVEDATA={"SITE_URL": "", "ACCOUNTS_PASSWORD_RESET_URL": "https://a/{token}"}
    ):
        assert site_url_configured() == []  # an absolute link needs no site
    with override_settings(LIVEDATA={"SITE_URL": "site.example"}):
        [error] = site_url_configured()
        assert error.id == "livedata.E001"
    with override_settings(LIVEDATA={"SITE_URL": "https://site.example/app"}):
        assert site_url_configured() == []
