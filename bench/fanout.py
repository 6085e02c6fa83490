"""Fan-out of one popular publication (and of 100 per-author ones), livedata against a
bare broadcaster (issue 14).

Every figure is measured side by side with its ceiling in the same run: the bare
broadcaster of bench/fanout_bare.py (LISTEN, one pre-encoded ``added`` per NOTIFY written
to every subscribed socket, or to that author's with ``BooksOfAuthor``; no mergebox, no
per-client state) on the ASGI stack ``livedata serve`` uses. Before each server starts,
the bench database is reset to the django-ddp bookstore seed: 50 authors with 2 books
each (150 documents in ``AllBooks``), and bookless authors beyond when a workload
groups its clients over more.

- **Clients** are Node ``ws`` clients (bench/fanout_client.js, ``ws`` from tests/js,
  installed there with ``npm ci`` when missing), spread over ``--procs`` Node processes
  so the generator is not the bottleneck; each process reports its own event-loop lag
  (p99 / max beyond its 10 ms timer), shown as "gen lag".
- **Writer**: a separate process inserting one book per transaction with raw SQL
  (psycopg) at R changes/s (for the bare server the same statement also sends the row
  as NOTIFY); it records when each COMMIT returned, and a latency is a client's arrival
  time of that book's ``added`` minus that time (Node and Python read the same wall
  clock). A server can beat the writer's own wake-up after COMMIT on a loaded machine:
  such negative latencies are kept, and the table says when there were any.
- **Workloads** (``--only`` takes these names):

  - ``100x10``, ``1000x10``, ``1000x30``, ``1000x50``: N clients on ``AllBooks``, R
    changes/s for ``--seconds``. Per server: p50 / p99 / max latency, delivered vs
    expected, delivered msgs/s while the writer ran (the saturation figure at 50/s),
    server CPU % while the writer ran (psutil, the process tree), CPU µs per delivered
    message (until every message arrived), database transactions per change (livedata:
    ``pg_stat_database.xact_commit`` delta / changes, minus the writer's own), and the
    ratio livedata / bare. ``livedata serve`` speaks WebSocket with its own protocol
    (``livedata.server.wsprotocol``), the bare server with uvicorn's websockets-sansio;
    ``--bare-lean`` also runs the bare server on livedata's protocol ("bare-lean"), a
    second ceiling on the very same WebSocket code, with its own ratio line.
  - ``groups100``: issue 14's "1000 clients over 100 publications at 1000 changes/s"
    (bench/live_queries.py's workload, here with the Node generator): client i
    subscribes ``BooksOfAuthor`` with the id of author i % 100, the writer inserts
    books for random authors among those 100 (the first 50 have the seed's 2 books, the
    other 50 none), so each change reaches 10 clients. The same figures and ratios as
    above; the bare servers keep a set of sockets per author.
  - ``subscribe``: 1000 clients connect (server RSS growth / N: memory per idle
    session), then all subscribe ``AllBooks`` at once: seconds until all are ready, and
    RSS growth / N per subscribed client.
  - ``email50-w1``, ``email50-w4``, ``email500-w1``, ``email500-w4``: 500 clients on
    the seed's ``BooksByAuthorEmail``, spread over 50 or 500 emails (authors), on
    ``livedata serve --workers 1`` or ``4``, at 10 changes/s to random authors among
    them: database transactions per change, in all and per process (livedata only).
    A server also makes transactions with no changes at all (the listener's poll, once
    a second while no NOTIFY comes; webhook workers' reloads only while a subscription
    is active): the idle rate is measured for 3 s before the writer starts, and "net of
    idle" subtracts it over the run (an approximation: under load the listener reads on
    NOTIFY instead of polling). Any LISTEN session also costs PostgreSQL's own
    transaction per NOTIFY it is handed (no xid, no statement: ``notify_floor``, measured
    once with a bare LISTEN session); "beyond NOTIFY" subtracts that too, leaving what
    the server itself runs per change (the goal: its one log read, no re-queries).
    Counts are read 11 s after the subscriptions and after the run, since an idle
    backend reports its transactions only that late.
  - ``via-w1``, ``via-w2``, ``via-w4`` (issue 15): 200 clients on ``AllBooks`` at 10
    changes/s on ``livedata serve --workers 1``, ``2`` or ``4``, each process reading
    the log itself ("direct") against the cluster's leader feeding them through the
    broker ("broker": ``LISTENER_BROKER_URL`` on ``BENCH_REDIS``, default the machine's
    Redis, a new stream per run): commit -> client p50 / p99 side by side, and database
    transactions per change. With ``--rounds`` the pair runs that many times, alternating.

The goals of issue 14 are checked at the end (PASS / FAIL with the figure).
``--quick`` divides the clients (at least 20) and the groups (emails, authors) by 10
and runs 2 s per run: a smoke check that everything works end to end, not figures.

    .venv/bin/python -m bench.fanout [--quick] [--only 1000x10,subscribe] [--seconds 10]

Database: ``LIVEDATA_DB_NAME`` (default ``livedata_bench``) on the embedded PostgreSQL
or on ``DATABASE_URL``. Writes bench/results/fanout.json.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import psycopg
from bench import benchlib
from bench.asgi_servers import ROOT, free_port, rss, start, uvicorn
from bench.fanout_bare import CHANNEL
from bench.fanout_report import report
from bench.live_queries import server_xacts

PY = sys.executable
JS = ROOT / "tests" / "js"
GC_PROBE = ROOT / "bench" / "results" / "fanout_gc.json"  # --gc-probe: written by the server
SPAWN = multiprocessing.get_context("spawn")  # the writer: a fresh process
SEED_AUTHORS = 50
STATS_LAG = 2.5  # seconds for pg_stat_database to have the transactions made before
#: an idle backend reports its transactions only after PGSTAT_IDLE_INTERVAL (10 s): the
#: subscriptions' initial queries would otherwise land in the window counted per change
IDLE_STATS_LAG = 11.0
IDLE_SECONDS = 3.0
#: Per-address caps protect a server from one abusive client; here every client is
#: 127.0.0.1, so they are lifted (the rest of livedata's settings stay the defaults).
SERVER_SETTINGS = {
    "HTTP_MAX_CONNECTIONS_PER_ADDRESS": 0,
    "DDP_MAX_OBSERVERS_PER_ADDRESS": 1_000_000,
    "DDP_OBSERVER_RATE_LIMITS": [],
}
BOOK = "INSERT INTO livedata_demo_book (title, author_id) VALUES (%s, %s) RETURNING id"
BOOK_AND_NOTIFY = (
    "WITH b AS (INSERT INTO livedata_demo_book (title, author_id) VALUES (%s, %s)"
    " RETURNING id, title, author_id)"
    " SELECT id, pg_notify(%s, json_build_object('id', id, 'title', title,"
    " 'author_id', author_id)::text) FROM b"
)


@dataclass(frozen=True)
class Workload:
    name: str
    clients: int
    rate: float = 10.0
    publication: str = "AllBooks"
    #: client i subscribes ``publication`` for author i % groups (GROUP_PARAM), and the
    #: writer picks among those authors; 0: every client on it with no parameters
    groups: int = 0
    workers: int = 1
    #: "live": beside the bare servers; "xacts": livedata only, transactions per change
    #: (long stats lags, the NOTIFY floor); "subscribe"; "via" (direct against broker)
    kind: str = "live"


#: a grouped publication's parameter for author index g (``ids``: the seed's author ids)
GROUP_PARAM = {
    "BooksByAuthorEmail": lambda ids, g: f"author-{g}@bench.example",
    "BooksOfAuthor": lambda ids, g: ids[g],
}
WORKLOADS = [
    Workload("100x10", 100, 10),
    Workload("1000x10", 1000, 10),
    Workload("1000x30", 1000, 30),
    Workload("1000x50", 1000, 50),
    Workload("groups100", 1000, 1000, "BooksOfAuthor", 100),
    Workload("subscribe", 1000, kind="subscribe"),
    *(
        Workload(f"email{e}-w{w}", 500, 10, "BooksByAuthorEmail", e, w, kind="xacts")
        for e in (50, 500)
        for w in (1, 4)
    ),
    *(Workload(f"via-w{w}", 200, 10, workers=w, kind="via") for w in (1, 2, 4)),
]
#: livedata's own WebSocket protocol, which ``livedata serve`` runs (``--bare-lean``)
LEAN_WS = "livedata.server.wsprotocol:LeanWebSocketProtocol"
#: the broker of the "via" workloads' "broker" server
BENCH_REDIS = os.environ.get("BENCH_REDIS", "redis://127.0.0.1:6379")


def seed(params: dict[str, Any], authors: int) -> list[int]:
    """Reset to the bookstore seed: 50 authors with 2 books each (and more authors, bookless,
    when ``authors`` > 50); the author ids, in order."""
    with psycopg.connect(**params, autocommit=True) as conn:
        conn.execute("TRUNCATE livedata_demo_book, livedata_demo_author, livedata_change CASCADE")
        conn.execute(
            "INSERT INTO livedata_demo_author (name, email) SELECT 'Author ' || i,"
            " 'author-' || i || '@bench.example' FROM generate_series(0, %s - 1) i ORDER BY i",
            [max(authors, SEED_AUTHORS)],
        )
        ids = [r[0] for r in conn.execute("SELECT id FROM livedata_demo_author ORDER BY id")]
        conn.execute(
            "INSERT INTO livedata_demo_book (title, author_id)"
            " SELECT 'Book ' || k || ' of author ' || a, a FROM unnest(%s::bigint[]) a,"
            " generate_series(0, 1) k ORDER BY a, k",
            [ids[:SEED_AUTHORS]],
        )
        conn.execute("VACUUM ANALYZE livedata_demo_book, livedata_demo_author, livedata_change")
    return ids


def writer(
    params: dict[str, Any], authors: list[int], rate: float, seconds: float, notify: bool, q: Any
) -> None:
    """One book per transaction at ``rate``/s; puts {book id: (COMMIT-return ns, author
    index)} and the achieved rate."""
    rng = random.Random(1)
    commits: dict[int, tuple[int, int]] = {}
    with psycopg.connect(**params, autocommit=True) as conn:
        q.put("started")
        start_t = time.perf_counter()
        for i in range(max(2, int(rate * seconds))):
            delay = start_t + i / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            author = rng.randrange(len(authors))
            args = [str(time.time_ns()), authors[author]]
            query = BOOK_AND_NOTIFY if notify else BOOK
            book = conn.execute(query, [*args, CHANNEL] if notify else args).fetchone()[0]
            commits[book] = (time.time_ns(), author)
    times = sorted(t for t, _ in commits.values())
    q.put({"commits": commits, "rate": (len(times) - 1) / ((times[-1] - times[0]) / 1e9)})


def node_env() -> dict[str, str]:
    """Node resolving tests/js/node_modules (``npm ci`` from its lockfile when stale)."""
    stamp, lock = JS / "node_modules" / ".package-lock.json", JS / "package-lock.json"
    if not stamp.exists() or stamp.stat().st_mtime < lock.stat().st_mtime:
        npm = ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"]
        subprocess.run(npm, cwd=JS, check=True, timeout=600)
    return {**os.environ, "NODE_PATH": str(JS / "node_modules")}


class Clients:
    """N DDP clients over ``procs`` Node processes, driven by commands (fanout_client.js)."""

    def __init__(self, url: str, n: int, procs: int) -> None:
        procs = max(1, min(procs, n))
        self.counts = [n // procs + (i < n % procs) for i in range(procs)]
        self.offsets = [sum(self.counts[:i]) for i in range(procs)]
        script = str(ROOT / "bench" / "fanout_client.js")
        env = node_env()
        self.procs = [
            subprocess.Popen(
                ["node", script, json.dumps({"url": url, "clients": count})],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                env=env,
            )
            for count in self.counts
        ]
        self.expect("connected")

    def send(self, commands: list[dict[str, Any]]) -> None:
        for proc, command in zip(self.procs, commands, strict=True):
            assert proc.stdin is not None
            proc.stdin.write(json.dumps(command) + "\n")
            proc.stdin.flush()

    def expect(self, event: str) -> list[dict[str, Any]]:
        answers = []
        for proc in self.procs:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            answer = json.loads(line) if line else {"event": "error", "error": "exited"}
            if answer["event"] != event:
                raise RuntimeError(f"load generator: {answer}")
            answers.append(answer)
        return answers

    def slices(self) -> list[tuple[int, int]]:
        """(first client index, clients) of each process."""
        return list(zip(self.offsets, self.counts, strict=True))

    def subscribe(self, sub: Any) -> list[dict[str, Any]]:
        """``sub(i)`` is client i's [name, params]; the ready answers."""
        self.send(
            [
                {"cmd": "sub", "subs": [sub(o + j) for j in range(count)]}
                for o, count in self.slices()
            ]
        )
        ready = self.expect("ready")
        if any(r["nosub"] for r in ready):
            raise RuntimeError(f"subscriptions refused: {ready}")
        return ready

    def close(self) -> None:
        for proc in self.procs:
            assert proc.stdin is not None
            proc.stdin.close()
        for proc in self.procs:
            proc.wait(timeout=30)


