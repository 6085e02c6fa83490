"""livedata's settings, with every default in one place.

Projects override any of these in ``settings.LIVEDATA`` (a dict); read them with
``livedata_settings().NAME`` so tests that use ``override_settings`` see the change.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

#: Meteor's login-style methods (rate limited by default).
LOGIN_METHODS = ("login", "createUser", "resetPassword", "forgotPassword")


@dataclass(frozen=True)
class LivedataSettings:
    #: Models whose changes are captured, as labels ("app_label.Model"). Same effect as
    #: decorating the model with ``@livedata.track``; both are installed by migrations.
    TRACK: tuple[str, ...] = ()
    #: How long change-log rows are kept; ``livedata prune`` deletes older ones.
    #: ``None`` keeps everything.
    RETENTION: timedelta | None = timedelta(days=30)
    #: NOTIFY channel the triggers use to wake listeners (the payload is empty).
    NOTIFY_CHANNEL: str = "livedata"
    #: Seconds between listener reads when no NOTIFY arrives (catches lost notifications).
    POLL_INTERVAL: float = 1.0
    #: Maximum change-log rows read by one query.
    BATCH_SIZE: int = 1000
    #: Reconnect back-off of the listener: first and longest wait, in seconds.
    RECONNECT_MIN: float = 0.1
    RECONNECT_MAX: float = 5.0
    #: Request header carrying a request id for the audit context (else one is generated).
    REQUEST_ID_HEADER: str = "X-Request-ID"

    # --- DDP server ---------------------------------------------------------------------
    #: Ping a connection after this many idle seconds; close it when nothing arrives within
    #: the timeout after the ping (Meteor: 15 and 15). 0 disables server pings.
    DDP_HEARTBEAT_INTERVAL: float = 15.0
    DDP_HEARTBEAT_TIMEOUT: float = 15.0
    #: Largest inbound message; a bigger one gets an error and the connection is closed.
    DDP_MAX_MESSAGE_BYTES: int = 1024 * 1024
    #: Outgoing bytes queued for one client before it is judged too slow and disconnected
    #: (it can reconnect and resubscribe); bounds the memory one client can hold.
    DDP_MAX_OUTGOING_BYTES: int = 16 * 1024 * 1024
    #: Browser origins allowed to open DDP connections, e.g. ("https://app.example.com",);
    #: ("*",) allows any. Empty: same origin only. Clients sending no Origin (Node, mobile)
    #: are always allowed.
    DDP_ALLOWED_ORIGINS: tuple[str, ...] = ()
    #: permessage-deflate on DDP WebSockets. Off by default: measured (bench/asgi_servers.py)
    #: it costs ~90 KiB per idle connection (zlib state) and halves fan-out throughput.
    DDP_WEBSOCKET_COMPRESSION: bool = False
    #: Concurrent subscriptions one connection may hold; more get nosub "too-many-requests".
    DDP_MAX_SUBSCRIPTIONS: int = 1000
    #: Threads running sync DDP methods (each holds its own database connection).
    METHOD_THREADS: int = 8
    #: Longest wait for a method's writes to reach the listener before ``updated`` is sent
    #: anyway (only when the database is unreachable for that long).
    METHOD_FENCE_TIMEOUT: float = 30.0

    #: Method rate limits (see livedata.ddp.ratelimit): each rule covers ``methods`` and
    #: allows ``calls`` per ``seconds`` per "connection", "client_address" or "user".
    #: The first is Meteor's default; the second stops reconnecting to reset the budget.
    DDP_RATE_LIMITS: tuple[dict[str, Any], ...] = field(
        default_factory=lambda: (
            {"methods": LOGIN_METHODS, "per": "connection", "calls": 5, "seconds": 10},
            {"methods": LOGIN_METHODS, "per": "client_address", "calls": 10, "seconds": 10},
        )
    )

    # --- Accounts (Meteor accounts-password over DDP, Django users) ----------------------
    #: Serve Meteor's account methods (login, logout, createUser, changePassword, ...).
    ACCOUNTS: bool = True
    #: Allow ``createUser`` over DDP (sign-ups). None: only when ``settings.DEBUG``.
    ACCOUNTS_ALLOW_SIGNUP: bool | None = None
    #: How long a login (resume) token lives (Meteor: 90 days).
    LOGIN_TOKEN_LIFETIME: timedelta = timedelta(days=90)
    #: How long a password-reset token from ``forgotPassword`` lives (Meteor: 3 days).
    PASSWORD_RESET_LIFETIME: timedelta = timedelta(days=3)
    #: The link ``forgotPassword`` mails: ``{origin}`` is the client's site, ``{token}``
    #: the reset token (Meteor's form, which Meteor's client routes handle).
    PASSWORD_RESET_URL: str = "{origin}/#/reset-password/{token}"
    #: One answer for "no such user" and "wrong password" (Meteor 3's default): no user
    #: enumeration. False gives Meteor's older, specific messages.
    ACCOUNTS_AMBIGUOUS_ERRORS: bool = True
    #: Threads that run the login-style methods (password hashing is CPU-bound): a login
    #: flood takes at most these, other methods and subscriptions keep their own threads.
    ACCOUNTS_THREADS: int = 2
    #: Finds and creates users and builds their ``users`` document (custom user models).
    ACCOUNTS_ADAPTER: str = "livedata.accounts.adapter.Adapter"
    #: A same-origin browser logged in to the Django site is logged in over DDP too.
    DDP_SESSION_LOGIN: bool = True

    # --- HTTP APIs (webhook subscriptions, pull) -----------------------------------------
    #: Refuse credentials (Basic, Bearer) sent over plain HTTP by a non-loopback client.
    #: Behind a TLS-terminating proxy, set Django's SECURE_PROXY_SSL_HEADER instead.
    HTTP_API_REQUIRE_TLS: bool = True
    #: Largest JSON request body the APIs accept.
    HTTP_API_MAX_BODY_BYTES: int = 64 * 1024

    # --- Pull feed (livedata.pull) -------------------------------------------------------
    #: Rows or changes per response when the client gives no ``limit``.
    PULL_PAGE_SIZE: int = 1000
    #: Largest ``limit`` honoured; bigger ones are capped (the response says which applied).
    PULL_MAX_PAGE_SIZE: int = 10000
    #: How long a ``live=true`` request is held without changes before it answers
    #: up-to-date (ElectricSQL holds 20 s; stay below proxies' idle timeouts).
    PULL_LIVE_TIMEOUT: float = 20.0
    #: Seconds between keep-alive comments on server-sent event streams.
    PULL_SSE_KEEPALIVE: float = 15.0
    #: Live requests and event streams one process holds at once; more get 503.
    PULL_MAX_LIVE_CLIENTS: int = 10000
    #: Threads (each with its own database connection) reading pages for the feed.
    PULL_DB_THREADS: int = 4


def livedata_settings() -> LivedataSettings:
    """The effective settings: defaults updated with ``settings.LIVEDATA``."""
    overrides: dict[str, Any] = dict(getattr(settings, "LIVEDATA", None) or {})
    known = {f.name for f in fields(LivedataSettings)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ImproperlyConfigured(
            f"Unknown LIVEDATA setting(s): {', '.join(unknown)}. Known: {', '.join(sorted(known))}."
        )
    for key in ("TRACK", "DDP_ALLOWED_ORIGINS", "DDP_RATE_LIMITS"):
        if key in overrides:
            overrides[key] = tuple(overrides[key])
    return replace(LivedataSettings(), **overrides)
