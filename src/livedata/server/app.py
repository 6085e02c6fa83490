"""The ASGI application (the composition root): DDP at ``/websocket`` and over SockJS at
``/sockjs`` (both under ``DDP_PATH_PREFIX``, e.g. ``/live/websocket``), the wrapped
application for everything else.

    application = LivedataApp(get_asgi_application())

The wrapped application may be Django's (a WebSocket to another path is then refused, as
Django cannot take it) or any ASGI application, e.g. Channels' ``ProtocolTypeRouter``:
WebSockets to other paths go to it untouched, so the project's consumers keep theirs.

It makes the process's one ``livedata.runtime.Runtime`` (listener, pools, services) and
the ``DDPService`` every DDP session shares on top of it (the live-query engine, the
method and publication registries, the login-token watch, the dashboard's feed), and
passes them in.
"""

from __future__ import annotations

import logging
import weakref
from collections import ChainMap
from typing import Any, ClassVar

from django.core.handlers.asgi import ASGIHandler

from livedata.capture.log import Batch
from livedata.conf import livedata_settings
from livedata.livequery.engine import Engine
from livedata.publish.methods import MethodRegistry
from livedata.publish.methods import registry as default_methods
from livedata.publish.publication import API
from livedata.runtime import Runtime
from livedata.server.bodies import bounded_body
from livedata.server.figures import session_figures
from livedata.server.proxies import TrustedProxies
from livedata.server.tokens import TokenWatch
from livedata.server.without_middleware import ViewOnlyHandler, is_api_request

logger = logging.getLogger("livedata.server")

#: DDP's raw WebSocket paths (Meteor's clients use the first; the second is SockJS's raw
#: WebSocket), below ``DDP_PATH_PREFIX``
DDP_PATHS = ("/websocket", "/sockjs/websocket")


class DDPService:
    """What every DDP session of this process shares, on top of the runtime hub (the
    ``ddp_session.Services`` that sessions are given: they do not import this module)."""

    def __init__(self, runtime: Runtime, *, methods: MethodRegistry | None = None) -> None:
        self.runtime = runtime
        self.settings = runtime.settings
        self.methods = methods or default_methods
        from livedata.dashboard.feed import PUBLICATION, Feed  # its models need Django set up

        self.engine = Engine(runtime)
        #: publications served from memory rather than by the engine (the dashboard's)
        self.feeds: dict[str, Any] = {PUBLICATION: Feed(runtime, self.engine)}
        #: names clients may subscribe to
        self.publications = ChainMap(self.feeds, API.publications)
        runtime.figures.add("ddp sessions", lambda: session_figures(runtime))
        runtime.figures.add("live queries", self.engine.figures)
        # the live queries first (the write fence waits on them), then the token watch
        runtime.follow(self._on_engine_batch, name="live queries", fenced=True)
        self.tokens = TokenWatch(runtime)

    async def _on_engine_batch(self, batch: Batch) -> None:
        await self.engine.on_changes(batch.rows)
        for feed in self.feeds.values():
            feed.on_batch(batch)


def _freeze_startup_objects(thresholds: tuple[int, int, int] | None = None) -> None:
    """Move what start-up made (modules, classes, Django's registries: ~90k objects) out
    of the cyclic GC's reach, so full collections walk only what serving creates.

    Measured with bench/gcprobe.py under bench/live_queries.py (see the commit), and
    under bench/fanout.py --gc-probe: with Python's thresholds, 1000 clients on AllBooks
    at 10 changes/s made a full collection of 100 ms CPU while changes went out (the
    p99); with ``HTTP_GC_THRESHOLDS`` (10,000, 10, 10) none did."""
    import gc

    gc.collect()
    gc.freeze()
    if thresholds is not None:  # HTTP_GC_THRESHOLDS
        gc.set_threshold(*thresholds)