@contextmanager
def serving(
    server: str, params: dict[str, Any], authors: int, workers: int = 1, probe: Path | None = None
) -> Iterator[Any]:
    """A freshly seeded database and the server (livedata or bare) on a free port; yields
    (process, WebSocket URL, author ids). ``probe``: run livedata under bench/gcprobe.py,
    which writes its GC pauses there when the server exits."""
    ids = seed(params, authors)
    port = free_port()
    if server.startswith("bare"):
        dsn = psycopg.conninfo.make_conninfo(**params)
        ws = LEAN_WS if server == "bare-lean" else "websockets-sansio"
        cmd = uvicorn("bench.fanout_bare:app", ws, deflate=False)
        proc = start(cmd, port, {"FANOUT_DSN": dsn})
    else:
        overrides = json.loads(os.environ.get("LIVEDATA_SETTINGS") or "{}")
        if server == "broker":
            stream = f"livedata-bench-{uuid.uuid4().hex[:8]}"
            overrides |= {"LISTENER_BROKER_URL": BENCH_REDIS, "LISTENER_BROKER_STREAM": stream}
        env = {"LIVEDATA_SETTINGS": json.dumps({**SERVER_SETTINGS, **overrides})}
        runner = ["-m", "bench.gcprobe", str(probe)] if probe else ["-m", "livedata"]
        cmd = [PY, *runner, "serve", "--port", "{port}", "--log-level", "warning"]
        proc = start([*cmd, "--workers", str(workers)], port, env)
        if workers > 1:
            time.sleep(5)  # the port opens before the worker processes have booted
    try:
        yield proc, f"ws://127.0.0.1:{port}/websocket", ids
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def cpu_seconds(proc: subprocess.Popen) -> float:
    tree = psutil.Process(proc.pid)
    return sum(sum(p.cpu_times()[:2]) for p in [tree, *tree.children(recursive=True)])


