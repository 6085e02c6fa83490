"""The SockJS 0.3.3 server protocol as an ASGI application (see the package docstring).

URLs under ``prefix`` (sockjs-protocol 0.3.3; sockjs-node for what the suite leaves open):

    GET  prefix, prefix/                 "Welcome to SockJS!\\n"
    GET  prefix/info (and OPTIONS)       {"websocket", "cookie_needed", "origins", "entropy"}
    GET  prefix/iframe[-version].html    the iframe page for iframe-based transports (ETag, 304)
    WS   prefix/websocket                raw WebSocket: one message per frame, no SockJS framing
    prefix/<server>/<session>/<transport>
         POST xhr, xhr_streaming (OPTIONS)   receive: polling, streaming
         POST xhr_send (OPTIONS)             send: a JSON array of strings -> 204
         GET  eventsource, htmlfile?c=cb     receive: streaming
         GET  jsonp?c=cb                     receive: polling (only with ``jsonp=True``)
         POST jsonp_send                     send: d=<JSON array> (form) or the array -> "ok"
         WS   websocket                      both ways, SockJS framing, its own session

A session of the HTTP transports is named by its id alone, which the client chooses and
which shows in URLs. With ``bind_sessions``, a session opened by a request carrying
cookies (a browser, with whatever credentials its cookies are) is bound to that browser:
the response sets a per-session secret cookie (``sockjs_bind``, HttpOnly, path-scoped to
the session), and every later request of the session must present it. A session opened
without cookies (Node, mobile: nothing ambient to abuse) accepts requests only from the
same client address with the same ``Origin`` (or none). Anyone else gets 403 and nothing.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import re
import secrets
import time
from collections.abc import Callable, Coroutine, Mapping
from email.utils import formatdate
from typing import Any
from urllib.parse import parse_qs

from livedata.server.bodies import declared_length
from livedata.server.headers import headers_of
from livedata.server.sockjs.session import (
    HandlerFactory,
    Receiver,
    SockJSSession,
    close_frame,
    dumps,
    message_frame,
)

logger = logging.getLogger("livedata.server.sockjs")

Scope = dict[str, Any]
Receive = Callable[[], Coroutine[Any, Any, dict[str, Any]]]
Send = Callable[[dict[str, Any]], Coroutine[Any, Any, None]]
Headers = list[tuple[bytes, bytes]]
Routes = dict[str, Callable[..., Coroutine[Any, Any, None]]]

DEFAULT_SOCKJS_URL = "https://cdn.jsdelivr.net/npm/sockjs-client@1/dist/sockjs.min.js"
ONE_YEAR = 365 * 24 * 3600
NO_CACHE = (b"cache-control", b"no-store, no-cache, must-revalidate, max-age=0")
TEXT = b"text/plain; charset=UTF-8"
JAVASCRIPT = b"application/javascript; charset=UTF-8"
HTML = b"text/html; charset=UTF-8"

_SESSION_URL = re.compile(r"/([^/.]+)/([^/.]+)/([^/.]+)/?")
_IFRAME_URL = re.compile(r"/iframe[0-9a-z.\-_]*\.html")
_CALLBACK = re.compile(r"[a-zA-Z0-9\-_.]{1,32}")
_COOKIE_VALUE = re.compile(r"[A-Za-z0-9!#$%&'*+\-.^_`|~]{1,200}")
#: the cookie binding a session to the browser that opened it (see the module docstring)
BIND_COOKIE = "sockjs_bind"
#: its lifetime, renewed by every response of the session (so an abandoned session's
#: cookie does not stay in the browser)
BIND_MAX_AGE = 3600

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

_HTMLFILE = """<!doctype html>
<html><head>
  <meta http-equiv="X-UA-Compatible" content="IE=edge" />
  <meta http-equiv="Content-Type" content="text/html; charset=UTF-8" />
