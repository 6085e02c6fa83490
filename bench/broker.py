"""NATS JetStream against Redis Streams for the listener's batches (issue 15).

One leader publishes each batch it reads (``livedata.capture.wire``: positions + rows,
orjson) and every process consumes them, so what matters is the time from the leader's
publish to a consumer holding the decoded ``Batch``, and how many batches a second one
publisher awaiting each acknowledgement (as the leader does) gets through.

For batches of 1, 10, 100 and 1000 rows (bookstore-like rows, ~330 bytes each encoded):

- latency: one batch at a time, publish -> decoded in the consumer, p50/p99;
- throughput: batches published back to back (each acknowledged), until the consumer
  has decoded the last: batches/s and MB/s.

Brokers: NATS JetStream (nats-py; a stream on memory and one on file storage, ordered
push consumer) and Redis Streams (redis-py with hiredis; XADD with approximate MAXLEN,
XREAD BLOCK), the machine's own (127.0.0.1:4222, 127.0.0.1:6379; ``--nats``/``--redis``
to change). Each run uses its own stream/key and deletes it. About 30 s in all.

Writes bench/results/broker.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from livedata.capture import wire
from livedata.capture.log import Batch, ChangeRow, Position, Snapshot

ROOT = Path(__file__).resolve().parent.parent
SIZES = {1: (400, 3000), 10: (400, 2000), 100: (200, 500), 1000: (40, 60)}


def make_batch(rows: int, base: int = 5_000_000) -> Batch:
    at = datetime(2026, 12, 3, 17, 0, tzinfo=UTC)
    made = [
        ChangeRow(
            base + i,
            base,
            "livedata_demo.book",
            "livedata_demo_book",
            "UPDATE",
            str(1000 + i),
            {"id": 1000 + i, "title": f"Title {i}", "author_id": 7, "price": "12.50"},
            {"id": 1000 + i, "title": f"Title {i}!", "author_id": 7, "price": "12.50"},
            ["title"],
            {"user": 3, "method": "POST", "path": "/books/", "request_id": uuid.uuid4().hex},
            at,
        )
        for i in range(rows)
    ]
    return Batch(
        Position(Snapshot(base, base + 1, (base,))), Position(Snapshot(base + 1, base + 1)), made
    )


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else 0


Publish = Callable[[bytes], Awaitable[Any]]


async def measure(publish: Publish, received: asyncio.Queue[float], data: bytes, n: int, k: int):
    """(latencies, throughput seconds): ``n`` ping-pong publishes, then ``k`` back to back."""
    latencies = []
    for _ in range(n):
        start = time.perf_counter()
        await publish(data)
        latencies.append(await received.get() - start)
    start = time.perf_counter()
    for _ in range(k):
        await publish(data)
    for _ in range(k):
        last = await received.get()
    return latencies, last - start


async def run_nats(url: str, storage: str) -> list[dict[str, Any]]:
    import nats
    from nats.js.api import DeliverPolicy, StorageType, StreamConfig

    pub = await nats.connect(url)
    sub_conn = await nats.connect(url)
    js, js_sub = pub.jetstream(), sub_conn.jetstream()
    name = f"bench_{uuid.uuid4().hex[:8]}"
    await js.add_stream(
        StreamConfig(
            name=name,
            subjects=[name],
            storage=StorageType(storage),
            max_msgs=10_000,
            max_bytes=256 * 1024 * 1024,
        )
    )
    received: asyncio.Queue[float] = asyncio.Queue()

    async def on_message(msg: Any) -> None:
        wire.decode(msg.data)
        received.put_nowait(time.perf_counter())

    sub = await js_sub.subscribe(
        name, cb=on_message, ordered_consumer=True, deliver_policy=DeliverPolicy.NEW
    )
    try:
        return await _sizes(lambda data: js.publish(name, data), received)
    finally:
        await sub.unsubscribe()
        await js.delete_stream(name)
        await sub_conn.close()
        await pub.close()


async def run_redis(url: str) -> list[dict[str, Any]]:
    import redis.asyncio as redis

    pub = redis.Redis.from_url(url)
    sub = redis.Redis.from_url(url)
    key = f"bench:{uuid.uuid4().hex[:8]}"
    received: asyncio.Queue[float] = asyncio.Queue()
    stop = asyncio.Event()

    async def consume() -> None:
        last = "$"
        while not stop.is_set():
            got = await sub.xread({key: last}, block=200, count=100)
            for _, entries in got:
                for entry_id, fields in entries:
                    wire.decode(fields[b"b"])
                    received.put_nowait(time.perf_counter())
                    last = entry_id

    task = asyncio.create_task(consume())
    await asyncio.sleep(0.3)  # XREAD "$" is registered
    try:
        return await _sizes(
            lambda data: pub.xadd(key, {"b": data}, maxlen=10_000, approximate=True), received
        )
    finally:
        stop.set()
        await task
        await pub.delete(key)
        await pub.aclose()
        await sub.aclose()


async def _sizes(publish: Publish, received: asyncio.Queue[float]) -> list[dict[str, Any]]:
    results = []
    for rows, (n, k) in SIZES.items():
        data = wire.encode(make_batch(rows))
        await measure(publish, received, data, 20, 20)  # warm up
        latencies, seconds = await measure(publish, received, data, n, k)
        results.append(
            {
                "rows": rows,
                "bytes": len(data),
                "p50_ms": percentile(latencies, 50) * 1000,
                "p99_ms": percentile(latencies, 99) * 1000,
                "batches_s": k / seconds,
                "mb_s": k * len(data) / seconds / 1e6,
            }
        )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nats", default=os.environ.get("BENCH_NATS", "nats://127.0.0.1:4222"))
    parser.add_argument("--redis", default=os.environ.get("BENCH_REDIS", "redis://127.0.0.1:6379"))
    args = parser.parse_args()
    runs = {
        "NATS JetStream (memory)": lambda: run_nats(args.nats, "memory"),
        "NATS JetStream (file)": lambda: run_nats(args.nats, "file"),
        "Redis Streams": lambda: run_redis(args.redis),
    }
    results: dict[str, Any] = {}
    for name, run in runs.items():
        try:
            results[name] = asyncio.run(run())
        except Exception as exc:  # a broker that is not there is reported, not fatal
            results[name] = {"error": repr(exc)}
    print("\nBatch publish -> decoded in a consumer (one publisher awaiting each ack)")
    print(
        f"{'broker':<26} {'rows':>5} {'bytes':>8} {'p50 ms':>8} {'p99 ms':>8}"
        f" {'batches/s':>10} {'MB/s':>7}"
    )
    for name, rows in results.items():
        if isinstance(rows, dict):
            print(f"{name:<26} failed: {rows['error']}")
            continue
        for r in rows:
            print(
                f"{name:<26} {r['rows']:>5} {r['bytes']:>8} {r['p50_ms']:>8.3f}"
                f" {r['p99_ms']:>8.3f} {r['batches_s']:>10,.0f} {r['mb_s']:>7.1f}"
            )
    out = ROOT / "bench" / "results" / "broker.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(
        json.dumps({"nats": args.nats, "redis": args.redis, "results": results}, indent=2)
    )
    print(f"\nWrote {out}")


if __name__ == "__main__":
    main()
