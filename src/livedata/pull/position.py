"""The feed's positions: the signed handle and the offset.

- The **handle** names one feed instance: the model, the PostgreSQL snapshot its rows were
  copied at (``xmin``, ``xmax``, ``xip``), the fields and filters it was started with, and
  the model's shape then. It is signed with Django's ``signing`` (``SECRET_KEY``), so the
  server keeps no state between requests and a forged or damaged handle is a precise 400.
- The **offset** is where in that feed the client is: ``-1`` (start; ``now`` starts
  without the rows, with only the changes after it), ``s<key>`` (copying
  the snapshot; every row with a key up to ``key`` was sent) or ``p<position>`` (following
  the change log; every change that log position has received was sent, see
  ``livedata.capture.position``: ``p812:815:812,813``, about 20 characters plus one number
  per transaction in flight). livedata 0.1's ``<txid>_<id>`` offsets are still read.
  Offsets are checked against the handle; tampering with one can only hurt the client
  that does it.
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

from livedata.capture.position import Position, PositionError, Snapshot
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
        return "p" + str(self.position)


START = Offset("start")
_CHANGES_RE = re.compile(r"^(\d{1,20})_(\d{1,20})$")


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
    if text.startswith("p"):
        try:
            return Offset("changes", position=Position.parse(text[1:]))
        except PositionError:
            pass
    match = _CHANGES_RE.match(text)
    if not match:
        raise ApiError(
            400,
            f"invalid offset {text!r}: use -1, or a Livedata-Offset this server sent",
            field="offset",
        )
    # livedata 0.1's offsets, TXID_ID
    return Offset("changes", position=Position.from_cursor(int(match[1]), int(match[2])))
