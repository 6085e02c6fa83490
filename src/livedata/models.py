"""Models of the ``livedata`` app; each part keeps its own in its folder."""

from livedata.accounts.models import LoginToken
from livedata.capture.models import Change, LogHorizon
from livedata.dashboard.models import Dashboard
from livedata.pull.models import MirrorPosition
from livedata.webhooks.models import Delivery, Subscription

__all__ = [
    "Change",
    "Dashboard",
    "Delivery",
    "LogHorizon",
    "LoginToken",
    "MirrorPosition",
    "Subscription",
]
