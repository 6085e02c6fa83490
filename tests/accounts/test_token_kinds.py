"""Each kind of token does its one job (issue 19, finding 5).

A DDP resume token and a password-reset token were accepted as ``Authorization: Bearer``
by the pull feed and the subscription API; only API tokens (``livedata token``) are. A
reset token is used once, even by two calls racing with it.
"""

from __future__ import annotations

import json
import re
import threading
import time
from pathlib import Path

import httpx
import pytest
from django.contrib.auth.models import Permission, User

from livedata.accounts import tokens
from livedata.accounts.models import LoginToken
from livedata.conf import LivedataSettings
from tests.accounts.test_ddp_login import connected, digest, login, result_of

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def reader() -> User:
    """A user who may view books: what a stolen token of theirs would reach."""
    user = User.objects.create_user("reader", "reader@example.com", "reader-password")
    user.user_permissions.add(
        *Permission.objects.filter(content_type__app_label="livedata_demo", codename="view_book")
    )
    return user


def api_status(server: str, secret: str) -> tuple[int, int]:
    """(pull feed, subscription create) statuses with ``secret`` as the bearer token."""
    auth = {"Authorization": f"Bearer {secret}"}
    with httpx.Client(base_url=f"http://{server}", headers=auth, timeout=10) as http:
        pull = http.get("/livedata/pull/livedata_demo.book", params={"offset": "-1"})
        put = http.put(
            "/livedata/subscriptions/stolen",
            content=json.dumps({"url": "http://127.0.0.1:9/", "models": ["livedata_demo.book"]}),
            headers={"Content-Type": "application/json"},
        )
    for response in (pull, put):
        if response.status_code == 401:
            assert response.json()["error"] == "unauthenticated"
            assert "Bearer" in response.headers["WWW-Authenticate"]
    return pull.status_code, put.status_code


def mailed_token(mail_dir: Path) -> str:
    [mail] = list(mail_dir.iterdir())
    found = re.search(r"/#/reset-password/([A-Za-z0-9_-]{43})", mail.read_text())
    assert found, mail.read_text()
    mail.unlink()
    return found.group(1)


def test_only_api_tokens_authenticate_the_http_apis(accounts_server, reader, mail_dir):
    c = connected(accounts_server)
    reply, _ = login(c, "1", {"user": {"username": "reader"}, "password": "reader-password"})
    resume = reply["result"]["token"]
    assert api_status(accounts_server, resume) == (401, 401)

    assert "error" not in result_of(
        c.call("2", "forgotPassword", {"email": "reader@example.com"}), "2"
    )
    reset = mailed_token(mail_dir)
    assert api_status(accounts_server, reset) == (401, 401)
    # used for its purpose, then gone for every purpose
    done = result_of(c.call("3", "resetPassword", reset, digest("new-password")), "3")
    assert done["result"]["id"] == str(reader.pk)
    assert api_status(accounts_server, reset) == (401, 401)
    again = result_of(c.call("4", "resetPassword", reset, digest("other")), "4")
    assert again["error"]["reason"] == "Token expired"

    api, _ = tokens.issue(reader, kind=LoginToken.Kind.API)
    assert api_status(accounts_server, api) == (200, 201)
    # and an API token is not a DDP login
    refused, _ = login(connected(accounts_server), "1", {"resume": api})
    assert refused["error"]["error"] == 403
    # the resume token still logs in over DDP (its one purpose)
    fresh, _ = login(c, "5", {"user": {"username": "reader"}, "password": "new-password"})
    resumed, _ = login(connected(accounts_server), "1", {"resume": fresh["result"]["token"]})
    assert resumed["result"]["id"] == str(reader.pk)
    c.close()


def test_a_reset_token_is_used_once_by_racing_calls(accounts_server, reader, mail_dir, connect):
    c = connected(accounts_server)
    result_of(c.call("1", "forgotPassword", {"email": "reader@example.com"}), "1")
    reset = mailed_token(mail_dir)
    racers = [connected(accounts_server) for _ in range(2)]
    # Hold the user's row so both calls are in flight together (each has looked its token
    # up and waits on a lock), then let them go: only one may set the password.
    holder = connect(autocommit=False)
    holder.execute("SELECT 1 FROM auth_user WHERE id = %s FOR UPDATE", [reader.pk])
    replies: list[dict] = []

    def race(client, n: int) -> None:
        replies.append(
            result_of(client.call("1", "resetPassword", reset, digest(f"racer-{n}")), "1")
        )

    threads = [threading.Thread(target=race, args=(r, n)) for n, r in enumerate(racers)]
    for t in threads:
        t.start()
    watcher = connect()
    deadline = time.monotonic() + 20
    while watcher.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND wait_event_type = 'Lock' AND pid <> %s",
        [holder.info.backend_pid],
    ).fetchone()[0] < len(racers):
        assert time.monotonic() < deadline, "the two calls did not both reach the database"
        time.sleep(0.02)
    holder.commit()
    for t in threads:
        t.join(timeout=60)
    assert len(replies) == 2
    assert sorted("result" in r for r in replies) == [False, True], replies
    [failed] = [r for r in replies if "error" in r]
    assert failed["error"]["reason"] == "Token expired"
    for client in [c, *racers]:
        client.close()


def test_reset_tokens_are_short_lived_by_default():
    assert LivedataSettings().ACCOUNTS_PASSWORD_RESET_LIFETIME.total_seconds() <= 3600
