"""Admission control on a real ``livedata serve`` (livedata.runtime.admission): a burst
of DDP connects beyond the accept rate all succeed, spread over time; one that would
wait past its deadline gets a DDP error and a 1013 close; subscriptions beyond the
concurrency cap wait their turn, and past their wait get nosub 503."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.server.conftest import _serve

CONNECT = json.dumps({"msg": "connect", "version": "1", "support": ["1"]})


@pytest.fixture
def paced_server(transactional_db) -> Iterator[str]:
    settings = {"DDP_ACCEPT_RATE": 20, "DDP_ACCEPT_BURST": 5, "DDP_ACCEPT_WAIT": 10}
    yield from _serve("1", LIVEDATA_SETTINGS=json.dumps(settings))


@pytest.fixture
def tight_server(transactional_db) -> Iterator[str]:
    settings = {"DDP_ACCEPT_RATE": 5, "DDP_ACCEPT_BURST": 1, "DDP_ACCEPT_WAIT": 0.5}
    yield from _serve("1", LIVEDATA_SETTINGS=json.dumps(settings))


@pytest.fixture
def capped_server(transactional_db) -> Iterator[str]:
    settings = {"DDP_SUBSCRIBE_CONCURRENCY": 1, "DDP_SUBSCRIBE_WAIT": 0.8}
    yield from _serve("1", LIVEDATA_SETTINGS=json.dumps(settings))


def _sub(sub_id: str, seconds: float, tag: int) -> str:
    return json.dumps({"msg": "sub", "id": sub_id, "name": "SlowBooks", "params": [seconds, tag]})


async def _messages(ws, until, timeout: float = 10) -> list[dict]:
    got = []
    async with asyncio.timeout(timeout):
        while not got or not until(got[-1]):
            got.append(json.loads(await ws.recv()))
    return got


async def _connect_all(server: str, n: int) -> list[tuple[float, list[dict], int | None]]:
    """Open ``n`` WebSockets, then send ``connect`` on all at once; per client: seconds
    from then to its answer, the messages up to it, and the close code (None: open)."""
    sockets = [await connect(f"ws://{server}/websocket", open_timeout=10) for _ in range(n)]
    for ws in sockets:
        assert json.loads(await ws.recv()) == {"server_id": "0"}
    start = time.monotonic()

    async def one(ws) -> tuple[float, list[dict], int | None]:
        got = await _messages(ws, lambda m: m.get("msg") in ("connected", "error"))
        took = time.monotonic() - start
        code = None
        if got[-1]["msg"] == "error":
            with pytest.raises(ConnectionClosed):
                async with asyncio.timeout(5):
                    await ws.recv()
            code = ws.close_code
        return took, got, code

    await asyncio.gather(*(ws.send(CONNECT) for ws in sockets))
    try:
        return await asyncio.gather(*(one(ws) for ws in sockets))
    finally:
        for ws in sockets:
            await ws.close()


def test_a_burst_of_connects_beyond_the_rate_all_succeed_spread_over_time(paced_server):
    results = asyncio.run(_connect_all(paced_server, 30))
    assert [got[-1]["msg"] for _, got, _ in results] == ["connected"] * 30
    times = sorted(t for t, _, _ in results)
    # 5 at once, then 20/s: the last no sooner than 25 / 20 s after the burst
    assert times[4] < 0.5
    for k, t in enumerate(times):
        assert t >= (k - 4) / 20 - 0.05, (k, t)
    assert times[-1] < 5


def test_a_connect_that_would_wait_past_the_deadline_gets_an_error_and_1013(tight_server):
    results = asyncio.run(_connect_all(tight_server, 8))
    connected = [r for r in results if r[1][-1]["msg"] == "connected"]
    refused = [r for r in results if r[1][-1]["msg"] == "error"]
    # 1 at once, then one each 0.2 s while the wait stays within 0.5 s: 0, 0.2, 0.4
    assert len(connected) == 3
    assert len(refused) == 5
    for took, got, code in refused:
        assert got[-1]["reason"] == "Server busy: a new session would wait more than 0.5 s"
        assert code == 1013
        assert took < 0.3  # refused at once, not after waiting


def test_subscriptions_beyond_the_cap_wait_their_turn_then_get_nosub_503(capped_server):
    async def main() -> list[tuple[float, dict]]:
        sockets = []
        for _ in range(4):
            ws = await connect(f"ws://{capped_server}/websocket", open_timeout=10)
            await ws.send(CONNECT)
            await _messages(ws, lambda m: m.get("msg") == "connected")
            sockets.append(ws)
        start = time.monotonic()

        async def one(i: int, ws) -> tuple[float, dict]:
            await ws.send(_sub("s", 0.5, i))
            got = await _messages(ws, lambda m: m.get("msg") in ("ready", "nosub"))
            return time.monotonic() - start, got[-1]

        try:
            out = await asyncio.gather(*(one(i, ws) for i, ws in enumerate(sockets)))
            # the refused connection is still open and may subscribe once the rush is over
            late = sockets[[m["msg"] for _, m in out].index("nosub")]
            await late.send(_sub("t", 0, 9))
            again = await _messages(late, lambda m: m.get("msg") in ("ready", "nosub"))
            assert again[-1] == {"msg": "ready", "subs": ["t"]}
            return out
        finally:
            for ws in sockets:
                await ws.close()

    results = asyncio.run(main())
    ready = sorted(t for t, m in results if m["msg"] == "ready")
    refused = [(t, m) for t, m in results if m["msg"] == "nosub"]
    # one set up at a time (0.5 s each): the second waited 0.5 s (within 0.8), the
    # third and fourth would wait 1 s and more
    assert len(ready) == 2
    assert ready[1] - ready[0] >= 0.45
    assert len(refused) == 2
    for took, message in refused:
        assert message["error"]["error"] == 503
        assert message["error"]["reason"] == (
            "Server busy: a new subscription would wait more than 0.8 s"
        )
        assert 0.75 <= took < 1.5
