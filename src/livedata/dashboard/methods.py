"""The dashboard's buttons, as DDP methods of the page's own connection.

``livedata.dashboard.retryNow(id)`` and ``livedata.dashboard.reenable(id)``: for users who
may see the dashboard (``access.may_view``) and change webhook subscriptions
(``livedata.change_subscription``); others get 403 before anything is read. They do what
the subscriptions admin's actions do (``webhooks.control``), and return how many
subscriptions they changed (0: none of that id in a state to change).
"""

from __future__ import annotations

from typing import Any

from livedata.dashboard.access import PERMISSION, may_view_now
from livedata.ddp.errors import DDPError
from livedata.publish.methods import MethodCall, method
from livedata.webhooks import control
from livedata.webhooks.models import Subscription

CHANGE = "livedata.change_subscription"


def _subscriptions(call: MethodCall, subscription_id: Any) -> Any:
    if not may_view_now(call.user):
        raise DDPError(403, "The dashboard is for staff with livedata.view_dashboard")
    if type(subscription_id) is not int:
        raise DDPError(400, "Match failed", "a webhook subscription's id (an integer)")
    return Subscription.objects.filter(pk=subscription_id)


@method(name="livedata.dashboard.retryNow", permission_required=(PERMISSION, CHANGE))
def retry_now(call: MethodCall, subscription_id: Any) -> int:
    return control.retry_now(_subscriptions(call, subscription_id))


@method(name="livedata.dashboard.reenable", permission_required=(PERMISSION, CHANGE))
def reenable(call: MethodCall, subscription_id: Any) -> int:
    return control.enable(_subscriptions(call, subscription_id))