def live_run(wl: Workload, server: str, params: dict[str, Any], args: Any) -> dict[str, Any]:
    clients_n, groups = scaled(wl.clients, args.quick), groups_of(wl, args.quick)
    probe = GC_PROBE if server == "livedata" and args.gc_probe else None
    with serving(server, params, groups, wl.workers, probe) as (proc, url, ids):
        authors = ids[:groups] if groups else ids[:SEED_AUTHORS]
        clients = Clients(url, clients_n, args.procs)
        ready = clients.subscribe(lambda i: [wl.publication, sub_params(wl, groups, ids, i)])
        # pg_stat_database lags: a backend reports at most once a second, an idle one later
        lag = IDLE_STATS_LAG if wl.kind == "xacts" else STATS_LAG
        time.sleep(lag)
        idle = server_xacts(params)
        time.sleep(IDLE_SECONDS)  # what the server does with no changes (polls, webhooks)
        xacts, xacts_t = server_xacts(params), time.perf_counter()
        q = SPAWN.Queue()
        notify = server.startswith("bare")  # the bare servers take the row from a NOTIFY
        w = SPAWN.Process(target=writer, args=(params, authors, wl.rate, args.seconds, notify, q))
        w.start()
        assert q.get() == "started"
        clients.send([{"cmd": "lag"}] * len(clients.procs))
        cpu0, t0, wall0 = cpu_seconds(proc), time.perf_counter(), time.time()
        out = q.get()
        w.join()
        cpu1, t1, wall1 = cpu_seconds(proc), time.perf_counter(), time.time()
        commits = {book: ns / 1e6 for book, (ns, _) in out["commits"].items()}
        times = sorted(commits.values())
        expected = [expected_of(groups, o, count, out["commits"]) for o, count in clients.slices()]
        clients.send(
            [
                {"cmd": "report", "commits": commits, "expected": e, "until": times[-1]}
                | {"deadline": times[-1] + 10_000}
                for e in expected
            ]
        )
        reports = clients.expect("report")
        cpu2 = cpu_seconds(proc)
        clients.close()
        time.sleep(lag)
        spent = server_xacts(params) - xacts - len(commits)
        idle_rate, spent_s = (xacts - idle) / IDLE_SECONDS, time.perf_counter() - xacts_t
    hist: dict[int, int] = {}
    for r in reports:
        for b, n in r["hist"].items():
            hist[int(b)] = hist.get(int(b), 0) + n
    delivered = sum(r["delivered"] for r in reports)
    window = (times[-1] - times[0]) / 1000
    return {
        "clients": clients_n,
        "publication": wl.publication,
        "groups": groups,
        "initial_docs_min": min(r["docsMin"] for r in ready),
        "initial_docs_max": max(r["docsMax"] for r in ready),
        "rate": wl.rate,
        "achieved_rate": out["rate"],
        "changes": len(commits),
        "expected": sum(expected),
        "delivered": delivered,
        "msgs_s": sum(r["inWindow"] for r in reports) / window,
        **percentiles(hist),
        "cpu_pct": 100 * (cpu1 - cpu0) / (t1 - t0),
        "cpu_us_per_msg": 1e6 * (cpu2 - cpu0) / max(1, delivered),
        "db_xacts_per_change": spent / len(commits),
        "db_idle_xacts_s": idle_rate,
        "db_xacts_per_change_net_idle": (spent - idle_rate * spent_s) / len(commits),
        "workers": wl.workers,
        "gen_lag_p99_ms": max(r["lagP99Ms"] for r in reports),
        "gen_lag_max_ms": max(r["lagMaxMs"] for r in reports),
        **({"gc": gc_during(probe, wall0, wall1)} if probe else {}),
    }


