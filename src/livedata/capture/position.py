"""Positions in the change log: snapshots of which transactions a reader has received.

The log is read by snapshot difference (PgQ's technique, see ``livedata.capture.log``):
each read returns the rows of the transactions that its snapshot sees and the previous
read's snapshot did not. So a reader's position is a PostgreSQL snapshot, ``xmin``,
``xmax`` and the transactions in flight (``xip``): "every transaction this snapshot sees
has been received, and none other". A transaction that stays open for hours is one
entry of ``xip``; it holds back nothing else.

One read (a *step*) can be larger than a batch: a transaction of 200,000 rows. Then the
position also names the step's end snapshot and the last row id received in it; the
next read finishes that step, in row-id order, before taking a new snapshot.

Text forms (what users see and give back):

- ``812:815:812,813`` a snapshot in PostgreSQL's own ``pg_snapshot`` text form: a
  position between steps (castable with ``'...'::pg_snapshot``);
- ``812:815:812,813/812:820:812/4410`` inside a step: received everything the first
  snapshot sees, and the rows up to id 4410 of what the second adds;
- ``812:4410`` the old ``TXID:ID`` cursor of livedata 0.1 (everything up to that row in
  ``(txid, id)`` order, when only finished transactions were read): still accepted, and
  read as exactly that.

Cost: about 20 characters plus one number per transaction in flight at the read (with
100 sessions idle in a transaction, about 800 characters at 7-digit xids).
"""

from __future__ import annotations

import re
from bisect import bisect_left
from dataclasses import dataclass
from typing import NamedTuple


class PositionError(ValueError):
    """A string that is not a log position."""


class Snapshot(NamedTuple):
    """A PostgreSQL snapshot (``pg_current_snapshot()``): which transactions it sees."""

    xmin: int
    xmax: int
    xip: tuple[int, ...] = ()  # sorted

    def visible(self, txid: int) -> bool:
        """``pg_visible_in_snapshot(txid, snapshot)`` (for a committed transaction)."""
        return txid < self.xmin or (txid < self.xmax and not _has(self.xip, txid))

    def covers(self, other: Snapshot) -> bool:
        """Whether every transaction ``other`` sees is seen by this one too."""
        if other.xmax > self.xmax:
            # other sees each of [self.xmax, other.xmax) that is not in its xip
            beyond = len(other.xip) - bisect_left(other.xip, self.xmax)
            if beyond < other.xmax - self.xmax:
                return False
        return all(x >= other.xmax or _has(other.xip, x) for x in self.xip)

    def union(self, other: Snapshot) -> Snapshot:
        """The snapshot that sees what either of the two sees.

        A transaction neither sees is in flight for both, so in one of their ``xip``
        lists (below a snapshot's ``xmax`` it would be visible otherwise).
        """
        if self.covers(other):
            return self
        if other.covers(self):
            return other
        xmax = max(self.xmax, other.xmax)
        xip = tuple(
            x
            for x in sorted(set(self.xip) | set(other.xip))
            if not self.visible(x) and not other.visible(x)
        )
        return Snapshot(xip[0] if xip else xmax, xmax, xip)

    def __str__(self) -> str:
        global _last_text
        snapshot, text = _last_text
        if snapshot is not self:
            text = f"{self.xmin}:{self.xmax}:{','.join(map(str, self.xip))}"
            _last_text = (self, text)
        return text

    @classmethod
    def from_pg(cls, text: str) -> Snapshot:
        """From ``pg_snapshot`` text as PostgreSQL prints it (trusted: xip sorted, unique).

        The listener's hot path: with many sessions idle in a transaction, each read
        returns the same long ``xip``, so the last one's parsed tuple is reused, and the
        text is kept for the next read's parameter (``str``) instead of re-joined.
        """
        global _last_xip, _last_text
        _, xmax, xip = text.split(":")
        last_xip, members = _last_xip
        if xip != last_xip:
            members = tuple(map(int, xip.split(","))) if xip else ()
            _last_xip = (xip, members)
        top = int(xmax)
        snapshot = cls(members[0] if members else top, top, members)
        if _ == str(snapshot.xmin):  # the text is the normal form (as PostgreSQL's is)
            _last_text = (snapshot, text)
        return snapshot

    @classmethod
    def parse(cls, text: str) -> Snapshot:
        """From PostgreSQL's text form ``xmin:xmax:xip,xip,...`` (checked)."""
        match = _SNAPSHOT_RE.match(text)
        if not match:
            raise PositionError(f"invalid snapshot {text!r}: expected XMIN:XMAX:XIP,...")
        xmin, xmax = int(match[1]), int(match[2])
        xip = tuple(sorted({int(x) for x in match[3].split(",") if x}))
        if not 0 < xmin <= xmax or any(not xmin <= x < xmax for x in xip):
            raise PositionError(f"invalid snapshot {text!r}: xmin <= xip < xmax does not hold")
        if xip and xip[0] != xmin:
            # PostgreSQL's xmin is the oldest in flight; normalise so equal means equal
            xmin = xip[0]
        elif not xip:
            xmin = xmax
        return cls(xmin, xmax, xip)


