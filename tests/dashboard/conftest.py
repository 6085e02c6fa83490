"""Dashboard test helpers: DDP clients logged in by a Django session cookie (as the
admin page's own connection is), and users of each kind."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.test import Client as DjangoClient

from tests.server.conftest import _serve
from tests.server.test_websocket import CONNECT, Client
from tests.webhooks.conftest import demo_collections, make_receiver, svc  # noqa: F401

#: The dashboard's servers: a fast refresh, and retries far apart (a failing webhook
#: stays "retrying" until someone presses "retry now").
SETTINGS = {"DASHBOARD_INTERVAL": 0.2, "WEBHOOK_RETRY_SCHEDULE": [0, 600, 600]}


def cookie_client(server: str, user: Any = None) -> Client:
    """A connected DDP client; with ``user``, carrying that user's session cookie from
    this site's origin (so the server logs it in, as it does the dashboard page)."""
    headers = [("Origin", f"http://{server}")]
    if user is not None:
        browser = DjangoClient()
        browser.force_login(user)
        headers.append(("Cookie", f"sessionid={browser.cookies['sessionid'].value}"))
    c = Client(server, additional_headers=headers)
    assert c.recv() == {"server_id": "0"}
    c.send(CONNECT)
    assert c.recv()["msg"] == "connected"
    return c


def answer(c: Client, sub_id: str, timeout: float = 10) -> tuple[dict, list[dict]]:
    """The ``ready`` or ``nosub`` of ``sub_id``, and the messages before it."""
    seen = c.until(
        lambda m: (m.get("msg") == "ready" and sub_id in m["subs"]) or m.get("id") == sub_id,
        timeout=timeout,
    )
    return seen[-1], seen[:-1]


class View:
    """A client's copy of the dashboard's collections, kept from the messages it reads."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.collections: dict[str, dict[str, dict]] = {}

    def take(self, messages: list[dict]) -> None:
        for m in messages:
            docs = self.collections.setdefault(m.get("collection", ""), {})
            if m.get("msg") == "added":
                docs[m["id"]] = dict(m.get("fields", {}))
            elif m.get("msg") == "changed":
                docs.setdefault(m["id"], {}).update(m.get("fields", {}))
            elif m.get("msg") == "removed":
                docs.pop(m["id"], None)

    def doc(self, collection: str, doc_id: str) -> dict | None:
        return self.collections.get(collection, {}).get(doc_id)

    def wait(self, check: Callable[[View], Any], timeout: float = 10) -> Any:
        deadline = time.monotonic() + timeout
        while not (found := check(self)):
            left = deadline - time.monotonic()
            assert left > 0, "timed out waiting on the dashboard's documents"
            with contextlib.suppress(TimeoutError):
                self.take([self.client.recv(timeout=left)])
        return found


@pytest.fixture
def staff(transactional_db) -> Any:
    from django.contrib.auth.models import User

    return User.objects.create_superuser("boss", "boss@example.com", "boss-password")


@pytest.fixture
def server(transactional_db) -> Iterator[str]:
    """A ``livedata serve`` with ``SETTINGS`` (replaces the server tests' fixture here)."""
    yield from _serve("1", LIVEDATA_SETTINGS=json.dumps(SETTINGS))


@pytest.fixture
def clients(server) -> Iterator[Callable[..., Client]]:
    made: list[Client] = []

    def make(user: Any = None) -> Client:
        c = cookie_client(server, user)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()
