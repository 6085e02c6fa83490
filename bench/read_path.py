"""The read path under open transactions: latency, cost of one read, reads per commit.

Side by side in one run, on the listener of this process (``Listener`` + one follower):

1. **Commit → consumer latency** at 100 and 1000 commits/s (one row per commit, writer
   processes on a fixed schedule, as ``listener_latency.py``), in four conditions,
   rotated in rounds per rate, samples pooled per condition, so that the machine's state
   is shared:
   - ``none``: no other transaction open;
   - ``one long``: one unrelated transaction (it holds an xid) open for the whole phase;
   - ``N conn``: N more sessions connected, in no transaction (the control for the next);
   - ``N idle``: N sessions idle in transaction (each wrote a row of another table), N =
     100 or as many as ``max_connections`` leaves room for (PostgreSQL's default of 100
     leaves room for about 82; 100 needs ``max_connections`` of 115 or more).
   The sessions are held by a child process, as a deployment's belong to other processes.
   Reported: p50/p99/max, the ratio of p99 to ``none``'s (goal: within 1.2x) pooled and
   as the median of the rounds' ratios (each round runs every condition back to back), the
   ``N idle`` p99 over ``N conn``'s (what the open transactions cost, apart from the
   sessions' number: 100 connected backends alone delay PostgreSQL's NOTIFY delivery by
   3-4 ms on about 1% of commits on this machine, without livedata: a bare LISTEN client
   shows it), the listener's reads and this process's CPU per commit (listener, follower,
   collector). After livedata's phase, in the same condition, a bare LISTEN client (no
   livedata) measures PostgreSQL's own commit -> NOTIFY latency at 100/s: the floor under
   any reader that PostgreSQL wakes, printed as its own table with its ratios to ``none``.
2. **Cost of one read** (an empty read at the head: what every wake-up pays) with 0, 1 and
   N transactions in flight: mean ms over 500 reads, and the buffers and rows that
   ``EXPLAIN (ANALYZE, BUFFERS)`` reports for one.
3. **Reads per isolated commit**: 50 commits 50 ms apart; the listener's read count per
   commit (goal: 1).

The load generator's own lag (how far writers fell behind schedule) is reported.

    .venv/bin/python bench/read_path.py [--quick]

Writes bench/results/read_path.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psycopg

from benchlib import print_server, server_info, setup
from listener_latency import MODEL, Collector, ensure_history, percentile, run_phase

RESULTS = Path(__file__).resolve().parent / "results" / "read_path.json"
WANTED_IDLE = 100


class Open:
    """``n`` sessions held by a child process while measuring: idle in transaction, each
    holding an xid, or (``transaction=False``) only connected.

    A deployment's idle sessions belong to other processes, so the listener's process
    does not hold their connections (moving them out of it did not change the tail:
    measured, 1.79x vs 1.95x of ``none`` at 100 commits/s, within the run-to-run spread).
    """

    def __init__(self, params: dict[str, Any], n: int, *, transaction: bool = True) -> None:
        self.params, self.n, self.transaction = params, n, transaction
        self.child: subprocess.Popen[str] | None = None

    def __enter__(self) -> Open:
        if self.n:
            self.child = subprocess.Popen(
                [sys.executable, "-c", _HOLDER, json.dumps(self.params), str(self.n)]
                + (["xid"] if self.transaction else []),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            assert self.child.stdout is not None
            if self.child.stdout.readline().strip() != "ready":
                raise RuntimeError("the process holding idle transactions failed")
        return self

    def __exit__(self, *exc: object) -> None:
        if self.child is not None:
            assert self.child.stdin is not None
            self.child.stdin.close()  # it rolls back and exits
            self.child.wait(timeout=30)


_HOLDER = """
import json, sys, psycopg
params, n, xid = json.loads(sys.argv[1]), int(sys.argv[2]), sys.argv[3:] == ["xid"]
conns = []
with psycopg.connect(**params, autocommit=True) as c:
    c.execute("CREATE TABLE IF NOT EXISTS bench_held (x int)")
for _ in range(n):
    conn = psycopg.connect(**params)
    if xid:
        conn.execute("INSERT INTO bench_held VALUES (1)")  # an xid; then idle in transaction
    conns.append(conn)
