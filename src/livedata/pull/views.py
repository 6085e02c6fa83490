"""The feed's HTTP endpoint: ``GET <prefix>/pull/<app.model>`` (async: ASGI, ``livedata serve``).

JSON answers (one page per request; ``live=true`` holds it until there is something new
or ``PULL_LIVE_TIMEOUT`` passes) and server-sent events (``Accept: text/event-stream``:
the same messages, streamed from the offset on, then live). See the README's "Pull".
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

from django.db import InterfaceError, OperationalError
from django.http import HttpResponse, StreamingHttpResponse

from livedata.capture.log import Position
from livedata.conf import livedata_settings
from livedata.httpapi import ApiError, api_view, require_perm
from livedata.httpapi.views import run_in_db_thread
from livedata.pull import live
from livedata.pull.position import Handle, Offset, parse_offset
from livedata.pull.reader import MustRefetch, Page, read_changes, read_snapshot
from livedata.pull.spec import FeedSpec, parse

UP_TO_DATE = '{"control":"up-to-date"}'


@api_view("GET")
async def feed(request: Any, label: str) -> HttpResponse:
    spec = parse(label, request.GET)
    offset = parse_offset(request.GET.get("offset"))
    handle = _handle(spec, request.GET.get("handle"), offset)
    live_mode = request.GET.get("live", "").lower() in ("true", "1")
    user = request.api_user
    try:
        if "text/event-stream" in request.headers.get("Accept", ""):
            await run_in_db_thread(require_perm, user, spec.model, "view")
            return await _event_stream(spec, handle, offset)
        if offset.kind != "changes":
            read = functools.partial(read_snapshot, spec, handle, offset, joined=True)
            page = await live.in_db_thread(_allowed, user, spec, read)
        elif live_mode:
            await run_in_db_thread(require_perm, user, spec.model, "view")
            page = await _live_page(spec, handle, offset.position)  # type: ignore[arg-type]
        else:
            read = functools.partial(read_changes, spec, handle, offset.position)
            page = await live.in_db_thread(_allowed, user, spec, read)
    except MustRefetch as exc:
        raise exc.error() from None
    except (OperationalError, InterfaceError):
        raise _unavailable() from None
    return _json_response(request, spec, page, offset, live_mode)


def _allowed(user: Any, spec: FeedSpec, read: Callable[[], Page]) -> Page:
    """The permission check and the read in one trip to a database thread."""
    require_perm(user, spec.model, "view")
    return read()


def _unavailable() -> ApiError:
    return ApiError(503, "the database is unavailable; retry shortly", headers={"Retry-After": "1"})


def _handle(spec: FeedSpec, raw: str | None, offset: Offset) -> Handle | None:
    if offset.kind in ("start", "now"):
        return None  # a new feed (a handle sent along is ignored, as a cache buster)
    if not raw:
        raise ApiError(
            400, "handle is required with this offset (the Livedata-Handle)", field="handle"
        )
    handle = Handle.decode(raw)
    if handle.model != spec.label:
        raise ApiError(400, f"this handle is for {handle.model}, not {spec.label}", field="handle")
    if handle.params != spec.params_digest():
        raise ApiError(
            400,
            "this handle was issued for other fields or filters: send the same ones, "
            "or start again with offset=-1",
            field="handle",
        )
    if handle.shape != spec.shape_fingerprint():
        raise ApiError(
            409,
            f"the published shape of {spec.label} changed: start again from offset=-1",
            code="must-refetch",
        )
    if offset.kind == "changes":
        assert offset.position is not None
        # every transaction below S1's xmin is in the snapshot: a position that has not
        # had them all was not made from this feed (changes S1 saw are not sent twice)
        if offset.position.snapshot.xmin < handle.snapshot.xmin:
            raise ApiError(400, "offset is before this feed's snapshot", field="offset")
    return handle


def _json_response(
    request: Any, spec: FeedSpec, page: Page, asked: Offset, live_mode: bool
) -> HttpResponse:
    messages = page.messages + ([UP_TO_DATE] if page.up_to_date else [])
    headers = _headers(spec, page)
    if live_mode and asked.kind == "changes":
        cache = "no-store"
        etag = None
    else:
        raw = "|".join(
            [headers["Livedata-Handle"], asked.encode(), str(spec.limit), page.offset.encode()]
        )
        etag = '"' + hashlib.sha256(f"{raw}|{page.up_to_date}".encode()).hexdigest()[:24] + '"'
        # a page is fixed by its request when it is a snapshot page after the first, or a
        # full page of changes inside a step begun (the step's end is in the offset); a
        # page of changes from a snapshot position is read up to the current snapshot
        fixed = asked.kind == "snapshot" or (
            asked.kind == "changes" and asked.position is not None and not asked.position.complete
        )
        if page.up_to_date or not fixed:
            cache = "private, no-cache"  # a later read may differ
        else:
            cache = "private, max-age=604800, immutable"  # this page never changes
    if etag is not None and etag in request.headers.get("If-None-Match", ""):
        response = HttpResponse(status=304)
    else:
        response = HttpResponse("[" + ",".join(messages) + "]", content_type="application/json")
    for name, value in headers.items():
        response[name] = value
    if etag is not None:
        response["ETag"] = etag
    response["Cache-Control"] = cache
    response["Vary"] = "Authorization, Cookie, Accept"
    return response


def _headers(spec: FeedSpec, page: Page) -> dict[str, str]:
    headers = {
        "Livedata-Handle": page.handle.encode(),
        "Livedata-Offset": page.offset.encode(),
        "Livedata-Phase": page.phase,
        "Livedata-Limit": str(spec.limit),
    }
    if page.up_to_date:
        headers["Livedata-Up-To-Date"] = "true"
    if page.estimate is not None:
        headers["Livedata-Rows-Estimate"] = str(page.estimate)
    return headers


# --- live: long-poll ------------------------------------------------------------------


async def _changes_now(
    spec: FeedSpec, handle: Handle, position: Position, note: live.Notifier | None
) -> tuple[list[str], Position, bool]:
    """What is new after ``position``: from the notifier's memory, else from the database.

    Returns (messages, next position, up to date).
    """
    if note is not None:
        got = note.answer(spec, handle, position)
        if got is not None:
            return got[0], got[1], len(got[0]) < spec.limit
    page = await live.in_db_thread(read_changes, spec, handle, position)
    assert page.offset.position is not None
    return page.messages, page.offset.position, page.up_to_date


async def _live_page(spec: FeedSpec, handle: Handle, position: Position) -> Page:
    """Hold the request until there are messages after ``position`` or the timeout."""
    conf = livedata_settings()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + conf.PULL_LIVE_TIMEOUT
    note = live.notifier()

    def page(messages: list[str], at: Position, up: bool = True) -> Page:
        return Page(handle, messages, Offset("changes", position=at), up_to_date=up)

    while True:
        messages, position, up = await _changes_now(spec, handle, position, note)
        if messages or not up:
            return page(messages, position, up)
        remaining = deadline - loop.time()
        if remaining <= 0:
            return page([], position)
        if note is None:  # no listener in this process: poll
            await asyncio.sleep(min(conf.LISTENER_POLL_INTERVAL, remaining))
            continue
        waiter = note.register(spec, handle, position)
        try:
            item = await asyncio.wait_for(waiter.inbox.get(), remaining)
        except TimeoutError:
            return page([], waiter.position)
        finally:
            note.unregister(waiter)
        if isinstance(item, Exception):
            raise item
        if item is None:  # the notifier lost track: read the database again
            position = waiter.position
            continue
        return page(item[0], item[1])


# --- live: server-sent events ---------------------------------------------------------


def _event(text: str) -> bytes:
    return f"data: {text}\n\n".encode()


def _control(kind: str, offset: Offset, phase: str = "changes") -> bytes:
    return _event(json.dumps({"control": kind, "offset": offset.encode(), "phase": phase}))


async def _event_stream(spec: FeedSpec, handle: Handle | None, offset: Offset) -> HttpResponse:
    first: Page | None = None
    if offset.kind != "changes":
        first = await live.in_db_thread(read_snapshot, spec, handle, offset)
        handle = first.handle
    assert handle is not None
    note = live.notifier()
    if note is not None and note.count >= livedata_settings().PULL_MAX_LIVE_CLIENTS:
        note.register(spec, handle, Position(handle.snapshot))  # raises the 503
    response = StreamingHttpResponse(
        _events(spec, handle, offset, first, note), content_type="text/event-stream"
    )
    response["Cache-Control"] = "no-store"
    response["X-Accel-Buffering"] = "no"  # nginx: do not buffer the stream
    response["Livedata-Handle"] = handle.encode()
    return response


async def _events(
    spec: FeedSpec,
    handle: Handle,
    offset: Offset,
    first: Page | None,
    note: live.Notifier | None,
) -> AsyncIterator[bytes]:
    conf = livedata_settings()
    try:
        page = first
        while offset.kind != "changes":
            if page is None:
                page = await live.in_db_thread(read_snapshot, spec, handle, offset)
            yield b"".join(_event(m) for m in page.messages) + _control(
                "offset", page.offset, "snapshot"
            )
            offset, page = page.offset, None
        assert offset.position is not None
        position = offset.position
        while True:
            messages, position, up = await _changes_now(spec, handle, position, note)
            at = Offset("changes", position=position)
            yield b"".join(_event(m) for m in messages) + _control(
                "up-to-date" if up else "offset", at
            )
            if not up:
                continue
            if note is None:
                await asyncio.sleep(conf.LISTENER_POLL_INTERVAL)
                continue
            waiter = note.register(spec, handle, position)
            try:
                while True:
                    try:
                        item = await asyncio.wait_for(waiter.inbox.get(), conf.PULL_SSE_KEEPALIVE)
                    except TimeoutError:
                        yield b": keep-alive\n\n"
                        continue
                    if item is None or isinstance(item, Exception):
                        break
                    messages, position = item
                    yield b"".join(_event(m) for m in messages) + _control(
                        "up-to-date", Offset("changes", position=position)
                    )
            finally:
                note.unregister(waiter)
            if isinstance(item, Exception):
                raise item
            if item is None and waiter.position.covers(position):
                position = waiter.position
    except MustRefetch:
        yield _event('{"control":"must-refetch"}')
    except (OperationalError, InterfaceError):
        yield _event('{"control":"retry"}')  # the database went away: reconnect later
