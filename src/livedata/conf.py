"""livedata's settings, with every default in one place, and the old names of renamed ones.

Projects override any of these in ``settings.LIVEDATA`` (a dict); read them with
``livedata_settings().NAME``. The result is built once and cached; the cache is cleared
when Django's ``setting_changed`` signal says ``LIVEDATA`` changed (``override_settings``,
pytest-django's ``settings``), so tests see their overrides. Code that assigns
``settings.LIVEDATA`` itself calls ``livedata_settings.cache_clear()``.

Names are grouped by prefix: ``LISTENER_*`` (the change-log listener), ``DDP_*``
(``DDP_METHOD_*``, ``DDP_SOCKJS_*``), ``ACCOUNTS_*``, ``HTTP_*`` (``livedata serve``),
``HTTP_API_*``, ``PULL_*``, ``WEBHOOK_*``. ``TRACK``, ``RETENTION`` and
``REQUEST_ID_HEADER`` say what is captured and how it is kept and stamped (the change log
itself, which every part shares), and ``SITE_URL`` is the site's, so they have none.
``DEPRECATED`` maps the names used before this grouping to the new ones: an old name
still works (its value goes to the new name) with a ``LivedataDeprecationWarning`` and
the system check ``livedata.W004``; giving an old name and its new name is an error.
"""

from __future__ import annotations

import difflib
import functools
import warnings
from dataclasses import dataclass, field, fields, replace
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed

#: Meteor's login-style methods (rate limited by default).
LOGIN_METHODS = ("login", "createUser", "resetPassword", "forgotPassword")

# rename_settings: off (the old names stay: the settings rename script skips this block)
#: Old setting name -> its name now (issue 17 grouped the names by prefix).
DEPRECATED: dict[str, str] = {
    "NOTIFY_CHANNEL": "LISTENER_NOTIFY_CHANNEL",
    "POLL_INTERVAL": "LISTENER_POLL_INTERVAL",
    "BATCH_SIZE": "LISTENER_BATCH_SIZE",
    "RECONNECT_MIN": "LISTENER_RECONNECT_MIN",
    "RECONNECT_MAX": "LISTENER_RECONNECT_MAX",
    "METHOD_THREADS": "DDP_METHOD_THREADS",
    "METHOD_FENCE_TIMEOUT": "DDP_METHOD_FENCE_TIMEOUT",
    "DATABASE_WAIT": "DDP_DATABASE_WAIT",
    "SOCKJS_JSONP": "DDP_SOCKJS_JSONP",
    "SOCKJS_MAX_SESSIONS_PER_ADDRESS": "DDP_SOCKJS_MAX_SESSIONS_PER_ADDRESS",
    "LOGIN_TOKEN_LIFETIME": "ACCOUNTS_LOGIN_TOKEN_LIFETIME",
    "PASSWORD_RESET_LIFETIME": "ACCOUNTS_PASSWORD_RESET_LIFETIME",
    "PASSWORD_RESET_URL": "ACCOUNTS_PASSWORD_RESET_URL",
    "WEBHOOKS_IN_SERVE": "WEBHOOK_IN_SERVE",
}
# rename_settings: on


class LivedataDeprecationWarning(DeprecationWarning):
    """A deprecated livedata setting name is in use (see ``DEPRECATED``)."""


#: Old names already warned about in this process (each is warned about once).
_warned: set[str] = set()


def _warn_deprecated(old: str, stacklevel: int) -> None:
    if old in _warned:
        return
    _warned.add(old)
    warnings.warn(
        f"The livedata setting {old!r} is deprecated: it is now {DEPRECATED[old]!r}.",
        LivedataDeprecationWarning,
        stacklevel=stacklevel + 1,
    )


