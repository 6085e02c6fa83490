"""The npm login clients ddp-login and simpleddp-plugin-login against a real server."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User

from livedata.demo.bookstore.models import Author, Book
from tests.server.test_js_clients import node_clients, run_node  # noqa: F401  (fixture)

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize("which", ["ddp-login", "simpleddp-plugin-login"])
def test_npm_login_clients(which, server, node_clients):  # noqa: F811
    user = User.objects.create_user("demo", "demo@example.com", "demo-password")
    author = Author.objects.create(name="Janet", email="janet@evanovich.com")
    for title in ("Mine", "Mine too"):
        Book.objects.create(title=title, author=author, added_by=user)
    Book.objects.create(title="Nobody's", author=author)
    seen = run_node(
        "login.js", which, f"ws://{server}/websocket", user.email, "demo", "demo-password"
    )

    # by email, then by username, with the digest
    for key in ("byEmail", "byUsername"):
        assert seen[key]["id"] == str(user.pk), seen[key]
        assert seen[key]["type"] == "password" and len(seen[key]["token"]) == 43
    # the per-user publication changed on the same connection: nothing, then the user's 2
    assert (seen["booksBefore"], seen["booksAfter"]) == (0, 2)
    # resume on a new connection
    assert seen["resumed"]["type"] == "resume" and seen["resumed"]["id"] == str(user.pk)
    wrong = seen["wrong"] if which == "ddp-login" else seen["wrong"]["rejected"]
    assert wrong["error"] == 403
    assert wrong["reason"] == "Something went wrong. Please check your credentials."
    # five refused logins, then Meteor's rate limit error with its time to reset
    assert [a["error"] for a in seen["attempts"]] == [403] * 5 + ["too-many-requests"]
    assert 0 < seen["attempts"][5]["details"]["timeToReset"] <= 10_000
    if which == "ddp-login":
        assert seen["usersDoc"][str(user.pk)]["username"] == "demo"
        assert seen["viaEnv"]["type"] == "resume", seen["viaEnv"]
    else:
        assert ["login", "password"] in seen["events"]
        assert ["loginResume", "resume"] in seen["events"]
        assert seen["usersDoc"] == [
            {
                "id": str(user.pk),  # simpleddp names the document id "id"
                "username": "demo",
                "emails": [{"address": "demo@example.com", "verified": False}],
                "profile": {},
            }
        ]
        assert seen["booksAfterLogout"] == 0
