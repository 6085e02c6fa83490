"""Webhook deliveries per second and commit → delivery latency, against a bare HTTP client.

Processes: a fast local receiver (asyncio + httptools, answers 204 at once, notes the
arrival time of every request), one ``livedata deliver`` worker (the demo settings,
database ``livedata_bench``; every attempt recorded in the delivery log, as by default),
this process as the writer, and PostgreSQL, all on the same 2-core machine.

- **Throughput**: S subscriptions (1, 10, 100) to ``livedata_demo.book``, each at its own
  receiver path, so every committed book is S deliveries. Once the worker holds all S,
  K books are committed at once (100 per transaction; K x S = 10,000 deliveries, 20,000
  with one subscription) and deliveries/s = K x S / (last arrival - first commit). The
  same with one subscription asking for ``batch`` 10 (opt-in), counted in changes.
- **Ceiling**: the same requests (each body signed as the worker signs it) sent by a
  bare aiohttp loop with no database, S loops side by side, each one request at a time
  like a subscription. And the same with httpx, the other async client considered.
- **Latency**: one writer process commits one book per transaction at a fixed rate
  (100/s, then 200/s, 5 s each, open loop) with its ``perf_counter`` time in the title; latency =
  arrival at the receiver - that time (``perf_counter`` is the machine's monotonic clock,
  the same in every process), for 1 and 10 subscriptions.

    .venv/bin/python -m bench.webhooks [--quick]

Writes bench/results/webhooks.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psycopg
from bench.benchlib import print_server, server_info, setup

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "webhooks.json"
SPAWN = multiprocessing.get_context("spawn")
TITLE = re.compile(rb'"title":"(\d+)"')
BENCH_USER = "bench-webhooks"


# --- the receiver (its own process) ---------------------------------------------------------
def receiver_main(port: int, control: Any) -> None:
    import httptools

    arrivals: list[tuple[float, bytes]] = []
    changes = [0]

    class Protocol(asyncio.Protocol):
        def connection_made(self, transport: Any) -> None:
            self.transport = transport
            self.parser = httptools.HttpRequestParser(self)
            self.body = bytearray()

        def data_received(self, data: bytes) -> None:
            self.parser.feed_data(data)

        def on_body(self, body: bytes) -> None:
            self.body += body

        def on_message_complete(self) -> None:
            arrivals.append((time.perf_counter(), bytes(self.body)))
            changes[0] += self.body.count(b'"title":')
            self.body = bytearray()
            self.transport.write(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n")

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(Protocol, "127.0.0.1", port, backlog=1024)
        done = asyncio.Event()

        def on_control() -> None:
            command = control.recv()
            if command == "count":
                control.send(changes[0])
            elif command == "report":
                control.send([(t, [int(x) for x in TITLE.findall(body)]) for t, body in arrivals])
            elif command == "reset":
                arrivals.clear()
                changes[0] = 0
                control.send("ok")
            elif command == "stop":
                done.set()

        loop.add_reader(control.fileno(), on_control)
        control.send("ready")
        await done.wait()
        server.close()

    asyncio.run(main())


class Receiver:
    def __init__(self) -> None:
        from bench.asgi_servers import free_port

        self.port = free_port()
        self.control, child = SPAWN.Pipe()
        self.proc = SPAWN.Process(target=receiver_main, args=(self.port, child), daemon=True)
        self.proc.start()
        assert self.control.recv() == "ready"

    def url(self, i: int) -> str:
        return f"http://127.0.0.1:{self.port}/s/{i}"

    def reset(self) -> None:
        self.control.send("reset")
        assert self.control.recv() == "ok"

    def report(self) -> tuple[list[float], list[int], list[list[int]]]:
        """Arrival times, changes per request, and the titles of each request."""
        self.control.send("report")
        arrivals = self.control.recv()
        return [t for t, _ in arrivals], [len(x) for _, x in arrivals], [x for _, x in arrivals]

    def changes(self) -> int:
        self.control.send("count")
        return self.control.recv()

    def stop(self) -> None:
        self.control.send("stop")
        self.proc.join(5)


# --- the database side ------------------------------------------------------------------------
def prepare(params: dict[str, Any]) -> int:
    from django.contrib.auth.models import Permission, User

    from livedata.webhooks.models import Subscription

    user, _ = User.objects.get_or_create(username=BENCH_USER)
    user.user_permissions.add(Permission.objects.get(codename="view_book"))
    Subscription.objects.filter(owner=user).delete()
    with psycopg.connect(**params, autocommit=True) as conn:
        conn.execute("TRUNCATE livedata_demo_book, livedata_change, livedata_webhook_delivery")
        conn.execute("VACUUM ANALYZE livedata_demo_book, livedata_change")
        row = conn.execute(
            "INSERT INTO livedata_demo_author (name, email)"
            " VALUES ('Bench', 'bench-wh@example.com')"
            " ON CONFLICT (email) DO UPDATE SET name = 'Bench' RETURNING id"
        ).fetchone()
    return int(row[0])


def make_subscriptions(receiver: Receiver, count: int, batch: int = 1) -> list[Any]:
    from django.contrib.auth.models import User
    from django.db import connection

    from livedata.capture import log
    from livedata.webhooks.models import Subscription
    from livedata.webhooks.signing import new_secret

    user = User.objects.get(username=BENCH_USER)
    Subscription.objects.filter(owner=user).delete()
    head = log.head(connection)
    subs = []
    for i in range(count):
        sub = Subscription(
            owner=user,
            name=f"s{i}",
            url=receiver.url(i),
            model_labels=["livedata_demo.book"],
            operations=["insert", "update", "delete", "truncate"],
            secret=new_secret(),
            batch=batch,
        )
        sub.log_position = head
        subs.append(sub)
    Subscription.objects.bulk_create(subs)
    return subs


def held_locks(conn: psycopg.Connection) -> int:
    from livedata.webhooks.dispatcher import LOCK_SUBSCRIPTION

    return conn.execute(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = %s",
        [LOCK_SUBSCRIPTION],
    ).fetchone()[0]


def start_worker() -> subprocess.Popen:
    env = {
        **os.environ,
        "LIVEDATA_DB_NAME": "livedata_bench",
        "DJANGO_SETTINGS_MODULE": "livedata.demo.settings",
        "LIVEDATA_SETTINGS": json.dumps({"WEBHOOK_REFRESH_INTERVAL": 0.2}),
    }
    profile = os.environ.get("BENCH_PROFILE")  # a path: run the worker under cProfile
    run = ["-m", "cProfile", "-o", profile] if profile else []
    return subprocess.Popen(
        [sys.executable, *run, "-m", "livedata", "deliver"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def wait_for(predicate: Any, timeout: float, what: str, step: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(step)


def throughput(
    params: dict[str, Any], receiver: Receiver, author: int, subs: int, books: int, batch: int
) -> dict[str, Any]:
    make_subscriptions(receiver, subs, batch)
    worker = start_worker()
    try:
        with psycopg.connect(**params, autocommit=True) as conn:
            wait_for(lambda: held_locks(conn) == subs, 60, "the worker to claim")
            time.sleep(0.5)
            receiver.reset()
            started = time.perf_counter()
            for first in range(0, books, 100):
                n = min(100, books - first)
                conn.execute(
                    "INSERT INTO livedata_demo_book (title, author_id) "
                    "SELECT g::text, %s FROM generate_series(%s::int, %s::int) g",
                    [author, first, first + n - 1],
                )
            expected = books * subs
            wait_for(lambda: receiver.changes() >= expected, 300, "the deliveries", step=0.1)
            times, counts, _ = receiver.report()
            seconds = max(times) - started
            return {
                "subscriptions": subs,
                "batch": batch,
                "changes_delivered": sum(counts),
                "requests": len(times),
                "seconds": round(seconds, 3),
                "deliveries_per_s": round(sum(counts) / seconds, 1),
            }
    finally:
        worker.terminate()
        worker.wait(30)


# --- the ceiling: a bare client, no database -----------------------------------------------
def bodies(subs: int, books: int) -> list[list[tuple[str, bytes, dict[str, str]]]]:
    """The requests a worker would send: per subscription, its signed bodies in order."""
    from datetime import UTC, datetime

    from livedata.webhooks.runner import webhook_id
    from livedata.webhooks.selection import encode
    from livedata.webhooks.signing import Signer, new_secret

    out = []
    for s in range(subs):
        signer = Signer(new_secret())
        requests = []
        for i in range(books):
            event = {
                "type": "livedata_demo.book.insert",
                "timestamp": datetime.now(UTC).isoformat(),
                "data": {"position": f"1000:1000:/1001:1001:/{i}", "model": "livedata_demo.book",
                         "op": "insert", "pk": str(i), "old": None,
                         "new": {"id": i, "title": str(i), "author_id": 1}, "changed": None,
                         "context": None},
            }  # fmt: skip
            body = encode(event)
            headers = signer.headers(webhook_id(s, 1, i), body)
            requests.append((f"/s/{s}", body, {**headers, "Content-Type": "application/json"}))
        out.append(requests)
    return out


async def bare_aiohttp(port: int, work: list[list[tuple[str, bytes, dict[str, str]]]]) -> float:
    import aiohttp

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

        async def loop(requests: list[tuple[str, bytes, dict[str, str]]]) -> None:
            for path, body, headers in requests:
                async with session.put(f"http://127.0.0.1:{port}{path}", data=body,
                                       headers=headers) as response:  # fmt: skip
                    await response.read()

        started = time.perf_counter()
        await asyncio.gather(*(loop(r) for r in work))
        return time.perf_counter() - started


async def bare_httpx(port: int, work: list[list[tuple[str, bytes, dict[str, str]]]]) -> float:
    import httpx

    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    async with httpx.AsyncClient(limits=limits) as client:

        async def loop(requests: list[tuple[str, bytes, dict[str, str]]]) -> None:
            for path, body, headers in requests:
                await client.put(f"http://127.0.0.1:{port}{path}", content=body, headers=headers)

        started = time.perf_counter()
        await asyncio.gather(*(loop(r) for r in work))
        return time.perf_counter() - started


def ceiling(receiver: Receiver, subs: int, books: int, client: str) -> float:
    work = bodies(subs, books)
    receiver.reset()
    run = bare_aiohttp if client == "aiohttp" else bare_httpx
    seconds = asyncio.run(run(receiver.port, work))
    assert receiver.changes() == subs * books
    return round(subs * books / seconds, 1)


# --- latency ------------------------------------------------------------------------------------
def writer(params: dict[str, Any], author: int, rate: float, seconds: float, q: Any) -> None:
    n = int(rate * seconds)
    with psycopg.connect(**params, autocommit=True) as conn:
        start = time.perf_counter()
        for i in range(n):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            conn.execute(
                "INSERT INTO livedata_demo_book (title, author_id) VALUES (%s, %s)",
                [str(time.perf_counter_ns()), author],
            )
    q.put(n)


def latency(
    params: dict[str, Any], receiver: Receiver, author: int, subs: int, rate: float, seconds: float
) -> dict[str, Any]:
    make_subscriptions(receiver, subs)
    worker = start_worker()
    try:
        with psycopg.connect(**params, autocommit=True) as conn:
            wait_for(lambda: held_locks(conn) == subs, 60, "the worker to claim")
        time.sleep(0.5)
        receiver.reset()
        q = SPAWN.Queue()
        proc = SPAWN.Process(target=writer, args=(params, author, rate, seconds, q))
        proc.start()
        committed = q.get(timeout=seconds + 60)
        proc.join()
        wait_for(lambda: receiver.changes() >= committed * subs, 60, "the deliveries")
        times, _counts, titles = receiver.report()
        ms = sorted(
            (arrived - int(title) / 1e9) * 1000
            for arrived, ts in zip(times, titles, strict=True)
            for title in ts
        )
        return {
            "subscriptions": subs,
            "rate": rate,
            "committed": committed,
            "delivered": len(ms),
            "p50_ms": round(statistics.median(ms), 2),
            "p99_ms": round(ms[int(len(ms) * 0.99) - 1], 2),
            "max_ms": round(ms[-1], 2),
        }
    finally:
        worker.terminate()
        worker.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer deliveries, shorter runs")
    args = parser.parse_args()
    params = setup()
    info = server_info(params)
    author = prepare(params)
    receiver = Receiver()
    scale = 5 if args.quick else 1
    cases = [(1, 20_000 // scale, 1), (1, 20_000 // scale, 10), (10, 1000 // scale),
             (100, 100 // scale)]  # fmt: skip
    rows = []
    try:
        for case in cases:
            subs, books, batch = (*case, 1)[:3]
            measured = throughput(params, receiver, author, subs, books, batch)
            if batch == 1:
                measured["bare_aiohttp_per_s"] = ceiling(receiver, subs, books, "aiohttp")
                measured["bare_httpx_per_s"] = ceiling(receiver, subs, max(books // 4, 10), "httpx")
            else:
                measured["bare_aiohttp_per_s"] = rows[0]["bare_aiohttp_per_s"]
                measured["bare_httpx_per_s"] = rows[0]["bare_httpx_per_s"]
            measured["ratio"] = round(
                measured["deliveries_per_s"] / measured["bare_aiohttp_per_s"], 2
            )
            rows.append(measured)
            print(f"  measured {subs} subscription(s), batch {batch}", flush=True)
        seconds = 2.0 if args.quick else 5.0
        lat = [
            latency(params, receiver, author, s, rate, seconds)
            for rate in (100.0, 200.0)
            for s in (1, 10)
        ]
    finally:
        receiver.stop()
        from livedata.webhooks.models import Subscription

        Subscription.objects.filter(owner__username=BENCH_USER).delete()

    print()
    print_server(info)
    print()
    print("Deliveries per second (changes acknowledged by the receiver; 'bare' = the same")
    print("signed requests from a client loop with no database, one loop per subscription)")
    print()
    print("| subscriptions | livedata deliver /s | bare aiohttp /s | ratio | bare httpx /s |")
    print("|---|---|---|---|---|")
    for r in rows:
        label = f"{r['subscriptions']}" + (f" (batch {r['batch']})" if r["batch"] > 1 else "")
        print(
            f"| {label} | {r['deliveries_per_s']:,.0f} | {r['bare_aiohttp_per_s']:,.0f} | "
            f"{r['ratio']:.2f} | {r['bare_httpx_per_s']:,.0f} |"
        )
    print()
    print("Commit -> delivery latency, one commit per transaction")
    print()
    print("| commits/s | subscriptions | deliveries/s | delivered | p50 ms | p99 ms | max ms |")
    print("|---|---|---|---|---|---|---|")
    for r in lat:
        print(
            f"| {r['rate']:.0f} | {r['subscriptions']} | {r['rate'] * r['subscriptions']:.0f} | "
            f"{r['delivered']}/{r['committed'] * r['subscriptions']} | "
            f"{r['p50_ms']} | {r['p99_ms']} | {r['max_ms']} |"
        )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps({"server": info, "throughput": rows, "latency": lat}, indent=2) + "\n"
    )
    print(f"\nwrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
