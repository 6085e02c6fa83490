"""The tables and the goal checks of bench/fanout.py (issue 14), from its results dict.

Kept apart from the measuring so that a saved bench/results/fanout.json can be printed
again: ``.venv/bin/python -m bench.fanout_report [bench/results/fanout.json]``.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from bench.asgi_servers import ROOT

ALL_BOOKS = ("100x10", "1000x10", "1000x30", "1000x50")
LIVE = (*ALL_BOOKS, "groups100")  # beside the bare servers: the fan-out table
#: issue 14: "1000 clients over 100 publications: p99 <= 50 ms at 1000 changes/s"
GROUPS_P99_MS = 50.0


def ratio(ours: float, bare: float) -> str:
    return f"{ours / bare:.2f}x" if bare else "-"


def live_table(runs: dict[str, Any]) -> None:
    if not any(n in runs for n in LIVE):
        return
    print("\nFan-out: latency from COMMIT return to arrival, server CPU (process tree)")
    if "groups100" in runs:
        r = runs["groups100"]["livedata"]
        print(
            f"(groups100: {r['publication']}, client i on author i % {r['groups']};"
            " the others AllBooks)"
        )
    print(
        f"{'workload':<9} {'server':<9} {'clients':>7} {'rate':>11} {'delivered':>15}"
        f" {'msgs/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7} {'CPU %':>6}"
        f" {'µs/msg':>7} {'xact/chg':>8} {'gen lag p99/max ms':>18}"
    )
    for name in (n for n in LIVE if n in runs):
        for server, r in runs[name].items():
            rate = f"{r['rate']:.0f} ({r['achieved_rate']:.1f})"
            xacts = f"{r['db_xacts_per_change']:.2f}" if server == "livedata" else ""
            print(
                f"{name:<9} {server:<9} {r['clients']:>7} {rate:>11}"
                f" {r['delivered']:>7}/{r['expected']:<7} {r['msgs_s']:>8,.0f}"
                f" {r['p50_ms']:>7.1f} {r['p99_ms']:>7.1f} {r['max_ms']:>7.1f}"
                f" {r['cpu_pct']:>6.0f} {r['cpu_us_per_msg']:>7.1f} {xacts:>8}"
                f" {r['gen_lag_p99_ms']:>9.1f}/{r['gen_lag_max_ms']:<8.1f}"
            )
        ours = runs[name]["livedata"]
        for ceiling in ("bare", "bare-lean"):
            if ceiling not in runs[name]:
                continue
            bare = runs[name][ceiling]
            label = "ratio" if ceiling == "bare" else "/lean"
            print(
                f"{'':<9} {label:<9} {'':>7} {'':>11} {'':>15}"
                f" {ratio(ours['msgs_s'], bare['msgs_s']):>8}"
                f" {ratio(ours['p50_ms'], bare['p50_ms']):>7}"
                f" {ratio(ours['p99_ms'], bare['p99_ms']):>7}"
                f" {'':>7} {'':>6} {ratio(ours['cpu_us_per_msg'], bare['cpu_us_per_msg']):>7}"
            )

    early = [f"{n} {s}" for n in LIVE if n in runs for s, r in runs[n].items() if r["min_ms"] < 0]
    if early:
        print(
            f"  arrivals before the writer saw its COMMIT return (writer scheduled late): "
            f"{', '.join(early)}"
        )


def subscribe_table(runs: dict[str, Any]) -> None:
    if "subscribe" not in runs:
        return
    print("\nSubscribing at once to AllBooks, and memory (server RSS growth / clients)")
    print(
        f"{'server':<9} {'clients':>7} {'all ready s':>11} {'docs each':>10} {'nosub':>5}"
        f" {'KiB/idle session':>16} {'KiB/subscribed client':>21}"
    )
    for server, r in runs["subscribe"].items():
        docs = f"{r['docs_min']}-{r['docs_max']}"
        print(
            f"{server:<9} {r['clients']:>7} {r['all_ready_s']:>11.2f} {docs:>10} {r['nosub']:>5}"
            f" {r['kib_per_idle_session']:>16.1f} {r['kib_per_subscribed_client']:>21.1f}"
        )
    ours, bare = runs["subscribe"]["livedata"], runs["subscribe"]["bare"]
    print(f"{'ratio':<9} {'':>7} {ratio(ours['all_ready_s'], bare['all_ready_s']):>11}")


def beyond_notify(r: dict[str, Any], floor: float) -> float:
    """Transactions per change per process net of idle and of the NOTIFY floor."""
    return r["db_xacts_per_change_net_idle"] / r["workers"] - floor


def email_table(runs: dict[str, Any], floor: float) -> None:
    names = [n for n in runs if n.startswith("email")]
    if not names:
        return
    print("\nBooksByAuthorEmail: database transactions per change (minus the writer's own)")
    print(
        f"A bare LISTEN session costs {floor:.2f} per change (PostgreSQL's transaction to hand"
        " it the NOTIFY)"
    )
    print(
        f"{'workload':<12} {'workers':>7} {'clients':>7} {'emails':>6} {'delivered':>15}"
        f" {'p50 ms':>7} {'p99 ms':>7} {'xacts/change':>12} {'per process':>11}"
        f" {'idle xacts/s':>12} {'net of idle/process':>19} {'beyond NOTIFY':>13}"
    )
    for name in names:
        r = runs[name]["livedata"]
        print(
            f"{name:<12} {r['workers']:>7} {r['clients']:>7} {r.get('groups', r.get('emails')):>6}"
            f" {r['delivered']:>7}/{r['expected']:<7}"
            f" {r['p50_ms']:>7.1f} {r['p99_ms']:>7.1f} {r['db_xacts_per_change']:>12.2f}"
            f" {r['db_xacts_per_change'] / r['workers']:>11.2f} {r['db_idle_xacts_s']:>12.1f}"
            f" {r['db_xacts_per_change_net_idle'] / r['workers']:>19.2f}"
            f" {beyond_notify(r, floor):>13.2f}"
        )


def groups_goal(pair: dict[str, Any]) -> tuple[str, bool, str]:
    """groups100: livedata's p99 against the goal's 50 ms, with the ratio to bare and the
    rate the writer reached (the goal is at 1000 changes/s: a slower writer tests less)."""
    ours, bare = pair["livedata"], pair["bare"]
    goal = (
        f"groups100: p99 <= {GROUPS_P99_MS:.0f} ms, {ours['clients']} clients over"
        f" {ours['groups']} publications at {ours['rate']:.0f} changes/s"
    )
    measured = (
        f"{ours['p99_ms']:.1f} ms ({ratio(ours['p99_ms'], bare['p99_ms'])} bare's"
        f" {bare['p99_ms']:.1f} ms; writer at {ours['achieved_rate']:.0f}/s)"
    )
    return goal, ours["p99_ms"] <= GROUPS_P99_MS, measured


def goals(runs: dict[str, Any], floor: float = 0.0) -> list[tuple[str, bool, str]]:
    """(goal, met, measured) for each of issue 14's goals the run measured."""
    out = []
    for name, most in (("1000x10", 1.5), ("1000x30", 2.0), ("100x10", 1.5)):
        if name in runs:
            p99 = runs[name]["livedata"]["p99_ms"] / runs[name]["bare"]["p99_ms"]
            out.append((f"{name}: p99 <= {most}x bare", p99 <= most, f"{p99:.2f}x"))
    if "groups100" in runs:
        out.append(groups_goal(runs["groups100"]))
    for name in (n for n in ALL_BOOKS if n in runs):
        r = runs[name]
        cost = r["livedata"]["cpu_us_per_msg"] / r["bare"]["cpu_us_per_msg"]
        out.append((f"{name}: CPU per message <= 1.5x bare", cost <= 1.5, f"{cost:.2f}x"))
    if "1000x50" in runs:
        rate = runs["1000x50"]["livedata"]["msgs_s"] / runs["1000x50"]["bare"]["msgs_s"]
        out.append(("1000x50: delivered msgs/s >= 0.9x bare", rate >= 0.9, f"{rate:.2f}x"))
    if "subscribe" in runs:
        r = runs["subscribe"]["livedata"]
        ready = r["all_ready_s"]
        out.append((f"{r['clients']} subscribing at once: <= 2 s", ready <= 2, f"{ready:.2f} s"))
        idle = r["kib_per_idle_session"]
        out.append(("idle session <= 20 KiB", idle <= 20, f"{idle:.1f} KiB"))
    for name in (n for n in runs if n.startswith("email")):
        r = runs[name]["livedata"]
        per = r["db_xacts_per_change"] / r["workers"]
        net = r["db_xacts_per_change_net_idle"] / r["workers"]
        own = beyond_notify(r, floor)
        measured = f"{per:.2f} in all, {net:.2f} net of idle, {own:.2f} beyond NOTIFY"
        goal = f"{name}: <= 1 transaction per change per process (beyond NOTIFY's)"
        out.append((goal, own <= 1, measured))
    return out