</head><body><h2>Don't panic!</h2>
  <script>
    document.domain = document.domain;
    var c = parent.{callback};
    c.start();
    function p(d) {{c.message(d);}};
    window.onload = function() {{c.stop();}};
  </script>"""


class HTTPError(Exception):
    """An error answer; ``close``: end the connection after it (a body left unread)."""

    def __init__(self, status: int, message: str = "", *, close: bool = False) -> None:
        super().__init__(status, message)
        self.status = status
        self.message = message
        self.close = close


class SockJSEndpoint:
    """An ASGI app serving one SockJS service at ``prefix``; ``handler_factory`` is called
    with each new :class:`SockJSSession` and returns its handler.

    ``max_message_bytes`` bounds an ``xhr_send``/``jsonp_send`` body and a WebSocket frame
    (a larger one closes the session with 1009); ``max_queue_bytes`` bounds each session's
    outgoing queue (past it the client is disconnected as too slow). ``origin_allowed``
    (the ASGI scope and request headers -> bool), when given, refuses other requests with
    403, on every request. ``jsonp`` serves the JSONP transport (a GET that a page of any
    site can make with a script tag: off unless a client needs it). ``bind_sessions``
    binds each HTTP session to the client that opened it (see the module docstring).
    ``max_sessions_per_address`` caps the HTTP sessions open at once for one client
    address (they outlive their requests, so connection limits do not bound them): a
    request that would open one more gets 429 (None: no cap).
    """

    def __init__(
        self,
        prefix: str,
        handler_factory: HandlerFactory,
        *,
        websocket: bool = True,
        cookie_needed: bool = False,
        heartbeat_delay: float = 25.0,
        disconnect_delay: float = 5.0,
        response_limit: int = 128 * 1024,
        max_message_bytes: int | None = 1024 * 1024,
        max_queue_bytes: int = 16 * 1024 * 1024,
        sockjs_url: str = DEFAULT_SOCKJS_URL,
        origin_allowed: Callable[[Scope, Mapping[str, str]], bool] | None = None,
        jsonp: bool = False,
        bind_sessions: bool = False,
        max_sessions_per_address: int | None = None,
    ) -> None:
        self.prefix = prefix.rstrip("/")
        self.handler_factory = handler_factory
        self.websocket = websocket
        self.cookie_needed = cookie_needed
        self.heartbeat_delay = heartbeat_delay
        self.disconnect_delay = disconnect_delay
        self.response_limit = response_limit
        self.max_message_bytes = max_message_bytes
        self.max_queue_bytes = max_queue_bytes
        self.origin_allowed = origin_allowed
        self.bind_sessions = bind_sessions
        self.iframe = _IFRAME.replace("{sockjs_url}", sockjs_url).encode()
        self.iframe_etag = ('"' + hashlib.md5(self.iframe).hexdigest() + '"').encode()
        #: sessions of the polling and streaming transports, by session id (this process)
        self.sessions: dict[str, SockJSSession] = {}
        self.max_sessions_per_address = max_sessions_per_address
        #: client address -> how many of ``sessions`` it opened
        self.sessions_by_address: dict[str | None, int] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._transports: dict[str, Routes] = {
            "xhr": {"OPTIONS": self._options, "POST": self._xhr},
            "xhr_send": {"OPTIONS": self._options, "POST": self._xhr_send},
            "xhr_streaming": {"OPTIONS": self._options, "POST": self._xhr_streaming},
            "eventsource": {"GET": self._eventsource},
            "htmlfile": {"GET": self._htmlfile},
            "websocket": {"GET": self._not_upgraded},
        }
        if jsonp:
            self._transports["jsonp"] = {"GET": self._jsonp}
            self._transports["jsonp_send"] = {"POST": self._jsonp_send}

    def handles(self, path: str) -> bool:
        return path == self.prefix or path.startswith(self.prefix + "/")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        path = scope["path"]
        rest = path[len(self.prefix) :] if self.handles(path) else None
        headers = headers_of(scope)
        allowed = self.origin_allowed is None or self.origin_allowed(scope, headers)
        if kind == "websocket":
            if not allowed:
                logger.info("sockjs: refused a WebSocket from origin %s", headers.get("origin"))
                await _deny_websocket(scope, receive, send, 403)
            else:
                await self._websocket(scope, receive, send, rest, headers)
        elif kind == "http":
            if not allowed:
                logger.info("sockjs: refused a request from origin %s", headers.get("origin"))
                await respond(send, 403, b"Origin not allowed.", [(b"content-type", TEXT)])
                return
            try:
                await self._http(scope, receive, send, rest, headers)
            except HTTPError as err:
                body = (err.message or _REASONS.get(err.status, "")).encode()
                out = [(b"content-type", TEXT)]
                if err.close:
                    out.append((b"connection", b"close"))
                await respond(send, err.status, body, out)

    # --- sessions -----------------------------------------------------------------------

    def _new_session(
        self,
        session_id: str | None,
        scope: Scope,
        headers: Mapping[str, str],
        transport: str,
        binding: str | None = None,
    ) -> SockJSSession:
        client = scope.get("client")
        address = client[0] if client else None
        if session_id is not None:
            self._admit(address)
        session = SockJSSession(
            self,
            session_id,
            transport=transport,
            client_address=client[0] if client else None,
            http_headers=headers,
            scheme=scope.get("scheme", "http"),
            binding=binding,
        )
        session.handler = self.handler_factory(session)
        if session_id is not None:
            self.sessions[session_id] = session
            self.sessions_by_address[address] = self.sessions_by_address.get(address, 0) + 1
        return session

    def _admit(self, address: str | None) -> None:
        """Refuse a new HTTP session past ``max_sessions_per_address`` (issue 19: 5000
        sessions from one client cost 19-31 MB)."""
        cap = self.max_sessions_per_address
        if cap and self.sessions_by_address.get(address, 0) >= cap:
            logger.warning("sockjs: refused a session over the cap of %d per address", cap)
            raise HTTPError(429, f"Too many SockJS sessions from this address (limit {cap}).")

    def _receiving_session(
        self, scope: Scope, headers: Mapping[str, str], session_id: str, transport: str
    ) -> tuple[SockJSSession, Headers]:
        """The session a receiving request is for (opened now if new), and the headers
        binding it to its client; a request of another client is refused (403)."""
        session = self.sessions.get(session_id)
        if session is None:
            binding = None
            if self.bind_sessions and headers.get("cookie"):
                binding = secrets.token_urlsafe(24)
            session = self._new_session(session_id, scope, headers, transport, binding)
        else:
            self._check_client(session, scope, headers)
        return session, self._bind_cookie(session, scope)

    def _check_client(
        self, session: SockJSSession, scope: Scope, headers: Mapping[str, str]
    ) -> None:
        """Only the client that opened a session may use it (with ``bind_sessions``)."""
        if not self.bind_sessions:
            return
        if session.binding is not None:
            given = _cookies(headers, BIND_COOKIE)
            ok = any(hmac.compare_digest(g.encode(), session.binding.encode()) for g in given)
        else:
            client = scope.get("client")
            ok = (client[0] if client else None) == session.client_address and headers.get(
                "origin"
            ) == session.http_headers.get("origin")
        if not ok:
            logger.info("sockjs: refused a request for another client's session")
            raise HTTPError(403, "Forbidden.")

    def _bind_cookie(self, session: SockJSSession, scope: Scope) -> Headers:
        if session.binding is None or session.session_id is None:
            return []
        path = scope["path"].rstrip("/").rsplit("/", 1)[0]  # prefix/<server>/<session>
        flags = "; Secure; SameSite=None" if scope.get("scheme") == "https" else "; SameSite=Lax"
        value = f"{BIND_COOKIE}={session.binding}; Path={path}; Max-Age={BIND_MAX_AGE}; HttpOnly"
        return [(b"set-cookie", (value + flags).encode())]

    def forget(self, session: SockJSSession) -> None:
        if session.session_id is not None and self.sessions.get(session.session_id) is session:
            del self.sessions[session.session_id]
            address = session.client_address
            left = self.sessions_by_address.get(address, 1) - 1
            if left > 0:
                self.sessions_by_address[address] = left
            else:
                self.sessions_by_address.pop(address, None)

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run a handler callback in the background (kept referenced until done)."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- HTTP ---------------------------------------------------------------------------

    async def _http(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        rest: str | None,
        headers: Mapping[str, str],
    ) -> None:
        session_id: str | None = None
        if rest is None:
            raise HTTPError(404)
        if rest in ("", "/"):
            routes: Routes = {"GET": self._greeting}
        elif rest == "/info":
            routes = {"OPTIONS": self._options, "GET": self._info}
        elif _IFRAME_URL.fullmatch(rest):
            routes = {"GET": self._iframe}
        elif rest in ("/websocket", "/websocket/") and self.websocket:
            routes = {"GET": self._not_upgraded}
        elif (match := _SESSION_URL.fullmatch(rest)) and match.group(3) in self._transports:
            _server, session_id, transport = match.groups()
            if transport == "websocket" and not self.websocket:
                raise HTTPError(404)
            routes = self._transports[transport]
        else:
            raise HTTPError(404)
        route = routes.get(scope["method"])
        if route is None:
            await respond(send, 405, b"", [(b"allow", ", ".join(routes).encode())])
        elif route == self._options:
            await self._options(send, headers, ", ".join(routes), cookie=session_id is not None)
        else:
            await route(scope, receive, send, headers, session_id)

    async def _greeting(self, scope: Scope, receive: Receive, send: Send, h: Any, _: Any) -> None:
        await respond(send, 200, b"Welcome to SockJS!\n", [(b"content-type", TEXT)])

    async def _info(self, scope: Scope, receive: Receive, send: Send, h: Any, _: Any) -> None:
        body = json.dumps(
            {
                "websocket": self.websocket,
                "cookie_needed": self.cookie_needed,
                "origins": ["*:*"],
                "entropy": secrets.randbits(32),
            }
        ).encode()
        out = [(b"content-type", b"application/json; charset=UTF-8"), NO_CACHE, *cors(h)]
        await respond(send, 200, body, out)

    async def _options(
        self, send: Send, h: Mapping[str, str], methods: str, *, cookie: bool
    ) -> None:
        out = [
            *cache_for(),
            (b"access-control-max-age", str(ONE_YEAR).encode()),
            (b"access-control-allow-methods", methods.encode()),
            *cors(h),
            *(self._cookie(h) if cookie else []),
        ]
        await respond(send, 204, b"", out)

    async def _iframe(self, scope: Scope, receive: Receive, send: Send, h: Any, _: Any) -> None:
        if h.get("if-none-match", "").encode() == self.iframe_etag:
            await respond(send, 304, b"", [(b"etag", self.iframe_etag), *cache_for()])
            return
        out = [(b"content-type", HTML), (b"etag", self.iframe_etag), *cache_for()]
        await respond(send, 200, self.iframe, out)

    async def _not_upgraded(
        self, scope: Scope, receive: Receive, send: Send, h: Any, _: Any
    ) -> None:
        """A WebSocket URL asked for without a WebSocket upgrade."""
        connection = [t.strip().lower() for t in h.get("connection", "").split(",")]
        if h.get("upgrade", "").lower() == "websocket" and "upgrade" not in connection:
            raise HTTPError(400, '"Connection" must be "Upgrade".')
        raise HTTPError(400, 'Can "Upgrade" only to "WebSocket".')

    # receiving transports

    async def _xhr(self, scope: Scope, receive: Receive, send: Send, h: Any, sid: str) -> None:
        await self._discard_body(receive, scope)
        session, bind = self._receiving_session(scope, h, sid, "xhr")
        start = [(b"content-type", JAVASCRIPT), NO_CACHE, *cors(h), *self._cookie(h), *bind]
        receiver = HTTPReceiver(send, start, wrap=lambda f: f + "\n", limit=None)
        await self._receive(session, receive, receiver)

    async def _xhr_streaming(
        self, scope: Scope, receive: Receive, send: Send, h: Any, sid: str
    ) -> None:
        await self._discard_body(receive, scope)
        session, bind = self._receiving_session(scope, h, sid, "xhr_streaming")
        start = [(b"content-type", JAVASCRIPT), NO_CACHE, *cors(h), *self._cookie(h), *bind]
        receiver = HTTPReceiver(send, start, wrap=lambda f: f + "\n", limit=self.response_limit)
        await receiver.start(b"h" * 2048 + b"\n")  # IE needs 2 KiB before it shows anything
        await self._receive(session, receive, receiver)

    async def _eventsource(
        self, scope: Scope, receive: Receive, send: Send, h: Any, sid: str
    ) -> None:
        await self._discard_body(receive, scope)
        session, bind = self._receiving_session(scope, h, sid, "eventsource")
        start = [(b"content-type", b"text/event-stream; charset=UTF-8"), NO_CACHE]
        start += [*self._cookie(h), *bind]
        receiver = HTTPReceiver(
            send, start, wrap=lambda f: f"data: {f}\r\n\r\n", limit=self.response_limit
        )
        await receiver.start(b"\r\n")  # Opera needs a new line first
        await self._receive(session, receive, receiver)

    async def _htmlfile(self, scope: Scope, receive: Receive, send: Send, h: Any, sid: str) -> None:
        callback = _callback(scope)
        await self._discard_body(receive, scope)
        session, bind = self._receiving_session(scope, h, sid, "htmlfile")
        start = [(b"content-type", HTML), NO_CACHE, *self._cookie(h), *bind]
        receiver = HTTPReceiver(
            send,
            start,
            # "<" escaped too: a message must not end the script element
            wrap=lambda f: "<script>\np(" + dumps(f).replace("<", "\\u003c") + ");\n</script>\r\n",
            limit=self.response_limit,
        )
        page = _HTMLFILE.format(callback=callback)
        await receiver.start((page + " " * (1024 - len(page) + 14) + "\r\n\r\n").encode())
        await self._receive(session, receive, receiver)

    async def _jsonp(self, scope: Scope, receive: Receive, send: Send, h: Any, sid: str) -> None:
        callback = _callback(scope)
        await self._discard_body(receive, scope)
        session, bind = self._receiving_session(scope, h, sid, "jsonp")
        start = [(b"content-type", JAVASCRIPT), NO_CACHE, *self._cookie(h), *bind]
        start.append((b"x-content-type-options", b"nosniff"))
        receiver = HTTPReceiver(
            send, start, wrap=lambda f: f"{callback}({dumps(f)});\r\n", limit=None
        )
        await self._receive(session, receive, receiver)

    async def _receive(
        self, session: SockJSSession, receive: Receive, receiver: HTTPReceiver
    ) -> None:
        watcher = asyncio.get_running_loop().create_task(_watch_disconnect(receive, receiver))
        try:
            await session.attach(receiver)
            await receiver.finish()
        finally:
            watcher.cancel()

    # sending transports

    async def _xhr_send(
        self, scope: Scope, receive: Receive, send: Send, h: Mapping[str, str], sid: str
    ) -> None:
        bind = self._sending_client(scope, h, sid)
        messages = _messages(await self._read(receive, sid, scope))
        await self._deliver(sid, messages)
        out = [(b"content-type", TEXT), NO_CACHE, *cors(h), *self._cookie(h), *bind]
        await respond(send, 204, b"", out)

    async def _jsonp_send(
        self, scope: Scope, receive: Receive, send: Send, h: Mapping[str, str], sid: str
    ) -> None:
        bind = self._sending_client(scope, h, sid)
        body = await self._read(receive, sid, scope)
        if h.get("content-type", "").split(";")[0].strip() == "application/x-www-form-urlencoded":
            body = parse_qs(body, keep_blank_values=True).get("d", [""])[0]
        messages = _messages(body)
        await self._deliver(sid, messages)
        out = [(b"content-type", TEXT), NO_CACHE, *self._cookie(h), *bind]
        await respond(send, 200, b"ok", out)

    def _sending_client(self, scope: Scope, headers: Mapping[str, str], session_id: str) -> Headers:
        """A send to an existing session must come from its client (checked before the
        body is read: another client cannot even close it with an oversized body)."""
        session = self.sessions.get(session_id)
        if session is None:
            return []  # 404 once the body is read, as the protocol suite expects
        self._check_client(session, scope, headers)
        return self._bind_cookie(session, scope)

    async def _discard_body(self, receive: Receive, scope: Scope) -> None:
        """A receiving request's body means nothing: skipped, but only up to the send
        limit (a 413 past it, the rest unread)."""
        if await read_body(receive, self.max_message_bytes or 0, scope) is None:
            raise HTTPError(413, "Payload too large.", close=True)

    async def _read(self, receive: Receive, session_id: str, scope: Scope) -> str:
        body = await read_body(receive, self.max_message_bytes, scope)
        if body is None:
            session = self.sessions.get(session_id)
            if session is not None:
                await session.close(1009, "Message too big")
            raise HTTPError(413, "Payload too large.", close=True)
        try:
            return body.decode()
        except UnicodeDecodeError:
            raise HTTPError(500, "Broken JSON encoding.") from None

    async def _deliver(self, session_id: str, messages: list[str]) -> None:
        session = self.sessions.get(session_id)
        if session is None:
            raise HTTPError(404)
        await session.deliver(messages)

    def _cookie(self, headers: Mapping[str, str], applies: bool = True) -> Headers:
        """JSESSIONID for load balancers' sticky sessions, when ``cookie_needed``."""
        if not (self.cookie_needed and applies):
            return []
        value = "dummy"
        for part in headers.get("cookie", "").split(";"):
            name, _, given = part.partition("=")
            if name.strip() == "JSESSIONID" and _COOKIE_VALUE.fullmatch(given.strip()):
                value = given.strip()
        return [(b"set-cookie", f"JSESSIONID={value}; path=/".encode())]

    # --- WebSocket ----------------------------------------------------------------------

    async def _websocket(
        self, scope: Scope, receive: Receive, send: Send, rest: str | None, h: Mapping[str, str]
    ) -> None:
        match = _SESSION_URL.fullmatch(rest) if rest is not None else None
        raw = rest in ("/websocket", "/websocket/")
        if not self.websocket or not (raw or (match and match.group(3) == "websocket")):
            await _deny_websocket(scope, receive, send, 404)
            return
        if (await receive())["type"] != "websocket.connect":
            return
        await send({"type": "websocket.accept"})
        transport = "raw-websocket" if raw else "websocket"
        session = self._new_session(None, scope, h, transport)
        receiver = WebSocketReceiver(send, raw=raw)
        writer = asyncio.get_running_loop().create_task(_attach(session, receiver))
        try:
            await self._read_websocket(receive, session, receiver, raw)
        finally:
            receiver.stop()
            await asyncio.gather(writer, return_exceptions=True)

    async def _read_websocket(
        self, receive: Receive, session: SockJSSession, receiver: WebSocketReceiver, raw: bool
    ) -> None:
        limit = self.max_message_bytes
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                receiver.closed = True
                return
            if message["type"] != "websocket.receive":
                continue
            text = message.get("text")
            if text is None:
                text = (message.get("bytes") or b"").decode("utf-8", errors="replace")
            if limit is not None and len(text) > limit:
                receiver.close_code = 1009
                session.abort(1009, "Message too big")
                return
            if raw:
                await session.deliver([text])
                continue
            if not text:
                continue  # empty frames are ignored
            try:
                messages = json.loads(text)
            except (ValueError, RecursionError):
                messages = None
            if isinstance(messages, str):
                messages = [messages]
            if not isinstance(messages, list) or not all(isinstance(m, str) for m in messages):
                receiver.close_code = 1002
                session.abort(1002, "Broken framing.")  # sockjs: terminate abruptly
                return
            await session.deliver(messages)


