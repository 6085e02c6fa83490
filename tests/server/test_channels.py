"""livedata in a Django Channels project, both ways the README shows (tests/testapp/
channels_asgi.py), each run by ``livedata serve`` as the settings' ``ASGI_APPLICATION``:
livedata outside Channels (``LivedataApp(ProtocolTypeRouter(...))``) and inside it (a
``URLRouter`` route for livedata's paths). The project's own consumer answers on its
path while a DDP client, over WebSocket and over SockJS, gets a live change."""

from __future__ import annotations

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
from tests.server.test_sockjs import XhrStreaming, open_session

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(params=["outside", "inside"])
def channels_server(request, transactional_db) -> Iterator[str]:
    app = f"tests.testapp.channels_asgi.{request.param}"
    yield from _serve("1", LIVEDATA_TEST_ASGI_APPLICATION=app)


def _echo(server: str, text: str) -> str:
    """The project's Channels consumer at /ws/echo/, over its own WebSocket."""
    with ws_connect(f"ws://{server}/ws/echo/", open_timeout=10) as ws:
        ws.send(text)
        return ws.recv(timeout=10)


def test_a_channels_consumer_answers_while_ddp_gets_a_live_change(channels_server, connect):
    ddp = connected(channels_server)
    try:
        subscribe_all_books(ddp)
        with ws_connect(f"ws://{channels_server}/ws/echo/", open_timeout=10) as echo:
            echo.send("hello")
            assert echo.recv(timeout=10) == "echo: hello"
            title = insert_book(connect())
            assert wait_added(ddp, title)["fields"]["title"] == title
            echo.send("still here")  # both sockets stay open side by side
            assert echo.recv(timeout=10) == "echo: still here"
    finally:
        ddp.close()


def test_ddp_over_sockjs_beside_channels(channels_server, connect):
    c = open_session(channels_server, XhrStreaming)
    try:
        connect_and_get_a_sql_insert(c, connect)
    finally:
        c.close()
    assert _echo(channels_server, "after") == "echo: after"


def test_a_path_neither_routes_is_refused(channels_server):
    with pytest.raises(InvalidStatus):
        ws_connect(f"ws://{channels_server}/ws/nowhere/", open_timeout=10)