@dataclass(frozen=True)
class LivedataSettings:
    #: Models whose changes are captured, as labels ("app_label.Model"). Same effect as
    #: decorating the model with ``@livedata.track``; both are installed by migrations.
    TRACK: tuple[str, ...] = ()
    #: How long change-log rows are kept; ``livedata prune`` deletes older ones.
    #: ``None`` keeps everything.
    RETENTION: timedelta | None = timedelta(days=30)
    # --- Listener (livedata.capture.listener) ---------------------------------------------
    #: NOTIFY channel the triggers use to wake listeners (the payload is empty).
    LISTENER_NOTIFY_CHANNEL: str = "livedata"
    #: Seconds between listener reads when no NOTIFY arrives (catches lost notifications).
    LISTENER_POLL_INTERVAL: float = 1.0
    #: Maximum change-log rows read by one query.
    LISTENER_BATCH_SIZE: int = 1000
    #: Reconnect back-off of the listener: first and longest wait, in seconds.
    LISTENER_RECONNECT_MIN: float = 0.1
    LISTENER_RECONNECT_MAX: float = 5.0
    #: A broker through which one process (the leader, elected with a PostgreSQL advisory
    #: lock) feeds every process the batches it reads, e.g. "redis://127.0.0.1:6379/0"
    #: (Redis Streams; see livedata.capture.leader). Empty: each process reads the log.
    LISTENER_BROKER_URL: str = ""
    #: The stream's key; it also names the leader's lock (clusters sharing a database and
    #: a broker each need their own).
    LISTENER_BROKER_STREAM: str = "livedata"
    #: Entries kept in the stream (trimmed approximately); a process further behind reads
    #: the rest from PostgreSQL. Each is one batch, at most 1 MiB (larger ones go as a mark
    #: that has the processes read those rows from the log).
    LISTENER_BROKER_MAXLEN: int = 1000
    #: Seconds between a standby's attempts to become the leader (how fast a dead leader
    #: is replaced: its lock goes with its database session).
    LISTENER_LEADER_RETRY: float = 1.0

    # --- Audit context (livedata.capture.context) -----------------------------------------
    #: Request header carrying a request id for the audit context (else one is generated).
    REQUEST_ID_HEADER: str = "X-Request-ID"

    # --- HTTP server (``livedata serve``: see livedata.server.protocols) -------------------
    #: Seconds a connection has to send a request's complete headers, from when it opened
    #: (or from the request's first byte on a kept-alive connection); else it is closed.
    #: 0: no limit (uvicorn's own behaviour: silent connections are held for ever).
    HTTP_HEADER_TIMEOUT: float = 10.0
    #: Seconds an idle kept-alive connection is kept between requests (uvicorn's
    #: ``timeout_keep_alive``).
    HTTP_KEEP_ALIVE_TIMEOUT: int = 5
    #: The serving process's cyclic GC thresholds (``gc.set_threshold``), set at start-up
    #: after what start-up made is frozen; None: Python's (700, 10, 10). A young
    #: collection every 10,000 allocations instead of 700 promotes 14x fewer in-flight
    #: objects (frames being sent), so full collections, which walk every connection's
    #: objects (100 ms with 1000 clients), stop coming while changes go out (issue 14).
    HTTP_GC_THRESHOLDS: tuple[int, int, int] | None = (10_000, 10, 10)
    #: Largest request headers; larger ones get 431.
    HTTP_MAX_HEADER_BYTES: int = 64 * 1024
    #: Connections (HTTP and WebSocket) one client address may hold open in a process;
    #: one more is answered 503 and closed. Trusted proxies (``HTTP_FORWARDED_ALLOW_IPS``)
    #: are not capped: cap connections per client there.
    HTTP_MAX_CONNECTIONS_PER_ADDRESS: int = 200
    #: Reverse proxies whose ``X-Forwarded-For`` and ``X-Forwarded-Proto`` are believed
    #: (uvicorn's ``--forwarded-allow-ips``; livedata.server.proxies): addresses or
    #: networks, e.g. ("127.0.0.1", "10.0.0.0/8"), "unix" for a Unix socket, "*" for any
    #: peer. Empty: every peer is the client itself and the headers are ignored.
    HTTP_FORWARDED_ALLOW_IPS: tuple[str, ...] = ()
    #: On SIGTERM, seconds over which open DDP WebSockets are closed, evenly spread (as
    #: Meteor's ``@meteorjs/ddp-graceful-shutdown``), so their clients reconnect to the
    #: other processes in a trickle, not all at once; the port stops accepting at once.
    #: Keep it below your orchestrator's kill grace period. 0: all closed at once.
    HTTP_SHUTDOWN_PERIOD: float = 5.0

    # --- DDP server ---------------------------------------------------------------------
    #: Where DDP is served: ``"/live"`` serves it at ``/live/websocket`` and over SockJS at
    #: ``/live/sockjs`` (a Meteor client connects to ``https://host/live``), for sites whose
    #: ``/websocket`` belongs to something else. Those paths only: the rest, ``/websocket``
    #: included, go to the wrapped application. Empty: ``/websocket`` and ``/sockjs``.
    DDP_PATH_PREFIX: str = ""
    #: Seconds a DDP connection (WebSocket or SockJS) has to send ``connect``; else it is
    #: closed. 0: no limit.
    DDP_CONNECT_TIMEOUT: float = 10.0
    #: Ping a connection after this many idle seconds; close it when nothing arrives within
    #: the timeout after the ping (Meteor: 15 and 15). 0 disables server pings.
    DDP_HEARTBEAT_INTERVAL: float = 15.0
    DDP_HEARTBEAT_TIMEOUT: float = 15.0
    #: Admission (livedata.runtime.admission): new DDP sessions a process takes on per
    #: second, with bursts of ``DDP_ACCEPT_BURST``; the others wait their turn (a raw
    #: WebSocket before it is accepted, a SockJS session at its first message), so a
    #: reconnect storm after another process restarted is spread out rather than taken at
    #: once. One whose turn is more than ``DDP_ACCEPT_WAIT`` seconds off is refused at
    #: once: HTTP 503 for a WebSocket (Meteor's client backs off), a DDP ``error``
    #: "Server busy" and a close with 1013 for SockJS. The wait stays below Meteor's 10 s
    #: for a socket to open. 0: no limit.
    DDP_ACCEPT_RATE: float = 200.0
    DDP_ACCEPT_BURST: int = 50
    DDP_ACCEPT_WAIT: float = 5.0
    #: Subscriptions being set up at once in a process (waiting for the engine, the
    #: initial query, the documents entering the client's view; they are then streamed at
    #: the client's pace without a slot, so a client that reads nothing holds none);
    #: others wait their turn, up to ``DDP_SUBSCRIBE_WAIT`` seconds, then get nosub 503
    #: "Server busy". The engine runs initial queries one at a time anyway: this bounds
    #: the queue in front of it and the wait. 0: no cap.
    DDP_SUBSCRIBE_CONCURRENCY: int = 32
    DDP_SUBSCRIBE_WAIT: float = 30.0
    #: Largest inbound message; a bigger one gets an error and the connection is closed.
    DDP_MAX_MESSAGE_BYTES: int = 1024 * 1024
    #: Outgoing bytes queued for one client before it is judged too slow and disconnected
    #: (it can reconnect and resubscribe); bounds the memory one client can hold.
    DDP_MAX_OUTGOING_BYTES: int = 16 * 1024 * 1024
    #: Browser origins allowed to open DDP connections, e.g. ("https://app.example.com",);
    #: ("*",) allows any. Empty: same origin only. Clients sending no Origin (Node, mobile)
    #: are always allowed.
    DDP_ALLOWED_ORIGINS: tuple[str, ...] = ()
    #: Serve SockJS's JSONP transport (``jsonp``, ``jsonp_send``). Off: any site's page can
    #: make its requests with a script tag, and Meteor's and sockjs-client's browsers do
    #: not need it (they use WebSocket, xhr-streaming or xhr-polling).
    DDP_SOCKJS_JSONP: bool = False
    #: SockJS sessions of the HTTP transports (polling, streaming) one client address may
    #: hold open in a process; they outlive their requests (60 s), so connection limits do
    #: not bound them. One more gets 429. 0: no cap.
    DDP_SOCKJS_MAX_SESSIONS_PER_ADDRESS: int = 100
    #: permessage-deflate on DDP WebSockets. Off by default: measured (bench/asgi_servers.py)
    #: it costs ~90 KiB per idle connection (zlib state) and halves fan-out throughput.
    DDP_WEBSOCKET_COMPRESSION: bool = False
    #: Concurrent subscriptions one connection may hold; more get nosub "too-many-requests".
    DDP_MAX_SUBSCRIPTIONS: int = 1000
    #: What one client's subscriptions may cost (see livedata.livequery.limits); past a limit
    #: a subscription gets nosub "too-many-requests". Distinct observers (publication +
    #: parameters, + user when it reads the user) one connection may hold, and all
    #: connections from one client address (shared by clients behind one NAT):
    DDP_MAX_OBSERVERS_PER_CONNECTION: int = 100
    DDP_MAX_OBSERVERS_PER_ADDRESS: int = 300
    #: Observer starts (subscriptions no running observer serves: an initial query, then
    #: work on every change) allowed per ``seconds`` per "connection" or "client_address".
    DDP_OBSERVER_RATE_LIMITS: tuple[dict[str, Any], ...] = field(
        default_factory=lambda: (
            {"per": "connection", "calls": 100, "seconds": 10},
            {"per": "client_address", "calls": 300, "seconds": 10},
        )
    )
    #: Documents one connection's subscriptions may hold, counted per subscription (each
    #: is a provider in the connection's mergebox), checked when subscribing.
    DDP_MAX_DOCUMENTS_PER_CONNECTION: int = 100_000
    #: Threads running sync DDP methods (each holds its own database connection).
    DDP_METHOD_THREADS: int = 8
    #: Longest wait for a method's writes to reach the listener before ``updated`` is sent
    #: anyway (only when the database is unreachable for that long).
    DDP_METHOD_FENCE_TIMEOUT: float = 30.0
    #: Seconds a method, a login or a new subscription waits for the database to come
    #: back (retrying with back-off, see livedata.dbwait) before the client gets Meteor's
    #: error 503 "Database unavailable", which it may retry. 0: answer at once.
    DDP_DATABASE_WAIT: float = 5.0

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
    ACCOUNTS_LOGIN_TOKEN_LIFETIME: timedelta = timedelta(days=90)
    #: How long a password-reset token from ``forgotPassword`` lives. Meteor keeps them 3
    #: days; a mailed link is a credential sitting in a mailbox, so livedata's is short.
    #: It is used once either way.
    ACCOUNTS_PASSWORD_RESET_LIFETIME: timedelta = timedelta(hours=1)
    #: The public URL of the site, e.g. "https://app.example.com": links mailed to users
    #: (``forgotPassword``) are built from it, never from a request's Host or Origin (which
    #: the client chooses). Required to mail reset links (a system check warns).
    SITE_URL: str = ""
    #: The link ``forgotPassword`` mails: ``{site_url}`` is ``SITE_URL`` (``{origin}``, the
    #: older name, is ``SITE_URL`` too), ``{token}`` the reset token (Meteor's form, which
    #: Meteor's client routes handle).
    ACCOUNTS_PASSWORD_RESET_URL: str = "{site_url}/#/reset-password/{token}"
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
    #: Behind a TLS-terminating proxy, list it in ``HTTP_FORWARDED_ALLOW_IPS`` (its
    #: ``X-Forwarded-Proto`` then says whether the client used TLS).
    HTTP_API_REQUIRE_TLS: bool = True
    #: Largest JSON request body the APIs accept.
    HTTP_API_MAX_BODY_BYTES: int = 64 * 1024
    #: Seconds a bearer token's user (with the permissions Django caches on it) is reused
    #: without a query; deleted tokens are forgotten at once under ``livedata serve``.
    #: 0 looks every request up.
    HTTP_API_AUTH_CACHE_SECONDS: float = 5.0
    #: HTTP Basic attempts allowed per ``seconds`` per "user" (the username tried) and per
    #: "client_address", as DDP's login limits (``DDP_RATE_LIMITS``); an attempt that
    #: succeeds is given back, so only failures use the budget. Past it: 429 with
    #: ``Retry-After``, and no password is hashed.
    HTTP_API_BASIC_RATE_LIMITS: tuple[dict[str, Any], ...] = field(
        default_factory=lambda: (
            {"per": "user", "calls": 5, "seconds": 10},
            {"per": "client_address", "calls": 10, "seconds": 10},
        )
    )
    #: Threads that check Basic passwords (PBKDF2 is CPU-bound by design), taking turns
    #: across client addresses, and how many checks may wait for them (more: 503).
    HTTP_API_BASIC_THREADS: int = 2
    HTTP_API_BASIC_MAX_WAITING: int = 32

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

    # --- Webhooks (livedata.webhooks) -----------------------------------------------------
    #: Deliver webhooks inside every ``livedata serve`` process too (besides any
    #: ``livedata deliver`` workers); all cooperate through the database.
    WEBHOOK_IN_SERVE: bool = True
    #: Seconds to wait before each attempt at one change: the first is immediate, then the
    #: retries (Standard Webhooks' schedule). When the last attempt fails the subscription
    #: is disabled, never its changes dropped: re-enabling continues with that change.
    WEBHOOK_RETRY_SCHEDULE: tuple[float, ...] = (0, 5, 300, 1800, 7200, 18000, 36000, 36000)
    #: Longest ``Retry-After`` (429, 503) honoured, in seconds.
    WEBHOOK_MAX_RETRY_AFTER: float = 36000.0
    #: Whole-request timeout (connect, send, response) and connect timeout, in seconds.
    WEBHOOK_TIMEOUT: float = 10.0
    WEBHOOK_CONNECT_TIMEOUT: float = 5.0
    #: Bytes of a receiver's response read at most (the rest is not read; the connection
    #: is then closed); the first 1000 characters are kept in the delivery log.
    WEBHOOK_MAX_RESPONSE_BYTES: int = 64 * 1024
    #: Outgoing requests refuse private, loopback, link-local and other non-global
    #: addresses (checked on the address actually connected to, after DNS) unless they are
    #: in one of these networks, e.g. ("10.1.0.0/16",); the demo and tests allow loopback.
    WEBHOOK_ALLOWED_NETWORKS: tuple[str, ...] = ()
    #: Subscriptions one process delivers at once (``livedata deliver --concurrency``).
    WEBHOOK_CONCURRENCY: int = 100
    #: Seconds between reloads of the subscriptions (new ones, position changes, claims).
    WEBHOOK_REFRESH_INTERVAL: float = 1.0
    #: Seconds between checks that each subscription's owner still has the ``view``
    #: permission on its models (and they are still exposed); else it is disabled.
    WEBHOOK_PERMISSION_RECHECK: float = 60.0
    #: Acknowledged positions and the delivery log are written at most this often (s):
    #: after a worker crash at most this much is delivered again.
    WEBHOOK_FLUSH_INTERVAL: float = 0.05
    #: The largest ``batch`` (changes per request) a subscription may ask for.
    WEBHOOK_MAX_BATCH: int = 100
    #: Subscriptions per user.
    WEBHOOK_MAX_SUBSCRIPTIONS: int = 100
    #: Record successful attempts in the delivery log too (failures always are).
    WEBHOOK_LOG_SUCCESSES: bool = True
    #: How long delivery-log rows are kept.
    WEBHOOK_DELIVERY_RETENTION: timedelta = timedelta(days=3)

    # --- Operators' dashboard (livedata.dashboard, /admin/livedata/dashboard/) -----------
    #: Seconds between refreshes of an open dashboard (none while nobody has it open).
    DASHBOARD_INTERVAL: float = 1.0
    #: Change rows the page lists (the latest; older ones are in the change-log admin).
    DASHBOARD_RECENT_CHANGES: int = 50
    #: Seconds of history the page's chart keeps (samples taken while it is open).
    DASHBOARD_HISTORY: float = 600.0

    if not TYPE_CHECKING:  # type checkers flag the old names; at run time they still work

        def __getattr__(self, name: str) -> Any:
            """An old name read as an attribute gives the new one's value (warned about)."""
            new = DEPRECATED.get(name)
            if new is None:
                raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
            _warn_deprecated(name, stacklevel=2)
            return getattr(self, new)


