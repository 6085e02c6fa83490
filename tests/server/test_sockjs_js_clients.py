"""ddp.js over sockjs-client (npm, under Node) against a real ``livedata serve``, one SockJS
transport at a time: the assertions of test_js_clients.py's ddp.js case."""

from __future__ import annotations

import pytest

from livedata.demo.bookstore.models import Author
from tests.server.test_js_clients import check_scenario, node_clients, run_client

__all__ = ["node_clients"]  # the session fixture, used here by name

pytestmark = pytest.mark.django_db(transaction=True)

TRANSPORTS = {  # sockjs-client's transport name: what its instance reports once open
    "xhr-streaming": "xhr-streaming",
    "xhr-polling": "xhr-polling",
    "websocket": "websocket",
}


@pytest.mark.parametrize("transport", list(TRANSPORTS))
def test_ddp_js_over_sockjs(transport, server, node_clients):
    which = f"ddp.js-sockjs-{transport}"
    author = Author.objects.create(name="Janet Evanovich", email="janet@evanovich.com")
    result = run_client(which, server, author.email)
    assert ["transport", TRANSPORTS[transport]] in result["events"]  # really that transport
    check_scenario(result, which, author)
    # hello wrote nothing (updated before result); addBook wrote (result before updated)
    kinds_by_id: dict[str, list[str]] = {}
    for kind, msg_id in result["order"]:
        kinds_by_id.setdefault(msg_id, []).append(kind)
    assert sorted(kinds_by_id.values()) == sorted(
        [["updated", "result"], ["result", "updated"], ["result", "updated"]]
    )
