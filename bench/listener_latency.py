"""Latency from commit to listener callback, at a fixed commit rate.

A ``livedata.capture.listener.Listener`` runs in this process's asyncio loop (main
thread) with one consumer. Writer processes, each with its own sync psycopg connection in
autocommit mode, insert rows into the captured demo table ``livedata_demo_author`` on a fixed
schedule (open loop: a late writer does not wait, it catches up), one row per
transaction, at 100 and then 1000 commits/s, a few seconds each. Each row's email is a
unique marker. The commit time is ``time.perf_counter()`` right after ``execute()``
returns; the delivery time is ``time.perf_counter()`` when the consumer is called with
the batch holding that row. Latency = delivery - commit (``perf_counter`` is the
machine's monotonic clock, the same in every process; writers are processes rather than
threads so that no timestamp waits for the other side's GIL).

Reported per rate: achieved commit rate (commits / time from scheduled start to last
commit), how far the writers fell behind schedule, latency p50/p95/p99/max in ms, and
committed vs delivered rows: every committed row must be delivered exactly once (no
loss, no duplicate). The inserted rows are deleted afterwards. Before measuring, the change
log is given at least 50,000 rows of history (written directly, as a model no consumer
reads) and analyzed: reads of an empty log are planned differently and run faster.

    .venv/bin/python bench/listener_latency.py [--quick] [--writers N]

``--writers`` sets the writer connections at 1000/s (default 2; one alone reaches about
1000/s on a 2-core machine too, but a few slow commits put it tens of ms behind schedule);
100/s always uses one. Writes bench/results/listener_latency.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import multiprocessing
import time
import uuid
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from benchlib import print_server, server_info, setup

RESULTS = Path(__file__).resolve().parent / "results" / "listener_latency.json"
TABLE = "livedata_demo_author"
MODEL = "livedata_demo.author"
LOG_TABLE = "livedata_change"
HISTORY_ROWS = 50_000  # the change log holds at least this many rows while measuring
DELIVERY_TIMEOUT = 10.0  # seconds to wait for the last rows after the last commit
SETTLE = 1.2  # then wait this long for duplicates (longer than the listener's poll timer)


@dataclass
class PhaseResult:
    target_rate: int
    writers: int
    seconds: float
    committed: int
    delivered: int
    missing: int
    duplicates: int
    achieved_rate: float
    max_behind_schedule_ms: float
    latency_ms: dict[str, float]
    samples_ms: list[float] = field(default_factory=list, repr=False)  # sorted

    @property
    def ok(self) -> bool:
        return self.committed == self.delivered and not self.missing and not self.duplicates


class Collector:
    """The listener's consumer: notes when each marked row arrives."""

    def __init__(self) -> None:
        self.prefix = "\0"
        self.received: defaultdict[str, list[float]] = defaultdict(list)

    async def __call__(self, batch: Any) -> None:
        now = time.perf_counter()
        for row in batch.rows:
            email = (row.new or {}).get("email", "")
            if row.op == "insert" and email.startswith(self.prefix):
                self.received[email].append(now)


Commit = tuple[str, float, float]  # (email, scheduled, committed), perf_counter seconds


def write(
    params: dict[str, Any],
    prefix: str,
    indexes: range,
    rate: float,
    start: Any,  # multiprocessing Value: the scheduled time of row 0
    go: Any,  # multiprocessing Event: set once ``start`` is
    results: Any,  # multiprocessing Queue
) -> None:
    """One writer process: insert row i at ``start + i / rate``; report its commits."""
    try:
        sql = f"INSERT INTO {TABLE} (name, email) VALUES (%s, %s)"
        commits: list[Commit] = []
        with psycopg.connect(**params, autocommit=True) as conn:
            conn.execute("SELECT 1")
            results.put(("ready", None))
            go.wait()
            for i in indexes:
                scheduled = start.value + i / rate
                delay = scheduled - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                email = f"{prefix}{i}@example.invalid"
                conn.execute(sql, (f"Bench {i}", email))
                commits.append((email, scheduled, time.perf_counter()))
        results.put(("done", commits))
    except BaseException as exc:
        results.put(("error", repr(exc)))


def run_writers(
    params: dict[str, Any], prefix: str, rate: int, seconds: float, n_writers: int
) -> tuple[list[Commit], float]:
    """Run the writer processes; returns their commits and the scheduled start.

    Writers are processes, not threads, so that the listener and the writers never wait
    for each other's GIL (which would skew both timestamps). ``perf_counter()`` is
    CLOCK_MONOTONIC, the same clock in every process of the machine.
    """
    ctx = multiprocessing.get_context("spawn")
    total = round(rate * seconds)
    start, go, results = ctx.Value("d", 0.0), ctx.Event(), ctx.Queue()
    procs = [
        ctx.Process(
            target=write,
            args=(params, prefix, range(k, total, n_writers), rate, start, go, results),
            daemon=True,
        )
        for k in range(n_writers)
    ]
    for proc in procs:
        proc.start()
    commits: list[Commit] = []
    try:
        for expected in ("ready", "done"):
            for _ in procs:
                kind, value = results.get(timeout=60 + seconds)
                if kind == "error":
                    raise RuntimeError(f"writer failed: {value}")
                assert kind == expected, (kind, expected)
                if kind == "done":
                    commits.extend(value)
            if expected == "ready":
                start.value = time.perf_counter() + 0.05
                go.set()
    finally:
        for proc in procs:
            proc.join(timeout=5)
    return commits, start.value


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    rank = math.ceil(q / 100 * len(sorted_values))
    return sorted_values[min(max(rank, 1), len(sorted_values)) - 1]


