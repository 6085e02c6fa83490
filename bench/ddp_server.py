"""livedata's DDP server against a bare ASGI WebSocket app on the same ASGI server.

Both run on uvicorn with the websockets-sansio protocol and no permessage-deflate (what
``livedata serve`` uses). With N connected clients (1000; 200 with --quick):

- ping: every client sends ``ping`` and waits for ``pong`` in a loop for a few seconds
  (bare: echo); round trips per second over all clients;
- fan-out: the server sends K precomputed messages to every client (DDP: the
  ``bench.broadcast`` method of bench/ddp_bench_app.py, through each session's outbox and
  writer, the path live queries use; bare: ``"b K"``); messages delivered per second.

Prints both with the ratio livedata / bare (the bare app is the ceiling); writes
bench/results/ddp_server.json. The clients run in this process on the same 2 cores.

    .venv/bin/python -m bench.ddp_server [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from typing import Any

import websockets
from bench.asgi_servers import ROOT, free_port, start, uvicorn

PY = sys.executable
CONNECT = '{"msg":"connect","version":"1","support":["1"]}'


async def clients(url: str, n: int, ddp: bool) -> list[Any]:
    conns = []
    for i in range(0, n, 100):
        batch = await asyncio.gather(
            *[
                websockets.connect(url, max_size=None, ping_interval=None, compression=None)
                for _ in range(min(100, n - i))
            ]
        )
        if ddp:
            for ws in batch:
                await ws.recv()
                await ws.send(CONNECT)
            for ws in batch:
                await ws.recv()
        conns.extend(batch)
    return conns


async def ping_rate(conns: list[Any], seconds: float, ddp: bool) -> float:
    message = '{"msg":"ping"}' if ddp else "hello"
    stop = time.perf_counter() + seconds
    counts = [0] * len(conns)

    async def loop(i: int, ws: Any) -> None:
        while time.perf_counter() < stop:
            await ws.send(message)
            await ws.recv()
            counts[i] += 1

    start_t = time.perf_counter()
    await asyncio.gather(*(loop(i, ws) for i, ws in enumerate(conns)))
    return sum(counts) / (time.perf_counter() - start_t)


async def fan_out(conns: list[Any], k: int, ddp: bool) -> float:
    total = len(conns) * k

    async def drain(ws: Any, extra: int) -> None:
        for _ in range(k + extra):
            await ws.recv()

    start_t = time.perf_counter()
    if ddp:
        await conns[0].send(
            json.dumps({"msg": "method", "id": "b", "method": "bench.broadcast", "params": [k]})
        )
        # the caller also gets result and updated
        await asyncio.gather(drain(conns[0], 2), *(drain(ws, 0) for ws in conns[1:]))
    else:
        await conns[0].send(f"b {k}")
        await asyncio.gather(*(drain(ws, 0) for ws in conns))
    return total / (time.perf_counter() - start_t)


async def measure(app: str, path: str, ddp: bool, n: int, k: int, seconds: float) -> dict:
    port = free_port()
    env = {"LIVEDATA_DB_NAME": "livedata_bench", "DJANGO_SETTINGS_MODULE": "livedata.demo.settings"}
    proc = start(uvicorn(app, "websockets-sansio", deflate=False), port, env)
    try:
        conns = await clients(f"ws://127.0.0.1:{port}{path}", n, ddp)
        pings = await ping_rate(conns, seconds, ddp)
        rates = [await fan_out(conns, k, ddp) for _ in range(3)]
        await asyncio.gather(*(ws.close() for ws in conns))
        return {"ping_rt_s": pings, "fanout_msgs_s": sorted(rates)[1]}
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    n, k, seconds = (200, 20, 2.0) if args.quick else (1000, 50, 5.0)
    subprocess.run(
        [PY, "-m", "livedata", "migrate", "-v0"],
        cwd=ROOT,
        env={**os.environ, "LIVEDATA_DB_NAME": "livedata_bench"},
        check=True,
    )
    bare = asyncio.run(measure("bench.asgi_bench_app:app", "/ws", False, n, k, seconds))
    ours = asyncio.run(measure("bench.ddp_bench_app:app", "/websocket", True, n, k, seconds))
    print(f"\n{n} connected clients, fan-out of {k} messages to each (median of 3)")
    print(f"{'':28} {'bare ASGI':>12} {'livedata DDP':>14} {'ratio':>7}")
    for key, title in (
        ("ping_rt_s", "ping round trips/s"),
        ("fanout_msgs_s", "fan-out messages/s"),
    ):
        print(f"{title:28} {bare[key]:>12,.0f} {ours[key]:>14,.0f} {ours[key] / bare[key]:>6.2f}x")
    out = ROOT / "bench" / "results" / "ddp_server.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"clients": n, "k": k, "bare": bare, "livedata": ours}, indent=2))
    print(f"\nWrote {out}")


if __name__ == "__main__":
    main()
