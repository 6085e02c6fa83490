"""DDP over SockJS: each SockJS session carries one ``DDPSession`` (as Meteor's server),
whose frames go through the SockJS session's outbox (``SockJSCarrier``): one per
connection, with the DDP session's bound and streaming.

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
from livedata.server.ddp_session import SLOW_CLIENT, DDPSession
from livedata.server.origin import origin_allowed, site_origin
from livedata.server.sockjs.core import OUTBOX_LIMIT
from livedata.server.sockjs.endpoint import SockJSEndpoint
from livedata.server.sockjs.sockjs_session import SockJSSession

if TYPE_CHECKING:
    from livedata.server.ddp_session import Services

PREFIX = "/sockjs"


def sockjs_close(code: int, reason: str) -> tuple[int, str]:
    """A WebSocket-style close (from ``DDPSession.shutdown``) as a SockJS close frame: a
    normal close is SockJS's 3000 (keeping the reason); a slow client's is SockJS's own
    (``1008 Outgoing buffer limit``); other codes (1008 connect timeout, 1009 message too
    big) are meaningful to a client as they are."""
    if code == 1000:
        return 3000, reason or "Go away!"
    if (code, reason) == SLOW_CLIENT:
        return OUTBOX_LIMIT
    return code, reason


class SockJSCarrier:
    """Carries a DDP session's frames through its SockJS session: the outbox is the
    SockJS session's own (the connection has one), and its receivers take every queued
    frame at once when the client polls or streams (``outgoing.Carrier``)."""

    def __init__(self, sockjs: SockJSSession) -> None:
        self.sockjs = sockjs
        self.outbox = sockjs.outbox

    def carry(self) -> None:
        self.sockjs.carry()

    async def carry_now(self) -> None:
        self.sockjs.carry()  # a receiver writes them; nothing here waits for the client

    async def room(self, below: int) -> None:
        await self.sockjs.drained(below)

    async def close(self, code: int, reason: str) -> None:
        self.outbox.release()  # queued (held too), then the close frame
        await self.sockjs.close(*sockjs_close(code, reason))

    async def stop(self) -> None:
        pass  # the SockJS session closed first (its handler's on_close stops the DDP one)


class DDPHandler:
    """The handler of one SockJS session: a DDP session fed with its messages."""

    def __init__(self, services: Services, sockjs: SockJSSession) -> None:
        self.sockjs = sockjs
        self.limit = services.settings.DDP_MAX_MESSAGE_BYTES
        self.ddp_session = DDPSession(
            services,
            SockJSCarrier(sockjs),
            client_address=sockjs.client_address,
            http_headers=sockjs.http_headers,
            site_origin=site_origin({"scheme": sockjs.scheme}, sockjs.http_headers),
            cookie_login=sockjs.exclusive,
            transport="sockjs",
        )
        self.ddp_session.start()

    async def on_message(self, text: str) -> None:
        session = self.ddp_session
        if len(text) > self.limit:
            session.protocol.send(messages.error(f"Message too big (limit {self.limit} bytes)"))
            session.flush()
            await session.shutdown(1009, "message too big")
            return
        await session.feed(text)

    async def on_close(self) -> None:
        await self.ddp_session.stop()


def ddp_endpoint(services: Services, prefix: str = PREFIX) -> SockJSEndpoint:
    conf = services.settings
    return SockJSEndpoint(
        prefix,
        lambda sockjs: DDPHandler(services, sockjs),
        heartbeat_delay=45.0,
        disconnect_delay=60.0,
        # transport-level cap above the per-message one (a body or frame carries a batch),
        # so messages between the two get a DDP error first, as on the raw WebSocket
        max_message_bytes=2 * conf.DDP_MAX_MESSAGE_BYTES,
        max_queue_bytes=conf.DDP_MAX_OUTGOING_BYTES,  # the DDP session's outbox bound
        origin_allowed=lambda scope, headers: origin_allowed(
            headers.get("origin"), site_origin(scope, headers), conf.DDP_ALLOWED_ORIGINS
        ),
        jsonp=conf.DDP_SOCKJS_JSONP,
        bind_sessions=True,
        max_sessions_per_address=conf.DDP_SOCKJS_MAX_SESSIONS_PER_ADDRESS or None,
    )
