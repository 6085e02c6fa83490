"""The feed's positions: the signed handle and the offset.

- The **handle** names one feed instance: the model, the PostgreSQL snapshot its rows were
  copied at (``xmin``, ``xmax``, ``xip``), the fields and filters it was started with, and
  the model's shape then. It is signed with Django's ``signing`` (``SECRET_KEY``), so the
  server keeps no state between requests and a forged or damaged handle is a precise 400.
- The **offset** is where in that feed the client is: ``-1`` (start; ``now`` starts
  without the rows, with only the changes after it), ``s<key>`` (copying
  the snapshot; every row with a key up to ``key`` was sent) or ``<txid>_<id>`` (following
  the change log; every change up to that log position was sent). Offsets are checked
  against the handle; tampering with one can only hurt the client that does it.
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

from livedata.capture.log import Cursor
from livedata.httpapi import ApiError

SALT = "livedata.pull.handle"
VERSION = 1


@dataclass(frozen=True)
class Snapshot:
    """A PostgreSQL snapshot (``pg_current_snapshot()``): which transactions it sees."""

    xmin: int
    xmax: int
    xip: frozenset[int]

    def visible(self, txid: int) -> bool:
        """``pg_visible_in_snapshot(txid, snapshot)`` for a committed transaction."""
        return txid < self.xmin or (txid < self.xmax and txid not in self.xip)

    @classmethod
    def parse(cls, text: str) -> Snapshot:
        """From PostgreSQL's text form ``xmin:xmax:xip,xip,...``."""
        xmin, xmax, xip = text.split(":")
        return cls(int(xmin), int(xmax), frozenset(int(x) for x in xip.split(",") if x))

    @property
    def start(self) -> Cursor:
        """The log position the changes after this snapshot are read from."""
        return Cursor(self.xmin, 0)


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
            snapshot = Snapshot(int(xmin), int(xmin) + int(span), frozenset(xmin + x for x in xip))
            return cls(str(payload["m"]), snapshot, str(payload["p"]), str(payload["f"]))
        except (KeyError, TypeError, ValueError):
            raise ApiError(400, "invalid handle", field="handle") from None


@dataclass(frozen=True)
class Offset:
    """``start`` (-1), a snapshot key position, or a change-log cursor."""

    kind: str  # "start" | "now" | "snapshot" | "changes"
    key: Any = None  # snapshot: last key sent (None: nothing sent yet)
    cursor: Cursor | None = None  # changes

    def encode(self) -> str:
        if self.kind == "start":
            return "-1"
        if self.kind == "now":
            return "now"
        if self.kind == "snapshot":
            raw = json.dumps(self.key, cls=DjangoJSONEncoder, separators=(",", ":"))
            return "s" + base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")
        assert self.cursor is not None
        return f"{self.cursor.txid}_{self.cursor.id}"


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
    match = _CHANGES_RE.match(text)
    if not match:
        raise ApiError(
            400,
            f"invalid offset {text!r}: use -1, or a Livedata-Offset this server sent",
            field="offset",
        )
    return Offset("changes", cursor=Cursor(int(match[1]), int(match[2])))
