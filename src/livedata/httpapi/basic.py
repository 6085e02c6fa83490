"""HTTP Basic password checks: rate limited, on their own few threads, in turns.

A Basic request costs a password hash (Django's PBKDF2: ~0.3 s of CPU by design). The
penetration test of issue 19 sent 40 concurrent wrong passwords: all were hashed, none
was refused, and the checks held the threads every API request needs, so a correct
request of another user took 12 s. Now:

- **Rate limits** (``HTTP_API_BASIC_RATE_LIMITS``: 5 attempts per 10 s per username
  tried, 10 per client address, DDP login's numbers) are counted when an attempt
  *starts*, so concurrent attempts cannot all slip in before the first fails; one that
  succeeds is given back, so a service that authenticates correctly is never limited,
  only guessing is. Past a limit the answer is 429 with ``Retry-After``, at once, and
  nothing is hashed. The limiter is DDP's (``livedata.ddp.ratelimit``), in memory per
  process.
- **Their own threads** (``HTTP_API_BASIC_THREADS``): checks never run on the threads of
  the database work of other requests, nor, under ``livedata serve``, on Django's one
  sync thread (``server.without_middleware`` checks before the view runs).
- **In turns across client addresses**: each address has its own queue and the threads
  take one check from each in turn, so a flood from one address delays another
  address's check by at most the checks already running. At most
  ``HTTP_API_BASIC_MAX_WAITING`` checks wait; past that, 503 with ``Retry-After``.

The check itself is Django's ``authenticate`` (the project's backends, upgrade on login),
on a connection opened for it and closed after (a few ms beside the hash; no idle
connections are kept by these threads).
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from livedata.conf import livedata_settings
from livedata.ddp.ratelimit import RateLimiter, Rule
from livedata.httpapi.errors import ApiError

METHOD = "http-basic"


class Busy(Exception):
    """Too many checks are waiting."""


class FairPool:
    """A few threads running jobs in turns across keys (client addresses)."""

    def __init__(self, name: str, threads: Callable[[], int]) -> None:
        self.name = name
        self._threads = threads
        self._cond = threading.Condition()
        self._queues: OrderedDict[str, deque[tuple[Future[Any], Callable[[], Any]]]] = OrderedDict()
        self._waiting = 0
        self._started = 0

    def submit(self, key: str, job: Callable[[], Any], max_waiting: int) -> Future[Any]:
        future: Future[Any] = Future()
        with self._cond:
            if self._waiting >= max_waiting:
                raise Busy
            self._queues.setdefault(key, deque()).append((future, job))
            self._waiting += 1
            wanted = self._threads()
            while self._started < wanted:
                self._started += 1
                threading.Thread(
                    target=self._work, name=f"{self.name}-{self._started}", daemon=True
                ).start()
            self._cond.notify()
        return future

    def _take(self) -> tuple[Future[Any], Callable[[], Any]]:
        with self._cond:
            while not self._queues:
                self._cond.wait()
            key, queue = self._queues.popitem(last=False)
            item = queue.popleft()
            if queue:
                self._queues[key] = queue  # to the back: the next key goes first
            self._waiting -= 1
            return item

    def _work(self) -> None:
        while True:
            future, job = self._take()
            if not future.set_running_or_notify_cancel():
                continue
            try:
                result = job()
            except BaseException as exc:
                future.set_exception(exc)
            else:
                future.set_result(result)


_pool = FairPool("livedata-basic", lambda: livedata_settings().HTTP_API_BASIC_THREADS)
_limiter_lock = threading.Lock()
_limiter: tuple[str, RateLimiter] | None = None


def rules_from_setting(specs: Any) -> list[Rule]:
    """``HTTP_API_BASIC_RATE_LIMITS`` as limiter rules; ``ValueError`` if malformed."""
    rules = []
    for spec in specs:
        if not isinstance(spec, dict) or spec.get("per") not in ("user", "client_address"):
            raise ValueError(
                f"HTTP Basic rate limit {spec!r}: needs 'per': 'user' or 'client_address'"
            )
        rules.append(Rule.from_setting({**spec, "methods": [METHOD]}))
    return rules


def _the_limiter() -> RateLimiter:
    global _limiter
    specs = livedata_settings().HTTP_API_BASIC_RATE_LIMITS
    key = repr(specs)
    if _limiter is None or _limiter[0] != key:
        _limiter = (key, RateLimiter(rules_from_setting(specs)))
    return _limiter[1]


def _who(request: Any, username: str) -> dict[str, Any]:
    return {
        "connection": None,
        "client_address": request.META.get("REMOTE_ADDR") or "unknown",
        "user": username.casefold()[:254],
    }


def _admit(request: Any, username: str) -> None:
    """Count this attempt; 429 with ``Retry-After`` past a limit."""
    with _limiter_lock:
        refused = _the_limiter().check(METHOD, time.monotonic(), **_who(request, username))
    if refused is not None:
        wait = max(1, math.ceil(refused.details["timeToReset"] / 1000))
        raise ApiError(
            429,
            f"too many authentication attempts: wait {wait} s, or use a bearer token",
            headers={"Retry-After": str(wait)},
        )


def _refund(request: Any, username: str) -> None:
    with _limiter_lock:
        _the_limiter().refund(METHOD, time.monotonic(), **_who(request, username))


def _check(request: Any, username: str, password: str) -> Any:
    """Django's ``authenticate`` on a fresh connection, closed after (pool thread)."""
    from django.contrib import auth
    from django.db import connections

    try:
        return auth.authenticate(request, username=username, password=password)
    finally:
        connections.close_all()


def _submit(request: Any, username: str, password: str) -> Future[Any]:
    _admit(request, username)
    address = request.META.get("REMOTE_ADDR") or "unknown"
    try:
        return _pool.submit(
            address,
            lambda: _check(request, username, password),
            livedata_settings().HTTP_API_BASIC_MAX_WAITING,
        )
    except Busy:
        _refund(request, username)  # not the caller's failure
        raise ApiError(
            503, "too many password checks are waiting; retry", headers={"Retry-After": "1"}
        ) from None


def _outcome(request: Any, username: str, user: Any) -> Any:
    if user is None:
        return None
    _refund(request, username)
    return user


def check(request: Any, username: str, password: str) -> Any:
    """The user these credentials authenticate, or None (wrong); waits in this thread.
    Raises ``ApiError`` 429/503."""
    future = _submit(request, username, password)
    return _outcome(request, username, future.result())


async def acheck(request: Any, username: str, password: str) -> Any:
    """``check`` without holding a thread while the password is hashed."""
    future = _submit(request, username, password)
    return _outcome(request, username, await asyncio.wrap_future(future))
