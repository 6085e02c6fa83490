"""Graceful shutdown of ``livedata serve`` (livedata.server.protocols.Drain): on SIGTERM
the port stops accepting at once, and the open DDP WebSockets are closed one after
another, evenly spread over ``HTTP_SHUTDOWN_PERIOD``, each served until its turn."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import time

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.server.conftest import free_port, spawn_serve, stop, wait_listening

CONNECT = json.dumps({"msg": "connect", "version": "1", "support": ["1"]})
PERIOD = 2.0
CLIENTS = 10


async def _closes_after_sigterm(port: int, proc: subprocess.Popen) -> tuple[list[float], list]:
    sockets = []
    for _ in range(CLIENTS):
        ws = await connect(f"ws://127.0.0.1:{port}/websocket", open_timeout=10)
        await ws.send(CONNECT)
        async with asyncio.timeout(10):
            while json.loads(await ws.recv()).get("msg") != "connected":
                pass
        sockets.append(ws)
    start = time.monotonic()
    proc.send_signal(signal.SIGTERM)

    async def closed(ws) -> float:
        async with asyncio.timeout(PERIOD + 10):
            try:
                while True:
                    message = json.loads(await ws.recv())
                    if message.get("msg") == "ping":  # served until its turn
                        await ws.send(json.dumps({"msg": "pong"}))
            except ConnectionClosed:
                return time.monotonic() - start

    async def refused() -> bool:  # a new connection during the drain
        await asyncio.sleep(0.5)
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            return True
        return False

    *times, was_refused = await asyncio.gather(*(closed(ws) for ws in sockets), refused())
    assert was_refused, "the port still accepted connections during the drain"
    return times, [ws.close_code for ws in sockets]


def test_sigterm_closes_websockets_spread_over_the_period(transactional_db):
    port = free_port()
    settings = {"HTTP_SHUTDOWN_PERIOD": PERIOD, "DDP_HEARTBEAT_INTERVAL": 0}
    proc = spawn_serve(port, LIVEDATA_SETTINGS=json.dumps(settings))
    try:
        wait_listening(port, proc)
        times, codes = asyncio.run(_closes_after_sigterm(port, proc))
        # uvicorn exits by re-raising the signal it caught, once shut down
        assert proc.wait(timeout=10) in (0, -signal.SIGTERM)
    finally:
        stop(proc)
    times.sort()
    step = PERIOD / CLIENTS
    # one close every 0.2 s, the first at once, the last near the end of the period
    for k, t in enumerate(times):
        assert abs(t - k * step) < 0.15, (k, times)
    assert codes == [1012] * CLIENTS  # "service restart": clients reconnect elsewhere
