"""uvicorn's HTTP and WebSocket protocols with the limits a public server needs.

uvicorn holds a connection that never sends a complete request for ever: 500 silent
sockets and 500 that sent half a request line were all held for 30 s and more (issue 19,
Slowloris), and it has no cap per client address. ``livedata serve`` runs these
subclasses of its httptools and websockets-sansio protocols instead (settings in
``livedata.conf``):

- ``HTTP_HEADER_TIMEOUT``: a request's headers must be complete this long after the
  connection opened (or after the request's first byte, on a kept-alive connection);
  else the connection is closed (with a 408 when part of a request came). Idle
  kept-alive connections are uvicorn's ``timeout_keep_alive``
  (``HTTP_KEEP_ALIVE_TIMEOUT``); a DDP connection that never sends ``connect`` is the
  DDP session's own ``DDP_CONNECT_TIMEOUT``.
- ``HTTP_MAX_HEADER_BYTES``: a request whose headers pass it gets 431 and is closed.
- ``HTTP_MAX_CONNECTIONS_PER_ADDRESS``: connections open at once from one client address
  in this process (WebSockets included); one more is answered 503 at once and closed.
  Trusted proxies (``HTTP_FORWARDED_ALLOW_IPS``) are not capped: they carry everyone's.
- ``HTTP_SHUTDOWN_PERIOD``: on shutdown, open WebSockets are closed evenly spread over
  this many seconds (``Drain``), not all at once.

Another ASGI server gets none of this: configure its own timeouts and limits.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from livedata.server.proxies import TrustedProxies

logger = logging.getLogger("livedata.server")


@dataclass(frozen=True)
class Limits:
    header_timeout: float
    max_header_bytes: int
    max_per_address: int
    #: peers not capped per address: they carry many clients' connections
    proxies: TrustedProxies = field(default_factory=TrustedProxies)

    @classmethod
    def from_settings(cls) -> Limits:
        from livedata.conf import livedata_settings

        conf = livedata_settings()
        return cls(
            conf.HTTP_HEADER_TIMEOUT,
            conf.HTTP_MAX_HEADER_BYTES,
            conf.HTTP_MAX_CONNECTIONS_PER_ADDRESS,
            TrustedProxies(conf.HTTP_FORWARDED_ALLOW_IPS),
        )


class Connections:
    """Open connections by client address (one process), followed across the upgrade
    from HTTP to WebSocket by their transport."""

    def __init__(self) -> None:
        self.by_address: dict[str, int] = {}
        self._address_of: dict[Any, str] = {}

    def open(self, transport: Any, address: str) -> int:
        """Count a new connection; returns how many ``address`` has open now."""
        self._address_of[transport] = address
        count = self.by_address.get(address, 0) + 1
        self.by_address[address] = count
        return count

    def close(self, transport: Any) -> None:
        address = self._address_of.pop(transport, None)
        if address is None:
            return
        left = self.by_address.get(address, 1) - 1
        if left > 0:
            self.by_address[address] = left
        else:
            self.by_address.pop(address, None)


connections = Connections()


class _Refusals:
    """Refused connections counted per address, logged at most once per ``EVERY`` s: a
    flood must not turn into a flood of log lines (a log pipe that fills blocks us)."""

    EVERY = 10

    def __init__(self) -> None:
        self._seen: dict[str, tuple[float, int]] = {}  # address: (last logged, since)

    def note(self, address: str) -> int:
        """Count one refusal; how many to log now (0: not yet)."""
        now = time.monotonic()
        logged, since = self._seen.get(address, (now - self.EVERY, 0))
        if now - logged >= self.EVERY:
            if len(self._seen) > 10_000:
                self._seen.clear()
            self._seen[address] = (now, 0)
            return since + 1
        self._seen[address] = (logged, since + 1)
        return 0


_refusals = _Refusals()


def _answer(status: bytes, text: str, extra: bytes = b"") -> bytes:
    body = text.encode()
    return (
        b"HTTP/1.1 " + status + b"\r\ncontent-type: text/plain; charset=utf-8\r\n"
        b"content-length: "
        + str(len(body)).encode()
        + b"\r\nconnection: close\r\n"
        + extra
        + b"\r\n"
        + body
    )


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a header timeout, a header size cap and a cap
    on connections per client address (see the module docstring)."""

    limits: ClassVar[Limits | None] = None  # read from the settings on first use

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if GuardedHttpToolsProtocol.limits is None:
            GuardedHttpToolsProtocol.limits = Limits.from_settings()
        self._header_timer: asyncio.TimerHandle | None = None
        self._header_bytes = 0
        self._in_headers = True  # waiting for a request's headers to be complete
        self._request_started = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        limits = self.limits
        assert limits is not None
        address = self.client[0] if self.client else ""
        count = connections.open(transport, address)
        capped = limits.max_per_address and not limits.proxies.trusts(address)
        if capped and count > limits.max_per_address:
            refused = _refusals.note(address)
            if refused:
                logger.warning(
                    "livedata: refused %d connection(s) from %s: over %d open from that "
                    "address (one line per address per %d s)",
                    refused,
                    address,
                    limits.max_per_address,
                    _Refusals.EVERY,
                )
            text = f"Too many connections from your address (limit {limits.max_per_address})."
            transport.write(_answer(b"503 Service Unavailable", text, b"retry-after: 5\r\n"))
            transport.close()
            return
        self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        connections.close(self.transport)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._in_headers and self.limits is not None:
            self._header_bytes += len(data)
        super().data_received(data)
        limits = self.limits
        assert limits is not None
        too_big = self._in_headers and self._header_bytes > limits.max_header_bytes
        if too_big and not self.transport.is_closing():
            logger.info("livedata: refused request headers over %d bytes", limits.max_header_bytes)
            self.transport.write(
                _answer(b"431 Request Header Fields Too Large", "Request headers too large.")
            )
            self.transport.close()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._request_started = True
        if not self._in_headers:  # a further request on a kept-alive connection
            self._in_headers = True
            self._header_bytes = 0
            self._arm_header_timer()

    def on_headers_complete(self) -> None:
        self._in_headers = False
        self._request_started = False
        self._cancel_header_timer()
        super().on_headers_complete()

    def _arm_header_timer(self) -> None:
        self._cancel_header_timer()
        assert self.limits is not None
        if self.limits.header_timeout:
            self._header_timer = self.loop.call_later(
                self.limits.header_timeout, self._header_timeout
            )

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_timeout(self) -> None:
        self._header_timer = None
        if self.transport.is_closing() or not self._in_headers:
            return
        if self._request_started:  # half a request: say why
            self.transport.write(_answer(b"408 Request Timeout", "Request headers took too long."))
        self.transport.close()


