"""Method rate limits, as Meteor's DDPRateLimiter (sans-I/O: time is passed in).

A rule names the methods it covers, what it counts per (the connection, the client's
address, or the user) and how many calls it allows in a window of seconds. Each rule
counts every call it covers, rejected ones included (as Meteor does), in a fixed window
per bucket. A call is refused by the first rule whose bucket is full, with Meteor's error:

    {"error": "too-many-requests",
     "reason": "Error, too many requests. Please slow down. You must wait 9 seconds
                before trying again.",
     "details": {"timeToReset": 8731}}

Meteor's default (login, createUser, resetPassword, forgotPassword: 5 calls per 10 s per
connection) is in ``livedata.conf``; livedata adds the same methods per client address, so
reconnecting does not reset a brute-force budget. A method can also declare its own
rules where it is defined (``@method(rate_limits=...)``, Meteor's
``DDPRateLimiter.addRule`` next to the method): ``Rule.for_method`` makes them, and
``check`` counts them besides the settings' rules. The HTTP APIs' Basic authentication
uses the same limiter per attempted username and client address (``refund`` gives a
successful attempt back).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from livedata.ddp.errors import DDPError

PER = ("connection", "client_address", "user")


@dataclass(frozen=True)
class Rule:
    #: method names, or ("*",) for every method
    methods: frozenset[str]
    per: str
    calls: int
    seconds: float

    @classmethod
    def from_setting(cls, spec: Mapping[str, Any]) -> Rule:
        methods = spec.get("methods")
        if isinstance(methods, str):
            methods = (methods,)
        if not methods or not all(isinstance(m, str) for m in methods):
            raise ValueError(f"rate limit {dict(spec)!r}: 'methods' must list method names")
        per = spec.get("per", "connection")
        if per not in PER:
            raise ValueError(f"rate limit {dict(spec)!r}: 'per' must be one of {PER}")
        calls, seconds = spec.get("calls"), spec.get("seconds")
        if not isinstance(calls, int) or calls < 1 or not isinstance(seconds, int | float):
            raise ValueError(f"rate limit {dict(spec)!r}: needs 'calls' >= 1 and 'seconds'")
        return cls(frozenset(methods), per, calls, float(seconds))

    @classmethod
    def for_method(cls, name: str, spec: Mapping[str, Any]) -> Rule:
        """A rule declared on method ``name``: ``{"per", "calls", "seconds"}``."""
        if not isinstance(spec, Mapping):
            raise ValueError(
                f"rate limit of {name!r}: a dict like "
                '{"per": "connection", "calls": 5, "seconds": 10}, not ' + repr(spec)
            )
        if "methods" in spec:
            raise ValueError(f"rate limit of {name!r}: 'methods' is the method itself")
        return cls.from_setting({**spec, "methods": (name,)})

    def covers(self, method: str) -> bool:
        return "*" in self.methods or method in self.methods


class RateLimiter:
    """Shared by every connection of a process."""

    #: prune expired buckets when more than this many are held
    MAX_BUCKETS = 10_000

    def __init__(self, rules: Iterable[Rule]) -> None:
        self.rules = list(rules)
        #: key → [window start, count, window length]
        self._buckets: dict[tuple[Any, ...], list[float]] = {}

    def check(
        self,
        method: str,
        now: float,
        *,
        connection: str | None,
        client_address: str | None,
        user: Any,
        own: Iterable[Rule] = (),
    ) -> DDPError | None:
        """Count this call; the error to answer it with when a limit is exceeded.

        ``own``: the rules the method declared itself (``@method(rate_limits=...)``)."""
        refused: float | None = None
        for key, rule in self._applying(method, connection, client_address, user, own):
            bucket = self._buckets.get(key)
            if bucket is None or now - bucket[0] >= rule.seconds:
                bucket = self._buckets[key] = [now, 0, rule.seconds]
            bucket[1] += 1
            if bucket[1] > rule.calls:
                left = bucket[0] + rule.seconds - now
                refused = left if refused is None else max(refused, left)
        if len(self._buckets) > self.MAX_BUCKETS:
            self._prune(now)
        if refused is None:
            return None
        wait_ms = max(0, int(refused * 1000))
        return DDPError(
            "too-many-requests",
            "Error, too many requests. Please slow down. You must wait "
            f"{math.ceil(wait_ms / 1000)} seconds before trying again.",
            {"timeToReset": wait_ms},
        )

    def refund(
        self,
        method: str,
        now: float,
        *,
        connection: str | None,
        client_address: str | None,
        user: Any,
    ) -> None:
        """Give back a call counted by ``check`` (still in its window): for limits on
        failures, such as wrong passwords, where each attempt is counted as it starts (so
        concurrent attempts cannot all slip in) and one that succeeded is returned."""
        for key, rule in self._applying(method, connection, client_address, user, ()):
            bucket = self._buckets.get(key)
            if bucket is not None and now - bucket[0] < rule.seconds and bucket[1] > 0:
                bucket[1] -= 1

    def _applying(
        self,
        method: str,
        connection: str | None,
        client_address: str | None,
        user: Any,
        own: Iterable[Rule],
    ) -> Iterator[tuple[tuple[Any, ...], Rule]]:
        """The rules that count this call, each with its bucket's key: one definition for
        ``check`` and ``refund``, so a refund always finds the bucket it gives back to."""
        who = {"connection": connection, "client_address": client_address, "user": user}
        ruled = [(("settings", i), r) for i, r in enumerate(self.rules)]
        ruled += [(("own", i), r) for i, r in enumerate(own)]
        for index, rule in ruled:
            if rule.covers(method) and who[rule.per] is not None:
                yield (index, method, who[rule.per]), rule

    def _prune(self, now: float) -> None:
        # a bucket's window is kept in it: drop those whose window has passed
        self._buckets = {k: b for k, b in self._buckets.items() if now - b[0] < b[2]}