def _messages(body: str) -> list[str]:
    """A send body: a JSON array of strings."""
    if not body:
        raise HTTPError(500, "Payload expected.")
    try:
        messages = json.loads(body)
    except ValueError:  # the status sockjs-protocol's suite expects for broken JSON
        raise HTTPError(500, "Broken JSON encoding.") from None
    except RecursionError:  # valid JSON nested deeper than a frame ever is: the
        # client's fault, refused without a traceback (the session goes on)
        raise HTTPError(400, "Payload nested too deep.") from None
    if not isinstance(messages, list):
        raise HTTPError(500, "Payload expected.")
    if not all(isinstance(m, str) for m in messages):
        raise HTTPError(500, "Broken JSON encoding.")
    return messages


async def _attach(session: SockJSSession, receiver: Receiver) -> None:
    try:
        await session.attach(receiver)
    finally:
        await receiver.finish()


# --- receivers ---------------------------------------------------------------------------


class HTTPReceiver(Receiver):
    """A response carrying frames: polling (``limit=None``: one frame, then the response
    ends) or streaming (chunks until ``limit`` bytes of frames were sent)."""

    def __init__(
        self, send: Send, headers: Headers, *, wrap: Callable[[str], str], limit: int | None
    ) -> None:
        super().__init__()
        self._send = send
        self._headers = headers
        self._wrap = wrap
        self._limit = limit
        self._started = False
        self._size = 0

    async def start(self, prelude: bytes) -> None:
        """Streaming: send the headers and the prelude now."""
        await self._send({"type": "http.response.start", "status": 200, "headers": self._headers})
        await self._send({"type": "http.response.body", "body": prelude, "more_body": True})
        self._started = True

    async def frame(self, frame: str) -> bool:
        data = self._wrap(frame).encode()
        if self._limit is None:  # polling: the whole response at once, with its length
            self.finished = True
            await respond(self._send, 200, data, self._headers)
            return True
        self._size += len(data)
        if self._size >= self._limit:
            self.finished = True
        await self._send({"type": "http.response.body", "body": data, "more_body": True})
        return self.finished

    async def finish(self) -> None:
        if self._started:
            self._started = False
            self.finished = True
            await self._send({"type": "http.response.body", "body": b"", "more_body": False})


