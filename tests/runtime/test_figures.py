"""The figures board: sources merged by name, a failing source left out, and the
cluster hooks (broker, leader) absent until set. Through the Prometheus collector, as a
scrape sees them."""

from __future__ import annotations

from prometheus_client.exposition import generate_latest

from livedata.metrics.prometheus import registry
from livedata.runtime.figures import Board, BrokerState, Figure, LeaderState


def scrape(board: Board | None) -> str:
    return generate_latest(registry(lambda: board)).decode()


def test_sources_merge_by_name_and_a_failing_one_is_left_out(caplog) -> None:
    board = Board()
    board.add("a", lambda: [Figure("things", "gauge", "things", [((("kind", "a"),), 1)])])
    board.add("b", lambda: [Figure("things", "gauge", "things", [((("kind", "b"),), 2)])])

    def broken() -> list[Figure]:
        raise RuntimeError("boom")

    board.add("broken", broken)
    board.carry("sent_total", (), 3)
    board.carry("sent_total", (), 4)
    text = scrape(board)
    assert 'livedata_things{kind="a"} 1.0' in text
    assert 'livedata_things{kind="b"} 2.0' in text
    assert "livedata_up 1.0" in text
    assert "reading the figures of broken failed" in caplog.text
    assert board.carried("sent_total", ()) == 7


def test_broker_and_leader_are_absent_until_plugged_in() -> None:
    board = Board()
    assert "livedata_broker" not in scrape(board) and "livedata_leader" not in scrape(board)
    board.broker = lambda: BrokerState("nats", connected=True)
    board.leader = lambda: LeaderState(is_leader=False, holder="host:42")
    text = scrape(board)
    assert 'livedata_broker_connected{kind="nats"} 1.0' in text
    assert 'livedata_leader{holder="host:42"} 0.0' in text


def test_without_a_serving_runtime_only_up_is_zero() -> None:
    text = scrape(None)
    assert "livedata_up 0.0" in text
    assert "livedata_connections" not in text
