"""``bench/live_queries.py --dashboard``: what the dashboard publication costs the
live-query workload, open and closed (livedata issue 18: "the page's own publication
costs nothing when nobody has it open").

Three servers run the same workload, each at every rate:

- ``no feed``: ``bench/without_dashboard.py``, the server with no dashboard ``Feed`` at
  all (the baseline);
- ``closed``: ``livedata serve`` as shipped, nobody subscribed to ``livedata.dashboard``;
- ``open``: the same with one staff page (``Page``) subscribed for the whole run.

This module holds the staff page, the runners and the table; ``live_queries`` runs them.
"""

from __future__ import annotations

import json
import multiprocessing
import statistics
import time
from typing import Any

from websockets.sync.client import connect

#: the runners of the three servers (``python`` arguments before ``serve ...``)
RUNNERS = {
    "no feed": ["-m", "bench.without_dashboard"],
    "closed": ["-m", "livedata"],
    "open": ["-m", "livedata"],
}
#: closed may spend this many more database transactions per change than no feed
XACTS_BOUND = 0.05
#: and at most this much CPU per change, as a ratio to no feed: a noise-level bound, not
#: a cost allowed (CPU time comes in 10 ms ticks and the 2 cores are shared)
CPU_BOUND = 1.1
USERNAME = "bench-dashboard-staff"
SPAWN = multiprocessing.get_context("spawn")


def staff_cookie() -> str:
    """The session cookie of a staff user holding ``livedata.view_dashboard``, made in the
    bench database through Django's ORM (Django is set up by ``live_queries.db_params``)."""
    from django.contrib.auth.models import Permission, User
    from django.db import connections
    from django.test import Client

    from livedata.dashboard.access import PERMISSION

    app_label, codename = PERMISSION.split(".")
    user, _ = User.objects.update_or_create(
        username=USERNAME, defaults={"is_staff": True, "is_active": True}
    )
    user.user_permissions.add(
        Permission.objects.get(content_type__app_label=app_label, codename=codename)
    )
    browser = Client()
    browser.force_login(user)
    cookie = browser.cookies["sessionid"].value
    connections.close_all()  # no connection of ours stays open in the measured database
    return cookie


class Page:
    """A staff DDP client subscribed to ``livedata.dashboard``, as an open admin page is:
    logged in by its session cookie from the server's own origin, it reads (and answers
    pings) until ``close``. In its own process: the page's messages (two per change, the
    recent changes list) must not take the measuring clients' GIL."""

    def __init__(self, port: int, cookie: str, timeout: float = 30) -> None:
        self._stop = SPAWN.Event()
        self._said: Any = SPAWN.Queue()
        self.proc = SPAWN.Process(
            target=_hold_page, args=(port, cookie, timeout, self._stop, self._said), daemon=True
        )
        self.proc.start()
        said = self._said.get(timeout=timeout + 30)  # a spawned interpreter starts first
        if said != "ready":
            self.proc.join(timeout=10)
            raise RuntimeError(f"the staff page did not get the dashboard: {said}")

    def close(self) -> int:
        """Leave; the number of messages the page read after ``ready``."""
        self._stop.set()
        said = self._said.get(timeout=30)
        self.proc.join(timeout=10)
        if not isinstance(said, int):
            raise RuntimeError(f"the staff page's connection ended before the run did: {said}")
        return said


def _hold_page(port: int, cookie: str, timeout: float, stop: Any, said: Any) -> None:
    """``Page``'s process: subscribe, say ``ready``, read until ``stop``, say how many."""
    origin = f"http://127.0.0.1:{port}"
    headers = [("Origin", origin), ("Cookie", f"sessionid={cookie}")]
    try:
        with connect(
            f"ws://127.0.0.1:{port}/websocket",
            additional_headers=headers,
            compression=None,
            max_size=None,
        ) as ws:
            ws.recv(timeout=timeout)  # server_id
            ws.send('{"msg":"connect","version":"1","support":["1"]}')
            if json.loads(ws.recv(timeout=timeout))["msg"] != "connected":
                raise RuntimeError("not connected")
            ws.send('{"msg":"sub","id":"d","name":"livedata.dashboard","params":[]}')
            deadline = time.monotonic() + timeout
            while True:
                m = json.loads(ws.recv(timeout=max(0.1, deadline - time.monotonic())))
                if m.get("msg") == "ready" and "d" in m["subs"]:
                    break
                if m.get("msg") == "nosub":
                    raise RuntimeError(f"refused: {m}")
                _answer(ws, m)
            said.put("ready")
            read = 0
            while not stop.is_set():
                try:
                    text = ws.recv(timeout=0.2)
                except TimeoutError:
                    continue
                read += 1
                if '"ping"' in text:
                    _answer(ws, json.loads(text))
        said.put(read)
    except Exception as e:  # told to the bench, which fails the run
        said.put(f"{type(e).__name__}: {e}")


def _answer(ws: Any, m: dict[str, Any]) -> None:
    if m.get("msg") == "ping":
        ws.send('{"msg":"pong"}')


