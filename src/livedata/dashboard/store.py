"""What the dashboard reads from the database, in a pool thread, only while someone has
the page open: webhook subscriptions with their last attempts, the mirrors' positions,
the live processes' rows (``cluster``), and the last change rows (once, when the first
subscriber arrives)."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from livedata.capture.log import ChangeRow
from livedata.capture.models import Change
from livedata.dashboard import cluster
from livedata.pull.models import MirrorPosition
from livedata.webhooks.control import state_of
from livedata.webhooks.models import Delivery, Subscription

#: Attempts shown per webhook subscription.
ATTEMPTS = 5
#: Subscriptions and mirrors shown at most (the admin lists them all).
SHOWN = 100


def iso(value: Any) -> str | None:
    return None if value is None else value.isoformat()


#: ``Change``'s fields in the order of ``ChangeRow``'s
_ROW_FIELDS = (
    "id",
    "txid",
    "model",
    "table",
    "op",
    "object_pk",
    "old",
    "new",
    "changed",
    "context",
    "at",
)


def recent_changes(n: int) -> list[ChangeRow]:
    """The last ``n`` rows of the change log, oldest first."""
    rows = Change.objects.order_by("-txid", "-id")[:n]
    return [ChangeRow(*(getattr(r, name) for name in _ROW_FIELDS)) for r in reversed(list(rows))]


def webhooks() -> list[dict[str, Any]]:
    """Each webhook subscription's state and its last ``ATTEMPTS`` attempts (the delivery
    log keeps failures, and successes when ``WEBHOOK_LOG_SUCCESSES``)."""
    subs = list(Subscription.objects.select_related("owner").order_by("id")[:SHOWN])
    attempts: dict[int, list[dict[str, Any]]] = {s.id: [] for s in subs}
    recent = Delivery.objects.filter(subscription_id__in=list(attempts)).order_by("-id")
    for d in recent[: ATTEMPTS * max(1, len(subs)) * 4]:
        mine = attempts[d.subscription_id]
        if len(mine) < ATTEMPTS:
            mine.append(
                {
                    "at": iso(d.at),
                    "attempt": d.attempt,
                    "outcome": d.outcome,
                    "status_code": d.status_code,
                    "latency_ms": d.latency_ms,
                    "error": d.error[:200],
                }
            )
    return [
        {
            "id": s.id,
            "name": s.name,
            "owner": s.owner.get_username(),
            "url": s.url,
            "state": state_of(s),
            "attempts": s.attempts,
            "next_attempt_at": iso(s.next_attempt_at),
            "delivered": s.delivered,
            "last_status": s.last_status,
            "last_error": s.last_error[:200],
            "last_success_at": iso(s.last_success_at),
            "disabled_reason": s.disabled_reason,
            "recent": attempts[s.id],
        }
        for s in subs
    ]


def mirrors() -> list[dict[str, Any]]:
    """The positions mirrors writing into this database report (``livedata mirror``)."""
    return [
        {
            "name": m.name,
            "source": m.source,
            "target": m.target,
            "phase": m.phase,
            "offset": m.offset,
            "changes": m.changes,
            "updated_at": iso(m.updated_at),
        }
        for m in MirrorPosition.objects.order_by("name")[:SHOWN]
    ]


def state(stale_seconds: float) -> dict[str, Any]:
    """What one refresh reads (one call, one pool thread), with the NOTIFY that keeps
    every process reporting its row (``cluster``) and the rows of those that do. One
    transaction: the NOTIFY goes out as it commits, and the database counts one commit
    per refresh."""
    with transaction.atomic():
        cluster.notify()
        return {
            "webhooks": webhooks(),
            "mirrors": mirrors(),
            "processes": cluster.live(stale_seconds),
        }