async def run_phase(
    params: dict[str, Any], collector: Collector, rate: int, seconds: float, n_writers: int
) -> PhaseResult:
    prefix = f"bench-{uuid.uuid4().hex[:8]}-{rate}-"
    collector.prefix = prefix
    commits, start = await asyncio.to_thread(run_writers, params, prefix, rate, seconds, n_writers)
    wanted = {email for email, _, _ in commits}
    deadline = time.perf_counter() + DELIVERY_TIMEOUT
    while not wanted <= collector.received.keys() and time.perf_counter() < deadline:
        await asyncio.sleep(0.01)
    await asyncio.sleep(SETTLE)

    received = dict(collector.received)
    collector.received.clear()
    latencies = sorted(
        (received[email][0] - committed) * 1000
        for email, _, committed in commits
        if email in received
    ) or [math.nan]
    last_commit = max(committed for _, _, committed in commits)
    result = PhaseResult(
        target_rate=rate,
        writers=n_writers,
        seconds=seconds,
        committed=len(commits),
        delivered=sum(len(times) for times in received.values()),
        missing=len(wanted - received.keys()),
        duplicates=sum(len(times) - 1 for times in received.values()),
        achieved_rate=len(commits) / (last_commit - start),
        max_behind_schedule_ms=max(c - s for _, s, c in commits) * 1000,
        samples_ms=latencies,
        latency_ms={
            "min": latencies[0],
            "p50": percentile(latencies, 50),
            "p95": percentile(latencies, 95),
            "p99": percentile(latencies, 99),
            "max": latencies[-1],
            "mean": sum(latencies) / len(latencies),
        },
    )
    with psycopg.connect(**params, autocommit=True) as conn:
        conn.execute(f"DELETE FROM {TABLE} WHERE email LIKE %s", [prefix + "%"])
    return result


async def bench(
    params: dict[str, Any], phases: list[tuple[int, int]], seconds: float
) -> list[PhaseResult]:
    """Run the listener, and each (rate, writers) phase in turn while it listens."""
    from livedata.capture.listener import Listener

    collector = Collector()
    listener = Listener(models=[MODEL], params=params)
    listener.follow(collector)
    task = asyncio.create_task(listener.run())
    try:
        await asyncio.wait_for(listener.connected.wait(), timeout=30)
        return [await run_phase(params, collector, r, seconds, w) for r, w in phases]
    finally:
        listener.stop()
        await task


def ensure_history(params: dict[str, Any]) -> None:
    """Give the change log a history, as in production, and fresh planner statistics.

    Reads of an empty, just-truncated log are planned differently (and run faster) than
    reads of a log with history, so measuring on an empty log would flatter the listener.
    The rows are written directly, as model ``bench.history``, which no consumer reads.
    """
    with psycopg.connect(**params, autocommit=True) as conn:
        query = f"SELECT count(*) FROM (SELECT 1 FROM {LOG_TABLE} LIMIT {HISTORY_ROWS}) t"
        row = conn.execute(query).fetchone()
        missing = HISTORY_ROWS - (row[0] if row else 0)
        if missing > 0:
            conn.execute(
                f"""INSERT INTO {LOG_TABLE} (model, table_name, op, pk, new)
                SELECT 'bench.history', 'bench_history', 'insert', g::text,
                       jsonb_build_object('id', g, 'name', 'History ' || g)
                FROM generate_series(1, %s) g""",
                [missing],
            )
        conn.execute(f"ANALYZE {LOG_TABLE}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="1.5 s per rate instead of 5 s")
    parser.add_argument("--writers", type=int, default=2, help="writer connections at 1000/s")
    args = parser.parse_args()
    seconds = 1.5 if args.quick else 5.0

    params = setup()
    ensure_history(params)
    from livedata.conf import livedata_settings

    info = server_info(params)
    poll = livedata_settings().LISTENER_POLL_INTERVAL
    print_server(info)
    print(f"Runs:       {seconds:g} s per rate, one row per commit, listener poll {poll:g} s\n")

    results = asyncio.run(bench(params, [(100, 1), (1000, args.writers)], seconds))

    header = (
        f"{'target/s':>8} {'writers':>7} {'achieved/s':>10} {'behind ms':>9} {'committed':>9} "
        f"{'delivered':>9} {'missing':>7} {'dupes':>5} {'min ms':>7} {'p50 ms':>7} {'p95 ms':>7} "
        f"{'p99 ms':>7} {'max ms':>7}  result"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        lat = r.latency_ms
        print(
            f"{r.target_rate:>8} {r.writers:>7} {r.achieved_rate:>10.1f} "
            f"{r.max_behind_schedule_ms:>9.1f} {r.committed:>9} {r.delivered:>9} {r.missing:>7} "
            f"{r.duplicates:>5} "
            + " ".join(f"{lat[k]:>7.2f}" for k in ("min", "p50", "p95", "p99", "max"))
            + f"  {'PASS' if r.ok else 'FAIL'}"
        )
    print(
        "(behind = most a commit ended after its scheduled time; a negative min = the row "
        "reached the consumer before\n the writer's commit call returned; "
        "PASS = every committed row delivered exactly once)"
    )

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "server": info,
        "params": {"seconds_per_rate": seconds, "poll_interval_s": poll},
        "phases": [{**asdict(r), "samples_ms": None, "pass": r.ok} for r in results],
    }
    RESULTS.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"\nWrote {RESULTS}")


if __name__ == "__main__":
    main()
