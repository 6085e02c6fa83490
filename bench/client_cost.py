"""What one abusive client costs a ``livedata serve`` process, and others (issue 19, 3 and 4).

- **observers**: two connections each try 1000 ``BooksByAuthorEmail`` subscriptions with
  distinct emails (each a distinct observer, re-queried on every book change); then one
  UPDATE: how long it takes to reach an unrelated ``AllBooks`` client, and how long a new
  subscription takes meanwhile. Also what the engine does per change (observers routed,
  re-queried).
- **memory**: with 5000 books, one connection subscribes ``AllBooks`` 200 times with junk
  params; server RSS before, after, and after the client left. Then RSS after many
  subscribe/leave cycles of distinct observers holding 5000 documents each.

    .venv/bin/python -m bench.client_cost [--quick]
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

import psycopg
import websockets
from bench.asgi_servers import ROOT, free_port, rss, start

PY = sys.executable
DB = os.environ.get("LIVEDATA_DB_NAME", "livedata_bench")
ENV = {"LIVEDATA_DB_NAME": DB, "DJANGO_SETTINGS_MODULE": "livedata.demo.settings"}
CONNECT = '{"msg":"connect","version":"1","support":["1"]}'


def db_params() -> dict[str, Any]:
    os.environ.update(ENV)
    import django

    django.setup()
    from livedata.capture.listener import connection_params

    return connection_params()


def prepare(params: dict[str, Any], books: int) -> None:
    subprocess.run(
        [PY, "-m", "livedata", "migrate", "-v0"], cwd=ROOT, env={**os.environ, **ENV}, check=True
    )
    with psycopg.connect(**params, autocommit=True) as conn:
        conn.execute("TRUNCATE livedata_demo_book, livedata_demo_author RESTART IDENTITY CASCADE")
        conn.execute("INSERT INTO livedata_demo_author (name, email) VALUES ('A', 'a@example.com')")
        conn.execute(
            "INSERT INTO livedata_demo_book (title, author_id)"
            " SELECT 'book ' || i, 1 FROM generate_series(1, %s) i",
            [books],
        )


async def client(port: int) -> Any:
    ws = await websockets.connect(f"ws://127.0.0.1:{port}/websocket", max_size=None)
    await ws.recv()
    await ws.send(CONNECT)
    await ws.recv()
    return ws


async def until(ws: Any, predicate: Any, timeout: float = 120) -> dict[str, Any]:
    async with asyncio.timeout(timeout):
        while True:
            message = json.loads(await ws.recv())
            if predicate(message):
                return message


async def subscribe_many(ws: Any, name: str, params: list[list[Any]]) -> dict[str, int]:
    """Send every sub at once; count the answers (ready / nosub by error)."""
    for i, p in enumerate(params):
        await ws.send(json.dumps({"msg": "sub", "id": f"s{i}", "name": name, "params": p}))
    counts: dict[str, int] = {}
    left = len(params)
    async with asyncio.timeout(600):
        while left:
            message = json.loads(await ws.recv())
            if message["msg"] == "ready":
                counts["ready"] = counts.get("ready", 0) + len(message["subs"])
                left -= len(message["subs"])
            elif message["msg"] == "nosub":
                key = f"nosub {message.get('error', {}).get('error')}"
                counts[key] = counts.get(key, 0) + 1
                left -= 1
    return counts


async def observers(port: int, params: dict[str, Any], n: int) -> None:
    victim = await client(port)
    await victim.send('{"msg":"sub","id":"all","name":"AllBooks","params":[]}')
    await until(victim, lambda m: m["msg"] == "ready")
    attackers = [await client(port) for _ in range(2)]
    for k, ws in enumerate(attackers):
        emails = [[f"x{k}-{i}@example.com"] for i in range(n)]
        started = time.monotonic()
        counts = await subscribe_many(ws, "BooksByAuthorEmail", emails)
        print(f"  attacker {k}: {counts} in {time.monotonic() - started:.1f} s")
    with psycopg.connect(**params, autocommit=True) as conn:
        sent = time.monotonic()
        conn.execute("UPDATE livedata_demo_book SET title = 'changed' WHERE id = 1")
        late = await client(port)
        await late.send('{"msg":"sub","id":"new","name":"BooksOfAuthor","params":[1]}')
        await until(victim, lambda m: m["msg"] == "changed")
        print(f"  UPDATE → unrelated AllBooks client: {time.monotonic() - sent:.2f} s")
        await until(late, lambda m: m["msg"] == "ready")
        print(f"  a new subscription during that change: {time.monotonic() - sent:.2f} s")
    for ws in [victim, late, *attackers]:
        await ws.close()


async def memory(proc: subprocess.Popen, port: int, subs: int, cycles: int) -> None:
    print(f"  RSS at start: {rss(proc) / 2**20:.0f} MB")
    ws = await client(port)
    counts = await subscribe_many(ws, "AllBooks", [[i] for i in range(subs)])
    print(f"  AllBooks x{subs} with junk params: {counts}; RSS {rss(proc) / 2**20:.0f} MB")
    await ws.close()
    await asyncio.sleep(2)
    print(f"  after the client left: RSS {rss(proc) / 2**20:.0f} MB")
    # distinct valid observers of 5000 documents each: BooksOfAuthor(1), ("1"), ...
    for cycle in range(cycles):
        ws = await client(port)
        params = [[" " * i + "1"] for i in range(10)]
        counts = await subscribe_many(ws, "BooksOfAuthor", params)
        await ws.close()
        if cycle in (0, cycles - 1):
            await asyncio.sleep(1)
            print(f"  cycle {cycle + 1}: {counts}; RSS after leaving {rss(proc) / 2**20:.0f} MB")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    params = db_params()
    prepare(params, 5000)
    cmd = [PY, "-m", "livedata", "serve", "--port", "{port}", "--log-level", "error"]
    port = free_port()
    proc = start(cmd, port, ENV)
    try:
        print("observer amplification:")
        asyncio.run(observers(port, params, 200 if args.quick else 1000))
        print("memory amplification:")
        asyncio.run(memory(proc, port, 50 if args.quick else 200, 5 if args.quick else 30))
    finally:
        proc.terminate()
        proc.wait(20)


if __name__ == "__main__":
    main()