class LivedataApp:
    """Route DDP (WebSocket, SockJS) to livedata and everything else to ``django_app``
    (Django's ASGI application, or an ASGI router such as Channels' wrapping it)."""

    #: the apps made in this process (``livedata serve`` checks its application made one)
    instances: ClassVar[weakref.WeakSet[LivedataApp]] = weakref.WeakSet()

    def __init__(
        self,
        django_app: Any,
        *,
        runtime: Runtime | None = None,
        methods: MethodRegistry | None = None,
        api_without_middleware: bool = True,
    ) -> None:
        self.django_app = django_app
        LivedataApp.instances.add(self)
        self.runtime = runtime or Runtime()
        self.ddp = DDPService(self.runtime, methods=methods)
        #: livedata's API views without the project's middleware (None: through it)
        self._api_handler: Any = ViewOnlyHandler() if api_without_middleware else None
        self._sockjs: Any = None
        prefix = self.runtime.settings.DDP_PATH_PREFIX.rstrip("/")
        self.websocket_paths = tuple(prefix + path for path in DDP_PATHS)
        self.sockjs_prefix = prefix + "/sockjs"
        # Django's own handler raises on a WebSocket: those are refused here instead
        self._wrapped_takes_websockets = not isinstance(django_app, ASGIHandler)
        self._trusted: tuple[Any, TrustedProxies] | None = None

    def is_ddp(self, scope: dict[str, Any]) -> bool:
        """A request for DDP: its raw WebSocket, or anything below the SockJS prefix."""
        path = scope["path"]
        if scope["type"] == "websocket" and path.rstrip("/") in self.websocket_paths:
            return True
        return path == self.sockjs_prefix or path.startswith(self.sockjs_prefix + "/")

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        kind = scope["type"]
        if kind != "lifespan":
            self._proxies().rewrite(scope)  # the client's address through trusted proxies
        if kind == "lifespan":
            await self._lifespan(receive, send)
        elif kind in ("http", "websocket") and self.is_ddp(scope):
            await self._ddp(scope, receive, send)
        elif kind == "websocket" and not self._wrapped_takes_websockets:
            await send({"type": "websocket.close", "code": 4404})  # a WebSocket to elsewhere
        elif kind == "http" and is_api_request(scope):
            # the body is read here, up to the APIs' limit, before Django reads it whole
            limit = self.runtime.settings.HTTP_API_MAX_BODY_BYTES
            bounded = await bounded_body(scope, receive, send, limit)
            if bounded is None:
                return  # answered 413
            # without the project's middleware (see without_middleware), unless asked otherwise
            await (self._api_handler or self.django_app)(scope, bounded, send)
        else:
            await self.django_app(scope, receive, send)

    async def _ddp(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """DDP's WebSockets and SockJS: Django never sees these requests, so its Host
        validation (ALLOWED_HOSTS) is done here, before anything is accepted."""
        from livedata.server.headers import headers_of
        from livedata.server.origin import host_allowed
        from livedata.server.websocket import refuse

        kind = scope["type"]
        if not host_allowed(scope, headers_of(scope)):
            logger.info(
                "livedata: refused a DDP request for host %s", headers_of(scope).get("host")
            )
            await refuse(scope, receive, send, 400, "Bad Request (Invalid host)")
        elif kind == "websocket" and scope["path"].rstrip("/") in self.websocket_paths:
            from livedata.server.websocket import serve_websocket

            await self.runtime.start()
            await serve_websocket(self.ddp, scope, receive, send)
        else:  # SockJS
            await self.runtime.start()
            await self._sockjs_endpoint()(scope, receive, send)

    def _proxies(self) -> TrustedProxies:
        """``HTTP_FORWARDED_ALLOW_IPS``, parsed again when the settings change."""
        conf = livedata_settings()
        if self._trusted is None or self._trusted[0] is not conf:
            self._trusted = (conf, TrustedProxies(conf.HTTP_FORWARDED_ALLOW_IPS))
        return self._trusted[1]

    def _sockjs_endpoint(self) -> Any:
        """DDP over SockJS at ``/sockjs`` (Meteor's browser clients), made on first use."""
        if self._sockjs is None:
            from livedata.server.sockjs.ddp import ddp_endpoint

            self._sockjs = ddp_endpoint(self.ddp, self.sockjs_prefix)
        return self._sockjs

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    self._proxies()  # a malformed HTTP_FORWARDED_ALLOW_IPS stops start-up
                    await self.runtime.start()
                except Exception as exc:
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                _freeze_startup_objects(self.runtime.settings.HTTP_GC_THRESHOLDS)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.runtime.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return
