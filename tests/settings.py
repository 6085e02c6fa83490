"""Settings for the test suite: the demo project plus a small app of test models."""

from livedata.demo.settings import *  # noqa: F403
from livedata.demo.settings import INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "tests.testapp"]
ROOT_URLCONF = "tests.urls"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast test users
# Capture declared in settings (the demo's models use the @livedata.track decorator).
LIVEDATA = {"TRACK": ["testapp.Gadget"], "POLL_INTERVAL": 0.5, "RECONNECT_MAX": 1.0}
