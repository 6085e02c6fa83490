"""One client's DDP session over any transport (WebSocket, SockJS): the protocol pump.

It feeds the client's text frames to the pure protocol core (``ddp.connection``), runs
the subscriptions and methods that come out of it, one at a time in arrival order, as
Meteor does (ping is answered at once), and is the live-query engine's
``livequery.subscriber.Subscriber``: documents and changes go through the session's
mergebox (``ddp.mergebox``, pure) to the connection's one outbox.

What it leaves to others:

- ``outbox`` and ``outgoing``: the frames on their way out. The transport passes in the
  ``Carrier`` of the connection's one outbox; a client whose outbox passes
  ``DDP_MAX_OUTGOING_BYTES`` is disconnected here, and a subscription's initial
  documents, which may be more than that bound (70,000 books were, issue 19), are
  *streamed* (``outgoing.stream``);
- ``login``: who the client is. The session knows its user (Django's ``AnonymousUser``
  until a login method succeeds, or from the Django session cookie of a same-origin
  browser): publications and methods see it, a change of user re-runs every
  subscription, and the user's own document is published without a subscription;
- ``runtime.admission``: the pace new sessions start at (a session's first message
  waits its turn) and the subscriptions set up at once (in the engine);
- ``tokens``: closing the sessions logged in with a deleted login token;
- ``app.DDPService``: what every session of the process shares (``Services`` here, a
  Protocol, so this module does not import the app).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

from livedata.capture.context import context, user_fields
from livedata.dbwait import DatabaseUnavailable, is_database_error
from livedata.ddp import messages
from livedata.ddp.connection import (
    CallMethod,
    Close,
    DDPConnection,
    Heartbeat,
    State,
    Subscribe,
    Unsubscribe,
)
from livedata.ddp.errors import DDPError, client_error, not_found_method
from livedata.ddp.mergebox import Mergebox
from livedata.ddp.messages import UNDEFINED, serialize
from livedata.exposure.registry import NoCollection
from livedata.memory import give_back
from livedata.publish.methods import ConnectionInfo, MethodCall
from livedata.runtime.admission import Busy
from livedata.server.login import moves_off_token, universal_documents, user_from_cookie
from livedata.server.outbox import Queued
from livedata.server.outgoing import Carrier, Flag, stream

if TYPE_CHECKING:
    from livedata.capture.position import Snapshot
    from livedata.livequery.engine import Engine
    from livedata.publish.methods import MethodRegistry
    from livedata.runtime import Runtime
    from livedata.server.tokens import TokenWatch

logger = logging.getLogger("livedata.server")

#: How a client whose outbox passed ``DDP_MAX_OUTGOING_BYTES`` is closed.
SLOW_CLIENT = (1008, "outgoing buffer limit")
#: How a client refused by admission control (``runtime.admission``) is closed: 1013 is
#: WebSocket's "Try Again Later".
BUSY = (1013, "server busy")


class Services(Protocol):
    """What a DDP session needs of its process (``server.app.DDPService``)."""

    runtime: Runtime
    settings: Any
    methods: MethodRegistry
    publications: Mapping[str, Any]
    engine: Engine
    tokens: TokenWatch
    #: publications served from memory (``dashboard.feed.Feed``), by name
    feeds: Mapping[str, Any]


class DDPSession:
    def __init__(
        self,
        services: Services,
        carrier: Carrier,
        *,
        client_address: str | None = None,
        http_headers: Mapping[str, str] | None = None,
        site_origin: str = "",
        cookie_login: bool = True,
        transport: str = "websocket",
        admitted: bool = False,
    ) -> None:
        conf = services.settings
        #: "websocket" (raw DDP) or "sockjs": the figures count sessions by it
        self.transport = transport
        self.services = services
        self.runtime = services.runtime
        heartbeat = None
        if conf.DDP_HEARTBEAT_INTERVAL:
            heartbeat = Heartbeat(conf.DDP_HEARTBEAT_INTERVAL, conf.DDP_HEARTBEAT_TIMEOUT)
        #: the protocol's state (pure): what the client said, what to answer
        self.protocol = DDPConnection(
            publications=services.publications,
            methods=services.methods,
            heartbeat=heartbeat,
            max_subscriptions=conf.DDP_MAX_SUBSCRIPTIONS,
        )
        if heartbeat is not None:
            heartbeat.seen(self._now())
        if conf.DDP_CONNECT_TIMEOUT:
            self.protocol.connect_deadline = self._now() + conf.DDP_CONNECT_TIMEOUT
        #: carries the connection's one outbox (``carrier.outbox``) to the client
        self.carrier = carrier
        self.outbox = carrier.outbox
        self.client_address = client_address
        self.http_headers = http_headers or {}
        #: this site's origin as the opening request saw it (``http(s)://host``)
        self.site_origin = site_origin
        #: the transport is this client's alone (a WebSocket, a bound SockJS session):
        #: only then may the browser's Django session cookie log it in
        self.cookie_login = cookie_login
        # An idle session owns no task: the worker (and the carrier's writer) exist only
        # while there is work, and one runtime-wide task ticks every session's heartbeat.
        # That keeps an idle connection's memory small (bench/asgi_servers.py).
        #: messages being streamed (initial documents); frames put meanwhile wait behind
        self._stream: list[dict[str, Any] | str] | None = None
        self._actions: list[Any] = []  # a list: an idle session's is empty (a deque: 0.8 KB)
        self.mergebox = Mergebox()
        self._worker: asyncio.Task[None] | None = None
        self.closed = Flag()
        self.close_reason: str | None = None
        from django.contrib.auth.models import AnonymousUser

        self.user: Any = AnonymousUser()
        #: hash of the login token this connection is logged in with
        self.login_token: str | None = None
        #: live subscriptions: id → (publication, params), to re-run them as a new user
        self.subs: dict[str, tuple[str, list[Any]]] = {}
        self._cookie_checked = False
        #: its turn to start came (``_admit``; a raw WebSocket's, before it was accepted)
        self._admitted = admitted
        self._user_published = False
        #: the method running now (its pending login change may drop a token: see
        #: ``leaving_token``)
        self._call_in_flight: MethodCall | None = None

    @staticmethod
    def _now() -> float:
        return time.monotonic()

    # --- life cycle ---------------------------------------------------------------------

    def start(self) -> None:
        self.runtime.sessions.add(self)  # ticked (heartbeats, the connect deadline), counted
        self.flush()

    def _leave(self) -> None:
        """Out of the runtime's live sessions; what it sent is carried on the figures'
        totals (its outbox is closed: nothing more is counted on it)."""
        if self in self.runtime.sessions:
            self.runtime.sessions.discard(self)
            labels = (("transport", self.transport),)
            self.runtime.figures.carry("messages_out_total", labels, self.outbox.sent)
            self.runtime.figures.carry("bytes_out_total", labels, self.outbox.sent_bytes)

    async def stop(self) -> None:
        """The transport is gone: stop this session's work and drop its subscriptions."""
        self.protocol.close()
        self.closed.set()
        self.outbox.close()
        await self.carrier.stop()  # a stream waiting for room goes on, to its end
        self._leave()
        self.services.tokens.track_token(self, self.login_token, None)
        await self.services.engine.drop_session(self)
        for feed in self.services.feeds.values():
            feed.drop_session(self)
        # freed now rather than at the next full GC (sessions are in reference cycles), and
        # the pages returned: a leaving client's memory goes back (issue 19)
        released = sum(len(docs) for docs in self.mergebox.collections.values())
        self.mergebox = Mergebox()
        self.subs.clear()
        give_back(released)
        worker = self._worker
        if worker is not None:
            worker.cancel()
            await asyncio.gather(worker, return_exceptions=True)

    async def shutdown(self, code: int, reason: str) -> None:
        """Close the transport (after what is already queued) with ``code``."""
        if self.closed.is_set():
            return
        self.close_reason = reason
        self.protocol.close()
        self.closed.set()
        self.outbox.close()
        self._leave()
        self._stream = None
        try:
            await self.carrier.close(code, reason)
        except Exception:  # the transport may already be gone
            logger.debug("closing %s failed", self.protocol.session, exc_info=True)

    def tick(self, now: float) -> None:
        """Heartbeat (called by the runtime's ticker for every live session)."""
        for action in self.protocol.tick(now):
            if isinstance(action, Close):
                task = self.shutdown(action.code, action.reason)
                asyncio.get_running_loop().create_task(task)
                return
        self.flush()

    # --- input --------------------------------------------------------------------------

    async def feed(self, text: str) -> None:
        if self.closed.is_set():
            return
        if not self._admitted and not await self._admit():
            return
        if not self._cookie_checked:
            self._cookie_checked = True
            user = await user_from_cookie(
                self.runtime, self.http_headers, self.site_origin, exclusive=self.cookie_login
            )
            if user is not None:
                self.user = user
        actions = self.protocol.receive(text, self._now())
        if not self._user_published and self.protocol.state is State.CONNECTED:
            self._user_published = True
            if self.user.is_authenticated:  # logged in by cookie: after "connected"
                for sub_key, collection, doc_id, fields in universal_documents(self.user):
                    for message in self.mergebox.added(sub_key, collection, doc_id, fields):
                        self.protocol.send(message)
        frames = self.protocol.data_to_send()
        if frames and self._put(frames):
            await self.carrier.carry_now()  # replies (pong, errors) go out inline
        for action in actions:
            if isinstance(action, Close):
                await self.shutdown(action.code, action.reason)
                return
            self._actions.append(action)
        if self._actions and self._worker is None:
            self._worker = asyncio.get_running_loop().create_task(self._work())

    async def _admit(self) -> bool:
        """Wait for this session's turn to start (``runtime.admission``: the pace new
        sessions start at), its first message (``connect``) held meanwhile: SockJS
        sessions (a raw WebSocket waited before it was accepted). The wait is
        bounded by ``DDP_ACCEPT_WAIT`` (so the connect deadline is lifted: the client did
        speak); past it the client gets a DDP ``error`` and a close with 1013 (Try
        Again Later). Its transport had opened, so Meteor's client retries after 10 ms:
        for SockJS the wait, not the refusal, is what spreads a storm."""
        self._admitted = True
        self.protocol.connect_deadline = None
        try:
            await self.runtime.admission.admit()
        except Busy as exc:
            logger.info("livedata: refused a new session: %s", exc.reason)
            self.protocol.send(messages.error(exc.reason or "Server busy"))
            self.flush()
            await self.shutdown(*BUSY)
            return False
        return not self.closed.is_set()

    async def _work(self) -> None:
        """Run queued subs/methods one at a time, in arrival order (as Meteor does)."""
        try:
            while self._actions:
                action = self._actions.pop(0)
                try:
                    if isinstance(action, CallMethod):
                        await self._call(action)
                    elif isinstance(action, Subscribe):
                        await self._subscribe(action)
                    elif isinstance(action, Unsubscribe):
                        self.subs.pop(action.id, None)
                        self._unsubscribe_feed(action.id)
                        await self.services.engine.unsubscribe(self, action.id)
                        self._send_data(self.mergebox.remove_subscription(action.id))
                        self.protocol.nosub(action.id)
                except Exception:
                    logger.exception(
                        "livedata: session %s failed on %r", self.protocol.session, action
                    )
                self.flush()
        finally:
            self._worker = None

    async def _subscribe(self, action: Subscribe) -> None:
        self.subs[action.id] = (action.name, action.params)
        feed = self.services.feeds.get(action.name)
        try:
            if feed is not None:
                await feed.subscribe(self, action.id, action.params)
            else:
                await self.services.engine.subscribe(self, action.id, action.name, action.params)
        except BaseException as exc:
            if isinstance(exc, asyncio.CancelledError):
                raise
            await self._sub_failed(action.id, action.name, exc)

    async def _sub_failed(self, sub_id: str, name: str, exc: BaseException) -> None:
        error, unexpected = client_error(exc)
        if isinstance(exc, NoCollection):  # the developer's mistake: say it, once, plainly
            logger.error("livedata: publication %r: %s", name, exc)
            error, unexpected = DDPError(500, f"Publication {name!r}: {exc}"), False
        if unexpected:
            logger.error("livedata: publication %r failed", name, exc_info=exc)
        self.subs.pop(sub_id, None)
        self._unsubscribe_feed(sub_id)
        await self.services.engine.unsubscribe(self, sub_id)
        self._send_data(self.mergebox.remove_subscription(sub_id))
        self.protocol.nosub(sub_id, error)

    def _unsubscribe_feed(self, sub_id: str) -> None:
        for feed in self.services.feeds.values():
            if feed.owns(self, sub_id):
                feed.unsubscribe(self, sub_id)

    # --- the user (see ``login``) -------------------------------------------------------

    async def set_user(self, user: Any, login_token: str | None = None) -> None:
        """Log in as ``user`` (None: out): every subscription re-runs as the new user and
        the client gets only the difference (with the user's ``users`` document)."""
        from django.contrib.auth.models import AnonymousUser

        # first, before any await: a revocation of the old token must not close us now
        self.services.tokens.track_token(self, self.login_token, login_token)
        self.login_token = login_token
        self.user = user if user is not None else AnonymousUser()
        feeds = self.services.feeds
        queried = {k: sub for k, sub in self.subs.items() if sub[0] not in feeds}
        failed = await self.services.engine.rerun(self, queried, universal_documents(self.user))
        await self.stream()
        # the rebuilt view has none of the feeds' documents: each checks access again
        for sub_id, (name, _params) in list(self.subs.items()):
            if name in feeds:
                try:
                    await feeds[name].rerun(self, sub_id)
                except Exception as exc:
                    failed.append((sub_id, exc))
        for sub_id, exc in failed:
            await self._sub_failed(sub_id, self.subs.get(sub_id, ("?",))[0], exc)

    def leaving_token(self, hashed: str) -> bool:
        """Whether the method running now moves this connection off token ``hashed``
        (``login.moves_off_token``)."""
        return moves_off_token(self._call_in_flight, hashed)

    def replace_view(self, box: Mergebox) -> None:
        """Swap in a rebuilt mergebox; the client is sent only what differs (streamed:
        logging in may bring many documents)."""
        messages = self.mergebox.diff_to(box)
        self.mergebox = box
        self._begin_stream(messages)  # type: ignore[arg-type]

    # --- data from the live-query engine (``livequery.subscriber.Subscriber``) --------

    @property
    def connection_id(self) -> str:
        """This connection's DDP session id (its object id before ``connect``)."""
        return self.protocol.session or str(id(self))

    def ready(self, sub_id: str) -> None:
        """The subscription's initial documents were sent: tell the client."""
        self.protocol.ready(sub_id)

    def publish_added(
        self,
        sub_id: str,
        docs: list[tuple[str, str, dict[str, Any]]],
        frames: list[str] | None = None,
    ) -> None:
        """A subscription's initial documents (through the mergebox), to be streamed by
        ``stream``: from now on other frames wait behind them. ``frames``: each one's
        ``added`` encoded once for every subscriber, sent where the mergebox agrees."""
        if sub_id not in self.protocol.subscriptions:
            return
        box = self.mergebox
        out: list[dict[str, Any] | str] = []
        if frames is None:
            for collection, doc_id, fields in docs:
                out.extend(box.added(sub_id, collection, doc_id, fields))
        else:
            for (collection, doc_id, fields), frame in zip(docs, frames, strict=True):
                own = box.apply(sub_id, collection, "added", doc_id, fields)
                if own is None:
                    out.append(frame)
                else:
                    out.extend(own)
        self._begin_stream(out)

    def publish_diffs(self, sub_id: str, diffs: list[list[Any]], frames: list[list[str]]) -> None:
        """Changes of an observer, for one of its subscriptions on this connection: the
        shared frame of each change the mergebox agrees is exactly this client's diff
        (the common case), else the messages of this client's own view."""
        if sub_id not in self.protocol.subscriptions or self.closed.is_set():
            return
        box = self.mergebox
        out: list[str] = []
        for changes, encoded in zip(diffs, frames, strict=True):
            for (collection, op, doc_id, fields), frame in zip(changes, encoded, strict=True):
                try:
                    own = box.apply(sub_id, collection, op, doc_id, fields)
                except KeyError:
                    logger.warning("livedata: mergebox out of step for %s/%s", collection, doc_id)
                    continue
                if own is None:
                    out.append(frame)
                else:
                    out.extend(map(serialize, own))
        if out:
            self.send_frames(out)
        else:
            self.flush()

    def _send_data(self, messages: list[dict[str, Any]]) -> None:
        for message in messages:
            self.protocol.send(message)
        self.flush()

    # --- methods ------------------------------------------------------------------------

    async def _call(self, action: CallMethod) -> None:
        method = self.services.methods.get(action.name)
        if method is None:  # unregistered since the connection checked: same 404
            self.protocol.method_result(action.id, error=not_found_method(action.name))
            self.protocol.method_updated(action.id)
            return
        limited = self.runtime.rate_limiter.check(
            action.name,
            self._now(),
            connection=self.protocol.session or "",
            client_address=self.client_address,
            user=self.user.pk,
            own=method.rate_limits,
        )
        if limited is not None:  # refused before running: updated first, as Meteor
            self.protocol.method_updated(action.id)
            self.protocol.method_result(action.id, error=limited)
            return
        call = MethodCall(
            method_id=action.id,
            name=action.name,
            connection=ConnectionInfo(
                self.protocol.session or "", self.client_address, self.http_headers
            ),
            random_seed=action.random_seed,
            user=self.user,
            login_token=self.login_token,
        )
        fence: Snapshot | None = None
        self._call_in_flight = call
        try:
            with context(**self._audit(action.name)):
                result, fence = await self.runtime.invoke(method, call, action.params)
            if "user" in call.pending:
                await self.set_user(*call.pending["user"])
        except BaseException as exc:
            if isinstance(exc, asyncio.CancelledError):
                raise
            error, unexpected = client_error(exc)
            if unexpected and is_database_error(exc):  # an async method's own query
                error, unexpected = DatabaseUnavailable(0.0), False
                logger.warning("livedata: method %r: the database is unreachable", action.name)
            if unexpected:
                logger.error(
                    "livedata: exception while invoking method %r", action.name, exc_info=exc
                )
            self.protocol.method_updated(action.id)
            self.protocol.method_result(action.id, error=error)
            return
        finally:
            self._call_in_flight = None
        if fence is None:  # wrote nothing: Meteor sends updated, then result
            self.protocol.method_updated(action.id)
            self.protocol.method_result(action.id, UNDEFINED if result is None else result)
            return
        self.protocol.method_result(action.id, UNDEFINED if result is None else result)
        self.flush()
        await self.runtime.fence(fence)
        self.protocol.method_updated(action.id)

    def _audit(self, method_name: str) -> dict[str, Any]:
        """The audit context of a method's writes (``capture.context``): who called,
        which method, on which DDP session, from which address (the client's, through
        trusted proxies: ``server.proxies``)."""
        return {
            **user_fields(self.user),
            "ddp_method": method_name,
            "ddp_session": self.protocol.session,
            "remote_addr": self.client_address,
        }

    # --- output (``outbox``, ``outgoing``) ----------------------------------------------

    def send_frames(self, frames: list[str]) -> None:
        """Queue frames serialised once for many sessions (fan-out), after pending ones."""
        self.flush()
        if self._put(frames):
            self.carrier.carry()

    def flush(self) -> None:
        """Move the protocol's queued frames into the outbox (never blocks)."""
        frames = self.protocol.data_to_send()
        if frames and self._put(frames):
            self.carrier.carry()

    def _put(self, frames: list[str]) -> bool:
        """Put frames in the outbox; True when they are queued (to be carried). Past
        ``DDP_MAX_OUTGOING_BYTES`` the outbox is dropped and the client disconnected."""
        if self.closed.is_set():
            return False
        queued = self.outbox.put(frames)
        if queued is Queued.OVERFLOW:
            logger.warning(
                "livedata: session %s exceeded %d queued bytes: disconnecting a slow client",
                self.protocol.session,
                self.outbox.limit,
            )
            asyncio.get_running_loop().create_task(self.shutdown(*SLOW_CLIENT))
        return queued is Queued.QUEUED

    def _begin_stream(self, messages: list[dict[str, Any] | str]) -> None:
        """Stream ``messages`` (see ``stream``); frames put from now on wait behind."""
        if self.closed.is_set() or not messages:
            return
        self.flush()  # what the protocol queued before goes first
        if self._stream is not None:  # one stream at a time: appended to it (both come
            # from the session's one worker, so this does not happen today)
            self._stream.extend(messages)
            return
        self._stream = messages
        self.outbox.hold()

    async def stream(self) -> None:
        """Send the messages of ``_begin_stream`` at the pace the client takes them
        (``outgoing.stream``); then the frames put meanwhile follow, in order."""
        messages = self._stream
        if messages is None:
            return
        try:
            await stream(messages, self.carrier, self.closed)
        finally:
            if self._stream is messages:
                self._stream = None
                self.outbox.release()
                if self.outbox:
                    self.carrier.carry()
