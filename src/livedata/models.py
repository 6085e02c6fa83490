"""Models of the ``livedata`` app; each part keeps its own in its folder."""

from livedata.accounts.models import LoginToken
from livedata.capture.models import Change, LogHorizon
from livedata.pull.models import MirrorPosition

__all__ = ["Change", "LogHorizon", "LoginToken", "MirrorPosition"]
