"""Batches as broker messages: positions and rows come back exactly, or a clear error."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from livedata.capture import wire
from livedata.capture.log import Batch, ChangeRow, Position


def batch(value: object = "x") -> Batch:
    row = ChangeRow(
        41,
        812,
        "livedata_demo.book",
        "livedata_demo_book",
        "UPDATE",
        "7",
        {"title": "a"},
        {"title": value},
        ["title"],
        {"user": 3},
        datetime(2026, 12, 3, 17, 0, 0, 123456, tzinfo=UTC),
    )
    start = Position.parse("810:815:810,812")
    return Batch(start, Position.parse("810:815:810,812/810:816:810/41"), [row], False)


@pytest.mark.parametrize("value", ["é ☃", 2**70, None, [1.5, {"a": True}]])
def test_a_batch_comes_back_exactly(value) -> None:
    """Integers past 64 bits (jsonb allows them) survive: orjson would make them floats."""
    original = batch(value)
    assert wire.decode(wire.encode(original)) == original


def test_a_mark_is_a_gap_at_the_batch_end() -> None:
    original = batch()
    marked = wire.decode(wire.mark(original))
    assert marked == Batch(original.end, original.end, [])


@pytest.mark.parametrize("data", [b"", b"{}", b'[2, "1:1:", "1:1:", true, []]', b'[1, "x"]'])
def test_anything_else_is_a_wire_error(data) -> None:
    with pytest.raises(wire.WireError):
        wire.decode(data)
