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
import hmac
import json
import logging
import secrets
from collections.abc import Callable, Coroutine, Mapping
from functools import partial
from typing import Any

from livedata.server.headers import headers_of
from livedata.server.sockjs import protocol, transports
from livedata.server.sockjs.frames import HTTPError
from livedata.server.sockjs.http import Receive, Scope, Send, deny_websocket, respond
from livedata.server.sockjs.protocol import (
    BIND_COOKIE,
    BIND_MAX_AGE,
    DEFAULT_SOCKJS_URL,
    HTML,
    JSON,
    NO_CACHE,
    ONE_YEAR,
    REASONS,
    TEXT,
    Headers,
    cache_for,
    cors,
)
from livedata.server.sockjs.sockjs_session import HandlerFactory, SockJSSession

__all__ = ["BIND_COOKIE", "BIND_MAX_AGE", "HTTPError", "SockJSEndpoint"]

logger = logging.getLogger("livedata.server.sockjs")

Route = Callable[..., Coroutine[Any, Any, None]]
Routes = dict[str, Route]


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
        self.iframe, self.iframe_etag = protocol.iframe_page(sockjs_url)
        #: sessions of the polling and streaming transports, by session id (this process)
        self.sessions: dict[str, SockJSSession] = {}
        self.max_sessions_per_address = max_sessions_per_address
        #: client address -> how many of ``sessions`` it opened
        self.sessions_by_address: dict[str | None, int] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        #: the route table: a route name (``protocol.route``) -> its handlers by method
        self.routes: dict[str, Routes] = {
            "greeting": {"GET": self._greeting},
            "info": {"OPTIONS": self._options, "GET": self._info},
            "iframe": {"GET": self._iframe},
            "xhr": {"OPTIONS": self._options, "POST": partial(transports.xhr, self)},
            "xhr_send": {"OPTIONS": self._options, "POST": partial(transports.xhr_send, self)},
            "xhr_streaming": {
                "OPTIONS": self._options,
                "POST": partial(transports.xhr_streaming, self),
            },
            "eventsource": {"GET": partial(transports.eventsource, self)},
            "htmlfile": {"GET": partial(transports.htmlfile, self)},
            "websocket": {"GET": self._not_upgraded},
        }
        if jsonp:
            self.routes["jsonp"] = {"GET": partial(transports.jsonp, self)}
            self.routes["jsonp_send"] = {"POST": partial(transports.jsonp_send, self)}
        self._session_routes = frozenset(self.routes) - {"greeting", "info", "iframe"}

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
                await deny_websocket(scope, receive, send, 403)
                return
            transport = protocol.websocket_route(rest, websocket=self.websocket)
            if transport is None:
                await deny_websocket(scope, receive, send, 404)
            else:
                await transports.websocket(self, scope, receive, send, headers, transport)
        elif kind == "http":
            if not allowed:
                logger.info("sockjs: refused a request from origin %s", headers.get("origin"))
                await respond(send, 403, b"Origin not allowed.", [(b"content-type", TEXT)])
                return
            try:
                await self._http(scope, receive, send, rest, headers)
            except HTTPError as err:
                body = (err.message or REASONS.get(err.status, "")).encode()
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
            given = protocol.cookies(headers, BIND_COOKIE)
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
        https = scope.get("scheme") == "https"
        return protocol.bind_cookie(session.binding, scope["path"], https=https)

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

    def _sending_client(self, scope: Scope, headers: Mapping[str, str], session_id: str) -> Headers:
        """A send to an existing session must come from its client (checked before the
        body is read: another client cannot even close it with an oversized body)."""
        session = self.sessions.get(session_id)
        if session is None:
            return []  # 404 once the body is read, as the protocol suite expects
        self._check_client(session, scope, headers)
        return self._bind_cookie(session, scope)

    def _cookie(self, headers: Mapping[str, str], applies: bool = True) -> Headers:
        """JSESSIONID for load balancers' sticky sessions, when ``cookie_needed``."""
        if not (self.cookie_needed and applies):
            return []
        return protocol.sticky_cookie(headers)

    # --- HTTP ---------------------------------------------------------------------------

    async def _http(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        rest: str | None,
        headers: Mapping[str, str],
    ) -> None:
        found = protocol.route(rest, self._session_routes, websocket=self.websocket)
        if found is None:
            raise HTTPError(404)
        name, session_id = found
        routes = self.routes[name]
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
        out = [(b"content-type", JSON), NO_CACHE, *cors(h)]
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
        raise HTTPError(400, protocol.not_upgraded(h))