def medians(rounds: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """One run per rate: each figure the median over the rounds (delivered and expected
    summed, so a loss in any round shows)."""
    out = []
    for same_rate in zip(*rounds, strict=True):
        run = dict(same_rate[0])
        for key in ("p50_ms", "p99_ms", "max_ms", "server_xacts_per_change"):
            run[key] = statistics.median(r[key] for r in same_rate)
        run["server_cpu_s"] = statistics.median(r["server_cpu_s"] for r in same_rate)
        run["committed"] = same_rate[0]["committed"]  # the writer commits as many each time
        run["delivered"] = sum(r["delivered"] for r in same_rate)
        run["expected"] = sum(r["expected"] for r in same_rate)
        out.append(run)
    return out


def closed_feed_us_per_row(rows: int = 1, calls: int = 200_000) -> float:
    """What the closed feed does per batch, timed directly: ``Feed.on_batch`` with no
    subscriber, in µs per row (the rows stand in for ``ChangeRow``: it reads ``model``)."""
    from types import SimpleNamespace

    from livedata.conf import livedata_settings
    from livedata.dashboard.feed import Feed
    from livedata.runtime.figures import Board

    runtime = SimpleNamespace(settings=livedata_settings(), figures=Board(), listener=None)
    feed = Feed(runtime)
    batch = SimpleNamespace(rows=[SimpleNamespace(model="livedata_demo.book")] * rows)
    on_batch = feed.on_batch
    start = time.perf_counter()
    for _ in range(calls):
        on_batch(batch)  # type: ignore[arg-type]
    return (time.perf_counter() - start) * 1e6 / calls / rows


def cpu_ms_per_change(run: dict[str, Any]) -> float:
    return run["server_cpu_s"] * 1000 / run["committed"]


def compare(
    runs: dict[str, list[dict[str, Any]]], every: dict[str, list[list[dict[str, Any]]]]
) -> dict[str, Any]:
    """Ratios to no feed by rate, and the verdict (on xacts and CPU per change).

    Closed passes at a rate when its (median) figures are within what no feed itself
    gives across the rounds, plus the bounds: at 1000 changes/s the listener's batching
    alone moves one server's transactions per change by ±0.2 and its CPU per change by
    ±10% from round to round, so a bound on the medians alone would judge that noise."""
    rows, passed = [], True
    for i, (base, closed, opened) in enumerate(
        zip(runs["no feed"], runs["closed"], runs["open"], strict=True)
    ):
        row: dict[str, Any] = {"rate": base["rate"]}
        for name, r in (("closed", closed), ("open", opened)):
            row[f"{name}/no feed"] = {
                "p50": r["p50_ms"] / base["p50_ms"],
                "p99": r["p99_ms"] / base["p99_ms"],
                "xacts_diff": r["server_xacts_per_change"] - base["server_xacts_per_change"],
                "cpu": cpu_ms_per_change(r) / cpu_ms_per_change(base),
            }
        rounds = [one[i] for one in every["no feed"]]
        row["no feed max"] = {
            "xacts": max(r["server_xacts_per_change"] for r in rounds),
            "cpu_ms": max(cpu_ms_per_change(r) for r in rounds),
        }
        row["pass"] = (
            closed["server_xacts_per_change"] <= row["no feed max"]["xacts"] + XACTS_BOUND
            and cpu_ms_per_change(closed) <= row["no feed max"]["cpu_ms"] * CPU_BOUND
        )
        passed = passed and row["pass"]
        rows.append(row)
    return {"by_rate": rows, "pass": passed, "xacts_bound": XACTS_BOUND, "cpu_bound": CPU_BOUND}


def report(dashboard: dict[str, Any], clients: int, seconds: float) -> None:
    runs, verdict = dashboard["runs"], dashboard["verdict"]
    rounds = dashboard.get("rounds", 1)
    print(
        f"\nthe dashboard publication: {clients} clients, {seconds:.0f} s/rate, "
        f"median of {rounds} round(s)"
    )
    print(
        f"{'changes/s':>9} {'server':14} {'delivered':>15} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'xacts/change':>13} {'CPU ms/change':>14}"
    )
    for i, row in enumerate(verdict["by_rate"]):
        for name in RUNNERS:
            r = runs[name][i]
            print(
                f"{r['rate']:>9} {name:14} {r['delivered']:>7}/{r['expected']:<7} "
                f"{r['p50_ms']:>8.1f} {r['p99_ms']:>8.1f} "
                f"{r['server_xacts_per_change']:>13.3f} {cpu_ms_per_change(r):>14.3f}"
            )
        for name in ("closed/no feed", "open/no feed"):
            q = row[name]
            print(
                f"{'':9} {name:14} {'':15} {q['p50']:>7.2f}x {q['p99']:>7.2f}x "
                f"{q['xacts_diff']:>+13.3f} {q['cpu']:>13.2f}x"
            )
    print(f"the open page read {dashboard['page_messages']} messages after ready")
    per_row = dashboard["closed_feed_us_per_row"]
    closed = min(cpu_ms_per_change(r) for r in runs["closed"]) * 1000
    print(
        f"the closed feed's own work, timed directly: {per_row:.2f} µs per change row "
        f"({100 * per_row / closed:.3f}% of the closed server's {closed:.0f} µs CPU per change)"
    )
    for i, row in enumerate(verdict["by_rate"]):
        top, closed = row["no feed max"], runs["closed"][i]
        print(
            f"{row['rate']:>9} closed {closed['server_xacts_per_change']:.3f} xacts/change,"
            f" {cpu_ms_per_change(closed):.3f} ms CPU/change; no feed's worst round"
            f" {top['xacts']:.3f}, {top['cpu_ms']:.3f}: {'pass' if row['pass'] else 'FAIL'}"
        )
    print(
        f"dashboard closed costs nothing: {'PASS' if verdict['pass'] else 'FAIL'} "
        f"(closed's medians within no feed's worst round +{XACTS_BOUND} xacts/change "
        f"and x{CPU_BOUND} CPU/change, at every rate)"
    )
