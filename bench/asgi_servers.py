"""Which ASGI server for ``livedata serve``: memory per idle WebSocket and fan-out rate.

For each server (uvicorn with websockets / with wsproto, hypercorn, granian) this starts
the bare app of ``bench/asgi_bench_app.py`` in its own process, opens N WebSocket
connections from this process, and measures:

- memory: the server's RSS growth divided by N (KiB per idle connection);
- fan-out: one ``"b K"`` makes the server send K messages to each of the N connections;
  messages received per second by the clients (N x K in all);
- echo: round trips per second, one connection, request/response in sequence.

Then the same for livedata's own DDP server (``livedata serve`` on uvicorn, the demo
settings, database ``livedata_bench``): memory per idle *DDP* connection (connected
session, heartbeat task, outbox), the figure issue 4 targets (<= 20 KiB, >= 10k
connections per process), and DDP ping round trips per second. The clients share this
2-core machine with the server, so absolute rates are bounded by the client side too;
the servers are compared side by side under the same client.

    .venv/bin/python -m bench.asgi_servers [--quick] [--connections N]

Writes bench/results/asgi_servers.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import websockets

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable


def uvicorn(app: str, ws: str, *, deflate: bool = True) -> list[str]:
    """The command starting ``app`` on uvicorn with WebSocket protocol ``ws``."""
    cmd = [PY, "-m", "uvicorn", app, "--ws", ws, "--http", "httptools"]
    if not deflate:
        cmd += ["--ws-per-message-deflate", "false"]
    return [*cmd, "--log-level", "warning", "--port", "{port}"]


BARE = "bench.asgi_bench_app:app"
SERVERS = {
    "uvicorn+websockets": uvicorn(BARE, "websockets"),
    "uvicorn+websockets, no deflate": uvicorn(BARE, "websockets", deflate=False),
    "uvicorn+websockets-sansio, no deflate": uvicorn(BARE, "websockets-sansio", deflate=False),
    "uvicorn+wsproto": uvicorn(BARE, "wsproto"),
    "hypercorn": [
        PY,
        "-m",
        "hypercorn",
        BARE,
        "--bind",
        "127.0.0.1:{port}",
        "--log-level",
        "warning",
    ],
    "granian": [
        PY,
        "-m",
        "granian",
        "--interface",
        "asgi",
        "--port",
        "{port}",
        "--workers",
        "1",
        "--log-level",
        "warning",
        BARE,
    ],
}


#: What ``livedata serve`` runs (chosen by this benchmark): the DDP figures compare to it.
SERVED = "uvicorn+websockets-sansio, no deflate"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(cmd: list[str], port: int, env: dict[str, str] | None = None) -> subprocess.Popen:
    proc = subprocess.Popen(
        [c.format(port=port) for c in cmd],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"server did not start: {cmd}") from None
            time.sleep(0.1)
    time.sleep(0.5)
    return proc


def rss(proc: subprocess.Popen) -> int:
    """RSS of the server and its children (granian runs its app in a worker process)."""
    p = psutil.Process(proc.pid)
    return sum(q.memory_info().rss for q in [p, *p.children(recursive=True)])


async def open_many(url: str, n: int, ddp: bool = False) -> list[Any]:
    conns = []
    for i in range(0, n, 100):
        batch = await asyncio.gather(
            *[
                websockets.connect(url, max_size=None, ping_interval=None)
                for _ in range(min(100, n - i))
            ]
        )
        if ddp:
            for ws in batch:
                await ws.recv()  # server_id greeting
                await ws.send('{"msg":"connect","version":"1","support":["1"]}')
            for ws in batch:
                await ws.recv()  # connected
        conns.extend(batch)
    return conns


async def fan_out(conns: list[Any], k: int) -> float:
    total = len(conns) * k

    async def drain(ws: Any) -> int:
        for _ in range(k):
            await ws.recv()
        return k

    start = time.perf_counter()
    await conns[0].send(f"b {k}")
    got = sum(await asyncio.gather(*(drain(ws) for ws in conns)))
    assert got == total
    return total / (time.perf_counter() - start)


async def echo_rate(ws: Any, n: int, message: str, reply_prefix: str | None = None) -> float:
    start = time.perf_counter()
    for _ in range(n):
        await ws.send(message)
        await ws.recv()
    return n / (time.perf_counter() - start)


async def measure_bare(name: str, n: int, k: int) -> dict[str, Any]:
    port = free_port()
    proc = start(SERVERS[name], port)
    try:
        url = f"ws://127.0.0.1:{port}/ws"
        base = rss(proc)
        conns = await open_many(url, n)
        await asyncio.sleep(1.0)
        per_conn = (rss(proc) - base) / n / 1024
        rate = await fan_out(conns, k)
        echo = await echo_rate(conns[0], 2000, "hello")
        await asyncio.gather(*(ws.close() for ws in conns))
        return {"server": name, "kib_per_conn": per_conn, "fanout_msgs_s": rate, "echo_rt_s": echo}
    finally:
        proc.terminate()
        proc.wait(timeout=20)


async def measure_ddp(n: int) -> dict[str, Any]:
    port = free_port()
    env = {"LIVEDATA_DB_NAME": "livedata_bench", "DJANGO_SETTINGS_MODULE": "livedata.demo.settings"}
    subprocess.run(
        [PY, "-m", "livedata", "migrate", "-v0"], cwd=ROOT, env={**os.environ, **env}, check=True
    )
    proc = start(
        [PY, "-m", "livedata", "serve", "--port", "{port}", "--log-level", "warning"], port, env
    )
    try:
        url = f"ws://127.0.0.1:{port}/websocket"
        warm = await open_many(url, 10, ddp=True)
        base = rss(proc)
        conns = await open_many(url, n, ddp=True)
        await asyncio.sleep(1.0)
        per_conn = (rss(proc) - base) / n / 1024
        ping = await echo_rate(conns[0], 2000, '{"msg":"ping","id":"x"}')
        await asyncio.gather(*(ws.close() for ws in conns + warm))
        return {
            "server": "livedata DDP (uvicorn+websockets-sansio)",
            "connections": n,
            "kib_per_conn": per_conn,
            "ddp_ping_rt_s": ping,
        }
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--connections", type=int)
    args = parser.parse_args()
    n = args.connections or (300 if args.quick else 2000)
    k = 20 if args.quick else 50
    results = []
    for name in SERVERS:
        try:
            results.append(asyncio.run(measure_bare(name, n, k)))
        except Exception as exc:  # a server that fails is reported, not fatal
            results.append({"server": name, "error": repr(exc)})
    ddp_n = args.connections or (1000 if args.quick else 10_000)
    ddp = asyncio.run(measure_ddp(ddp_n))

    print(f"\nBare ASGI WebSocket app, {n} idle connections, fan-out {k} messages to each")
    print(
        f"{'server':<32} {'KiB/conn':>9} {'fan-out msg/s':>14} {'echo rt/s':>10}"
        f" {'fan-out vs best':>16}"
    )
    best = max((r.get("fanout_msgs_s", 0) for r in results), default=1) or 1
    for r in results:
        if "error" in r:
            print(f"{r['server']:<32} failed: {r['error']}")
            continue
        print(
            f"{r['server']:<32} {r['kib_per_conn']:>9.1f} {r['fanout_msgs_s']:>14,.0f} "
            f"{r['echo_rt_s']:>10,.0f} {r['fanout_msgs_s'] / best:>15.2f}x"
        )
    print(f"\nlivedata DDP server: {ddp['connections']} connected DDP sessions in one process")
    print(
        f"  {ddp['kib_per_conn']:.1f} KiB per connection (goal <= 20), "
        f"DDP ping round trips {ddp['ddp_ping_rt_s']:,.0f}/s"
    )
    bare = next((r for r in results if r["server"] == SERVED and "error" not in r), None)
    if bare:
        memory = ddp["kib_per_conn"] / bare["kib_per_conn"]
        rate = ddp["ddp_ping_rt_s"] / bare["echo_rt_s"]
        print(f"  vs the bare app on {SERVED}: {memory:.2f}x memory, {rate:.2f}x round-trip rate")
    out = ROOT / "bench" / "results" / "asgi_servers.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(
        json.dumps({"bare": results, "ddp": ddp, "connections": n, "fanout_k": k}, indent=2)
    )
    print(f"\nWrote {out}")


if __name__ == "__main__":
    main()
