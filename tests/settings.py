"""Settings for the test suite: the demo project plus a small app of test models."""

import json
import os

from livedata.demo.settings import *  # noqa: F403
from livedata.demo.settings import INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "tests.testapp"]
ROOT_URLCONF = "tests.urls"
# servers started by a test may serve another application (``livedata serve`` honours it)
ASGI_APPLICATION = os.environ.get("LIVEDATA_TEST_ASGI_APPLICATION", ASGI_APPLICATION)  # noqa: F405
# servers started by a test may restrict the hosts they serve (JSON list)
ALLOWED_HOSTS = json.loads(os.environ.get("LIVEDATA_TEST_ALLOWED_HOSTS") or '["*"]')
# the demo's digest hasher with few iterations: fast test users, same format
PASSWORD_HASHERS = ["tests.testapp.hashers.FastDigestPBKDF2PasswordHasher"]
# Capture declared in settings (the demo's models use the @livedata.track decorator).
LIVEDATA = {
    "TRACK": ["testapp.Gadget"],
    "LISTENER_POLL_INTERVAL": 0.5,
    "SITE_URL": "http://site.example",  # where mailed links point
    "LISTENER_RECONNECT_MAX": 1.0,
    # webhook receivers in tests are local HTTP servers; retries are fast
    "WEBHOOK_ALLOWED_NETWORKS": ["127.0.0.0/8", "::1/128"],
    "WEBHOOK_RETRY_SCHEDULE": [0, 0.2, 0.4, 0.8, 1.6],
    "WEBHOOK_REFRESH_INTERVAL": 0.3,
    "WEBHOOK_TIMEOUT": 3.0,
}
# servers started by a test: its own overrides, as JSON (as the demo settings)
LIVEDATA.update(json.loads(os.environ.get("LIVEDATA_SETTINGS") or "{}"))

if os.environ.get("LIVEDATA_TEST_OVERRIDES"):
    # servers started by tests: small limits to exercise them
    LIVEDATA.update(DDP_MAX_MESSAGE_BYTES=64 * 1024, DDP_MAX_OUTGOING_BYTES=256 * 1024)
    LIVEDATA.update(PULL_LIVE_TIMEOUT=2.0, PULL_SSE_KEEPALIVE=1.0)
    if os.environ.get("LIVEDATA_TEST_OVERRIDES") == "fast-heartbeat":
        LIVEDATA.update(DDP_HEARTBEAT_INTERVAL=1.0, DDP_HEARTBEAT_TIMEOUT=1.0)

if os.environ.get("LIVEDATA_TEST_HASHER") == "real":
    # the real cost of password hashing (flood tests)
    PASSWORD_HASHERS = ["livedata.accounts.hashers.DigestPBKDF2PasswordHasher"]