def gc_during(probe: Path, start: float, end: float) -> dict[str, Any]:
    """The server's GC summary, and its full collections while the writer ran."""
    gc = json.loads(probe.read_text())
    during = [c for t, c in gc["full_collections"] if start <= t <= end]
    gc["full_while_writing"] = {"count": len(during), "cpu_ms_max": max(during, default=0.0)}
    return gc


def notify_floor(params: dict[str, Any], changes: int = 50) -> float:
    """Transactions per change that any LISTEN session costs: PostgreSQL hands an idle
    listener each NOTIFY inside a transaction of its own (no xid, no statement, but it is
    in ``xact_commit``). Measured with one bare LISTEN session and the bench's writes."""
    seed(params, SEED_AUTHORS)
    with psycopg.connect(**params, autocommit=True) as writer:
        author = writer.execute("SELECT min(id) FROM livedata_demo_author").fetchone()[0]
        listener = psycopg.connect(**params, autocommit=True)
        listener.execute("LISTEN livedata")
        time.sleep(IDLE_STATS_LAG)
        before = server_xacts(params)
        for i in range(changes):
            writer.execute(BOOK, [f"floor {i}", author])
            time.sleep(0.02)
        listener.close()  # an idle backend reports its transactions when it ends
    time.sleep(STATS_LAG)
    return (server_xacts(params) - before - changes) / changes


