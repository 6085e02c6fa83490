"""Pull-feed fixtures: a service user with a token, HTTP helpers for a real server."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest


@pytest.fixture
def token(transactional_db: None) -> str:
    """An API token of a non-superuser who may view books and authors."""
    from django.contrib.auth.models import Permission, User

    from livedata.accounts import tokens

    user = User.objects.create_user("billing", password="billing-password")
    user.user_permissions.add(*Permission.objects.filter(codename__in=["view_book", "view_author"]))
    return tokens.issue(user, kind="api")[0]


@pytest.fixture
def author(transactional_db: None) -> int:
    from livedata.demo.bookstore.models import Author

    return Author.objects.create(name="Janet", email="janet@example.com").pk


@contextmanager
def feed_on(server: str, token: str) -> Iterator[Callable[..., httpx.Response]]:
    """GET the book feed (or ``model=``) on ``server`` with ``token``."""
    http = httpx.Client(
        base_url=f"http://{server}/livedata/pull/",
        headers={"Authorization": f"Bearer {token}"},
        timeout=60,
    )

    def get(model: str = "livedata_demo.book", headers: dict | None = None, **params: Any):
        return http.get(model, params=params, headers=headers)

    with http:
        yield get


def held_on(server: str) -> Callable[[], int]:
    """How many pull requests ``server`` holds now (``tests.testapp.views``)."""

    def count() -> int:
        response = httpx.get(f"http://{server}/t/pull-waiters/", timeout=10)
        assert response.status_code == 200, response.text
        return response.json()["held"]

    return count


@pytest.fixture
def feed(server: str, token: str) -> Iterator[Callable[..., httpx.Response]]:
    """GET the book feed (or ``model=``) on the test server with the service's token."""
    with feed_on(server, token) as get:
        yield get


@pytest.fixture
def held(server: str) -> Callable[[], int]:
    """How many pull requests the test server holds now."""
    return held_on(server)


def wait_until(predicate: Callable[[], bool], message: str, timeout: float = 20.0) -> None:
    """Poll ``predicate`` until it holds; fail with ``message`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, message
        time.sleep(0.02)


def follow(get: Callable[..., httpx.Response], **params: Any) -> tuple[list[dict], str, str]:
    """Read a feed from -1 until up to date: (messages, handle, offset)."""
    response = get(offset="-1", **params)
    assert response.status_code == 200, response.text
    messages = list(response.json())
    handle = response.headers["Livedata-Handle"]
    while "Livedata-Up-To-Date" not in response.headers:
        response = get(offset=response.headers["Livedata-Offset"], handle=handle, **params)
        assert response.status_code == 200, response.text
        messages += response.json()
    return [m for m in messages if "control" not in m], handle, response.headers["Livedata-Offset"]


def state_of(messages: list[dict], state: dict | None = None) -> dict:
    """Apply feed messages to {pk: value} as a client would."""
    state = {} if state is None else state
    for message in messages:
        if "control" in message:
            continue
        if message["op"] == "delete":
            state.pop(message["pk"], None)
        else:
            state[message["pk"]] = message["value"]
    return state
