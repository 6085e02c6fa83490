"""``DDP_PATH_PREFIX``: DDP at ``/live/websocket`` and over SockJS at ``/live/sockjs``, for
a site whose ``/websocket`` is not livedata's, against a real ``livedata serve`` with real
clients; a change made with plain SQL reaches both live."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect as ws_connect

from tests.accounts.test_ddp_login import connected
from tests.server.conftest import _serve
from tests.server.live import (
    connect_and_get_a_sql_insert,
    insert_book,
    subscribe_all_books,
    wait_added,
)
from tests.server.test_sockjs import TRANSPORTS, open_session

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def prefixed(transactional_db) -> Iterator[str]:
    yield from _serve("1", LIVEDATA_SETTINGS=json.dumps({"DDP_PATH_PREFIX": "/live"}))


def test_websocket_at_the_prefix(prefixed, connect):
    c = connected(prefixed, path="/live/websocket")
    try:
        subscribe_all_books(c)
        title = insert_book(connect())
        wait_added(c, title)
    finally:
        c.close()


@pytest.mark.parametrize("kind", TRANSPORTS, ids=lambda kind: kind.transport)
def test_sockjs_at_the_prefix(prefixed, connect, kind):
    with urllib.request.urlopen(f"http://{prefixed}/live/sockjs/info", timeout=10) as page:
        assert json.loads(page.read())["websocket"] is True
    c = open_session(prefixed, kind, prefix="/live/sockjs")
    try:
        connect_and_get_a_sql_insert(c, connect)
    finally:
        c.close()


def test_the_unprefixed_paths_are_not_ddp(prefixed):
    # they belong to the wrapped application: Django's, which takes no WebSocket (refused)
    # and has no /sockjs/info (404)
    for path in ("/websocket", "/sockjs/websocket"):
        with pytest.raises(InvalidStatus):
            ws_connect(f"ws://{prefixed}{path}", open_timeout=10)
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(f"http://{prefixed}/sockjs/info", timeout=10)
    assert missing.value.code == 404


@pytest.mark.django_db
def test_the_demo_page_connects_under_the_prefix(client, settings):
    settings.LIVEDATA = {**settings.LIVEDATA, "DDP_PATH_PREFIX": "/live"}
    page = client.get("/").content.decode()
    assert 'const prefix = "/live";' in page
    assert "${prefix}/websocket" in page and "${prefix}/sockjs" in page
