"""Models of the ``livedata`` app; each part keeps its own in its folder."""

from livedata.accounts.models import LoginToken
from livedata.capture.models import Change, LogHorizon
from livedata.pull.models import MirrorPosition
from livedata.webhooks.models import Delivery, Subscription

__all__ = [
    "Change",
    "Delivery",
    "LogHorizon",
    "LoginToken",
    "MirrorPosition",
    "Subscription",
]
