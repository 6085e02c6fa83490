"""Whether a subscription's owner may still receive what it selects.

A subscription is compiled (``Selection``) and its owner's Django permissions checked
when it is claimed and again every ``WEBHOOK_PERMISSION_RECHECK``: a lost ``view``
permission disables it, and the context permission decides from then on whether audit
contexts are sent. Outcomes are cached per subscription version, so a reload does not
ask the database for every held subscription each time.
"""

from __future__ import annotations

import time
from datetime import datetime

from livedata.webhooks.selection import Selection, SelectionError, model_of
from livedata.webhooks.state import SubscriptionRow

#: Owners holding it receive the audit context of models whose Collection exposes it.
CONTEXT_PERMISSION = "livedata.view_change_context"


class Owners:
    """The permission checks of one dispatcher, with their cache."""

    def __init__(self) -> None:
        #: per subscription: (its version, when checked, the outcome)
        self.checked: dict[int, tuple[tuple[int, datetime], float, Selection | str]] = {}

    def check(
        self, subscriptions: list[SubscriptionRow], recheck_every: float
    ) -> dict[int, Selection | str]:
        """Compile each subscription, and check its owner may still see its models
        (Django permissions; in a thread). A string says why it must be disabled. Whether
        audit contexts are sent is decided here too, from the owner's permission."""
        from django.contrib.auth import get_user_model
        from django.db import connections

        out: dict[int, Selection | str] = {}
        try:
            users = get_user_model()._default_manager.in_bulk({c.owner_id for c in subscriptions})
            clock = time.monotonic()
            for subscription in subscriptions:
                cached = self.checked.get(subscription.id)
                fresh = clock - cached[1] < recheck_every if cached else False
                if cached and cached[0] == subscription.version and fresh:
                    out[subscription.id] = cached[2]
                    continue
                user = users.get(subscription.owner_id)
                try:
                    selection: Selection | str = Selection(
                        subscription.labels,
                        subscription.operations,
                        subscription.filter,
                        subscription.fields,
                        context=user is not None and user.has_perm(CONTEXT_PERMISSION),
                    )
                except SelectionError as exc:
                    selection = f"its {exc.field} are no longer valid: {exc.message}"
                else:
                    for label in selection.labels:
                        model = model_of(label)
                        perm = f"{model._meta.app_label}.view_{model._meta.model_name}"
                        if user is None or not user.is_active or not user.has_perm(perm):
                            selection = f"its owner no longer has the {perm} permission"
                            break
                self.checked[subscription.id] = (subscription.version, clock, selection)
                out[subscription.id] = selection
        finally:
            connections.close_all()
        return out
