"""``PullClient``: follow a remote model's feed from a saved position, forever.

    client = PullClient("https://shop.example.com/livedata/", "shop.customer",
                        token="...", fields=["id", "email"], filters={"country": "NZ"},
                        handle=saved_handle, offset=saved_offset)   # or neither: from scratch
    for batch in client:                 # or: async for batch in client
        if batch.refetch:
            forget_everything()          # a new snapshot starts (the old position expired)
        apply(batch.messages)            # dicts: {"op", "pk", "value", "old"?}
        save(batch.handle, batch.offset) # with the data, in one transaction

Snapshot pages come first, then changes; once up to date the client long-polls
(``live=True``, the default) or reads server-sent events (``sse=True``). Network errors,
5xx, 429 and 503 are retried with exponential back-off and jitter; a 409 (the position
is older than the server's change log, or the model's shape changed) restarts from the
beginning and marks the next batch ``refetch``. Other 4xx raise ``PullError``.

Uses httpx (sync and async in one library); imports nothing of Django.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

logger = logging.getLogger("livedata.pull.client")

RETRY_STATUS = frozenset({429, 500, 502, 503, 504})


class PullError(Exception):
    """The server refused the request (a 4xx other than 409): retrying will not help."""

    def __init__(self, status: int, body: Any) -> None:
        self.status = status
        self.body = body
        message = body.get("message") if isinstance(body, dict) else str(body)
        super().__init__(f"{status}: {message}")


@dataclass
class Batch:
    """One response of the feed."""

    messages: list[dict[str, Any]]
    handle: str
    offset: str  # ask for this next; save it with the data
    up_to_date: bool
    phase: str  # "snapshot" or "changes"
    #: the position was lost (409): discard the local copy before applying this batch
    refetch: bool = False
    estimate: int | None = None  # rows the snapshot expects (first page only)
    status: int = 200


@dataclass
class _State:
    handle: str | None
    offset: str
    up_to_date: bool = False
    refetch: bool = False
    failures: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


class PullClient:
    """A feed of ``model`` at ``base_url`` (where ``livedata.urls`` is mounted)."""

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        token: str | None = None,
        auth: tuple[str, str] | None = None,
        fields: Sequence[str] | None = None,
        filters: Mapping[str, Any] | None = None,
        handle: str | None = None,
        offset: str | None = None,
        limit: int | None = None,
        live: bool = True,
        sse: bool = False,
        timeout: float = 30.0,
        backoff: tuple[float, float] = (0.1, 30.0),
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.url = base_url.rstrip("/") + "/pull/" + model
        self.model = model
        self.fields = list(fields) if fields else None
        self.filters = {k: _param(v) for k, v in (filters or {}).items()}
        self.limit = limit
        self.live = live
        self.sse = sse
        self.timeout = timeout
        self.backoff = backoff
        self.headers = dict(headers or {})
        if token:
            self.headers["Authorization"] = f"Bearer {token}"
        self.auth = httpx.BasicAuth(*auth) if auth else None
        self.changes_only = offset == "now"
        start = offset if (handle and offset) or self.changes_only else "-1"
        self.state = _State(handle if start not in ("-1", "now") else None, start)

    @property
    def handle(self) -> str | None:
        return self.state.handle

    @property
    def offset(self) -> str:
        return self.state.offset

    # --- what both forms share ------------------------------------------------------

    def _params(self) -> dict[str, str]:
        params = dict(self.filters)
        params["offset"] = self.state.offset
        if self.state.handle and self.state.offset not in ("-1", "now"):
            params["handle"] = self.state.handle
        if self.fields:
            params["fields"] = ",".join(self.fields)
        if self.limit:
            params["limit"] = str(self.limit)
        if self.live and self.state.up_to_date and not self.sse:
            params["live"] = "true"
        return params

    def _read_timeout(self) -> float:
        # a held live request lasts up to the server's PULL_LIVE_TIMEOUT (20 s by default)
        return self.timeout + (40.0 if self.live and self.state.up_to_date else 0.0)

    def _delay(self) -> float:
        low, high = self.backoff
        self.state.failures += 1
        return min(high, low * 2 ** (self.state.failures - 1)) * random.uniform(0.5, 1.0)

    def _refetch(self, reason: str) -> None:
        logger.warning("livedata pull %s: must refetch (%s)", self.model, reason)
        # a changes-only client (offset="now") starts over at now: it never wanted the rows
        self.state = _State(None, "now" if self.changes_only else "-1", refetch=True)

    def _outcome(self, status: int, headers: Mapping[str, str], body: bytes) -> Batch | None:
        """The batch of a response, or None to retry (after ``_delay``)."""
        if status == 409:
            self._refetch(_text(body))
            return None
        if status in RETRY_STATUS:
            logger.warning("livedata pull %s: HTTP %s, retrying", self.model, status)
            return None
        if status >= 400:
            try:
                parsed: Any = json.loads(body)
            except ValueError:
                parsed = _text(body)
            raise PullError(status, parsed)
        messages = json.loads(body) if status != 304 else []
        return self._batch(messages, headers, status)

    def _batch(
        self, messages: list[dict[str, Any]], headers: Mapping[str, str], status: int
    ) -> Batch:
        handle = headers.get("livedata-handle") or self.state.handle or ""
        offset = headers.get("livedata-offset") or self.state.offset
        up = bool(headers.get("livedata-up-to-date"))
        estimate = headers.get("livedata-rows-estimate")
        batch = Batch(
            [m for m in messages if "control" not in m],
            handle,
            offset,
            up,
            headers.get("livedata-phase", "changes"),
            refetch=self.state.refetch,
            estimate=int(estimate) if estimate else None,
            status=status,
        )
        self.state = _State(handle, offset, up_to_date=up)
        return batch

    def _sse_batches(
        self, handle: str, lines: list[str], messages: list[dict[str, Any]]
    ) -> Iterator[Batch | str]:
        """Batches from server-sent event lines (``messages``: those of the batch being
        received, kept across events); a string is a control to act on."""
        for line in lines:
            if not line.startswith("data:"):
                continue
            item = json.loads(line[5:])
            control = item.get("control")
            if control is None:
                messages.append(item)
            elif control in ("offset", "up-to-date"):
                up = control == "up-to-date"
                phase = item.get("phase", "changes")
                batch = Batch(
                    list(messages), handle, item["offset"], up, phase, refetch=self.state.refetch
                )
                self.state = _State(handle, item["offset"], up_to_date=up)
                self.state.failures = 0
                messages.clear()
                yield batch
            else:
                yield control

    # --- sync -----------------------------------------------------------------------

    def __iter__(self) -> Iterator[Batch]:
        with httpx.Client(headers=self.headers, auth=self.auth) as http:
            while True:
                if self.sse:
                    yield from self._sync_sse(http)
                    if self.state.up_to_date and not self.live:
                        return
                    time.sleep(self._delay())
                    continue
                try:
                    response = http.get(self.url, params=self._params(), timeout=self._timeout())
                    batch = self._outcome(response.status_code, response.headers, response.content)
                except httpx.TransportError as exc:
                    logger.warning("livedata pull %s: %s, retrying", self.model, exc)
                    batch = None
                if batch is None:
                    time.sleep(self._delay())
                    continue
                yield batch
                if batch.up_to_date and not self.live:
                    return

    def _timeout(self) -> httpx.Timeout:
        return httpx.Timeout(self.timeout, read=self._read_timeout())

    def _sync_sse(self, http: httpx.Client) -> Iterator[Batch]:
        params = self._params()
        headers = {"Accept": "text/event-stream"}
        timeout = httpx.Timeout(self.timeout, read=self.timeout + 60.0)
        try:
            with http.stream("GET", self.url, params=params, headers=headers, timeout=timeout) as r:
                if r.status_code != 200:
                    batch = self._outcome(r.status_code, r.headers, r.read())
                    if batch is not None:
                        yield batch
                    return
                handle = r.headers.get("livedata-handle", "")
                pending: list[str] = []
                received: list[dict[str, Any]] = []
                for line in r.iter_lines():
                    pending.append(line)
                    if line:
                        continue
                    for item in self._sse_batches(handle, pending, received):
                        if isinstance(item, str):
                            if item == "must-refetch":
                                self._refetch("event stream")
                            return
                        yield item
                        if item.up_to_date and not self.live:
                            return
                    pending = []
        except httpx.TransportError as exc:
            logger.warning("livedata pull %s: %s, reconnecting", self.model, exc)

    # --- async ----------------------------------------------------------------------

    async def __aiter__(self) -> AsyncIterator[Batch]:
        async with httpx.AsyncClient(headers=self.headers, auth=self.auth) as http:
            while True:
                if self.sse:
                    async for batch in self._async_sse(http):
                        yield batch
                    if self.state.up_to_date and not self.live:
                        return
                    await asyncio.sleep(self._delay())
                    continue
                try:
                    response = await http.get(
                        self.url, params=self._params(), timeout=self._timeout()
                    )
                    batch = self._outcome(response.status_code, response.headers, response.content)
                except httpx.TransportError as exc:
                    logger.warning("livedata pull %s: %s, retrying", self.model, exc)
                    batch = None
                if batch is None:
                    await asyncio.sleep(self._delay())
                    continue
                yield batch
                if batch.up_to_date and not self.live:
                    return

    async def _async_sse(self, http: httpx.AsyncClient) -> AsyncIterator[Batch]:
        params = self._params()
        headers = {"Accept": "text/event-stream"}
        timeout = httpx.Timeout(self.timeout, read=self.timeout + 60.0)
        try:
            async with http.stream(
                "GET", self.url, params=params, headers=headers, timeout=timeout
            ) as r:
                if r.status_code != 200:
                    batch = self._outcome(r.status_code, r.headers, await r.aread())
                    if batch is not None:
                        yield batch
                    return
                handle = r.headers.get("livedata-handle", "")
                pending: list[str] = []
                received: list[dict[str, Any]] = []
                async for line in r.aiter_lines():
                    pending.append(line)
                    if line:
                        continue
                    for item in self._sse_batches(handle, pending, received):
                        if isinstance(item, str):
                            if item == "must-refetch":
                                self._refetch("event stream")
                            return
                        yield item
                        if item.up_to_date and not self.live:
                            return
                    pending = []
        except httpx.TransportError as exc:
            logger.warning("livedata pull %s: %s, reconnecting", self.model, exc)


def _param(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple | set):
        return ",".join(str(v) for v in value)
    return str(value)


def _text(body: bytes) -> str:
    try:
        parsed = json.loads(body)
        return str(parsed.get("message", parsed)) if isinstance(parsed, dict) else str(parsed)
    except ValueError:
        return body[:200].decode(errors="replace")
