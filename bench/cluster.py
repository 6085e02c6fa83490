"""Database transactions per committed change, and commit -> consumer latency, with 1, 2
and 4 processes, each process reading the log itself or fed by the leader through the
broker (issue 15).

Each process is a listener (``Listener``, or ``ClusterListener`` on the machine's Redis,
its own stream and lock per run) whose consumer records when it got each row. One writer
commits ``--changes`` single-row transactions at ``--rate`` per second. The database
(``livedata_bench_cluster``, on ``DATABASE_URL``'s server, made for this) is used by
nothing else, so ``pg_stat_database.xact_commit`` over the run, less the writer's own
commits, is what the processes cost: per committed change. Latency is from the writer's
commit returning to each process's consumer holding the row, over all processes.

About 50 s. Writes bench/results/cluster.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DB_NAME = "livedata_bench_cluster"


async def node(directory: Path, name: str, url: str, stream: str) -> None:
    """One process: its listener, a consumer writing "author_id time" lines, until SIGTERM."""
    from livedata.capture.leader import ClusterListener
    from livedata.capture.listener import Listener
    from livedata.capture.log import Batch

    listener = ClusterListener(broker_url=url, stream=stream) if url else Listener()
    out = (directory / f"{name}.rows").open("w")

    async def consumer(batch: Batch) -> None:
        now = time.time()
        out.write("".join(f"{r.pk} {now}\n" for r in batch.rows))
        out.flush()

    listener.follow(consumer, name=name)
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, listener.stop)
    task = asyncio.create_task(listener.run())
    await listener.started.wait()
    (directory / f"{name}.started").touch()
    await task
    out.close()


def stat_commits(conn: Any) -> int:
    conn.execute("SELECT pg_stat_clear_snapshot()")
    return conn.execute(
        "SELECT xact_commit FROM pg_stat_database WHERE datname = %s", [DB_NAME]
    ).fetchone()[0]


def run(params: dict[str, Any], processes: int, url: str, changes: int, rate: float) -> dict:
    import psycopg

    directory = Path(f"/tmp/livedata_bench_cluster_{uuid.uuid4().hex[:8]}")
    directory.mkdir()
    stream = f"bench_cluster_{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "LIVEDATA_DB_NAME": DB_NAME,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)]),
    }
    names = [f"p{i}" for i in range(processes)]
    procs = [
        subprocess.Popen(
            [sys.executable, __file__, "--node", str(directory), name, url, stream], env=env
        )
        for name in names
    ]
    monitor = psycopg.connect(**{**params, "dbname": "postgres"}, autocommit=True)
    writer = psycopg.connect(**params, autocommit=True)
    try:
        deadline = time.monotonic() + 60
        while not all((directory / f"{n}.started").exists() for n in names):
            assert time.monotonic() < deadline, "processes did not start"
            time.sleep(0.05)
        time.sleep(1.5)  # elected, idle
        committed: dict[int, float] = {}
        before = stat_commits(monitor)
        started = time.monotonic()
        for i in range(changes):
            row_id = writer.execute(
                "INSERT INTO livedata_demo_author (name, email) VALUES (%s, %s) RETURNING id",
                [f"a{i}", f"{stream}.{i}@example.com"],
            ).fetchone()[0]
            committed[row_id] = time.time()
            time.sleep(max(0.0, started + (i + 1) / rate - time.monotonic()))
        ids = committed
        latencies = []
        deadline = time.monotonic() + 30
        for name in names:
            while True:
                lines = (directory / f"{name}.rows").read_text().split("\n")
                got = {int(a): float(b) for a, b in (x.split() for x in lines if x)}
                if all(i in got for i in ids):
                    break
                assert time.monotonic() < deadline, f"{name} did not get every change"
                time.sleep(0.05)
            latencies += [got[i] - ids[i] for i in ids]
        time.sleep(1.0)  # backends report their counters when idle for a moment
        after = stat_commits(monitor)
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=20)
        writer.close()
        monitor.close()
    if url:
        import redis

        redis.Redis.from_url(url).delete(stream)
    latencies.sort()
    # the writer's commits, and the stats reads (one each, on "postgres": not counted)
    per_change = (after - before - changes) / changes
    return {
        "processes": processes,
        "broker": bool(url),
        "changes": changes,
        "xacts_per_change": per_change,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1000,
    }


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--node":
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "livedata.demo.settings")
        import django

        django.setup()
        directory, name, url, stream = sys.argv[2:6]
        asyncio.run(node(Path(directory), name, url, stream))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis", default=os.environ.get("BENCH_REDIS", "redis://127.0.0.1:6379"))
    parser.add_argument("--changes", type=int, default=300)
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--processes", default="1,2,4")
    args = parser.parse_args()
    os.environ["LIVEDATA_DB_NAME"] = DB_NAME
    sys.path.insert(0, str(ROOT))
    from bench.benchlib import print_server, server_info, setup

    params = setup()
    print_server(server_info(params))
    results = []
    for n in [int(x) for x in args.processes.split(",")]:
        for url in ("", args.redis):
            results.append(run(params, n, url, args.changes, args.rate))
    print(f"\n{args.changes} single-row commits at {args.rate:.0f}/s")
    print(f"{'processes':>9} {'reading':<22} {'xacts/change':>12} {'p50 ms':>8} {'p99 ms':>8}")
    for r in results:
        how = "leader + Redis stream" if r["broker"] else "each process itself"
        print(
            f"{r['processes']:>9} {how:<22} {r['xacts_per_change']:>12.2f}"
            f" {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f}"
        )
    out = ROOT / "bench" / "results" / "cluster.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"redis": args.redis, "results": results}, indent=2))
    print(f"\nWrote {out}")


if __name__ == "__main__":
    main()