print("ready", flush=True)
sys.stdin.read()
for conn in conns:
    conn.rollback()
    conn.close()
"""


def idle_sessions(params: dict[str, Any]) -> int:
    with psycopg.connect(**params, autocommit=True) as conn:
        limit = int(conn.execute("SHOW max_connections").fetchone()[0])
        used = int(conn.execute("SELECT count(*) FROM pg_stat_activity").fetchone()[0])
    return max(1, min(WANTED_IDLE, limit - used - 12))  # room for the listener and writers


BARE_CHANNEL = "livedata_bench_bare"


def bare_notify_phase(params: dict[str, Any], rate: int, seconds: float) -> list[float]:
    """PostgreSQL's own commit -> NOTIFY latency, no livedata: a writer thread commits
    ``SELECT pg_notify(channel, i)`` at ``rate``/s in autocommit, a bare LISTEN connection
    in another thread notes each arrival. Returns ms from COMMIT's return to arrival, the
    floor under any LISTEN-driven reader (livedata's included) in the same conditions."""
    import threading

    total = round(rate * seconds)
    committed: dict[str, float] = {}
    arrived: dict[str, float] = {}
    with psycopg.connect(**params, autocommit=True) as listen:
        listen.execute(f"LISTEN {BARE_CHANNEL}")
        ready = threading.Event()

        def receive() -> None:
            ready.set()
            deadline = time.perf_counter() + seconds + 10
            for note in listen.notifies(timeout=seconds + 10):
                arrived[note.payload] = time.perf_counter()
                if len(arrived) >= total or time.perf_counter() > deadline:
                    break

        thread = threading.Thread(target=receive, daemon=True)
        thread.start()
        ready.wait()
        with psycopg.connect(**params, autocommit=True) as conn:
            start = time.perf_counter() + 0.05
            for i in range(total):
                delay = start + i / rate - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                conn.execute("SELECT pg_notify(%s, %s)", (BARE_CHANNEL, str(i)))
                committed[str(i)] = time.perf_counter()
        thread.join(timeout=15)
    return sorted((arrived[k] - t) * 1000 for k, t in committed.items() if k in arrived)


async def latencies(
    params: dict[str, Any],
    idle: int,
    seconds: float,
    rounds: int,
    listener: Any,
    collector: Collector,
) -> list[dict[str, Any]]:
    """Each rate's conditions in ``rounds`` rotations of ``seconds / rounds`` each, their
    samples pooled: a p99 is the 1% worst of thousands of commits, and a few slow fsyncs
    in one phase moved it 2x between runs when each condition ran once in a block."""
    out = []
    conditions = (
        ("none", 0, False),
        ("one long", 1, True),
        # the control for the next: as many sessions, connected but in no transaction
        (f"{idle} conn", idle, False),
        (f"{idle} idle", idle, True),
    )
    for rate, writers in ((100, 1), (1000, 2)):
        # a discarded warm-up phase: the first seconds of a run carried 600 ms stalls
        # (plan caching, the first checkpoint after setup) into whichever condition ran first
        await run_phase(params, collector, rate, min(2.0, seconds / rounds), writers)
        pooled: dict[str, dict[str, Any]] = {
            name: {
                "open": n,
                "samples": [],
                "committed": 0,
                "delivered": 0,
                "missing": 0,
                "duplicates": 0,
                "behind_ms": 0.0,
                "reads": 0,
                "cpu": 0.0,
                "elapsed": 0.0,
                "p99_rounds": [],
                "bare": [],
            }
            for name, n, _ in conditions
        }
        for _ in range(rounds):
            for name, n, transaction in conditions:
                with Open(params, n, transaction=transaction):
                    await asyncio.sleep(0.2)
                    reads, cpu = listener.reads, time.process_time()
                    r = await run_phase(params, collector, rate, seconds / rounds, writers)
                    p = pooled[name]
                    p["cpu"] += time.process_time() - cpu
                    p["reads"] += listener.reads - reads
                    # PostgreSQL's own NOTIFY latency in the same condition, right after
                    p["bare"] += await asyncio.to_thread(
                        bare_notify_phase, params, 100, seconds / rounds / 3
                    )
                p["samples"] += r.samples_ms
                p["p99_rounds"].append(r.latency_ms["p99"])
                p["elapsed"] += r.committed / r.achieved_rate
                p["behind_ms"] = max(p["behind_ms"], r.max_behind_schedule_ms)
                for key in ("committed", "delivered", "missing", "duplicates"):
                    p[key] += getattr(r, key)
        for name, p in pooled.items():
            samples = sorted(p.pop("samples"))
            bare = sorted(p.pop("bare")) or [float("nan")]
            cpu, elapsed = p.pop("cpu"), p.pop("elapsed")
            out.append(
                {
                    "rate": rate,
                    "condition": name,
                    **p,
                    "achieved_rate": p["committed"] / elapsed,
                    # this process: the listener, its follower and the collector
                    "listener_cpu_us_per_commit": cpu / max(p["committed"], 1) * 1e6,
                    "p50": percentile(samples, 50),
                    "p99": percentile(samples, 99),
                    "max": samples[-1],
                    "bare_notify": {
                        "samples": len(bare),
                        "p50": percentile(bare, 50),
                        "p99": percentile(bare, 99),
                        "max": bare[-1],
                    },
                }
            )
    return out


def read_cost(params: dict[str, Any], idle: int) -> list[dict[str, Any]]:
    from livedata.capture import log
    from livedata.capture.listener import _generic_plans

    out = []
    for n in (0, 1, idle):
        with Open(params, n), psycopg.connect(**_generic_plans(params)) as conn:
            # a later commit moves xmax past the held ones: they are in the snapshot's xip
            conn.execute("SELECT pg_current_xact_id()")
            position = log.head(conn)
            assert len(position.snapshot.xip) >= n, "the held transactions are not in flight"
            for _ in range(50):  # warm up (and let the generic plan settle)
                log.read_batch(conn, position)
            t0 = time.perf_counter()
            reads = 500
            for _ in range(reads):
                log.read_batch(conn, position)
            ms = (time.perf_counter() - t0) / reads * 1000
            sql, args = log._read_query(position, 1000, None, None)
            plan = conn.execute("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + sql, args)
            top = plan.fetchone()[0][0]["Plan"]
            rows, buffers = _walk(top)
            out.append(
                {
                    "in_flight": n,
                    "position_chars": len(str(position)),
                    "ms_per_read": ms,
                    "rows_examined": rows,
                    "buffers": buffers,
                }
            )
    return out


def _walk(node: dict[str, Any]) -> tuple[int, int]:
    """Rows read by scans, and shared buffers touched, in an EXPLAIN JSON plan."""
    rows = 0
    if "Scan" in node["Node Type"] and node.get("Relation Name"):
        rows += int(node.get("Actual Rows", 0) * node.get("Actual Loops", 1))
        rows += int(node.get("Rows Removed by Filter", 0))
    buffers = node.get("Shared Hit Blocks", 0) + node.get("Shared Read Blocks", 0)
    for child in node.get("Plans", []):
        r, _ = _walk(child)
        rows += r
    return rows, buffers


async def reads_per_commit(params: dict[str, Any], listener: Any, collector: Collector) -> float:
    collector.prefix = "solo-"
    await asyncio.sleep(0.5)
    before = listener.reads
    commits = 50
    with psycopg.connect(**params, autocommit=True) as conn:
        for i in range(commits):
            conn.execute(
                "INSERT INTO livedata_demo_author (name, email) VALUES (%s, %s)",
                [f"solo {i}", f"solo-{i}-{time.monotonic_ns()}@example.invalid"],
            )
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)
        conn.execute("DELETE FROM livedata_demo_author WHERE email LIKE 'solo-%%'")
    await asyncio.sleep(0.5)
    # the DELETE is one more commit (one statement-level read)
    return (listener.reads - before) / (commits + 1)


async def bench(params: dict[str, Any], idle: int, seconds: float, rounds: int) -> dict[str, Any]:
    from livedata.capture.listener import Listener

    collector = Collector()
    listener = Listener(models=[MODEL], params=params)
    listener.poll_interval = 60  # only NOTIFYs drive reads: they are what is counted
    listener.follow(collector)
    task = asyncio.create_task(listener.run())
    try:
        await asyncio.wait_for(listener.connected.wait(), timeout=30)
        lat = await latencies(params, idle, seconds, rounds, listener, collector)
        per_commit = await reads_per_commit(params, listener, collector)
    finally:
        listener.stop()
        await task
    return {"latency": lat, "reads_per_commit": per_commit}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="1.5 s per condition, in 1 round")
    parser.add_argument("--rounds", type=int, default=5, help="rotations of the conditions")
    parser.add_argument("--seconds", type=float, default=10.0, help="per condition, all rounds")
    args = parser.parse_args()
    seconds, rounds = (1.5, 1) if args.quick else (args.seconds, args.rounds)
    params = setup()
    ensure_history(params)
    info = server_info(params)
    print_server(info)
    idle = idle_sessions(params)
    print(
        f"Runs: {seconds:g} s per condition in {rounds} rotation(s), one row per commit; "
        f"{idle} idle sessions\n"
    )

    result = asyncio.run(bench(params, idle, seconds, rounds))
    cost = read_cost(params, idle)

    base = {r["rate"]: r for r in result["latency"] if r["condition"] == "none"}
    conn = {r["rate"]: r for r in result["latency"] if r["condition"] == f"{idle} conn"}
    print(
        f"{'rate/s':>6} {'condition':<10} {'achieved/s':>10} {'behind ms':>9} {'delivered':>11} "
        f"{'p50 ms':>7} {'p99 ms':>7} {'max ms':>7} {'p99 vs none':>11} {'per round':>9} "
        f"{'vs conn':>7} {'reads':>6} "
        f"{'cpu us/commit':>13}"
    )
    for r in result["latency"]:
        r["p99_ratio"] = r["p99"] / base[r["rate"]]["p99"]
        # the same ratio round by round (each round runs every condition side by side)
        ratios = sorted(
            a / b for a, b in zip(r["p99_rounds"], base[r["rate"]]["p99_rounds"], strict=True)
        )
        r["p99_ratio_median_round"] = ratios[len(ratios) // 2]
        r["p99_vs_conn"] = r["p99"] / conn[r["rate"]]["p99"]
        ok = "ok" if not r["missing"] and not r["duplicates"] else "LOSS/DUP"
        print(
            f"{r['rate']:>6} {r['condition']:<10} {r['achieved_rate']:>10.1f} "
            f"{r['behind_ms']:>9.1f} {r['delivered']:>5}/{r['committed']:<5} "
            f"{r['p50']:>7.2f} {r['p99']:>7.2f} {r['max']:>7.2f} {r['p99_ratio']:>10.2f}x "
            f"{r['p99_ratio_median_round']:>8.2f}x {r['p99_vs_conn']:>6.2f}x "
            f"{r['reads']:>6} {r['listener_cpu_us_per_commit']:>13.0f} {ok}"
        )
    print(
        "\nPostgreSQL alone (no livedata): commit -> NOTIFY at a bare LISTEN client, 100/s,"
        " in each condition right after livedata's phase"
    )
    print(
        f"{'rate/s':>6} {'condition':<10} {'samples':>7} {'p50 ms':>7} {'p99 ms':>7} "
        f"{'max ms':>7} {'p99 vs none':>11} {'livedata p99 vs none':>20}"
    )
    for r in result["latency"]:
        b, b0 = r["bare_notify"], base[r["rate"]]["bare_notify"]
        r["bare_notify"]["p99_ratio"] = b["p99"] / b0["p99"]
        print(
            f"{r['rate']:>6} {r['condition']:<10} {b['samples']:>7} {b['p50']:>7.2f} "
            f"{b['p99']:>7.2f} {b['max']:>7.2f} {b['p99_ratio']:>10.2f}x "
            f"{r['p99_ratio']:>19.2f}x"
        )
    print(f"\n{'in flight':>9} {'position chars':>14} {'ms/read':>8} {'rows':>5} {'buffers':>7}")
    for c in cost:
        print(
            f"{c['in_flight']:>9} {c['position_chars']:>14} {c['ms_per_read']:>8.3f} "
            f"{c['rows_examined']:>5} {c['buffers']:>7}"
        )
    print(f"\nreads per isolated commit: {result['reads_per_commit']:.2f}")

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "server": info,
        "seconds": seconds,
        "rounds": rounds,
        "idle": idle,
        **result,
        "read_cost": cost,
    }
    RESULTS.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"\nWrote {RESULTS}")


if __name__ == "__main__":
    main()
