"""The feed's positions: the signed handle and the offset.

- The **handle** names one feed instance: the model, the PostgreSQL snapshot its rows were
  copied at (``xmin``, ``xmax``, ``xip``), the fields and filters it was started with, and
  the model's shape then. It is signed with Django's ``signing`` (``SECRET_KEY``), so the
  server keeps no state between requests and a forged or damaged handle is a precise 400.
- The **offset** is where in that feed the client is: ``-1`` (start; ``now`` starts
  without the rows, with only the changes after it), ``s<key>`` (copying the snapshot;
  every row with a key up to ``key`` was sent) or ``c<position>`` (following the change
  log: a ``livedata.capture.position.Position``, i.e. a PostgreSQL snapshot whose
  transactions were all sent, plus, inside a large read, the step's end snapshot and the
  last row id sent). Offsets are checked against the handle; tampering with one can only
  hurt the client that does it. The old ``<txid>_<id>`` offsets (livedata 0.1) are still
  accepted (``Position.from_cursor``).

The change offset's encoding (compact and URL-safe: letters, digits, ``-``, ``_``,
``.``): ``c``, then the snapshot as unsigned integers in a base-64 varint (the URL-safe
base64 alphabet; each character holds 5 bits, its 6th bit says "more follows"; most
significant group first): ``xmin``, ``xmax - xmin``, then each transaction in flight
after the first (which is ``xmin`` itself) as its distance from the previous one. Inside
a step, ``.`` and the step's end snapshot in the same form, then ``.`` and the last row
id. So ``c8g2ZA`` is ``918233:918233:`` (nothing in flight): 6 characters with 7-digit
xids; ``c8g2Zp4Q`` is ``918233:928233:918233`` (one transaction in flight, 10,000 xids
old): 8. Each further transaction in flight adds one character per 5 bits of its
distance to the previous one: 100 in flight spread over 4,000 xids take about 150
characters (``pg_snapshot``'s text: about 710).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from typing import Any

from django.core import signing
from django.core.serializers.json import DjangoJSONEncoder

from livedata.capture.position import Position, Snapshot
from livedata.httpapi import ApiError

SALT = "livedata.pull.handle"
VERSION = 1


@dataclass(frozen=True)
class Handle:
    model: str
    snapshot: Snapshot
    params: str  # FeedSpec.params_digest()
    shape: str  # FeedSpec.shape_fingerprint()

    def encode(self) -> str:
        s = self.snapshot
        payload = {
            "v": VERSION,
            "m": self.model,
            "s": [s.xmin, s.xmax - s.xmin, sorted(x - s.xmin for x in s.xip)],
            "p": self.params,
            "f": self.shape,
        }
        return signing.dumps(payload, salt=SALT, compress=True)

    @classmethod
    def decode(cls, text: str) -> Handle:
        try:
            payload = signing.loads(text, salt=SALT)
        except signing.BadSignature:
            raise ApiError(
                400, "invalid handle: not one this server issued (or damaged)", field="handle"
            ) from None
        try:
            if payload["v"] != VERSION:
                raise ApiError(409, "handle of an older protocol version", code="must-refetch")
            xmin, span, xip = payload["s"]
            xips = tuple(sorted(int(xmin) + int(x) for x in xip))
            snapshot = Snapshot(
                xips[0] if xips else int(xmin) + int(span), int(xmin) + int(span), xips
            )
            return cls(str(payload["m"]), snapshot, str(payload["p"]), str(payload["f"]))
        except (KeyError, TypeError, ValueError):
            raise ApiError(400, "invalid handle", field="handle") from None


@dataclass(frozen=True)
class Offset:
    """``start`` (-1), a snapshot key position, or a change-log position."""

    kind: str  # "start" | "now" | "snapshot" | "changes"
    key: Any = None  # snapshot: last key sent (None: nothing sent yet)
    position: Position | None = None  # changes

    def encode(self) -> str:
        if self.kind == "start":
            return "-1"
        if self.kind == "now":
            return "now"
        if self.kind == "snapshot":
            raw = json.dumps(self.key, cls=DjangoJSONEncoder, separators=(",", ":"))
            return "s" + base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")
        assert self.position is not None
        return encode_position(self.position)


START = Offset("start")
_LEGACY_RE = re.compile(r"^(\d{1,20})_(\d{1,20})$")
_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_VALUE = {c: i for i, c in enumerate(_ALPHABET)}


def _varint(n: int) -> str:
    groups = [n & 31]
    n >>= 5
    while n:
        groups.append(n & 31)
        n >>= 5
    groups.reverse()
    return "".join(_ALPHABET[g | 32] for g in groups[:-1]) + _ALPHABET[groups[-1]]


def _varints(text: str) -> list[int]:
    out, n, pending = [], 0, False
    for c in text:
        v = _VALUE[c]  # KeyError: not ours
        n = (n << 5) | (v & 31)
        pending = bool(v & 32)
        if not pending:
            out.append(n)
            n = 0
        elif n >> 70:
            raise ValueError("number too large")
    if pending:
        raise ValueError("truncated")
    return out


def _encode_snapshot(s: Snapshot) -> str:
    parts = [s.xmin, s.xmax - s.xmin]
    parts += [b - a for a, b in zip(s.xip, s.xip[1:], strict=False)]
    return "".join(map(_varint, parts))


def _decode_snapshot(text: str) -> Snapshot:
    numbers = _varints(text)
    if len(numbers) < 2:
        raise ValueError("too short")
    xmin, span, *deltas = numbers
    xip = [xmin] if span else []
    for d in deltas:
        if d < 1:
            raise ValueError("xip not increasing")
        xip.append(xip[-1] + d)
    if deltas and not span:
        raise ValueError("xip without span")
    return Snapshot.parse(f"{xmin}:{xmin + span}:{','.join(map(str, xip))}")


def encode_position(position: Position) -> str:
    """The change offset of ``position`` (see the module docstring)."""
    text = "c" + _encode_snapshot(position.snapshot)
    if position.until is not None:
        text += "." + _encode_snapshot(position.until) + "." + _varint(position.last_id)
    return text


def decode_position(text: str) -> Position:
    """The position of a change offset (``c...``, or an old ``<txid>_<id>``)."""
    legacy = _LEGACY_RE.match(text)
    if legacy:
        return Position.from_cursor(int(legacy[1]), int(legacy[2]))
    if not text.startswith("c"):
        raise ValueError("not a change offset")
    parts = text[1:].split(".")
    snapshot = _decode_snapshot(parts[0])
    if len(parts) == 1:
        return Position(snapshot)
    if len(parts) == 3:
        until = _decode_snapshot(parts[1])
        (last_id,) = _varints(parts[2])
        if until.covers(snapshot):
            return Position(snapshot, until, last_id)
    raise ValueError("bad position")


def parse_offset(text: str | None) -> Offset:
    if text is None or text == "":
        raise ApiError(
            400, "offset is required: -1 to start, else the last Livedata-Offset", field="offset"
        )
    if text == "-1":
        return START
    if text == "now":
        return Offset("now")
    if text.startswith("s"):
        body = text[1:]
        try:
            raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
            key = json.loads(raw)
        except (binascii.Error, ValueError):
            raise ApiError(400, f"invalid offset {text!r}", field="offset") from None
        if not isinstance(key, str | int) or isinstance(key, bool):
            raise ApiError(400, f"invalid offset {text!r}", field="offset")
        return Offset("snapshot", key=key)
    try:
        return Offset("changes", position=decode_position(text))
    except (KeyError, ValueError):
        raise ApiError(
            400,
            f"invalid offset {text!r}: use -1, or a Livedata-Offset this server sent",
            field="offset",
        ) from None