class Drain:
    """The closing times of a process's WebSockets on shutdown: the ``n`` open when it
    began are closed one every ``period / n`` seconds, the first at once (Meteor's
    ``@meteorjs/ddp-graceful-shutdown``), so their clients reconnect elsewhere in a
    trickle rather than all in the same millisecond."""

    def __init__(self, period: float, n: int) -> None:
        self.step = period / max(1, n)
        self.given = 0

    def next_delay(self) -> float:
        delay = self.given * self.step
        self.given += 1
        return delay


class GuardedWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's websockets-sansio protocol, releasing its connection's place in the
    per-address count when it ends (the count began as HTTP, before the upgrade), and
    closed on shutdown at its turn of ``HTTP_SHUTDOWN_PERIOD`` (``Drain``).

    uvicorn's shutdown stops listening, then calls every connection's ``shutdown`` at
    once and waits up to ``timeout_graceful_shutdown`` (``livedata serve`` sets it above
    the period) for them to be gone; the lifespan's shutdown (the listener, the pools)
    follows. Until its turn a connection is served as before."""

    @property
    def websocket_open(self) -> bool:
        """Accepted (counted in the shutdown's drain)."""
        return self.handshake_complete

    def connection_lost(self, exc: Exception | None) -> None:
        connections.close(self.transport)
        super().connection_lost(exc)

    def shutdown(self) -> None:
        delay = drain_delay(self) if self.handshake_complete else 0.0
        if delay <= 0:
            super().shutdown()
        else:
            asyncio.get_running_loop().call_later(delay, self._shutdown_now)

    def _shutdown_now(self) -> None:
        if not self.transport.is_closing():
            super().shutdown()


#: each server's drain (by its set of connections), made when its first connection is
#: told to shut down
_drains: dict[int, tuple[set[Any], Drain]] = {}


def drain_delay(protocol: Any) -> float:
    """Seconds until this open WebSocket's turn to close, in its server's ``Drain`` over
    ``HTTP_SHUTDOWN_PERIOD`` (uvicorn tells every connection to shut down at once)."""
    found = _drains.get(id(protocol.connections))
    if found is None or found[0] is not protocol.connections:
        from livedata.conf import livedata_settings

        open_sockets = sum(1 for c in protocol.connections if getattr(c, "websocket_open", False))
        period = livedata_settings().HTTP_SHUTDOWN_PERIOD
        found = (protocol.connections, Drain(period, open_sockets))
        _drains[id(protocol.connections)] = found
    return found[1].next_delay()