def sub_params(wl: Workload, groups: int, ids: list[int], i: int) -> list[Any]:
    """Client i's subscription parameters: its group's (author i % groups), or none."""
    return [GROUP_PARAM[wl.publication](ids, i % groups)] if groups else []


def expected_of(groups: int, offset: int, count: int, commits: dict[int, Any]) -> int:
    """How many live ``added`` clients offset..offset+count-1 must receive (client i is on
    author i % groups; 0: every client sees every book)."""
    if not groups:
        return count * len(commits)
    per_group = Counter((offset + j) % groups for j in range(count))
    return sum(per_group[author] for _, author in commits.values())


def percentiles(hist: dict[int, int]) -> dict[str, float]:
    """min / p50 / p99 / max in ms of a histogram of 0.1 ms bins (a negative min: the
    writer was scheduled late after its COMMIT returned)."""
    quantiles = {"min_ms": 0.0, "p50_ms": 0.5, "p99_ms": 0.99, "max_ms": 1.0}
    total, seen, out = sum(hist.values()), 0, dict.fromkeys(quantiles, float("nan"))
    wanted = list(quantiles.items())
    for b in sorted(hist):
        seen += hist[b]
        while wanted and seen >= wanted[0][1] * total:
            out[wanted.pop(0)[0]] = b / 10
    return out


