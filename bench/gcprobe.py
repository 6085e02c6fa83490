"""Run ``livedata`` with Python's cyclic GC measured: how often, how long, over what.

    python -m bench.gcprobe OUT.json serve --port 8000

Each collection's wall and CPU time is recorded per generation (gc.callbacks); at exit
the summary and the most common GC-tracked object types are written to OUT.json. CPU
time (process_time) does not grow when other processes load the machine, so it tells a
collection's own cost apart from waiting for a core.
"""

from __future__ import annotations

import atexit
import collections
import gc
import json
import signal
import sys
import time
from typing import Any

_started: list[float] = [0.0, 0.0]
_pauses: dict[int, list[tuple[float, float]]] = {0: [], 1: [], 2: []}
_full: list[tuple[float, float]] = []  # each full collection: (time.time() at its end, CPU ms)
_tracked_at_biggest: list[Any] = [0.0, None]


def _callback(phase: str, info: dict[str, Any]) -> None:
    if phase == "start":
        _started[0], _started[1] = time.perf_counter(), time.process_time()
        return
    wall = (time.perf_counter() - _started[0]) * 1000
    cpu = (time.process_time() - _started[1]) * 1000
    _pauses[info["generation"]].append((wall, cpu))
    if info["generation"] == 2:
        _full.append((time.time(), cpu))
    if info["generation"] == 2 and cpu > _tracked_at_biggest[0]:
        _tracked_at_biggest[0] = cpu  # what the longest full collection had to walk
        _tracked_at_biggest[1] = {"tracked": len(gc.get_objects()), "types": _census()}


def _census() -> dict[str, int]:
    counts = collections.Counter(type(o).__name__ for o in gc.get_objects())
    return dict(counts.most_common(15))


def _summary(out: str) -> None:
    result: dict[str, Any] = {
        "at_longest_full_collection": _tracked_at_biggest[1],
        "tracked_at_exit": len(gc.get_objects()),
        "full_collections": [[round(t, 3), round(c, 2)] for t, c in _full],
    }
    for gen, pauses in _pauses.items():
        walls = sorted(p[0] for p in pauses) or [0.0]
        cpus = sorted(p[1] for p in pauses) or [0.0]
        result[f"gen{gen}"] = {
            "count": len(pauses),
            "wall_ms_total": round(sum(walls), 1),
            "wall_ms_max": round(walls[-1], 2),
            "cpu_ms_total": round(sum(cpus), 1),
            "cpu_ms_max": round(cpus[-1], 2),
            "cpu_ms_p99": round(cpus[min(len(cpus) - 1, int(len(cpus) * 0.99))], 2),
        }
    with open(out, "w") as f:
        json.dump(result, f, indent=2)


def main() -> None:
    out, args = sys.argv[1], sys.argv[2:]
    gc.callbacks.append(_callback)
    atexit.register(_summary, out)
    # uvicorn re-raises SIGTERM after its shutdown with the handler it found: ours, so
    # the summary is written (a default SIGTERM would skip atexit)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    from livedata.cli import main as livedata

    livedata(["livedata", *args])


if __name__ == "__main__":
    main()
