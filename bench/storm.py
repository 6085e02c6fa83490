"""A reconnect storm: one of 3 ``livedata serve`` processes restarts under 2000 clients (issue 15).

- **Servers**: 3 ``livedata serve`` processes on loopback ports behind HAProxy (the
  README's configuration, from bench/haproxy.py, which installs Debian's ``haproxy``
  when missing and run as root; without it the clients are spread over the ports
  themselves and move to the next port on each retry). HAProxy balances ``/websocket``
  round-robin, health-checks every 200 ms and redispatches a refused connection.
- **Clients**: 2000 Node ``ws`` clients (bench/storm_client.js, over ``--procs``
  processes) subscribed to the demo's ``AllBooks`` (the bookstore seed: 150 documents),
  reconnecting with Meteor's own back-off (packages/retry/retry.js, driven as Meteor's
  socket-stream-client drives it) and re-subscribing.
- **The storm**: SIGTERM to the first process (holding its share, ~1/3, of the clients),
  wait for it to exit, start it again on its port. Measured from the SIGTERM:

  - converge: seconds until every client is subscribed (``ready``) again;
  - outage: per client that lost its subscription, ms until ready again (p50/p99/max);
  - peak database transactions/s: ``pg_stat_database.xact_commit`` of the bench database
    sampled every 100 ms; the peak over a sliding 1 s window, since a backend reports its
    counts at most once a second (PostgreSQL 15), and the idle rate just before;
  - peak RSS: of the largest server process, and of the 3 together;
  - the generator's own event-loop lag (p99 / max beyond its 10 ms timer): a figure that
    is high means the clients, not the servers, set the pace;
  - the survivors' responsiveness: a probe DDP client on each surviving server (not
    through HAProxy) pings every 50 ms; its round trips while the storm lasts (p50 / p99 /
    max) against before it: what the clients they already serve go through;
  - reconnect attempts, "Server busy" refusals (admission's deadline) and nosubs.

- **Modes**, side by side in one run (``--modes``): ``off`` (no admission, all
  connections closed at once: uvicorn's own shutdown), ``admission`` (the defaults:
  ``DDP_ACCEPT_RATE`` 200/s, bursts of 50, ``DDP_SUBSCRIBE_CONCURRENCY`` 32, closed at
  once) and ``admission+drain`` (also ``HTTP_SHUTDOWN_PERIOD`` 5 s).
- ``--emails N``: the clients subscribe ``BooksByAuthorEmail`` over N authors instead (N
  observers: a reconnecting client costs an initial query, not a share of one).

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres LIVEDATA_DB_NAME=storm_db \\
        .venv/bin/python -m bench.storm [--clients 2000] [--modes off,admission]

Database: ``LIVEDATA_DB_NAME`` (default ``livedata_storm``) on ``DATABASE_URL`` or the
embedded PostgreSQL. Writes bench/results/storm.json. A run takes about a minute per mode.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import psycopg
from bench import benchlib, fanout, haproxy
from bench.asgi_servers import ROOT, free_port, start
from bench.fanout import PY, SEED_AUTHORS, SERVER_SETTINGS, node_env, seed

SERVERS = 3
SAMPLE_EVERY = 0.1
STATS_LAG = 2.5  # seconds for pg_stat_database to show what backends did (see above)
IDLE_SECONDS = 3.0
CONVERGE_TIMEOUT = 90.0
MODES: dict[str, dict[str, Any]] = {
    "off": {"DDP_ACCEPT_RATE": 0, "DDP_SUBSCRIBE_CONCURRENCY": 0, "HTTP_SHUTDOWN_PERIOD": 0},
    "admission": {"HTTP_SHUTDOWN_PERIOD": 0},
    "admission+drain": {"HTTP_SHUTDOWN_PERIOD": 5.0},
    # one part of admission at a time (not run unless named in --modes)
    "accept-only": {"DDP_SUBSCRIBE_CONCURRENCY": 0, "HTTP_SHUTDOWN_PERIOD": 0},
    "slots-only": {"DDP_ACCEPT_RATE": 0, "HTTP_SHUTDOWN_PERIOD": 0},
    "drain-only": {"DDP_ACCEPT_RATE": 0, "DDP_SUBSCRIBE_CONCURRENCY": 0},
}
DEFAULT_MODES = ["off", "admission", "admission+drain"]


class Balancer:
    """HAProxy in front of ``ports`` (None: no HAProxy; clients spread themselves)."""

    def __init__(self, binary: str | None, ports: list[int]) -> None:
        self.proc: subprocess.Popen | None = None
        if binary is None:
            self.urls = [f"ws://127.0.0.1:{p}/websocket" for p in ports]
            return
        port = free_port()
        servers = [f"127.0.0.1:{p}" for p in ports]
        self.config = Path(tempfile.mkdtemp(prefix="storm-")) / "haproxy.cfg"
        self.config.write_text(haproxy.config(f"127.0.0.1:{port}", servers))
        cmd = [binary, "-db", "-f", str(self.config)]
        self.proc = start(cmd, port)
        self.urls = [f"ws://127.0.0.1:{port}/websocket"]

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            shutil.rmtree(self.config.parent, ignore_errors=True)


def serve(port: int, settings: dict[str, Any], gc_probe: Path | None = None) -> subprocess.Popen:
    """A ``livedata serve`` on ``port``; under bench/gcprobe.py writing ``gc_probe``."""
    env = {"LIVEDATA_SETTINGS": json.dumps({**SERVER_SETTINGS, **settings})}
    runner = ["-m", "bench.gcprobe", str(gc_probe)] if gc_probe else ["-m", "livedata"]
    cmd = [PY, *runner, "serve", "--port", str(port), "--log-level", "warning"]
    return start(cmd, port, env)


class Clients(fanout.Clients):
    """N storm clients over ``procs`` Node processes (storm_client.js); talked to as
    bench/fanout.py's are (``send``, ``expect``, ``close``)."""

    def __init__(self, urls: list[str], n: int, procs: int, emails: int = 0) -> None:
        # not fanout.Clients.__init__: that one starts fanout_client.js
        counts = [n // procs + (i < n % procs) for i in range(procs)]
        script = str(ROOT / "bench" / "storm_client.js")
        env = node_env()
        self.procs = []
        for i, count in enumerate(counts):
            config = {"urls": urls, "clients": count, "offset": sum(counts[:i])}
            config["sub"] = ["BooksByAuthorEmail", None] if emails else ["AllBooks", []]
            config["emails"] = emails
            cmd = ["node", script, json.dumps(config)]
            pipes = {"stdin": subprocess.PIPE, "stdout": subprocess.PIPE, "text": True}
            self.procs.append(subprocess.Popen(cmd, env=env, **pipes))

    def command(self, command: dict[str, Any], answer: str | None = None) -> list[dict[str, Any]]:
        """Send ``command`` to every generator process; their answers (``answer`` events)."""
        self.send([command] * len(self.procs))
        return [] if answer is None else self.expect(answer)

    def wait_ready(self, timeout: float) -> list[dict[str, Any]]:
        return self.command(
            {"cmd": "wait", "deadline": time.time() * 1000 + timeout * 1000}, "ready"
        )


class Sampler(threading.Thread):
    """Every 100 ms: the bench database's committed transactions and each server's RSS."""

    def __init__(self, params: dict[str, Any], servers: list[subprocess.Popen]) -> None:
        super().__init__(daemon=True)
        self.params, self.servers = params, servers  # ``servers`` is updated on restart
        self.samples: list[tuple[float, int, list[int]]] = []
        self.done = threading.Event()

    def run(self) -> None:
        query = "SELECT xact_commit FROM pg_stat_database WHERE datname = %s"
        # on the maintenance database: the sampler's own queries are not counted
        with psycopg.connect(**{**self.params, "dbname": "postgres"}, autocommit=True) as conn:
            while not self.done.is_set():
                t = time.monotonic()
                conn.execute("SELECT pg_stat_clear_snapshot()")
                xacts = conn.execute(query, [self.params["dbname"]]).fetchone()[0]
                sizes = []
                for proc in list(self.servers):
                    try:
                        sizes.append(psutil.Process(proc.pid).memory_info().rss)
                    except psutil.Error:
                        sizes.append(0)
                self.samples.append((t, xacts, sizes))
                self.done.wait(max(0.0, SAMPLE_EVERY - (time.monotonic() - t)))

    def rate_peak(self, since: float, window: float = 1.0) -> float:
        """The highest transactions/s over any ``window`` seconds after ``since``."""
        rows = [(t, x) for t, x, _ in self.samples if t >= since]
        peak, j = 0.0, 0
        for i in range(len(rows)):
            while rows[i][0] - rows[j][0] > window:
                j += 1
            if rows[i][0] - rows[j][0] >= window * 0.9:
                peak = max(peak, (rows[i][1] - rows[j][1]) / (rows[i][0] - rows[j][0]))
        return peak

    def between(self, t0: float, t1: float) -> tuple[float, int]:
        """Transactions/s and transactions between two times."""
        rows = [(t, x) for t, x, _ in self.samples if t0 <= t <= t1]
        if len(rows) < 2:
            return 0.0, 0
        spent = rows[-1][1] - rows[0][1]
        return spent / (rows[-1][0] - rows[0][0]), spent


class Probe(threading.Thread):
    """A DDP client of its own on one surviving server (not through HAProxy): a ping every
    50 ms, its round trip recorded. How long the server's already connected clients wait
    for an answer while it takes on the storm: the "not toppled" figure."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        from websockets.sync.client import connect

        self.ws = connect(f"ws://127.0.0.1:{port}/websocket", open_timeout=10)
        self.ws.send(json.dumps({"msg": "connect", "version": "1", "support": ["1"]}))
        while json.loads(self.ws.recv(timeout=10)).get("msg") != "connected":
            pass
        self.rtts: list[tuple[float, float]] = []
        self.done = threading.Event()

    def run(self) -> None:
        n = 0
        while not self.done.is_set():
            n += 1
            sent = time.monotonic()
            self.ws.send(json.dumps({"msg": "ping", "id": str(n)}))
            while True:
                message = json.loads(self.ws.recv(timeout=60))
                if message.get("msg") == "pong" and message.get("id") == str(n):
                    break
                if message.get("msg") == "ping":
                    self.ws.send(json.dumps({"msg": "pong"}))
            self.rtts.append((sent, (time.monotonic() - sent) * 1000))
            self.done.wait(max(0.0, 0.05 - (time.monotonic() - sent)))
        self.ws.close()

    def between(self, t0: float, t1: float) -> list[float]:
        return [rtt for t, rtt in self.rtts if t0 <= t <= t1]


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def shares(servers: list[subprocess.Popen], ports: list[int]) -> list[int]:
    """Established connections each server holds now."""
    out = []
    for proc, port in zip(servers, ports, strict=True):
        conns = psutil.Process(proc.pid).net_connections(kind="tcp")
        out.append(sum(1 for c in conns if c.status == "ESTABLISHED" and c.laddr.port == port))
    return out


def run_mode(name: str, params: dict[str, Any], args: Any, binary: str | None) -> dict[str, Any]:
    settings = MODES[name]
    seed(params, max(SEED_AUTHORS, args.emails))
    ports = [free_port() for _ in range(SERVERS)]
    probes_gc = [None] * SERVERS
    if args.gc_probe:
        probes_gc = [
            ROOT / "bench" / "results" / f"storm_gc_{name}_{i}.json" for i in range(SERVERS)
        ]
    servers = [serve(p, settings, gc) for p, gc in zip(ports, probes_gc, strict=True)]
    balancer = Balancer(binary, ports)
    sampler = Sampler(params, servers)
    clients = None
    try:
        t_open = time.monotonic()
        clients = Clients(balancer.urls, args.clients, args.procs, args.emails)
        initial = clients.wait_ready(CONVERGE_TIMEOUT)
        if sum(r["ready"] for r in initial) < args.clients:
            raise RuntimeError(f"{name}: clients did not all subscribe: {initial}")
        first_ready = time.monotonic() - t_open
        held = shares(servers, ports)
        probes = [Probe(port) for port in ports[1:]]
        for probe in [sampler, *probes]:
            probe.start()
        time.sleep(IDLE_SECONDS)
        t0 = time.monotonic()
        clients.command({"cmd": "lag"})
        sigterm_wall = time.time() * 1000
        servers[0].send_signal(signal.SIGTERM)
        servers[0].wait(timeout=settings.get("HTTP_SHUTDOWN_PERIOD", 5.0) + 15)
        exited = time.monotonic() - t0
        servers[0] = serve(ports[0], settings)
        sampler.servers[0] = servers[0]
        restarted = time.monotonic() - t0
        after = clients.wait_ready(CONVERGE_TIMEOUT)
        t1 = time.monotonic()
        time.sleep(STATS_LAG)
        for probe in [sampler, *probes]:
            probe.done.set()
            probe.join()
    finally:
        if clients is not None:
            clients.close()
        balancer.stop()
        for proc in servers:
            proc.terminate()
        for proc in servers:
            proc.wait(timeout=30)
    ready = sum(r["ready"] for r in after)
    outages = [o for r in after for o in r["outages"]]
    idle_rate, _ = sampler.between(t0 - IDLE_SECONDS, t0)
    _, storm_xacts = sampler.between(t0, t1 + STATS_LAG)
    rss = [s for _, _, s in sampler.samples]
    pings = [rtt for probe in probes for rtt in probe.between(t0, t1)]
    idle_pings = [rtt for probe in probes for rtt in probe.between(t0 - IDLE_SECONDS, t0)]
    return {
        "settings": settings,
        "clients": args.clients,
        "initial_ready_s": first_ready,
        "held_per_server": held,
        "exited_s": exited,
        "restarted_s": restarted,
        "converged": ready == args.clients,
        "ready": ready,
        "converge_s": (max(r["last"] for r in after) - sigterm_wall) / 1000,
        "lost": len(outages),
        "outage_p50_ms": percentile(outages, 0.5),
        "outage_p99_ms": percentile(outages, 0.99),
        "outage_max_ms": max(outages, default=0.0),
        "attempts": sum(r["attempts"] for r in after),
        "busy": sum(r["busy"] for r in after),
        "nosub": sum(r["nosub"] for r in after),
        "db_idle_xacts_s": idle_rate,
        "db_peak_xacts_s": sampler.rate_peak(t0),
        "db_storm_xacts": storm_xacts,
        "rss_peak_mib": max(max(s) for s in rss) / 2**20,
        "rss_peak_total_mib": max(sum(s) for s in rss) / 2**20,
        "ping_idle_p99_ms": percentile(idle_pings, 0.99),
        "ping_p50_ms": percentile(pings, 0.5),
        "ping_p99_ms": percentile(pings, 0.99),
        "ping_max_ms": max(pings, default=0.0),
        "gen_lag_p99_ms": max(r["lagP99Ms"] for r in after),
        "gen_lag_max_ms": max(r["lagMaxMs"] for r in after),
    }


ROWS = [
    ("clients per server before", lambda r: "/".join(map(str, r["held_per_server"]))),
    ("converged (all ready)", lambda r: "yes" if r["converged"] else f"NO ({r['ready']})"),
    ("converge s (from SIGTERM)", lambda r: f"{r['converge_s']:.2f}"),
    ("old process exited s", lambda r: f"{r['exited_s']:.2f}"),
    ("clients lost", lambda r: str(r["lost"])),
    (
        "outage p50 / p99 / max ms",
        lambda r: "{:.0f} / {:.0f} / {:.0f}".format(
            r["outage_p50_ms"], r["outage_p99_ms"], r["outage_max_ms"]
        ),
    ),
    ("reconnect attempts", lambda r: str(r["attempts"])),
    ("busy refusals / nosub", lambda r: f"{r['busy']} / {r['nosub']}"),
    ("survivors' ping ms idle p99", lambda r: f"{r['ping_idle_p99_ms']:.1f}"),
    (
        "  in the storm p50/p99/max",
        lambda r: "{:.0f} / {:.0f} / {:.0f}".format(
            r["ping_p50_ms"], r["ping_p99_ms"], r["ping_max_ms"]
        ),
    ),
    ("db xacts/s idle", lambda r: f"{r['db_idle_xacts_s']:.0f}"),
    ("db xacts/s peak (1 s)", lambda r: f"{r['db_peak_xacts_s']:.0f}"),
    ("db xacts in the storm", lambda r: str(r["db_storm_xacts"])),
    ("peak RSS MiB (largest)", lambda r: f"{r['rss_peak_mib']:.0f}"),
    ("peak RSS MiB (3 servers)", lambda r: f"{r['rss_peak_total_mib']:.0f}"),
    ("gen lag p99 / max ms", lambda r: f"{r['gen_lag_p99_ms']:.0f} / {r['gen_lag_max_ms']:.0f}"),
]


def report(results: dict[str, Any]) -> None:
    runs = results["runs"]
    names = list(runs)
    width = max(len(label) for label, _ in ROWS)
    print(
        f"\nReconnect storm: {results['clients']} clients on {results['publication']},"
        f" {SERVERS} servers, {results['balancer']}; one restarted"
    )
    print(" " * width + "".join(f"  {n:>16}" for n in names))
    for label, cell in ROWS:
        print(f"{label:<{width}}" + "".join(f"  {cell(runs[n]):>16}" for n in names))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=2000)
    parser.add_argument("--procs", type=int, default=4, help="Node load-generator processes")
    parser.add_argument(
        "--modes", default=",".join(DEFAULT_MODES), help="comma-separated: " + ", ".join(MODES)
    )
    parser.add_argument(
        "--gc-probe", action="store_true", help="servers' GC pauses (bench/gcprobe.py)"
    )
    parser.add_argument(
        "--emails",
        type=int,
        default=0,
        help="subscribe BooksByAuthorEmail over this many authors instead of AllBooks",
    )
    parser.add_argument("--no-haproxy", action="store_true", help="spread clients over the ports")
    args = parser.parse_args()
    names = args.modes.split(",")
    unknown = set(names) - set(MODES)
    if unknown:
        parser.error(f"unknown modes: {', '.join(sorted(unknown))}")
    os.environ.setdefault("LIVEDATA_DB_NAME", "livedata_storm")
    params = benchlib.setup()
    binary = None if args.no_haproxy else haproxy.binary()
    results: dict[str, Any] = {
        "clients": args.clients,
        "publication": f"BooksByAuthorEmail over {args.emails} authors"
        if args.emails
        else "AllBooks",
        "procs": args.procs,
        "balancer": "HAProxy" if binary else "no balancer (clients spread over the ports)",
        "postgres": benchlib.server_info(params),
        "runs": {},
    }
    for name in names:
        results["runs"][name] = run_mode(name, params, args, binary)
        print(f"{name}: done", flush=True)
    benchlib.print_server(results["postgres"])
    report(results)
    benchlib.write_results("storm", results)


if __name__ == "__main__":
    sys.exit(main())
