"""One client's DDP session over any transport (WebSocket, SockJS).

The transport hands text frames to ``feed`` and provides ``send``/``close`` coroutines
(``send`` waits while the socket is backed up). Frames go through a bounded outbox
drained by a writer task, so nothing that produces messages (methods, the live-query
engine) ever waits on a slow client; a client whose outbox exceeds
``DDP_MAX_OUTGOING_BYTES`` is disconnected. A subscription's initial documents are the
exception: they can be more than that bound (70,000 books were, issue 19), so they are
*streamed*: serialised and queued only as the client takes them (``stream``), and
whatever else is queued meanwhile waits behind them, counted against the bound. A client
that reads gets every document, then ``ready``; one that stops reading is disconnected
as before (or by the heartbeat). Subscriptions and methods run one at a time in arrival
order, as Meteor does; ping is answered immediately.

The session knows its user (Django's ``AnonymousUser`` until a login method succeeds,
or from the Django session cookie of a same-origin browser): publications and methods
see it, a change of user re-runs every subscription, and the user's own document is
published in collection ``users`` without a subscription, as Meteor does.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from livedata.dbwait import DatabaseUnavailable, is_database_error
from livedata.ddp.connection import (
    CallMethod,
    Close,
    DDPConnection,
    Heartbeat,
    State,
    Subscribe,
    Unsubscribe,
)
from livedata.ddp.errors import client_error, not_found_method
from livedata.ddp.mergebox import Mergebox
from livedata.ddp.messages import UNDEFINED, serialize
from livedata.memory import give_back
from livedata.publish.methods import ConnectionInfo, MethodCall

if TYPE_CHECKING:
    from livedata.capture.position import Snapshot
    from livedata.server.app import DDPService

logger = logging.getLogger("livedata.server")

SendText = Callable[[str], Awaitable[None]]
CloseTransport = Callable[[int, str], Awaitable[None]]

#: The mergebox key of documents published without a subscription (the user's own).
UNIVERSAL = ("universal",)
#: Longest wait for queued frames to get out when closing, before giving up on them (a
#: client that reads nothing would otherwise hold the closing session forever).
DRAIN_TIMEOUT = 5.0


class Session:
    def __init__(
        self,
        ddp: DDPService,
        *,
        send: SendText,
        close: CloseTransport,
        client_address: str | None = None,
        http_headers: Mapping[str, str] | None = None,
        site_origin: str = "",
        cookie_login: bool = True,
        transport_room: Callable[[int], Awaitable[None]] | None = None,
    ) -> None:
        conf = ddp.settings
        self.ddp = ddp
        self.runtime = ddp.runtime
        heartbeat = None
        if conf.DDP_HEARTBEAT_INTERVAL:
            heartbeat = Heartbeat(conf.DDP_HEARTBEAT_INTERVAL, conf.DDP_HEARTBEAT_TIMEOUT)
        self.conn = DDPConnection(
            publications=ddp.publications,
            methods=ddp.methods,
            heartbeat=heartbeat,
            max_subscriptions=conf.DDP_MAX_SUBSCRIPTIONS,
        )
        if heartbeat is not None:
            heartbeat.seen(self._now())
        if conf.DDP_CONNECT_TIMEOUT:
            self.conn.connect_deadline = self._now() + conf.DDP_CONNECT_TIMEOUT
        self._send = send
        self._close = close
        self.client_address = client_address
        self.http_headers = http_headers or {}
        #: this site's origin as the opening request saw it (``http(s)://host``)
        self.site_origin = site_origin
        #: the transport is this client's alone (a WebSocket, a bound SockJS session):
        #: only then may the browser's Django session cookie log it in
        self.cookie_login = cookie_login
        self.max_outgoing = conf.DDP_MAX_OUTGOING_BYTES
        #: waits until the transport queues at most N bytes itself, for a transport whose
        #: ``send`` never waits (SockJS queues frames for the client's next poll)
        self._transport_room = transport_room
        # An idle session owns no task: the worker and the writer exist only while there
        # is work, and one runtime-wide task ticks every session's heartbeat. That keeps
        # an idle connection's memory small (bench/asgi_servers.py).
        self._outbox: deque[str] = deque()
        self._outbox_bytes = 0
        self._writer: asyncio.Task[None] | None = None
        self._draining = False  # someone is sending the outbox: frames keep their order
        #: messages being streamed (initial documents), and the frames queued meanwhile,
        #: which go out after them
        self._stream: list[dict[str, Any]] | None = None
        self._behind: deque[str] = deque()
        self._behind_bytes = 0
        self._room: asyncio.Event | None = None  # set when the outbox drains (streaming)
        self._room_low = 0  # ...to this many bytes
        self._actions: deque[Any] = deque()
        self.mergebox = Mergebox()
        self._worker: asyncio.Task[None] | None = None
        self.closed = asyncio.Event()
        self.close_reason: str | None = None
        from django.contrib.auth.models import AnonymousUser

        self.user: Any = AnonymousUser()
        #: hash of the login token this connection is logged in with
        self.login_token: str | None = None
        #: live subscriptions: id → (publication, params), to re-run them as a new user
        self.subs: dict[str, tuple[str, list[Any]]] = {}
        self._cookie_checked = False
        self._user_published = False
        #: the method running now (its pending login change may drop a token: see
        #: leaving_token)
        self._call_in_flight: MethodCall | None = None

    @staticmethod
    def _now() -> float:
        return time.monotonic()

    # --- life cycle ---------------------------------------------------------------------

    def start(self) -> None:
        if self.conn.heartbeat is not None or self.conn.connect_deadline is not None:
            self.runtime.sessions.add(self)  # ticked: heartbeats, the connect deadline
        self.flush()

    async def stop(self) -> None:
        """The transport is gone: stop this session's work and drop its subscriptions."""
        self.conn.close()
        self.closed.set()
        self._wake()
        self.runtime.sessions.discard(self)
        self.ddp.tokens.track_token(self, self.login_token, None)
        await self.ddp.engine.drop_session(self)
        # freed now rather than at the next full GC (sessions are in reference cycles), and
        # the pages returned: a leaving client's memory goes back (issue 19)
        released = sum(len(docs) for docs in self.mergebox.collections.values())
        self.mergebox = Mergebox()
        self.subs.clear()
        give_back(released)
        tasks = [t for t in (self._worker, self._writer) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def shutdown(self, code: int, reason: str) -> None:
        """Close the transport (after what is already queued) with ``code``."""
        if self.closed.is_set():
            return
        self.close_reason = reason
        self.conn.close()
        self.closed.set()
        self.runtime.sessions.discard(self)
        writer = self._writer
        if writer is not None and writer is not asyncio.current_task():
            writer.cancel()  # drain below, alone, so frames keep their order
            await asyncio.gather(writer, return_exceptions=True)
        self._wake()
        self._stream = None
        self._outbox.extend(self._behind)
        self._outbox_bytes += self._behind_bytes
        self._behind.clear()
        self._behind_bytes = 0
        try:
            try:
                await asyncio.wait_for(self._drain_outbox(), DRAIN_TIMEOUT)
            except TimeoutError:  # it reads nothing: close without the rest
                self._outbox.clear()
                self._outbox_bytes = 0
            await self._close(code, reason)
        except Exception:  # the transport may already be gone
            logger.debug("closing %s failed", self.conn.session, exc_info=True)

    def tick(self, now: float) -> None:
        """Heartbeat (called by the runtime's ticker for every live session)."""
        for action in self.conn.tick(now):
            if isinstance(action, Close):
                task = self.shutdown(action.code, action.reason)
                asyncio.get_running_loop().create_task(task)
                return
        self.flush()

    # --- input --------------------------------------------------------------------------

    async def feed(self, text: str) -> None:
        if self.closed.is_set():
            return
        if not self._cookie_checked:
            self._cookie_checked = True
            await self._login_from_cookie()
        actions = self.conn.receive(text, self._now())
        if not self._user_published and self.conn.state is State.CONNECTED:
            self._user_published = True
            if self.user.is_authenticated:  # logged in by cookie: after "connected"
                for sub_key, collection, doc_id, fields in self._universal():
                    for message in self.mergebox.added(sub_key, collection, doc_id, fields):
                        self.conn.send(message)
        frames = self.conn.data_to_send()
        if frames and self._writer is None and not self._draining:
            # replies (pong, errors) go out inline: no task per message; a client that
            # does not read blocks only its own receive loop
            self._draining = True
            try:
                self._enqueue(frames)
                await self._drain_outbox_locked()
            finally:
                self._draining = False
        elif frames:
            self._enqueue(frames)
        for action in actions:
            if isinstance(action, Close):
                await self.shutdown(action.code, action.reason)
                return
            self._actions.append(action)
        if self._actions and self._worker is None:
            self._worker = asyncio.get_running_loop().create_task(self._work())

    async def _work(self) -> None:
        """Run queued subs/methods one at a time, in arrival order (as Meteor does)."""
        try:
            while self._actions:
                action = self._actions.popleft()
                try:
                    if isinstance(action, CallMethod):
                        await self._call(action)
                    elif isinstance(action, Subscribe):
                        await self._subscribe(action)
                    elif isinstance(action, Unsubscribe):
                        self.subs.pop(action.id, None)
                        await self.ddp.engine.unsubscribe(self, action.id)
                        self._send_data(self.mergebox.remove_subscription(action.id))
                        self.conn.nosub(action.id)
                except Exception:
                    logger.exception("livedata: session %s failed on %r", self.conn.session, action)
                self.flush()
        finally:
            self._worker = None

    async def _subscribe(self, action: Subscribe) -> None:
        self.subs[action.id] = (action.name, action.params)
        try:
            await self.ddp.engine.subscribe(self, action.id, action.name, action.params)
        except BaseException as exc:
            if isinstance(exc, asyncio.CancelledError):
                raise
            await self._sub_failed(action.id, action.name, exc)

    async def _sub_failed(self, sub_id: str, name: str, exc: BaseException) -> None:
        error, unexpected = client_error(exc)
        if unexpected:
            logger.error("livedata: publication %r failed", name, exc_info=exc)
        self.subs.pop(sub_id, None)
        await self.ddp.engine.unsubscribe(self, sub_id)
        self._send_data(self.mergebox.remove_subscription(sub_id))
        self.conn.nosub(sub_id, error)

    # --- the user -----------------------------------------------------------------------

    async def _login_from_cookie(self) -> None:
        """A same-origin browser logged in to the Django site is logged in here too."""
        from livedata.accounts.sessions import cookie_user
        from livedata.dbthreads import with_connection
        from livedata.server.origin import cookie_login_origin

        headers = self.http_headers
        if not self.runtime.settings.DDP_SESSION_LOGIN or "cookie" not in headers:
            return
        if not self.cookie_login:
            return  # another client could drive this session: never with this cookie
        if not cookie_login_origin(headers, self.site_origin):
            return  # another site's page must not act with this browser's cookie
        try:
            user = await asyncio.get_running_loop().run_in_executor(
                self.runtime.executor, with_connection, cookie_user, headers["cookie"]
            )
        except Exception:
            logger.warning("livedata: reading the Django session of a DDP client failed")
            return
        if user is not None:
            self.user = user

    def _universal(self) -> list[tuple[Any, str, str, dict[str, Any]]]:
        """Documents published without a subscription: the logged-in user's own."""
        if not self.user.is_authenticated:
            return []
        from livedata.accounts.adapter import get_adapter

        return [(UNIVERSAL, "users", str(self.user.pk), get_adapter().user_document(self.user))]

    async def set_user(self, user: Any, login_token: str | None = None) -> None:
        """Log in as ``user`` (None: out): every subscription re-runs as the new user and
        the client gets only the difference (with the user's ``users`` document)."""
        from django.contrib.auth.models import AnonymousUser

        # first, before any await: a revocation of the old token must not close us now
        self.ddp.tokens.track_token(self, self.login_token, login_token)
        self.login_token = login_token
        self.user = user if user is not None else AnonymousUser()
        failed = await self.ddp.engine.rerun(self, dict(self.subs), self._universal())
        await self.stream()
        for sub_id, exc in failed:
            await self._sub_failed(sub_id, self.subs.get(sub_id, ("?",))[0], exc)

    def leaving_token(self, hashed: str) -> bool:
        """Whether the method running now moves this connection off token ``hashed``
        (logout, resetPassword...): its deletion must not close the connection, which
        the listener may report before the method's login change is applied."""
        call = self._call_in_flight
        return call is not None and "user" in call.pending and call.pending["user"][1] != hashed

    def replace_view(self, box: Mergebox) -> None:
        """Swap in a rebuilt mergebox; the client is sent only what differs (streamed:
        logging in may bring many documents)."""
        messages = self.mergebox.diff_to(box)
        self.mergebox = box
        self._begin_stream(messages)

    # --- data from the live-query engine (``livequery.subscriber.Subscriber``) --------

    @property
    def connection_id(self) -> str:
        """This connection's DDP session id (its object id before ``connect``)."""
        return self.conn.session or str(id(self))

    def ready(self, sub_id: str) -> None:
        """The subscription's initial documents were sent: tell the client."""
        self.conn.ready(sub_id)

    def publish_added(self, sub_id: str, docs: list[tuple[str, str, dict[str, Any]]]) -> None:
        """A subscription's initial documents (through the mergebox), to be streamed by
        ``stream``: from now on other frames wait behind them."""
        if sub_id not in self.conn.subscriptions:
            return
        out = []
        for collection, doc_id, fields in docs:
            out.extend(self.mergebox.added(sub_id, collection, doc_id, fields))
        self._begin_stream(out)

    def publish_diffs(self, sub_id: str, diffs: list[list[Any]]) -> None:
        """Changes of an observer, for one of its subscriptions on this connection."""
        if sub_id not in self.conn.subscriptions or self.closed.is_set():
            return
        box = self.mergebox
        out = []
        for changes in diffs:
            for collection, op, doc_id, fields in changes:
                try:
                    if op == "added":
                        out.extend(box.added(sub_id, collection, doc_id, fields))
                    elif op == "changed":
                        out.extend(box.changed(sub_id, collection, doc_id, fields))
                    else:
                        out.extend(box.removed(sub_id, collection, doc_id))
                except KeyError:
                    logger.warning("livedata: mergebox out of step for %s/%s", collection, doc_id)
        self._send_data(out)

    def _send_data(self, messages: list[dict[str, Any]]) -> None:
        for message in messages:
            self.conn.send(message)
        self.flush()

    async def _call(self, action: CallMethod) -> None:
        method = self.ddp.methods.get(action.name)
        if method is None:  # unregistered since the connection checked: same 404
            self.conn.method_result(action.id, error=not_found_method(action.name))
            self.conn.method_updated(action.id)
            return
        limited = self.runtime.rate_limiter.check(
            action.name,
            self._now(),
            connection=self.conn.session or "",
            client_address=self.client_address,
            user=self.user.pk,
            own=method.rate_limits,
        )
        if limited is not None:  # refused before running: updated first, as Meteor
            self.conn.method_updated(action.id)
            self.conn.method_result(action.id, error=limited)
            return
        call = MethodCall(
            method_id=action.id,
            name=action.name,
            connection=ConnectionInfo(
                self.conn.session or "", self.client_address, self.http_headers
            ),
            random_seed=action.random_seed,
            user=self.user,
            login_token=self.login_token,
        )
        fence: Snapshot | None = None
        self._call_in_flight = call
        try:
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
            self.conn.method_updated(action.id)
            self.conn.method_result(action.id, error=error)
            return
        finally:
            self._call_in_flight = None
        if fence is None:  # wrote nothing: Meteor sends updated, then result
            self.conn.method_updated(action.id)
            self.conn.method_result(action.id, UNDEFINED if result is None else result)
            return
        self.conn.method_result(action.id, UNDEFINED if result is None else result)
        self.flush()
        await self.runtime.fence(fence)
        self.conn.method_updated(action.id)

    # --- output -------------------------------------------------------------------------

    def send_frames(self, frames: list[str]) -> None:
        """Queue frames serialised once for many sessions (fan-out), after pending ones."""
        self.flush()
        self._enqueue(frames)

    def flush(self) -> None:
        """Move the protocol's queued frames into the outbox (never blocks)."""
        frames = self.conn.data_to_send()
        if frames:
            self._enqueue(frames)

    def _enqueue(self, frames: list[str]) -> None:
        if self.closed.is_set():
            return
        queue = self._behind if self._stream is not None else self._outbox
        size = sum(len(frame) for frame in frames)
        queue.extend(frames)
        if self._stream is not None:
            self._behind_bytes += size
        else:
            self._outbox_bytes += size
        if self._outbox_bytes + self._behind_bytes > self.max_outgoing:
            logger.warning(
                "livedata: session %s exceeded %d queued bytes: disconnecting a slow client",
                self.conn.session,
                self.max_outgoing,
            )
            self._outbox.clear()
            self._outbox_bytes = 0
            self._behind.clear()
            self._behind_bytes = 0
            asyncio.get_running_loop().create_task(self.shutdown(1008, "outgoing buffer limit"))
            return
        self._start_writer()

    def _start_writer(self) -> None:
        if self._writer is None and not self._draining and not self.closed.is_set():
            self._writer = asyncio.get_running_loop().create_task(self._write())

    # --- streaming (initial documents) --------------------------------------------------

    def _begin_stream(self, messages: list[dict[str, Any]]) -> None:
        """Stream ``messages`` (see ``stream``); frames queued from now on wait behind."""
        if self.closed.is_set() or not messages:
            return
        self.flush()  # what the protocol queued before goes first
        if self._stream is not None:  # one stream at a time: appended to it (both come
            # from the session's one worker, so this does not happen today)
            self._stream.extend(messages)
            return
        self._stream = messages

    async def stream(self) -> None:
        """Send the messages of ``_begin_stream`` at the pace the client reads them.

        Each is serialised and queued only while the outbox holds less than a quarter of
        ``max_outgoing``; then this waits for the writer to drain it (the transport's
        ``send`` waits for the socket, or ``transport_room`` for the client's polls).
        So the initial data of a subscription may be any size: it never overflows the
        outbox, and costs no serialised copy of its whole.
        Frames queued meanwhile (changes, replies) follow, in order, counted against the
        bound: a client that stops reading is still disconnected when they exceed it, or
        by the heartbeat.
        """
        messages = self._stream
        if messages is None:
            return
        low = max(self.max_outgoing // 4, 1)
        try:
            i = 0
            while i < len(messages):  # the list may grow (a second _begin_stream)
                if self.closed.is_set():
                    return
                frame = serialize(messages[i])
                messages[i] = {}  # sent: its memory may go
                i += 1
                self._outbox.append(frame)
                self._outbox_bytes += len(frame)
                self._start_writer()
                if self._outbox_bytes > low:
                    await self._wait_room(low)
                if self._transport_room is not None:
                    await self._transport_room(low)
        finally:
            if self._stream is messages:
                self._stream = None
                self._outbox.extend(self._behind)
                self._outbox_bytes += self._behind_bytes
                self._behind.clear()
                self._behind_bytes = 0
                if self._outbox:
                    self._start_writer()

    async def _wait_room(self, low: int) -> None:
        if self._room is None:
            self._room = asyncio.Event()
        self._room_low = low
        while self._outbox_bytes > low and not self.closed.is_set():
            self._room.clear()
            self._start_writer()
            await self._room.wait()

    def _wake(self) -> None:
        if self._room is not None:
            self._room.set()

    async def _write(self) -> None:
        try:
            await self._drain_outbox()
        finally:
            self._writer = None

    async def _drain_outbox(self) -> None:
        self._draining = True
        try:
            await self._drain_outbox_locked()
        finally:
            self._draining = False

    async def _drain_outbox_locked(self) -> None:
        while self._outbox:
            frame = self._outbox.popleft()
            self._outbox_bytes -= len(frame)
            await self._send(frame)
            if self._room is not None and self._outbox_bytes <= self._room_low:
                self._room.set()  # a stream waiting for room goes on
