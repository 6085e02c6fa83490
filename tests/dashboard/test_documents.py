"""The dashboard's documents from the board's figures (pure functions)."""

from __future__ import annotations

from datetime import UTC, datetime

from livedata.capture.log import ChangeRow
from livedata.dashboard import documents as docs
from livedata.runtime.figures import Figure


def _figures() -> dict[str, Figure]:
    return docs.by_name(
        [
            Figure("connections", "gauge", "", [((("transport", "websocket"),), 3.0)]),
            Figure("subscriptions", "gauge", "", [((("publication", "AllBooks"),), 2.0)]),
            Figure(
                "consumer_lag_transactions", "gauge", "", [((("consumer", "live queries"),), 4.0)]
            ),
            Figure(
                "consumer_lag_seconds", "gauge", "", [((("consumer", "live queries"),), 1.23456)]
            ),
            Figure.one("listener_connected", "gauge", "", 1),
        ]
    )


def test_the_now_document_reads_the_figures_by_name():
    now = docs.now_document(
        _figures(),
        [],
        process="h:1",
        messages_per_s=1.234,
        memory_bytes=5.0,
        dashboard_subscribers=1,
    )
    assert now["sessions"] == {"websocket": 3}
    assert now["subscriptions"] == {"AllBooks": 2}
    assert now["messages_per_s"] == 1.23 and now["listener_connected"] is True
    assert now["leader"] is None  # no broker: no cluster figures


def test_consumers_lag_with_absent_figures_as_zero():
    (live,) = docs.consumers(_figures())
    assert live == {
        "name": "live queries",
        "lag_transactions": 4.0,
        "lag_rows": 0.0,
        "lag_seconds": 1.235,
        "catching_up": False,
    }


def test_rates_and_changed_fields():
    assert docs.rates({"a": 10.0, "b": 4.0}, {"a": 4.0}, 2.0) == {"a": 3.0, "b": 0.0}
    assert docs.rates({"a": 1.0}, {}, 0) == {"a": 0.0}
    assert docs.changed_fields({"x": 1, "y": [1]}, {"x": 1, "y": [2]}) == {"y": [2]}
    assert docs.changed_fields(None, {"x": 1}) == {"x": 1}


def test_a_change_row_keeps_its_audit_context():
    row = ChangeRow(
        7, 100, "livedata_demo.book", "livedata_demo_book", "update", "3", {}, {}, ["title"],
        {"username": "ops", "user_id": 1, "request_id": "r-1"}, datetime(2026, 1, 1, tzinfo=UTC),
    )  # fmt: skip
    doc = docs.change_document(row)
    assert (doc["username"], doc["user_id"], doc["request_id"]) == ("ops", 1, "r-1")
    assert doc["changed"] == ["title"] and doc["at"].startswith("2026-01-01")
