"""A ``Batch`` as one broker message: its two positions and its rows, compact.

The leader publishes each batch it reads; every process decodes it and offers it to its
followers, which check it chains with where they are (``livedata.capture.follower``).
So the positions travel exactly (their text forms), and a row is a JSON array in
``ChangeRow``'s field order (no key names: a 10-row batch is ~40% smaller than as
objects). orjson encodes it (~10x the standard library); a batch with values orjson
refuses (integers past 64 bits in a ``jsonb`` column, which its decoder would also turn
into floats) goes as ``json`` instead, tagged with a leading ``j``.

A batch too large for the broker goes as a *mark*: no rows, and ``start == end`` at the
batch's end. A follower then sees a gap and reads those rows from the log itself.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import orjson

from livedata.capture.log import Batch, ChangeRow, Position

#: Format version, first element of every message: a process that reads a version it
#: does not know treats the message as a gap (catching up from the log), never guesses.
VERSION = 1


def _at(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot encode {type(value).__name__}")


def encode(batch: Batch) -> bytes:
    """``batch`` as bytes (positions, caught-up flag, rows as arrays)."""
    message = [
        VERSION,
        str(batch.start),
        str(batch.end),
        batch.caught_up,
        [
            [r.id, r.txid, r.model, r.table, r.op, r.pk, r.old, r.new, r.changed, r.context, r.at]
            for r in batch.rows
        ],
    ]
    try:
        return orjson.dumps(message)
    except orjson.JSONEncodeError:
        return b"j" + json.dumps(message, default=_at, separators=(",", ":")).encode()


def mark(batch: Batch) -> bytes:
    """A message that makes followers read ``batch`` from the log themselves."""
    return encode(Batch(batch.end, batch.end, []))


class WireError(ValueError):
    """A broker message that is not a batch of this format."""


def decode(data: bytes) -> Batch:
    """The ``Batch`` of ``encode``; ``WireError`` when it is not one."""
    try:
        if data[:1] == b"j":
            version, start, end, caught_up, rows = json.loads(data[1:])
        else:
            version, start, end, caught_up, rows = orjson.loads(data)
        if version != VERSION:
            raise WireError(f"message format {version!r}, expected {VERSION}")
        return Batch(
            Position.parse(start),
            Position.parse(end),
            [ChangeRow(*r[:10], datetime.fromisoformat(r[10])) for r in rows],
            bool(caught_up),
        )
    except WireError:
        raise
    except (ValueError, TypeError, IndexError) as exc:
        raise WireError(f"not a livedata batch: {exc}") from None
