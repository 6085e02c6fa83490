"""The dashboard's documents, made from the runtime's figures (pure: no I/O).

The page's numbers are the figures the Prometheus endpoint exposes (``Board.read()``),
looked up by name here; rates are the difference of two readings of a counter. What
the figures leave out by design (a subscription's parameters, a webhook's last
attempts) comes from the parts' own detail sources and the database (``store``).
"""

from __future__ import annotations

from typing import Any

from livedata.capture.log import ChangeRow
from livedata.runtime.figures import Figure

#: Documents of the page's one collection: "now", "flow", "webhooks", "pull"; change rows
#: in ``CHANGES`` (id: the row's id), the chart's samples in ``SAMPLES``, and every live
#: process's headline figures in ``PROCESSES`` (id: ``host:pid``, see ``cluster``).
COLLECTION = "livedata_dashboard"
CHANGES = "livedata_dashboard_changes"
SAMPLES = "livedata_dashboard_samples"
PROCESSES = "livedata_dashboard_processes"


def by_name(figures: list[Figure]) -> dict[str, Figure]:
    return {f.name: f for f in figures}


def values(figures: dict[str, Figure], name: str, label: str) -> dict[str, float]:
    """``name``'s values keyed by its label ``label`` (absent figure: empty)."""
    figure = figures.get(name)
    if figure is None:
        return {}
    out: dict[str, float] = {}
    for labels, value in figure.values:
        key = dict(labels).get(label, "")
        out[key] = out.get(key, 0.0) + value
    return out


def total(figures: dict[str, Figure], name: str) -> float:
    figure = figures.get(name)
    return 0.0 if figure is None else sum(v for _, v in figure.values)


def rates(now: dict[str, float], before: dict[str, float], seconds: float) -> dict[str, float]:
    """Per-second growth of each counter between two readings (none before: 0)."""
    if seconds <= 0:
        return dict.fromkeys(now, 0.0)
    return {k: max(0.0, (v - before.get(k, v)) / seconds) for k, v in now.items()}


def consumers(figures: dict[str, Figure]) -> list[dict[str, Any]]:
    """Each follower of the listener (live queries, each webhook subscription, the pull
    notifier, ...) and how far behind the log it is."""
    lag_tx = values(figures, "consumer_lag_transactions", "consumer")
    lag_rows = values(figures, "consumer_lag_rows", "consumer")
    lag_s = values(figures, "consumer_lag_seconds", "consumer")
    catching = values(figures, "consumer_catching_up", "consumer")
    return [
        {
            "name": name,
            "lag_transactions": lag_tx[name],
            "lag_rows": lag_rows.get(name, 0.0),
            "lag_seconds": round(lag_s.get(name, 0.0), 3),
            "catching_up": bool(catching.get(name)),
        }
        for name in sorted(lag_tx)
    ]


def now_document(
    figures: dict[str, Figure],
    observers: list[dict[str, Any]],
    *,
    process: str,
    messages_per_s: float,
    memory_bytes: float | None,
    dashboard_subscribers: int,
) -> dict[str, Any]:
    return {
        "process": process,
        "sessions": {k: int(v) for k, v in values(figures, "connections", "transport").items()},
        "subscriptions": {
            k: int(v) for k, v in values(figures, "subscriptions", "publication").items()
        },
        "observers": observers,
        "observers_stale": int(total(figures, "observers_stale")),
        "messages_per_s": round(messages_per_s, 2),
        "memory_bytes": memory_bytes,
        "dashboard_subscribers": dashboard_subscribers,
        "listener_connected": bool(total(figures, "listener_connected")),
        "leader": _cluster(figures),
    }


def _cluster(figures: dict[str, Figure]) -> dict[str, Any] | None:
    """This process's place in a cluster (absent without a broker)."""
    broker = figures.get("broker_connected")
    leader = figures.get("leader")
    if broker is None and leader is None:
        return None
    out: dict[str, Any] = {}
    if broker is not None and broker.values:
        labels, value = broker.values[0]
        out["broker"] = dict(labels).get("kind", "")
        out["broker_connected"] = bool(value)
    if leader is not None and leader.values:
        labels, value = leader.values[0]
        out["is_leader"] = bool(value)
        out["holder"] = dict(labels).get("holder", "")
    return out


def flow_document(figures: dict[str, Figure], changes_per_s: dict[str, float]) -> dict[str, Any]:
    return {
        "changes_per_s": {k: round(v, 2) for k, v in sorted(changes_per_s.items())},
        "consumers": consumers(figures),
        "webhook_backlog": {
            k: int(v) for k, v in values(figures, "webhook_backlog", "subscription").items()
        },
    }


def pull_document(figures: dict[str, Figure], mirrors: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "live_clients": {
            k: int(v) for k, v in values(figures, "pull_live_clients", "model").items()
        },
        "buffer_rows": int(total(figures, "pull_buffer_rows")),
        "mirrors": mirrors,
    }


def change_document(row: ChangeRow) -> dict[str, Any]:
    """A change row as the page lists it (the row's values are left to the change-log
    admin, which the page links to: a list of 50 rows stays small)."""
    context = row.context or {}
    return {
        "id": row.id,
        "txid": row.txid,
        "model": row.model,
        "op": row.op,
        "pk": row.pk,
        "changed": row.changed,
        "at": row.at.isoformat(),
        "username": context.get("username"),
        "user_id": context.get("user_id"),
        "request_id": context.get("request_id"),
        "context": context,
    }


def changed_fields(old: dict[str, Any] | None, new: dict[str, Any]) -> dict[str, Any]:
    """The top-level fields of ``new`` that differ from ``old`` (a ``changed`` message)."""
    if old is None:
        return new
    return {k: v for k, v in new.items() if old.get(k) != v}