def gc_table(runs: dict[str, Any]) -> None:
    """livedata's collections per generation during each run (``--gc-probe``)."""
    probed = {n: r["livedata"]["gc"] for n, r in runs.items() if "gc" in r.get("livedata", {})}
    if not probed:
        return
    print("\nlivedata's cyclic GC (bench/gcprobe.py): collections, CPU ms total / max / p99")
    print(f"{'workload':<10} {'gen':>3} {'count':>6} {'total':>8} {'max':>7} {'p99':>7}")
    for name, gc in probed.items():
        during = gc["full_while_writing"]
        print(
            f"{name:<10} full collections while the writer ran: {during['count']}"
            f" (longest {during['cpu_ms_max']:.1f} ms CPU)"
        )
        for gen in ("gen0", "gen1", "gen2"):
            g = gc[gen]
            print(
                f"{name:<10} {gen[-1]:>3} {g['count']:>6} {g['cpu_ms_total']:>8.1f}"
                f" {g['cpu_ms_max']:>7.2f} {g['cpu_ms_p99']:>7.2f}"
            )


def via_table(runs: dict[str, Any]) -> list[tuple[str, bool, str]]:
    """Direct reading against the broker (issue 15), and its goal per workload."""
    names = [n for n in runs if n.startswith("via-")]
    if not names:
        return []
    print(
        "\nThrough the broker: commit -> client, each process reading the log or fed by the leader"
    )
    print(
        f"{'workload':<8} {'server':<9} {'workers':>7} {'delivered':>15} {'p50 ms':>7}"
        f" {'p99 ms':>7} {'max ms':>7} {'CPU %':>6} {'xact/chg':>8} {'gen lag p99 ms':>14}"
    )
    out = []
    for name in names:
        p50: dict[str, list[float]] = {"direct": [], "broker": []}
        for server, r in runs[name].items():
            p50[server.split("#")[0]].append(r["p50_ms"])
            print(
                f"{name:<8} {server:<9} {r['workers']:>7} {r['delivered']:>7}/{r['expected']:<7}"
                f" {r['p50_ms']:>7.1f} {r['p99_ms']:>7.1f} {r['max_ms']:>7.1f}"
                f" {r['cpu_pct']:>6.0f} {r['db_xacts_per_change']:>8.2f}"
                f" {r['gen_lag_p99_ms']:>14.1f}"
            )
        direct, broker = (sum(v) / len(v) for v in (p50["direct"], p50["broker"]))
        more = broker - direct
        print(f"{'':<8} {'broker-direct p50 (mean of rounds)':<36} {more:+.2f} ms")
        out.append(
            (f"{name}: p50 through the broker within 1 ms of direct", more <= 1, f"{more:+.2f} ms")
        )
    return out


def report(results: dict[str, Any]) -> None:
    runs = results["runs"]
    quick = " (--quick: a smoke check, not figures)" if results["quick"] else ""
    print(f"\n{results['seconds']:.0f} s per run, {results['procs']} Node processes{quick}")
    live_table(runs)
    subscribe_table(runs)
    gc_table(runs)
    floor = results.get("notify_floor", 0.0)
    email_table(runs, floor)
    checked = goals(runs, floor)
    via = via_table(runs)
    if via:
        print("\nIssue 15 goal")
        for goal, met, measured in via:
            print(f"  {'PASS' if met else 'FAIL'}  {goal}: {measured}")
    if checked:
        scale = " (at --quick's sizes: not the goals' workloads)" if results["quick"] else ""
        print(f"\nIssue 14 goals{scale}")
        for goal, met, measured in checked:
            print(f"  {'PASS' if met else 'FAIL'}  {goal}: {measured}")


if __name__ == "__main__":
    path = sys.argv[1] if len(sys.argv) > 1 else ROOT / "bench" / "results" / "fanout.json"
    with open(path) as f:
        report(json.load(f))