def renamed(overrides: dict[str, Any]) -> dict[str, Any]:
    """``overrides`` with every deprecated name replaced by its new name (warned about once
    per name); ``ImproperlyConfigured`` when an old name and its new name are both given."""
    both = [(old, new) for old, new in DEPRECATED.items() if old in overrides and new in overrides]
    if both:
        pairs = "; ".join(f"{old!r} (deprecated) and {new!r}" for old, new in both)
        raise ImproperlyConfigured(
            f"LIVEDATA sets both {pairs}: keep only the new name{'s' if len(both) > 1 else ''}."
        )
    result = {}
    for key, value in overrides.items():
        if key in DEPRECATED:
            _warn_deprecated(key, stacklevel=3)
            key = DEPRECATED[key]
        result[key] = value
    return result


@functools.cache
def livedata_settings() -> LivedataSettings:
    """The effective settings: defaults updated with ``settings.LIVEDATA`` (cached)."""
    overrides = renamed(dict(getattr(settings, "LIVEDATA", None) or {}))
    known = {f.name for f in fields(LivedataSettings)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        guesses = [
            f"{name} (did you mean {close[0]}?)" if close else name
            for name in unknown
            for close in [difflib.get_close_matches(str(name), known, n=1, cutoff=0.75)]
        ]
        raise ImproperlyConfigured(
            f"Unknown LIVEDATA setting(s): {', '.join(guesses)}. Known: {', '.join(sorted(known))}."
        )
    for key in (
        "TRACK",
        "DDP_ALLOWED_ORIGINS",
        "DDP_RATE_LIMITS",
        "DDP_OBSERVER_RATE_LIMITS",
        "HTTP_API_BASIC_RATE_LIMITS",
        "WEBHOOK_RETRY_SCHEDULE",
        "WEBHOOK_ALLOWED_NETWORKS",
    ):
        if key in overrides:
            overrides[key] = tuple(overrides[key])
    proxies = overrides.get("HTTP_FORWARDED_ALLOW_IPS")
    if isinstance(proxies, list):  # a string stays one: the system check names it
        overrides["HTTP_FORWARDED_ALLOW_IPS"] = tuple(proxies)
    return replace(LivedataSettings(), **overrides)


#: Prefixes of our names that another library may use too: a top-level setting with one
#: is only taken for ours when it is (nearly) one of our names. ``DDP_`` always is.
_SHARED_PREFIXES = ("LISTENER_", "WEBHOOK_", "PULL_", "HTTP_API_", "ACCOUNTS_")


def look_alike(name: str) -> tuple[str, str] | None:
    """Why a top-level setting ``name`` looks like livedata's, and the fix (None: it does
    not). A misspelt ``LIVEDATA`` (``LIVE_DATA``, ``LiveData``, ``LIVEDATA_SETTINGS``)
    or one of our prefixed keys outside it (``DDP_ALLOWED_ORIGINS``) is ignored."""
    if name == "LIVEDATA":
        return None
    silence = "(if it is another library's, add 'livedata.W008' to SILENCED_SYSTEM_CHECKS)"
    letters = "".join(c for c in name.upper() if c.isalpha())
    if "LIVEDATA" in letters or difflib.SequenceMatcher(None, letters, "LIVEDATA").ratio() >= 0.8:
        return (
            "livedata reads its settings from the dict settings.LIVEDATA only.",
            f"Rename {name} to LIVEDATA (a dict of livedata's settings) {silence}.",
        )
    known = [f.name for f in fields(LivedataSettings)] + list(DEPRECATED)
    upper = name.upper()
    if not upper.startswith(("DDP_", *_SHARED_PREFIXES)):
        return None
    if upper in known:
        return (
            f"{upper} is a key of the LIVEDATA dict, not a setting of its own.",
            f"Move it into LIVEDATA: LIVEDATA = {{..., {upper!r}: ...}} {silence}.",
        )
    cutoff = 0.8 if upper.startswith("DDP_") else 0.9  # another library's WEBHOOK_SECRET
    close = difflib.get_close_matches(upper, known, n=1, cutoff=cutoff)
    if close:
        return (
            f"it looks like LIVEDATA[{close[0]!r}] misspelt and outside the LIVEDATA dict.",
            f"Set LIVEDATA = {{..., {close[0]!r}: ...}} {silence}.",
        )
    if upper.startswith("DDP_"):
        return (
            "DDP settings are keys of the LIVEDATA dict, and this is none of them.",
            "Known DDP keys: "
            + ", ".join(n for n in known if n.startswith("DDP_"))
            + f" {silence}.",
        )
    return None


def _clear_when_changed(*, setting: str, **kwargs: Any) -> None:
    if setting == "LIVEDATA":
        livedata_settings.cache_clear()


setting_changed.connect(_clear_when_changed)
