"""The broker that carries the leader's batches to every process: a Redis stream.

With ``LIVEDATA["LISTENER_BROKER_URL"]`` set, one process of the cluster (the leader,
``livedata.capture.leader``) reads the log and appends each batch (``capture.wire``) to
one stream; every process reads the stream and offers the batches to its followers.
Redis Streams were measured against NATS JetStream (``bench/broker.py``): the same
latency for small batches, 1.6-2x the throughput for large ones, and ``XREAD`` from an
entry id resumes a reader exactly where it was.

The broker is only a carrier. Entries hold positions, so a reader that misses some
(trimmed, the broker restarted empty, its own reconnect) sees a batch that does not
start where its followers are, and they read the gap from PostgreSQL. The stream is
kept short (``LISTENER_BROKER_MAXLEN`` entries, trimmed approximately).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

#: Schemes redis-py connects with (TCP, TLS, a Unix socket).
SCHEMES = ("redis", "rediss", "unix")


class BrokerUnavailable(ConnectionError):
    """The broker cannot be reached (or answered with an error): read PostgreSQL instead."""


def check_url(url: str) -> str:
    """``url`` if it is a broker URL livedata can use, else a ``ValueError`` saying why."""
    if not isinstance(url, str):
        raise ValueError(f"{url!r} is not a string")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises on a port that is not a number)
    except ValueError as exc:
        raise ValueError(f"{url!r} is not a URL ({exc})") from None
    if parts.scheme not in SCHEMES:
        raise ValueError(
            f"{url!r}: the broker is Redis (Streams), so the URL starts with "
            "redis://, rediss:// or unix://"
        )
    if parts.scheme != "unix" and not parts.hostname:
        raise ValueError(f"{url!r} names no host")
    if parts.scheme == "unix" and not parts.path:
        raise ValueError(f"{url!r} names no socket path")
    return url


def describe_url(url: str) -> str:
    """``url`` without its password (for log messages)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username or ''}:***@{parts.hostname}"
    netloc += f":{parts.port}" if parts.port else ""
    return parts._replace(netloc=netloc).geturl()


class Stream:
    """One Redis stream: appended to by the leader, read by every process.

    Two connections: ``XREAD BLOCK`` holds one while it waits, and the leader appends on
    the other. Errors of either become ``BrokerUnavailable``. redis-py retries a command
    once, at once (a pooled connection the broker dropped), not with its default back-off:
    a process should move to PostgreSQL without waiting. An append retried after a lost
    reply may be in the stream twice; followers drop a batch they already have.
    """

    def __init__(self, url: str, key: str, *, maxlen: int, block: float = 1.0) -> None:
        import redis.asyncio as redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        self.url = check_url(url)
        self.key = key
        self.maxlen = maxlen
        self.block_ms = max(1, int(block * 1000))

        def client(timeout: float) -> Any:
            return redis.Redis.from_url(
                url,
                socket_connect_timeout=2.0,
                socket_timeout=timeout,
                retry=Retry(NoBackoff(), 1),
                health_check_interval=0,
            )

        self._writer = client(5.0)
        self._reader = client(block + 5.0)

    async def ping(self) -> None:
        await self._call(self._writer.ping())

    async def append(self, data: bytes) -> str:
        """Add an entry; returns its id."""
        entry = await self._call(
            self._writer.xadd(self.key, {"b": data}, maxlen=self.maxlen, approximate=True)
        )
        return entry.decode() if isinstance(entry, bytes) else str(entry)

    async def last_id(self) -> str:
        """The id of the newest entry ("0-0" when the stream is empty or missing)."""
        got = await self._call(self._reader.xrevrange(self.key, count=1))
        return got[0][0].decode() if got else "0-0"

    async def read(self, after: str, count: int = 100) -> list[tuple[str, bytes]]:
        """Entries after id ``after`` (waits up to ``block`` seconds for one)."""
        got = await self._call(
            self._reader.xread({self.key: after}, count=count, block=self.block_ms)
        )
        entries = got[0][1] if got else []
        return [(entry_id.decode(), fields.get(b"b", b"")) for entry_id, fields in entries]

    async def close(self) -> None:
        for client in (self._writer, self._reader):
            await client.aclose()

    async def _call(self, awaitable: Any) -> Any:
        from redis.exceptions import RedisError

        try:
            return await awaitable
        except (RedisError, OSError) as exc:
            raise BrokerUnavailable(
                f"broker {describe_url(self.url)}: {exc or type(exc).__name__}"
            ) from exc
