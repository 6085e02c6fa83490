"""Outgoing HTTP for webhooks: aiohttp, with the address guard, timeouts and a size cap.

aiohttp was measured against httpx sending the same PUTs to the same local receiver
(bench/webhooks.py, "bare client" rows): about 3x the rate one request at a time and
10x or more with 10-100 concurrent requests, so it is the client here.

Every socket is made by ``guarded_socket``, which aiohttp calls with the address it is
about to connect to (after DNS, for every attempt of happy eyeballs): refused addresses
(see ``livedata.webhooks.addresses``) never get a connection, whatever the URL says and
however its name resolves at that moment. Redirects are not followed (a webhook is
acknowledged by a 2xx from the URL itself).
"""

from __future__ import annotations

import email.utils
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp

from livedata.conf import LivedataSettings
from livedata.webhooks.addresses import refusal

USER_AGENT = "livedata-webhooks/0.1 (+Standard Webhooks)"
EXCERPT_CHARS = 1000


@dataclass(frozen=True, slots=True)
class Result:
    """What came of one attempt."""

    outcome: str  # "delivered" | "failed" | "error" | "gone"
    status: int | None
    error: str
    excerpt: str
    latency_ms: float
    retry_after: float | None = None

    @property
    def ok(self) -> bool:
        return self.outcome == "delivered"


class RefusedAddress(OSError):
    pass


def socket_factory(allowed: Iterable[str]) -> Any:
    allowed = tuple(allowed)

    def guarded_socket(addr_info: Any) -> socket.socket:
        family, type_, proto, _, sockaddr = addr_info
        problem = refusal(str(sockaddr[0]), allowed)
        if problem:
            raise RefusedAddress(problem)
        return socket.socket(family=family, type=type_, proto=proto)

    return guarded_socket


def retry_after(value: str | None, longest: float) -> float | None:
    """Seconds from a ``Retry-After`` header (seconds or an HTTP date), capped."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), longest)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return min(max((when - datetime.now(UTC)).total_seconds(), 0.0), longest)


class Transport:
    """One aiohttp session per worker; ``put`` never raises for the receiver's faults."""

    def __init__(self, conf: LivedataSettings) -> None:
        self.conf = conf
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        if self._session is not None:
            return
        connector = aiohttp.TCPConnector(
            limit=0,  # every subscription has at most one request in flight
            ttl_dns_cache=10,
            socket_factory=socket_factory(self.conf.WEBHOOK_ALLOWED_NETWORKS),
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(
                total=self.conf.WEBHOOK_TIMEOUT, sock_connect=self.conf.WEBHOOK_CONNECT_TIMEOUT
            ),
            headers={"User-Agent": USER_AGENT},
            auto_decompress=False,
            trust_env=False,
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def put(self, url: str, body: bytes, headers: dict[str, str]) -> Result:
        """PUT ``body`` (JSON) to ``url``; ``headers`` is used (and extended) as is."""
        await self.start()
        assert self._session is not None
        cap = self.conf.WEBHOOK_MAX_RESPONSE_BYTES
        started = time.perf_counter()
        try:
            headers["Content-Type"] = "application/json"
            async with self._session.put(
                url, data=body, headers=headers, allow_redirects=False
            ) as response:
                data = bytearray()
                length = response.content_length
                if length is not None and length <= cap:
                    data += await response.read()
                else:
                    while len(data) <= cap:
                        chunk = await response.content.read(cap + 1 - len(data))
                        if not chunk:
                            break
                        data += chunk
                    if len(data) > cap:
                        response.close()  # do not read (or reuse the connection for) the rest
                latency = (time.perf_counter() - started) * 1000
                status = response.status
                excerpt = bytes(data[:EXCERPT_CHARS]).decode("utf-8", "replace")
                if 200 <= status < 300:
                    return Result("delivered", status, "", excerpt, latency)
                if status == 410:
                    return Result("gone", status, "410 Gone", excerpt, latency)
                wait = None
                if status in (429, 503):
                    wait = retry_after(
                        response.headers.get("Retry-After"), self.conf.WEBHOOK_MAX_RETRY_AFTER
                    )
                reason = response.reason or ""
                return Result(
                    "failed", status, f"{status} {reason}".strip(), excerpt, latency, wait
                )
        except TimeoutError:
            latency = (time.perf_counter() - started) * 1000
            return Result("error", None, f"timed out after {latency / 1000:.1f} s", "", latency)
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            latency = (time.perf_counter() - started) * 1000
            return Result("error", None, _describe(exc), "", latency)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, aiohttp.ClientConnectorError) and isinstance(exc.os_error, RefusedAddress):
        return f"refused: {exc.os_error}"
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:500]
