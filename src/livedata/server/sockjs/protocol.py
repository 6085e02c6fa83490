"""SockJS 0.3.3's HTTP rules, sans-I/O: which URL is which route, and the headers a
response carries (CORS, caching, the JSONP callback, the cookies).

Pure functions of values (no asyncio, no sockets); the endpoint (``endpoint.py``) looks
routes up here and maps their names to its handlers.

URLs under the endpoint's prefix (sockjs-protocol 0.3.3; sockjs-node for what the suite
leaves open) and the route names :func:`route` gives them:

    "" or "/"                      greeting
    /info                          info
    /iframe[-version].html         iframe
    /websocket                     websocket (raw, no session id)
    /<server>/<session>/<name>     <name>: xhr, xhr_send, xhr_streaming, eventsource,
                                   htmlfile, jsonp, jsonp_send, websocket
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Collection, Mapping
from email.utils import formatdate
from urllib.parse import parse_qs

from livedata.server.sockjs.frames import HTTPError

Headers = list[tuple[bytes, bytes]]

DEFAULT_SOCKJS_URL = "https://cdn.jsdelivr.net/npm/sockjs-client@1/dist/sockjs.min.js"
ONE_YEAR = 365 * 24 * 3600
NO_CACHE = (b"cache-control", b"no-store, no-cache, must-revalidate, max-age=0")
TEXT = b"text/plain; charset=UTF-8"
JAVASCRIPT = b"application/javascript; charset=UTF-8"
HTML = b"text/html; charset=UTF-8"
JSON = b"application/json; charset=UTF-8"
EVENT_STREAM = b"text/event-stream; charset=UTF-8"
#: the bodies of error answers without a message of their own
REASONS = {404: "Not found.", 405: "", 500: "Internal server error."}

#: the cookie binding a session to the browser that opened it (see ``endpoint.py``)
BIND_COOKIE = "sockjs_bind"
#: its lifetime, renewed by every response of the session (so an abandoned session's
#: cookie does not stay in the browser)
BIND_MAX_AGE = 3600

_SESSION_URL = re.compile(r"/([^/.]+)/([^/.]+)/([^/.]+)/?")
_IFRAME_URL = re.compile(r"/iframe[0-9a-z.\-_]*\.html")
_CALLBACK = re.compile(r"[a-zA-Z0-9\-_.]{1,32}")
_COOKIE_VALUE = re.compile(r"[A-Za-z0-9!#$%&'*+\-.^_`|~]{1,200}")
_RAW_WEBSOCKET = ("/websocket", "/websocket/")

_IFRAME = """<!DOCTYPE html>
<html>
<head>
  <meta http-equiv="X-UA-Compatible" content="IE=edge" />
  <meta http-equiv="Content-Type" content="text/html; charset=UTF-8" />
  <script>
    document.domain = document.domain;
    _sockjs_onload = function(){SockJS.bootstrap_iframe();};
  </script>
  <script src="{sockjs_url}"></script>
</head>
<body>
  <h2>Don't panic!</h2>
  <p>This is a SockJS hidden iframe. It's used for cross domain magic.</p>
</body>
</html>"""


def route(
    rest: str | None, transports: Collection[str], *, websocket: bool
) -> tuple[str, str | None] | None:
    """The route of an HTTP request for ``rest`` (the path below the prefix; None: not
    under it) and its session id, or None (404). ``transports``: the session transports
    served; ``websocket``: whether WebSocket URLs exist at all."""
    if rest is None:
        return None
    if rest in ("", "/"):
        return "greeting", None
    if rest == "/info":
        return "info", None
    if _IFRAME_URL.fullmatch(rest):
        return "iframe", None
    if rest in _RAW_WEBSOCKET:
        return ("websocket", None) if websocket else None
    match = _SESSION_URL.fullmatch(rest)
    if match is None or match.group(3) not in transports:
        return None
    _server, session_id, transport = match.groups()
    if transport == "websocket" and not websocket:
        return None
    return transport, session_id


def websocket_route(rest: str | None, *, websocket: bool) -> str | None:
    """What a WebSocket handshake for ``rest`` opens: ``"raw-websocket"``,
    ``"websocket"`` (SockJS framing) or None (404)."""
    if not websocket or rest is None:
        return None
    if rest in _RAW_WEBSOCKET:
        return "raw-websocket"
    match = _SESSION_URL.fullmatch(rest)
    return "websocket" if match and match.group(3) == "websocket" else None


def not_upgraded(headers: Mapping[str, str]) -> str:
    """The 400 message for a WebSocket URL asked for without a WebSocket upgrade."""
    connection = [t.strip().lower() for t in headers.get("connection", "").split(",")]
    if headers.get("upgrade", "").lower() == "websocket" and "upgrade" not in connection:
        return '"Connection" must be "Upgrade".'
    return 'Can "Upgrade" only to "WebSocket".'


def callback(query_string: bytes) -> str:
    """The JSONP/htmlfile callback name (``c`` or ``callback``); an error (500, as the
    suite expects) when it is missing or not a plain name (it is written into a script)."""
    query = parse_qs(query_string.decode("latin-1"), keep_blank_values=True)
    name = (query.get("c") or query.get("callback") or [""])[0]
    if not name:
        raise HTTPError(500, '"callback" parameter required')
    if not _CALLBACK.fullmatch(name):
        raise HTTPError(500, 'invalid "callback" parameter')
    return name


def iframe_page(sockjs_url: str) -> tuple[bytes, bytes]:
    """The iframe page loading ``sockjs_url``, and its ETag."""
    page = _IFRAME.replace("{sockjs_url}", sockjs_url).encode()
    return page, ('"' + hashlib.md5(page).hexdigest() + '"').encode()


def cors(headers: Mapping[str, str]) -> Headers:
    origin = headers.get("origin")
    out = [
        (b"access-control-allow-origin", (origin if origin and origin != "null" else "*").encode()),
        (b"access-control-allow-credentials", b"true"),
    ]
    if requested := headers.get("access-control-request-headers"):
        out.append((b"access-control-allow-headers", requested.encode()))
    return out


def cache_for(seconds: int = ONE_YEAR, now: float | None = None) -> Headers:
    when = (time.time() if now is None else now) + seconds
    return [
        (b"cache-control", f"public, max-age={seconds}".encode()),
        (b"expires", formatdate(when, usegmt=True).encode()),
    ]


def cookies(headers: Mapping[str, str], name: str) -> list[str]:
    """Every value of cookie ``name`` in the Cookie header (paths can make several)."""
    values = []
    for part in headers.get("cookie", "").split(";"):
        key, _, value = part.partition("=")
        if key.strip() == name:
            values.append(value.strip())
    return values


def sticky_cookie(headers: Mapping[str, str]) -> Headers:
    """``JSESSIONID`` for load balancers' sticky sessions: the client's own (when it is a
    plain token), else ``dummy``."""
    value = "dummy"
    for given in cookies(headers, "JSESSIONID"):
        if _COOKIE_VALUE.fullmatch(given):
            value = given
    return [(b"set-cookie", f"JSESSIONID={value}; path=/".encode())]


def bind_cookie(binding: str, request_path: str, *, https: bool) -> Headers:
    """The cookie binding a session to its browser, scoped to the session's path
    (``prefix/<server>/<session>``, from the path of one of its requests)."""
    path = request_path.rstrip("/").rsplit("/", 1)[0]
    flags = "; Secure; SameSite=None" if https else "; SameSite=Lax"
    value = f"{BIND_COOKIE}={binding}; Path={path}; Max-Age={BIND_MAX_AGE}; HttpOnly"
    return [(b"set-cookie", (value + flags).encode())]
