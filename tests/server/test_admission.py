"""Admission control on a real ``livedata serve`` (livedata.runtime.admission): a burst
of DDP connections beyond the accept rate all succeed, spread over time; one that would
wait past its deadline is refused at once (a WebSocket with HTTP 503 before it opens, a
SockJS session with a DDP error and a 1013 close); subscriptions beyond the concurrency
cap wait their turn, and past their wait get nosub 503."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

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


async def _open_all(server: str, n: int) -> list[tuple[float, Any]]:
    """Open ``n`` WebSockets at once; per client: seconds until its handshake was
    answered, and then its ``connected`` message or the refusal (``InvalidStatus``)."""
    start = time.monotonic()

    async def one() -> tuple[float, Any]:
        try:
            ws = await connect(f"ws://{server}/websocket", open_timeout=15)
        except InvalidStatus as refused:
            return time.monotonic() - start, refused
        took = time.monotonic() - start
        try:
            await ws.send(CONNECT)
            return took, (await _messages(ws, lambda m: m.get("msg") == "connected"))[-1]
        finally:
            await ws.close()

    return await asyncio.gather(*(one() for _ in range(n)))


def test_a_burst_of_connects_beyond_the_rate_all_succeed_spread_over_time(paced_server):
    results = asyncio.run(_open_all(paced_server, 30))
    assert [answer["msg"] for _, answer in results] == ["connected"] * 30
    times = sorted(t for t, _ in results)
    # 5 at once, then 20/s: the last no sooner than 25 / 20 s after the burst
    assert times[4] < 0.5
    for k, t in enumerate(times):
        assert t >= (k - 4) / 20 - 0.05, (k, t)
    assert times[-1] < 5


def test_a_websocket_that_would_wait_past_the_deadline_is_refused_503_before_it_opens(
    tight_server,
):
    results = asyncio.run(_open_all(tight_server, 8))
    connected = [t for t, answer in results if isinstance(answer, dict)]
    refused = [(t, answer) for t, answer in results if isinstance(answer, InvalidStatus)]
    # 1 at once, then one each 0.2 s while the wait stays within 0.5 s: 0, 0.2, 0.4
    assert len(connected) == 3
    assert len(refused) == 5
    for took, error in refused:
        assert error.response.status_code == 503
        assert error.response.headers["Retry-After"] == "1"
        assert error.response.body == b"Server busy: a new session would wait more than 0.5 s"
        assert took < 0.3  # refused at once, not after waiting


def test_a_sockjs_session_waits_at_its_connect_and_past_the_deadline_gets_error_and_1013(
    tight_server,
):
    async def one(i: int) -> tuple[list[dict], list | None]:
        url = f"ws://{tight_server}/sockjs/000/storm{i}/websocket"
        async with connect(url, open_timeout=10) as ws:
            assert await ws.recv() == "o"
            await ws.send(json.dumps([CONNECT]))
            got: list[dict] = []
            async with asyncio.timeout(10):
                while True:
                    frame = await ws.recv()
                    if frame.startswith("c"):
                        return got, json.loads(frame[1:])
                    if frame.startswith("a"):
                        got += [json.loads(m) for m in json.loads(frame[1:])]
                        if any(m.get("msg") == "connected" for m in got):
                            return got, None

    async def main() -> list[tuple[list[dict], list | None]]:
        return await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(8))), 20)

    results = asyncio.run(main())
    connected = [got for got, close in results if close is None]
    refused = [(got, close) for got, close in results if close is not None]
    assert len(connected) == 3
    assert len(refused) == 5
    for got, close in refused:
        reason = "Server busy: a new session would wait more than 0.5 s"
        assert got == [{"server_id": "0"}, {"msg": "error", "reason": reason}]
        assert close == [1013, "server busy"]


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
