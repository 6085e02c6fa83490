"""A connection's one outbox (``livedata.server.outbox``), fed values: no loop, no socket.

How the transports drain it is tested over the wire in test_websocket.py and
test_sockjs*.py (slow clients, streaming)."""

from __future__ import annotations

from livedata.server import outbox as outbox_module
from livedata.server.outbox import Outbox, Queued
from tests.imports import imported_modules


def test_the_outbox_imports_no_io():
    imported = imported_modules(outbox_module)
    assert imported <= {"__future__", "collections", "collections.abc", "enum"}, imported


def test_frames_go_out_in_order_one_at_a_time_or_all_at_once():
    box = Outbox(limit=100)
    assert box.put(["a", "bc"]) is Queued.QUEUED and box.put(["def"]) is Queued.QUEUED
    assert (len(box), box.bytes, box.total_bytes) == (3, 6, 6)
    assert box.popleft() == "a" and box.bytes == 5
    assert box.take() == ["bc", "def"]
    assert not box and box.bytes == 0 and box.take() == []


def test_past_the_bound_everything_is_dropped_and_the_outbox_closes():
    box = Outbox(limit=10)
    assert box.put(["x" * 10]) is Queued.QUEUED
    assert box.put(["y"]) is Queued.OVERFLOW
    assert box.closed and not box and box.total_bytes == 0
    assert box.put(["z"]) is Queued.DROPPED and not box


def test_a_closed_outbox_queues_nothing_but_keeps_what_it_has():
    box = Outbox(limit=100)
    box.put(["last words"])
    box.close()
    assert box.put(["late"]) is Queued.DROPPED
    box.put_ahead("streamed late")
    assert box.take() == ["last words"]


def test_frames_put_during_a_stream_wait_behind_it_and_count_against_the_bound():
    box = Outbox(limit=10)
    box.put(["before"])
    box.hold()
    box.put_ahead("s1")
    assert box.put(["r1"]) is Queued.QUEUED  # behind the stream
    box.put_ahead("s2")
    assert (box.bytes, box.behind_bytes, box.total_bytes) == (10, 2, 12)
    assert box.take() == ["before", "s1", "s2"]  # put_ahead is not checked: paced by it
    box.put_ahead("s3")
    box.release()
    assert box.take() == ["s3", "r1"] and box.behind_bytes == 0 and not box.holding
    box.hold()
    assert box.put(["x" * 11]) is Queued.OVERFLOW  # behind, still bounded
    assert box.closed and box.total_bytes == 0
