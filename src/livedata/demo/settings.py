"""Settings of the bundled demo project (``livedata demo``; other ``livedata`` commands only
where no project is found, see livedata.cli)."""

from __future__ import annotations

import json
import os

from livedata.dbconfig import database_config

DEBUG = os.environ.get("LIVEDATA_DEBUG", "1") == "1"
# The demo is a local example: this key is public. Real projects set their own secret.
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "livedata-demo-not-secret")
# Only the names the demo is reached by: with "*", a page of any site whose name resolves
# to this machine (DNS rebinding) would be same-origin with the demo. `livedata demo`
# adds its --host; LIVEDATA_ALLOWED_HOSTS (comma-separated) for other names.
ALLOWED_HOSTS = [
    h.strip()
    for h in os.environ.get("LIVEDATA_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]").split(",")
    if h.strip()
]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "pgtrigger",
    "livedata",
    "livedata.demo.bookstore",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "livedata.capture.context.ContextMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "livedata.demo.urls"
ASGI_APPLICATION = "livedata.demo.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

DATABASES = {"default": database_config("livedata")}
# Meteor clients log in with a SHA-256 digest of the password: this hasher checks both
# that and Django's own logins (livedata.accounts.hashers); older hashes upgrade on login.
PASSWORD_HASHERS = [
    "livedata.accounts.hashers.DigestPBKDF2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
]
# forgotPassword mails: printed to the console in the demo
EMAIL_BACKEND = os.environ.get(
    "LIVEDATA_EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend"
)
EMAIL_FILE_PATH = os.environ.get("LIVEDATA_EMAIL_DIR")
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
TIME_ZONE = "UTC"
STATIC_URL = "static/"

# The demo's livedata settings; LIVEDATA_SETTINGS='{"DDP_HEARTBEAT_INTERVAL": 0}' (JSON)
# overrides them without editing code (benchmarks use it).
LIVEDATA: dict = {
    # where forgotPassword's links point (`livedata demo` sets it to where it serves)
    "SITE_URL": os.environ.get("LIVEDATA_SITE_URL", "http://127.0.0.1:8000"),
    # the demo's example receiver (/example-receiver/) runs on this machine
    "WEBHOOK_ALLOWED_NETWORKS": ["127.0.0.0/8", "::1/128"],
    **json.loads(os.environ.get("LIVEDATA_SETTINGS") or "{}"),
}
# The signing secret of the demo's example webhook subscription (public, like SECRET_KEY).
DEMO_WEBHOOK_SECRET = "whsec_bGl2ZWRhdGEtZGVtby13ZWJob29rLXNlY3JldCE="

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"livedata": {"handlers": ["console"], "level": "INFO"}},
}