class WebSocketReceiver(Receiver):
    """A WebSocket's frames: SockJS-framed, or raw (one message per WebSocket message)."""

    def __init__(self, send: Send, *, raw: bool) -> None:
        super().__init__()
        self._send = send
        self.raw = raw
        self.heartbeats = not raw
        self.closed = False  # the socket is closed (by either side)
        self.close_code = 1000
        self.close_reason = ""

    def stop(self) -> None:
        self.stopped = True
        self.wakeup.set()

    async def _text(self, text: str) -> None:
        try:
            await self._send({"type": "websocket.send", "text": text})
        except Exception:  # the socket is gone (uvicorn raises ClientDisconnected)
            self.stop()

    async def frame(self, frame: str) -> bool:
        await self._text(frame)
        return self.stopped

    async def open(self) -> bool:
        return False if self.raw else await self.frame("o")

    async def messages(self, messages: list[str]) -> bool:
        if not self.raw:
            return await self.frame(message_frame(messages))
        for text in messages:
            await self._text(text)
        return self.stopped

    async def closing(self, code: int, reason: str) -> None:
        if self.raw:
            self.close_code = code if _valid_close_code(code) else 1000
            self.close_reason = reason
        else:
            await self.frame(close_frame(code, reason))
        self.finished = True

    async def finish(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            await self._send(
                {
                    "type": "websocket.close",
                    "code": self.close_code,
                    "reason": self.close_reason[:120],
                }
            )
        except Exception:
            logger.debug("sockjs: closing a WebSocket failed", exc_info=True)


def _valid_close_code(code: int) -> bool:
    return code in (1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011) or 3000 <= code <= 4999


# --- HTTP helpers ------------------------------------------------------------------------

_REASONS = {404: "Not found.", 405: "", 500: "Internal server error."}


def _cookies(headers: Mapping[str, str], name: str) -> list[str]:
    """Every value of cookie ``name`` in the Cookie header (paths can make several)."""
    values = []
    for part in headers.get("cookie", "").split(";"):
        key, _, value = part.partition("=")
        if key.strip() == name:
            values.append(value.strip())
    return values


def cors(headers: Mapping[str, str]) -> Headers:
    origin = headers.get("origin")
    out = [
        (b"access-control-allow-origin", (origin if origin and origin != "null" else "*").encode()),
        (b"access-control-allow-credentials", b"true"),
    ]
    if requested := headers.get("access-control-request-headers"):
        out.append((b"access-control-allow-headers", requested.encode()))
    return out


def cache_for(seconds: int = ONE_YEAR) -> Headers:
    return [
        (b"cache-control", f"public, max-age={seconds}".encode()),
        (b"expires", formatdate(time.time() + seconds, usegmt=True).encode()),
    ]


def _callback(scope: Scope) -> str:
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
    callback = (query.get("c") or query.get("callback") or [""])[0]
    if not callback:
        raise HTTPError(500, '"callback" parameter required')
    if not _CALLBACK.fullmatch(callback):
        raise HTTPError(500, 'invalid "callback" parameter')
    return callback


async def respond(send: Send, status: int, body: bytes, headers: Headers) -> None:
    """A complete response, with Content-Length (none for 204 and 304)."""
    out = list(headers)
    if status not in (204, 304):
        out.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": out})
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def read_body(
    receive: Receive, limit: int | None, scope: Scope | None = None
) -> bytes | None:
    """The request body, or None as soon as it passes ``limit`` bytes (0 or None: no
    limit): the rest is never read (answer with ``connection: close``), so an oversized
    body costs at most ``limit`` bytes, not its whole length (issue 19). A declared
    ``Content-Length`` over the limit (``scope`` given) is refused before reading."""
    if limit and scope is not None and (declared_length(scope) or 0) > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if limit is not None and limit and size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


async def _watch_disconnect(receive: Receive, receiver: Receiver) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            receiver.stop()
            return


async def _deny_websocket(scope: Scope, receive: Receive, send: Send, status: int) -> None:
    if (await receive())["type"] != "websocket.connect":
        return
    if "websocket.http.response" in scope.get("extensions", {}):
        body = _REASONS.get(status, "Forbidden.").encode() if status != 403 else b"Forbidden."
        start = {"type": "websocket.http.response.start", "status": status}
        start["headers"] = [(b"content-type", TEXT), (b"content-length", str(len(body)).encode())]
        await send(start)
        await send({"type": "websocket.http.response.body", "body": body})
    else:
        await send({"type": "websocket.close", "code": 4000 + status})