# one-entry caches of the read loop (each a tuple, replaced whole: safe across threads)
_last_xip: tuple[str, tuple[int, ...]] = ("", ())
_last_text: tuple[Snapshot | None, str] = (None, "")


def _has(xip: tuple[int, ...], txid: int) -> bool:
    """``txid in xip`` for a sorted ``xip`` (snapshots of many sessions: O(log n))."""
    i = bisect_left(xip, txid)
    return i < len(xip) and xip[i] == txid


_NUM = r"\d{1,20}"
_SNAPSHOT_RE = re.compile(rf"^({_NUM}):({_NUM}):((?:{_NUM}(?:,{_NUM})*)?)$")
_LEGACY_RE = re.compile(rf"^\s*({_NUM}):({_NUM})\s*$")


@dataclass(frozen=True, slots=True)
class Position:
    """Where a reader is in the log (see the module docstring).

    ``snapshot``: every transaction it sees was received. ``until``/``last_id``: inside
    the step from ``snapshot`` to ``until``, the rows with ids up to ``last_id`` were
    received too (``until`` is None between steps).
    """

    snapshot: Snapshot
    until: Snapshot | None = None
    last_id: int = 0

    @property
    def complete(self) -> bool:
        return self.until is None

    @property
    def end(self) -> Snapshot:
        """The snapshot this position's step ends at."""
        return self.until if self.until is not None else self.snapshot

    def sees(self, txid: int) -> bool:
        """Whether every row of committed transaction ``txid`` has been received."""
        return self.snapshot.visible(txid)

    def lost_below(self, horizon: int | None) -> bool:
        """Whether rows this position has not received may have been pruned (``horizon``:
        transactions below it may have lost their rows; None: nothing was pruned)."""
        return horizon is not None and self.snapshot.xmin < horizon

    @classmethod
    def oldest_at(cls, horizon: int | None) -> Position:
        """The oldest position still readable in full with this pruning ``horizon``."""
        return START if horizon is None else cls(Snapshot(horizon, horizon))

    def has(self, txid: int, row_id: int) -> bool:
        """Whether the log row ``row_id`` of committed transaction ``txid`` was received."""
        if self.snapshot.visible(txid):
            return True
        return self.until is not None and self.until.visible(txid) and row_id <= self.last_id

    def covers(self, other: Position) -> bool:
        """Whether every row ``other`` has received was received here too (False when
        that cannot be told from the two alone: the caller then reads the log)."""
        if self == other or self.snapshot.covers(other.end):
            return True
        if other.until is None:
            return False
        return (
            self.until == other.until
            and self.snapshot == other.snapshot
            and self.last_id >= other.last_id
        )

    def __str__(self) -> str:
        if self.until is None:
            return str(self.snapshot)
        return f"{self.snapshot}/{self.until}/{self.last_id}"

    @classmethod
    def parse(cls, value: str | Position) -> Position:
        if isinstance(value, Position):
            return value
        text = str(value).strip()
        legacy = _LEGACY_RE.match(text)
        if legacy:
            return cls.from_cursor(int(legacy[1]), int(legacy[2]))
        parts = text.split("/")
        try:
            if len(parts) == 1:
                return cls(Snapshot.parse(parts[0]))
            if len(parts) == 3 and re.fullmatch(_NUM, parts[2]):
                start, until = Snapshot.parse(parts[0]), Snapshot.parse(parts[1])
                if until.covers(start):
                    return cls(start, until, int(parts[2]))
        except PositionError:
            pass
        raise PositionError(
            f"invalid position {value!r}: expected XMIN:XMAX:XIP (as printed in the "
            "'position' field), SNAPSHOT/SNAPSHOT/ID, or an old TXID:ID cursor"
        )

    @classmethod
    def from_cursor(cls, txid: int, last_id: int) -> Position:
        """The old ``TXID:ID`` cursor: transactions below ``txid`` received, ``txid``'s
        rows up to ``last_id`` (old readers only read finished transactions)."""
        if txid < 1:
            return START
        return cls(Snapshot(txid, txid), Snapshot(txid + 1, txid + 1), last_id)


#: Before every transaction: read the whole log.
START = Position(Snapshot(1, 1))