def subscribe_run(wl: Workload, server: str, params: dict[str, Any], args: Any) -> dict[str, Any]:
    n = scaled(wl.clients, args.quick)
    with serving(server, params, SEED_AUTHORS) as (proc, url, _):
        warm = Clients(url, 10, 1)  # code paths and caches warm, not AllBooks' observer
        warm.subscribe(lambda i: ["LatestBooks", [1]])
        time.sleep(1)
        base = rss(proc)
        clients = Clients(url, n, args.procs)
        time.sleep(1)
        idle = rss(proc)
        ready = clients.subscribe(lambda i: ["AllBooks", []])
        time.sleep(1)
        subscribed = rss(proc)
        clients.close()
        warm.close()
    return {
        "clients": n,
        "all_ready_s": (max(r["end"] for r in ready) - min(r["start"] for r in ready)) / 1000,
        "docs_min": min(r["docsMin"] for r in ready),
        "docs_max": max(r["docsMax"] for r in ready),
        "nosub": sum(r["nosub"] for r in ready),
        "kib_per_idle_session": (idle - base) / n / 1024,
        "kib_per_subscribed_client": (subscribed - idle) / n / 1024,
    }


def scaled(clients: int, quick: bool) -> int:
    return max(20, clients // 10) if quick else clients


def groups_of(wl: Workload, quick: bool) -> int:
    """Distinct groups (authors): with --quick a tenth too, to keep the clients per group."""
    return max(1, wl.groups // 10) if quick and wl.groups else wl.groups


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="few clients, 2 s: a smoke check")
    parser.add_argument(
        "--only", help="comma-separated workload names: " + ", ".join(w.name for w in WORKLOADS)
    )
    parser.add_argument("--seconds", type=float, help="writer seconds per run (10; 2 quick)")
    parser.add_argument("--procs", type=int, default=4, help="Node load-generator processes")
    parser.add_argument(
        "--gc-probe", action="store_true", help="record livedata's GC pauses (bench/gcprobe.py)"
    )
    parser.add_argument(
        "--bare-lean",
        action="store_true",
        help="also run the bare broadcaster on livedata's own WebSocket protocol",
    )
    parser.add_argument(
        "--rounds", type=int, default=1, help="times each via-* pair runs, alternating"
    )
    args = parser.parse_args()
    args.seconds = args.seconds or (2.0 if args.quick else 10.0)
    names = args.only.split(",") if args.only else [w.name for w in WORKLOADS]
    unknown = set(names) - {w.name for w in WORKLOADS}
    if unknown:
        parser.error(f"unknown workloads: {', '.join(sorted(unknown))}")
    params = benchlib.setup()
    results: dict[str, Any] = {
        "quick": args.quick,
        "seconds": args.seconds,
        "procs": args.procs,
        "postgres": benchlib.server_info(params),
        "runs": {},
    }
    if any(w.kind == "xacts" for w in WORKLOADS if w.name in names):
        results["notify_floor"] = notify_floor(params)
    for wl in (w for w in WORKLOADS if w.name in names):
        run = subscribe_run if wl.kind == "subscribe" else live_run
        if wl.kind == "via":
            pair = ("direct", "broker")
            servers = [
                f"{s}#{i}" for i in range(args.rounds) for s in (pair if i % 2 == 0 else pair[::-1])
            ]
        else:
            servers = ["livedata"] if wl.kind == "xacts" else ["livedata", "bare"]
            if args.bare_lean and wl.kind != "xacts":
                servers.append("bare-lean")
        results["runs"][wl.name] = {s: run(wl, s.split("#")[0], params, args) for s in servers}
        print(f"{wl.name}: done", flush=True)
    benchlib.print_server(results["postgres"])
    report(results)
    benchlib.write_results("fanout", results)


if __name__ == "__main__":
    main()
