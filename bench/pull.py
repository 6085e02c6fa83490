"""The pull feed: snapshot throughput vs Django REST framework, change latency, and 1000
held long-poll clients on one ``livedata serve`` process.

1. **Snapshot rows/s.** The demo's ``livedata_demo_book`` holds 1,000,000 rows (100,000 with
   ``--quick``). One client reads all of them, one request after the other, through the
   feed (``PullClient``, ``live=False``, pages of 1000 and of 10,000) and through a Django
   REST framework ``ListAPIView`` with ``CursorPagination`` ordered by id (pages of 1000
   and 10,000) on the same server process, the same bearer token for both, each client
   parsing the JSON. Reported: rows/s and the ratio ours / DRF (goal: at least 3x).
2. **Change latency.** A writer process commits one book per transaction at 50/s for
   5 s (its ``time.time_ns()`` in the title); a long-poll ``PullClient`` and an SSE
   ``PullClient`` (both from ``offset=now``) and, as the ceiling, a bare
   ``livedata.capture.listener.Listener`` in this process see each row. Latency =
   arrival - commit stamp: p50/p99 per path.
3. **1000 held long-poll clients.** 1000 clients (one httpx AsyncClient, one connection
   each) hold ``live=true`` requests on one server; then 10 commits, one a second. Every
   commit must reach every client (each answers, and the client asks again). Reported:
   server memory per held client, delivery latency p50/p99, delivered vs expected, and
   server database transactions per commit (pg_stat_database; the feed answers held
   clients from memory, the rest is each re-poll's authentication).

    .venv/bin/python -m bench.pull [--quick]

Writes bench/results/pull.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import resource
import statistics
import sys
import time
from typing import Any

import httpx
import psutil
import psycopg
from bench.asgi_servers import ROOT, free_port, start

PY = sys.executable
ENV = {
    "LIVEDATA_DB_NAME": "livedata_bench",
    "DJANGO_SETTINGS_MODULE": "bench.pull_bench_settings",
    "PYTHONPATH": str(ROOT),
    "LIVEDATA_SETTINGS": json.dumps({"PULL_MAX_LIVE_CLIENTS": 5000}),
    "LIVEDATA_DEBUG": "0",  # DEBUG records every query: measure production settings
}
SPAWN = multiprocessing.get_context("spawn")


def setup() -> dict[str, Any]:
    os.environ.update(ENV)
    sys.path.insert(0, str(ROOT / "bench"))
    from benchlib import setup as bench_setup

    return bench_setup()


def prepare(params: dict[str, Any], rows: int) -> int:
    """``rows`` books (kept between runs), an empty change log; returns an author id."""
    with psycopg.connect(**params, autocommit=True) as db:
        author = db.execute(
            "INSERT INTO livedata_demo_author (name, email)"
            " VALUES ('Bench', 'bench-pull@example.com')"
            " ON CONFLICT (email) DO UPDATE SET name = 'Bench' RETURNING id"
        ).fetchone()[0]
        have = db.execute("SELECT count(*) FROM livedata_demo_book").fetchone()[0]
        if have != rows:
            print(f"seeding {rows:,} books...", flush=True)
            db.execute("TRUNCATE livedata_demo_book")
            db.execute(
                "INSERT INTO livedata_demo_book (title, author_id) "
                "SELECT 'Book number ' || g, %s FROM generate_series(1, %s) g",
                [author, rows],
            )
        db.execute("TRUNCATE livedata_change")
        db.execute("VACUUM ANALYZE livedata_demo_book, livedata_change")
    return author


def issue_token() -> str:
    from django.contrib.auth.models import User

    from livedata.accounts import tokens

    user, _ = User.objects.get_or_create(username="bench-pull")
    user.is_superuser = True  # no permission queries on either side
    user.save()
    return tokens.issue(user, kind="api")[0]


def snapshot_ours(base: str, token: str, limit: int) -> tuple[int, float]:
    from livedata.pull import PullClient

    rows = 0
    started = time.perf_counter()
    for batch in PullClient(
        base + "/livedata/", "livedata_demo.book", token=token, limit=limit, live=False
    ):
        rows += len(batch.messages)
    return rows, time.perf_counter() - started


def snapshot_drf(base: str, token: str, page_size: int) -> tuple[int, float]:
    rows = 0
    url: str | None = f"{base}/drf/books/?page_size={page_size}"
    started = time.perf_counter()
    with httpx.Client(headers={"Authorization": f"Bearer {token}"}, timeout=120) as http:
        while url:
            response = http.get(url)
            response.raise_for_status()
            page = response.json()
            rows += len(page["results"])
            url = page["next"]
    return rows, time.perf_counter() - started


def writer(params: dict[str, Any], author: int, rate: float, count: int, q: Any) -> None:
    """Commit ``count`` books at ``rate``/s, each titled with its commit time (ns)."""
    with psycopg.connect(**params, autocommit=True) as db:
        start = time.perf_counter()
        for i in range(count):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            db.execute(
                "INSERT INTO livedata_demo_book (title, author_id) VALUES (%s, %s)",
                [str(time.time_ns()), author],
            )
    q.put(count)


def run_writer(params: dict[str, Any], author: int, rate: float, count: int) -> Any:
    q = SPAWN.Queue()
    proc = SPAWN.Process(target=writer, args=(params, author, rate, count, q))
    proc.start()
    return proc, q


def stamp(message: dict[str, Any]) -> float | None:
    title = (message.get("value") or {}).get("title", "")
    return (time.time_ns() - int(title)) / 1e6 if title.isdigit() else None


def percentiles(values: list[float]) -> dict[str, float]:
    lat = sorted(values) or [float("nan")]
    return {
        "n": len(values),
        "p50_ms": statistics.median(lat),
        "p99_ms": lat[min(len(lat) - 1, int(len(lat) * 0.99))],
        "max_ms": lat[-1],
    }


async def latency(base: str, token: str, params: dict[str, Any], author: int) -> dict[str, Any]:
    from livedata.capture.listener import Listener
    from livedata.pull import PullClient

    rate, count = 50.0, 250
    seen: dict[str, list[float]] = {"listener": [], "long-poll": [], "sse": []}
    listener = Listener(models=["livedata_demo.book"])

    async def on_rows(batch: Any) -> None:
        for row in batch.rows:
            ms = stamp({"value": row.new or {}})
            if ms is not None:
                seen["listener"].append(ms)

    listener.follow(on_rows)

    async def follow(name: str, sse: bool) -> None:
        client = PullClient(
            base + "/livedata/", "livedata_demo.book", token=token, offset="now", sse=sse
        )
        async for batch in client:
            for message in batch.messages:
                ms = stamp(message)
                if ms is not None:
                    seen[name].append(ms)

    tasks = [
        asyncio.create_task(listener.run()),
        asyncio.create_task(follow("long-poll", False)),
        asyncio.create_task(follow("sse", True)),
    ]
    await asyncio.sleep(2.0)  # all three up to date
    proc, q = run_writer(params, author, rate, count)
    await asyncio.to_thread(q.get)
    proc.join()
    deadline = time.monotonic() + 10
    while min(len(v) for v in seen.values()) < count and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    listener.stop()
    for task in tasks[1:]:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return {"rate": rate, "committed": count, **{k: percentiles(v) for k, v in seen.items()}}


def server_xacts(params: dict[str, Any]) -> int:
    with psycopg.connect(**{**params, "dbname": "postgres"}) as conn:
        return conn.execute(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = %s", [params["dbname"]]
        ).fetchone()[0]


async def held_clients(
    base: str, token: str, params: dict[str, Any], author: int, n: int, server: psutil.Process
) -> dict[str, Any]:
    commits = 10
    url = base + "/livedata/pull/livedata_demo.book"
    limits = httpx.Limits(max_connections=n + 10, max_keepalive_connections=n + 10)
    latencies: list[float] = []
    async with httpx.AsyncClient(
        headers={"Authorization": f"Bearer {token}"}, limits=limits, timeout=120
    ) as http:
        first = await http.get(url, params={"offset": "now"})
        handle, offset = first.headers["Livedata-Handle"], first.headers["Livedata-Offset"]
        base_rss = server.memory_info().rss

        async def client() -> None:
            at = offset
            while True:
                try:
                    r = await http.get(url, params={"offset": at, "handle": handle, "live": "true"})
                except httpx.HTTPError:
                    await asyncio.sleep(0.5)
                    continue
                if r.status_code != 200:
                    await asyncio.sleep(0.5)
                    continue
                at = r.headers["Livedata-Offset"]
                for message in r.json():
                    ms = stamp(message)
                    if ms is not None:
                        latencies.append(ms)

        tasks = [asyncio.create_task(client()) for _ in range(n)]
        await asyncio.sleep(5.0)  # every request held
        held_rss = server.memory_info().rss
        before = await asyncio.to_thread(server_xacts, params)
        proc, q = run_writer(params, author, 1.0, commits)
        await asyncio.to_thread(q.get)
        proc.join()
        deadline = time.monotonic() + 30
        while len(latencies) < n * commits and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)  # pg_stat_database is updated asynchronously
        spent = await asyncio.to_thread(server_xacts, params) - before - commits
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return {
        "clients": n,
        "commits": commits,
        "expected": n * commits,
        "delivered": len(latencies),
        "rss_kib_per_held_client": (held_rss - base_rss) / n / 1024,
        "server_rss_mib": held_rss / 2**20,
        "server_xacts_per_commit": spent / commits,
        **percentiles(latencies),
    }


async def held_sse(
    base: str, token: str, params: dict[str, Any], author: int, n: int, server: psutil.Process
) -> dict[str, Any]:
    """The same as ``held_clients`` with server-sent event streams (no re-polls)."""
    commits = 10
    url = base + "/livedata/pull/livedata_demo.book"
    limits = httpx.Limits(max_connections=n + 10, max_keepalive_connections=n + 10)
    latencies: list[float] = []
    ready = 0
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(headers=headers, limits=limits, timeout=120) as http:
        first = await http.get(url, params={"offset": "now"})
        handle, offset = first.headers["Livedata-Handle"], first.headers["Livedata-Offset"]
        base_rss = server.memory_info().rss

        async def client() -> None:
            nonlocal ready
            params = {"offset": offset, "handle": handle}
            sse = {"Accept": "text/event-stream"}
            async with http.stream("GET", url, params=params, headers=sse) as r:
                async for line in r.aiter_lines():
                    if not line.startswith("data:"):
                        continue
                    message = json.loads(line[5:])
                    if message.get("control") == "up-to-date" and not message.get("seen"):
                        ready += 1
                    ms = stamp(message)
                    if ms is not None:
                        latencies.append(ms)

        tasks = [asyncio.create_task(client()) for _ in range(n)]
        deadline = time.monotonic() + 60
        while ready < n and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)
        held_rss = server.memory_info().rss
        before = await asyncio.to_thread(server_xacts, params)
        proc, q = run_writer(params, author, 1.0, commits)
        await asyncio.to_thread(q.get)
        proc.join()
        deadline = time.monotonic() + 30
        while len(latencies) < n * commits and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)
        spent = await asyncio.to_thread(server_xacts, params) - before - commits
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return {
        "clients": n,
        "commits": commits,
        "expected": n * commits,
        "delivered": len(latencies),
        "rss_kib_per_held_client": (held_rss - base_rss) / n / 1024,
        "server_rss_mib": held_rss / 2**20,
        "server_xacts_per_commit": spent / commits,
        **percentiles(latencies),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    rows, clients = (100_000, 200) if args.quick else (1_000_000, 1000)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 8192)), hard))
    params = setup()
    from benchlib import server_info

    info = server_info(params)
    author = prepare(params, rows)
    token = issue_token()
    results: dict[str, Any] = {"server": info, "rows": rows, "snapshot": []}
    port = free_port()
    proc = start(
        [PY, "-m", "livedata", "serve", "--port", "{port}", "--log-level", "warning"], port, ENV
    )
    base = f"http://127.0.0.1:{port}"
    try:
        server = psutil.Process(proc.pid)
        for page in (1000, 10_000):
            got, ours = snapshot_ours(base, token, page)
            assert got == rows, (got, rows)
            got, drf = snapshot_drf(base, token, page)
            assert got == rows, (got, rows)
            results["snapshot"].append(
                {
                    "page": page,
                    "ours_rows_s": rows / ours,
                    "drf_rows_s": rows / drf,
                    "ratio": drf / ours,
                }
            )
            print(
                f"snapshot, pages of {page}: ours {rows / ours:,.0f} rows/s, "
                f"DRF {rows / drf:,.0f} rows/s",
                flush=True,
            )
        results["latency"] = asyncio.run(latency(base, token, params, author))
        results["held"] = asyncio.run(held_clients(base, token, params, author, clients, server))
        results["held_sse"] = asyncio.run(held_sse(base, token, params, author, clients, server))
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    with psycopg.connect(**params, autocommit=True) as db:
        db.execute("DELETE FROM livedata_demo_book WHERE title ~ '^[0-9]+$'")
    report(results)
    out = ROOT / "bench" / "results" / "pull.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"\nWrote {out}")


def report(results: dict[str, Any]) -> None:
    from benchlib import print_server

    print_server(results["server"])
    print(f"\nSnapshot of {results['rows']:,} rows, one client, JSON parsed by the client")
    print(f"{'page':>7} {'pull rows/s':>12} {'DRF rows/s':>11} {'ratio':>6}")
    for s in results["snapshot"]:
        print(
            f"{s['page']:>7} {s['ours_rows_s']:>12,.0f} {s['drf_rows_s']:>11,.0f} "
            f"{s['ratio']:>5.1f}x"
        )
    lat = results["latency"]
    print(f"\nCommit -> client, {lat['committed']} commits at {lat['rate']:.0f}/s")
    print(f"{'path':>22} {'seen':>6} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    for name in ("listener", "long-poll", "sse"):
        v = lat[name]
        label = {
            "listener": "listener (ceiling)",
            "long-poll": "pull long-poll",
            "sse": "pull SSE",
        }[name]
        print(
            f"{label:>22} {v['n']:>6} {v['p50_ms']:>8.1f} {v['p99_ms']:>8.1f} {v['max_ms']:>8.1f}"
        )
    for key, kind in (("held", "long-poll"), ("held_sse", "SSE")):
        held = results[key]
        print(
            f"\n{held['clients']} held {kind} clients, one server process, "
            f"{held['commits']} commits at 1/s"
        )
        print(
            f"  delivered {held['delivered']}/{held['expected']}, p50 {held['p50_ms']:.0f} ms, "
            f"p99 {held['p99_ms']:.0f} ms, max {held['max_ms']:.0f} ms"
        )
        print(
            f"  server memory {held['rss_kib_per_held_client']:.1f} KiB per held client "
            f"(RSS {held['server_rss_mib']:.0f} MiB); "
            f"{held['server_xacts_per_commit']:.0f} server transactions per commit"
        )


if __name__ == "__main__":
    main()
