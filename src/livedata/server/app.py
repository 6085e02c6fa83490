"""The ASGI application: DDP at ``/websocket`` and over SockJS at ``/sockjs``, Django for
everything else.

    application = LivedataApp(get_asgi_application())

One ``Runtime`` per process holds what all sessions share: the method registry, the
threads that run sync methods, and the change-log listener (started with the server's
lifespan, or on the first DDP connection when the server has no lifespan support).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, ClassVar

from livedata import dbthreads
from livedata.capture.follower import Follower
from livedata.capture.listener import Listener
from livedata.capture.log import Batch, Snapshot
from livedata.conf import LivedataSettings, livedata_settings
from livedata.dbwait import (
    commit_unknown,
    connection_lost,
    ensure_connection,
    forget_connection,
    run_waiting,
)
from livedata.ddp.errors import DDPError
from livedata.ddp.ratelimit import RateLimiter, Rule
from livedata.publish.api import API
from livedata.publish.engine import Engine
from livedata.publish.methods import Method, MethodCall, MethodRegistry
from livedata.publish.methods import registry as default_methods
from livedata.server.apiroute import ViewOnlyHandler, is_api_request
from livedata.server.bodies import bounded_body

if TYPE_CHECKING:
    from livedata.server.session import Session

logger = logging.getLogger("livedata.server")

DDP_PATHS = ("/websocket", "/sockjs/websocket")
TOKEN_MODEL = "livedata.logintoken"
#: How long a subscription waits for the listener to start (the database being down).
LISTEN_TIMEOUT = 30.0


class Runtime:
    """What every session of this process shares.

    ``Runtime.current`` is the started runtime of this process (None before): HTTP views
    served by the same process (the pull feed's long-polls) reach the one listener
    through it instead of opening their own.
    """

    current: ClassVar[Runtime | None] = None
    #: Background services started and stopped with every listening runtime (webhook
    #: delivery): callables taking the runtime and returning an object with async
    #: ``start()``/``stop()``, or None to stay off.
    service_factories: ClassVar[list[Callable[[Runtime], Any]]] = []

    def __init__(
        self,
        *,
        methods: MethodRegistry | None = None,
        settings: LivedataSettings | None = None,
        listen: bool = True,
    ) -> None:
        self.settings = settings or livedata_settings()
        self.methods = methods or default_methods
        self.publications = API.publications  # names clients may subscribe to
        self.engine = Engine(self)
        self.listener: Listener | None = Listener() if listen else None
        #: the live queries' and the token watcher's own queues on the listener
        self.engine_follower: Follower | None = None
        self.token_follower: Follower | None = None
        self._listener_task: asyncio.Task[None] | None = None
        self._services: list[Any] | None = None
        #: Live sessions with a heartbeat; one task ticks them all.
        self.sessions: set[Session] = set()
        self._ticker: asyncio.Task[None] | None = None
        #: thread pools (each thread keeps a DB connection), with their sizes: "default"
        #: runs sync methods and live-query refreshes; methods that hash passwords run on
        #: "accounts", so a login flood cannot take the threads everything else needs
        sizes = {
            "default": self.settings.METHOD_THREADS,
            "accounts": self.settings.ACCOUNTS_THREADS,
        }
        self.pools = {
            name: (ThreadPoolExecutor(max_workers=n, thread_name_prefix=f"livedata-{name}"), n)
            for name, n in sizes.items()
        }
        self.executor = self.pools["default"][0]
        self.rate_limiter = RateLimiter(Rule.from_setting(r) for r in self.settings.DDP_RATE_LIMITS)
        #: login token hash → sessions logged in with it (closed when it is deleted)
        self.token_sessions: dict[str, set[Session]] = {}

    async def start(self) -> None:
        Runtime.current = self
        if self.listener is not None and self._listener_task is None:
            self.engine_follower = self.listener.follow(self._on_engine_batch, name="live queries")
            self.token_follower = self.listener.follow(
                self.on_token_changes, name="login tokens", models=[TOKEN_MODEL]
            )
            self._listener_task = asyncio.create_task(self.listener.run())
            self._listener_task.add_done_callback(_report_listener_exit)
        if self.listener is not None and self._services is None:
            self._services = [s for f in self.service_factories if (s := f(self)) is not None]
            for service in self._services:
                await service.start()
        conf = self.settings
        if self._ticker is None and (conf.DDP_HEARTBEAT_INTERVAL or conf.DDP_CONNECT_TIMEOUT):
            self._ticker = asyncio.create_task(self._tick_sessions())

    async def listening(self) -> None:
        """Wait until the listener has fixed its starting cursor.

        A subscription's initial query must come after that point, or a commit landing
        between the query and the listener's start would never reach the subscriber.
        """
        if self.listener is None:
            return
        await self.start()
        try:
            await asyncio.wait_for(self.listener.started.wait(), LISTEN_TIMEOUT)
        except TimeoutError:
            raise DDPError(
                503, "Live data is unavailable: the database cannot be reached"
            ) from None

    async def _tick_sessions(self) -> None:
        conf = self.settings
        periods = [conf.DDP_HEARTBEAT_INTERVAL, conf.DDP_HEARTBEAT_TIMEOUT]
        if not conf.DDP_HEARTBEAT_INTERVAL:
            periods = []
        periods += [conf.DDP_CONNECT_TIMEOUT] if conf.DDP_CONNECT_TIMEOUT else []
        step = max(0.05, min(periods) / 4)
        while True:
            await asyncio.sleep(step)
            now = time.monotonic()
            for session in list(self.sessions):
                try:
                    session.tick(now)
                except Exception:
                    logger.exception("livedata: heartbeat of a session failed")

    def track_token(self, session: Session, old: str | None, new: str | None) -> None:
        if old is not None and old in self.token_sessions:
            self.token_sessions[old].discard(session)
            if not self.token_sessions[old]:
                del self.token_sessions[old]
        if new is not None:
            self.token_sessions.setdefault(new, set()).add(session)

    async def _on_engine_batch(self, batch: Batch) -> None:
        await self.engine.on_changes(batch.rows)

    async def on_token_changes(self, batch: Batch) -> None:
        """A login token was deleted (logout elsewhere, password change, the admin,
        expiry): close the connections logged in with it, in every process (Meteor), and
        forget the HTTP APIs' cached lookup of it."""
        from livedata.httpapi.auth import forget_tokens

        doomed: set[Session] = set()
        for row in batch.rows:
            if row.model != TOKEN_MODEL:
                continue
            if row.op == "truncate":
                forget_tokens()
                doomed.update(
                    s
                    for hashed, group in self.token_sessions.items()
                    for s in group
                    if not s.leaving_token(hashed)
                )
            elif row.old is not None:  # deleted, or changed (its expiry, say)
                hashed = row.old.get("hashed_token")
                forget_tokens([hashed])
                if row.op == "delete":
                    group = self.token_sessions.get(hashed, ())
                    doomed.update(s for s in group if not s.leaving_token(hashed))
        for session in doomed:
            await session.shutdown(1000, "logged out by the server")

    async def stop(self) -> None:
        for service in reversed(self._services or []):
            await service.stop()
        self._services = None
        if self._ticker is not None:
            self._ticker.cancel()
            await asyncio.gather(self._ticker, return_exceptions=True)
            self._ticker = None
        if self.listener is not None and self._listener_task is not None:
            self.listener.stop()
            await asyncio.gather(self._listener_task, return_exceptions=True)
            self._listener_task = None
        for pool, size in self.pools.values():
            await asyncio.get_running_loop().run_in_executor(None, dbthreads.close_all, pool, size)
            pool.shutdown(wait=False, cancel_futures=True)
        if Runtime.current is self:
            Runtime.current = None

    async def invoke(
        self, method: Method, call: MethodCall, params: list[Any]
    ) -> tuple[Any, int | None]:
        """Run a method; returns its result and the snapshot its writes are fenced on
        (taken after they committed; None: it wrote nothing)."""
        bound = method.bind(call, params)
        loop = asyncio.get_running_loop()
        pool = self.pools.get(method.pool, self.pools["default"])[0]
        wait = self.settings.DATABASE_WAIT
        if method.is_async:
            if method.login_required or method.permission_required:
                await loop.run_in_executor(pool, run_waiting, wait, method.check_access, call.user)
            result = await method.func(*bound.args, **bound.kwargs)
            fence = await loop.run_in_executor(pool, _fence_snapshot)
            return result, fence
        return await loop.run_in_executor(pool, _run_sync, method, call, bound, wait)

    async def fence(self, snapshot: Snapshot) -> None:
        """Wait until the live queries were handed everything ``snapshot`` sees (the
        write fence: ``updated`` follows the method's data). Other transactions still
        open when it was taken are not waited for."""
        if self.listener is None:
            return
        await self.start()
        assert self.engine_follower is not None
        try:
            await asyncio.wait_for(
                self.engine_follower.wait_covers(snapshot), self.settings.METHOD_FENCE_TIMEOUT
            )
        except TimeoutError:
            logger.warning("livedata: write fence at %s timed out; sending updated", snapshot)


def _report_listener_exit(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("livedata: the change-log listener stopped", exc_info=task.exception())


def _run_sync(
    method: Method, call: MethodCall, bound: Any, wait: float
) -> tuple[Any, Snapshot | None]:
    """A sync method in a worker thread, in a transaction; returns (result, fence).

    While the database is away (``DATABASE_WAIT``, see ``livedata.dbwait``) the access
    check and the method's transaction are run again; a method outside a transaction
    only waits for its first connection."""
    run_waiting(wait, _prepare, method, call)
    if not method.atomic:
        result = method.func(*bound.args, **bound.kwargs)
        return result, _fence_snapshot()
    result, wrote = run_waiting(wait, _in_transaction, method, bound)
    return result, _fence_snapshot() if wrote else None


def _prepare(method: Method, call: MethodCall) -> None:
    ensure_connection()
    method.check_access(call.user)


def _in_transaction(method: Method, bound: Any) -> tuple[Any, bool]:
    """The method in a transaction: (result, whether it wrote)."""
    from django.db import connection, transaction

    committing = False
    try:
        with transaction.atomic():
            result = method.func(*bound.args, **bound.kwargs)
            with connection.cursor() as cur:
                cur.execute("SELECT pg_current_xact_id_if_assigned() IS NOT NULL")
                wrote = cur.fetchone()[0]
            committing = True
    except Exception as exc:
        if committing and connection_lost(exc):
            raise commit_unknown() from None  # it may have committed: never run it again
        raise
    return result, wrote


def _fence_snapshot() -> Snapshot | None:
    """The fence after a commit (None when the database went away since: then
    ``updated`` is not held back)."""
    from django.db import connection

    try:
        dbthreads.usable_connection()
        return _snapshot_locked(connection)
    except Exception as exc:
        if not connection_lost(exc):
            raise
        forget_connection()
        logger.warning("livedata: no write fence (the database went away after the commit)")
        return None


def _snapshot_locked(connection: Any) -> Snapshot:
    """A snapshot taken now: it sees every write that has committed (the fence for
    writes we cannot name, and for a transaction right after its commit)."""
    with connection.cursor() as cur:
        cur.execute("SELECT pg_current_snapshot()::text")
        return Snapshot.parse(cur.fetchone()[0])


def _freeze_startup_objects() -> None:
    """Move what start-up made (modules, classes, Django's registries: ~90k objects) out
    of the cyclic GC's reach, so full collections walk only what serving creates.

    Measured with bench/gcprobe.py under bench/live_queries.py (see the commit)."""
    import gc

    gc.collect()
    gc.freeze()


def _is_sockjs(path: str) -> bool:
    return path == "/sockjs" or path.startswith("/sockjs/")


class LivedataApp:
    """Route DDP (WebSocket, SockJS) to livedata and everything else to ``django_app``."""

    def __init__(
        self,
        django_app: Any,
        *,
        runtime: Runtime | None = None,
        api_without_middleware: bool = True,
    ) -> None:
        self.django_app = django_app
        self.runtime = runtime or Runtime()
        #: livedata's API views without the project's middleware (None: through it)
        self._api_handler: Any = ViewOnlyHandler() if api_without_middleware else None
        self._sockjs: Any = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self._lifespan(receive, send)
        elif kind == "websocket" or _is_sockjs(scope["path"]):
            await self._ddp(scope, receive, send)
        elif kind == "http" and is_api_request(scope):
            # the body is read here, up to the APIs' limit, before Django reads it whole
            limit = self.runtime.settings.HTTP_API_MAX_BODY_BYTES
            bounded = await bounded_body(scope, receive, send, limit)
            if bounded is None:
                return  # answered 413
            # without the project's middleware (see apiroute), unless asked otherwise
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
        elif kind == "websocket" and scope["path"].rstrip("/") in DDP_PATHS:
            from livedata.server.websocket import serve_websocket

            await self.runtime.start()
            await serve_websocket(self.runtime, scope, receive, send)
        elif kind in ("http", "websocket") and _is_sockjs(scope["path"]):
            await self.runtime.start()
            await self._sockjs_endpoint()(scope, receive, send)
        else:  # a WebSocket to anywhere else
            await send({"type": "websocket.close", "code": 4404})

    def _sockjs_endpoint(self) -> Any:
        """DDP over SockJS at ``/sockjs`` (Meteor's browser clients), made on first use."""
        if self._sockjs is None:
            from livedata.server.sockjs.ddp import ddp_endpoint

            self._sockjs = ddp_endpoint(self.runtime)
        return self._sockjs

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.runtime.start()
                except Exception as exc:
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                _freeze_startup_objects()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.runtime.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return
