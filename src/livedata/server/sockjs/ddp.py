"""DDP over SockJS: each SockJS session carries one DDP ``Session`` (as Meteor's server).

Mounted at ``/sockjs`` by ``LivedataApp``. Same rules as the raw WebSocket: the origin
check (on every request), the inbound message size limit (a DDP error, then close), the
outgoing bound; and Meteor's SockJS timings (heartbeat frames every 45 s, sessions kept
60 s without a receiving connection). HTTP sessions are bound to the client that opened
them, and only a session no other client can drive is logged in by the Django session
cookie. JSONP is off unless ``DDP_SOCKJS_JSONP``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from livedata.ddp import messages
from livedata.server.origin import origin_allowed, site_origin
from livedata.server.session import Session
from livedata.server.sockjs.endpoint import SockJSEndpoint
from livedata.server.sockjs.session import SockJSSession

if TYPE_CHECKING:
    from livedata.server.app import DDPService

PREFIX = "/sockjs"


def sockjs_close(code: int, reason: str) -> tuple[int, str]:
    """A WebSocket-style close (from ``Session.shutdown``) as a SockJS close frame: a
    normal close is SockJS's 3000 (keeping the reason); other codes (1008 slow client,
    1009 message too big) are meaningful to a client as they are."""
    if code == 1000:
        return 3000, reason or "Go away!"
    return code, reason


class DDPHandler:
    """The handler of one SockJS session: a DDP session fed with its messages."""

    def __init__(self, runtime: DDPService, sockjs: SockJSSession) -> None:
        self.sockjs = sockjs
        self.limit = runtime.settings.DDP_MAX_MESSAGE_BYTES
        self.session = Session(
            runtime,
            send=sockjs.send,
            close=self._close,
            client_address=sockjs.client_address,
            http_headers=sockjs.http_headers,
            site_origin=site_origin({"scheme": sockjs.scheme}, sockjs.http_headers),
            cookie_login=sockjs.exclusive,
            transport_room=sockjs.drained,
        )
        self.session.start()

    async def _close(self, code: int, reason: str) -> None:
        await self.sockjs.close(*sockjs_close(code, reason))

    async def on_message(self, text: str) -> None:
        if len(text) > self.limit:
            self.session.conn.send(messages.error(f"Message too big (limit {self.limit} bytes)"))
            self.session.flush()
            await self.session.shutdown(1009, "message too big")
            return
        await self.session.feed(text)

    async def on_close(self) -> None:
        await self.session.stop()


def ddp_endpoint(runtime: DDPService, prefix: str = PREFIX) -> SockJSEndpoint:
    conf = runtime.settings
    return SockJSEndpoint(
        prefix,
        lambda sockjs: DDPHandler(runtime, sockjs),
        heartbeat_delay=45.0,
        disconnect_delay=60.0,
        # transport-level cap above the per-message one (a body or frame carries a batch),
        # so messages between the two get a DDP error first, as on the raw WebSocket
        max_message_bytes=2 * conf.DDP_MAX_MESSAGE_BYTES,
        max_queue_bytes=conf.DDP_MAX_OUTGOING_BYTES,
        origin_allowed=lambda scope, headers: origin_allowed(
            headers.get("origin"), site_origin(scope, headers), conf.DDP_ALLOWED_ORIGINS
        ),
        jsonp=conf.DDP_SOCKJS_JSONP,
        bind_sessions=True,
        max_sessions_per_address=conf.DDP_SOCKJS_MAX_SESSIONS_PER_ADDRESS or None,
    )
