"""What operators do to subscriptions by hand: re-enable one, or retry it now.

Shared by the subscriptions admin's actions and the dashboard's DDP methods. Both write
``updated``: the subscription's NOTIFY trigger wakes every dispatcher, the holder hands
the subscription back (its version changed) and it is claimed again with the new state;
a worker's own flush of the old retry state is refused (it compares ``updated``).
"""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.utils import timezone

from livedata.webhooks.models import Subscription


def enable(queryset: QuerySet[Subscription, Any]) -> int:
    """Make these subscriptions active again, from their position, with no failed
    attempts counted (so the whole retry schedule is theirs again)."""
    return queryset.update(
        state=Subscription.State.ACTIVE,
        disabled_reason="",
        attempts=0,
        next_attempt_at=None,
        updated=timezone.now(),
    )


def retry_now(queryset: QuerySet[Subscription, Any]) -> int:
    """Attempt the next change of these active subscriptions at once instead of at their
    scheduled retry (the failed attempts stay counted: another failure waits the next
    step of the schedule)."""
    return queryset.filter(state=Subscription.State.ACTIVE).update(
        next_attempt_at=None, updated=timezone.now()
    )


def state_of(subscription: Subscription) -> str:
    """What the dashboard shows: ``disabled``, ``retrying`` (active, its next change
    failed at least once) or ``active``."""
    if subscription.state == Subscription.State.DISABLED:
        return "disabled"
    return "retrying" if subscription.attempts else "active"
