"""The delivery state's rules, by feeding it values (no receiver, no database, no loop).

``DeliveryState`` (livedata.webhooks.state) decides what a subscription sends, what an
answer means and which position it writes; the end-to-end tests (test_delivery,
test_faults, test_positions) drive the same rules through real receivers and
PostgreSQL. Here each rule is checked on its own, including the ones that take minutes
to reach through a real schedule (exhausting the retries, parking).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import livedata.webhooks
from livedata.capture.position import Position
from livedata.webhooks.state import (
    PARK_AFTER,
    DeliveryState,
    Idle,
    Park,
    Request,
    SubscriptionRow,
    Wait,
)
from livedata.webhooks.transport import Result
from tests.imports import imported_modules

NOW = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
SCHEDULE = (0.0, 5.0, 30.0)


def at(n: int) -> Position:
    """A position: every transaction below ``n`` received."""
    return Position.parse(f"{n}:{n}:")


def subscription(**overrides: Any) -> SubscriptionRow:
    values: dict[str, Any] = dict(
        id=7, owner_id=1, url="http://127.0.0.1:9/hook", labels=["livedata_demo.book"],
        operations=["insert", "update", "delete"], filter={}, fields=None, batch=1,
        secret="whsec_x", position=at(100), position_text="100:100:", generation=3,
        epoch=2, attempts=0, next_attempt_at=None, updated=NOW - timedelta(hours=1),
    )  # fmt: skip
    values.update(overrides)
    return SubscriptionRow(**values)


def state(buffer_limit: int = 10, **overrides: Any) -> DeliveryState:
    return DeliveryState(
        subscription(**overrides), buffer_limit=buffer_limit, retry_schedule=SCHEDULE
    )


def event(pk: int) -> dict[str, Any]:
    return {"type": "livedata_demo.book.insert", "timestamp": "t", "data": {"pk": str(pk)}}


def delivered() -> Result:
    return Result("delivered", 204, "", "", 1.0)


def failed(status: int = 500, retry_after: float | None = None) -> Result:
    return Result("failed", status, f"HTTP {status}", "", 1.0, retry_after)


def gone() -> Result:
    return Result("gone", 410, "HTTP 410", "", 1.0)


def offer_batch(s: DeliveryState, start: int, rows: list[tuple[int, bool]]) -> None:
    """A batch from ``at(start)``: each row (id, matches), row i ending at ``start+i+1``."""
    assert s.begin(at(start))
    for i, (row_id, matches) in enumerate(rows):
        s.offer(row_id, event(row_id) if matches else None, at(start + i + 1))
    s.end(at(start + len(rows)))


def request(s: DeliveryState, now: datetime = NOW) -> Request:
    step = s.next_step(now)
    assert isinstance(step, Request), step
    return step


# --- offering --------------------------------------------------------------------------
def test_position_is_before_the_first_unacknowledged_event() -> None:
    s = state()
    offer_batch(s, 100, [(1, False), (2, True), (3, True)])
    assert s.position(followed=at(103)) == at(101)  # row 1 matched nothing
    assert [item.row_id for item in s.buffer] == [2, 3]
    assert s.buffer[0].event["data"]["position"] == str(at(102))


def test_with_an_empty_buffer_the_position_is_what_the_follower_handed_on() -> None:
    s = state()
    offer_batch(s, 100, [(1, False)])
    assert s.position(followed=at(150)) == at(150)  # batches never offered count too
    assert s.position(followed=None) == at(101)


def test_inside_a_batch_the_position_is_what_was_examined() -> None:
    s = state()
    assert s.begin(at(100))
    s.offer(1, None, at(101))
    assert s.position(followed=at(150)) == at(101)  # consuming: not the follower's
    s.end(at(102))
    assert s.position(followed=at(150)) == at(150)


def test_full_buffer_says_so() -> None:
    s = state(buffer_limit=2)
    offer_batch(s, 100, [(1, True)])
    assert not s.full
    offer_batch(s, 101, [(2, True)])
    assert s.full


def test_after_stopping_nothing_offered_counts_as_examined() -> None:
    s = state()
    offer_batch(s, 100, [(1, False)])
    s.stopping = True
    assert not s.begin(at(101))
    assert not s.begin(at(105))  # the cut stays where examining stopped
    assert s.position(followed=at(110)) == at(101)


def test_cut_here_keeps_the_position_before_the_row_that_could_not_be_examined() -> None:
    s = state()
    assert s.begin(at(100))
    s.offer(1, None, at(101))
    s.cut_here()  # row 2 raised in the driver's select()
    s.end(None)
    assert s.position(followed=at(110)) == at(101)
    assert not s.begin(at(110))


# --- the next request ------------------------------------------------------------------
def test_nothing_to_send_is_idle() -> None:
    assert isinstance(state().next_step(NOW), Idle)


def test_one_change_per_request_with_a_stable_webhook_id() -> None:
    s = state()
    offer_batch(s, 100, [(41, True), (42, True)])
    r = request(s)
    assert (r.webhook_id, r.count, r.position) == ("msg_7_2_41", 1, at(101))
    assert r.payload["data"]["pk"] == "41"


def test_batches_of_several_changes() -> None:
    s = state(batch=3)
    offer_batch(s, 100, [(41, True), (42, True)])
    r = request(s)
    assert (r.webhook_id, r.count, r.position) == ("msg_7_2_41_42", 2, at(102))
    assert r.payload["type"] == "livedata.batch"
    assert [e["data"]["pk"] for e in r.payload["data"]] == ["41", "42"]


# --- on result -------------------------------------------------------------------------
def test_2xx_acknowledges_and_moves_the_position() -> None:
    s = state(attempts=1)
    offer_batch(s, 100, [(41, True), (42, True)])
    outcome = s.on_result(request(s), delivered(), NOW)
    assert outcome.disabled is None
    assert (outcome.attempt.webhook_id, outcome.attempt.attempt) == ("msg_7_2_41", 2)
    assert outcome.attempt.position == str(at(101))
    assert s.position(followed=at(102)) == at(101)  # 42 is not acknowledged yet
    assert (s.attempts, s.next_attempt_at, s.inflight) == (0, None, 0)
    assert (s.progress.delivered, s.progress.success_at, s.dirty) == (1, NOW, True)
    assert request(s).webhook_id == "msg_7_2_42"


def test_retryable_failure_waits_by_the_schedule_then_resends_the_same_changes() -> None:
    s = state(batch=5)
    offer_batch(s, 100, [(41, True)])
    first = request(s)
    outcome = s.on_result(first, failed(503), NOW)
    assert outcome.disabled is None and not s.stopping
    assert s.attempts == 1
    assert s.next_attempt_at == NOW + timedelta(seconds=SCHEDULE[1])
    assert (s.progress.status, s.progress.error) == (503, "msg_7_2_41: HTTP 503")
    assert s.next_step(NOW) == Wait(SCHEDULE[1])
    offer_batch(s, 101, [(42, True)])  # arrives meanwhile: not added to the retry
    again = request(s, NOW + timedelta(seconds=SCHEDULE[1]))
    assert (again.webhook_id, again.count) == (first.webhook_id, 1)
    assert s.on_result(again, failed(), NOW).attempt.attempt == 2
    assert s.position(followed=at(102)) == at(100)  # nothing acknowledged


def test_retry_after_wins_over_the_schedule() -> None:
    s = state()
    offer_batch(s, 100, [(41, True)])
    s.on_result(request(s), failed(429, retry_after=2.5), NOW)
    assert s.next_attempt_at == NOW + timedelta(seconds=2.5)


def test_a_far_retry_parks_the_subscription() -> None:
    s = state(next_attempt_at=NOW + timedelta(seconds=PARK_AFTER + 1))
    offer_batch(s, 100, [(41, True)])
    assert isinstance(s.next_step(NOW), Park)
    assert s.parked


def test_410_gone_disables_at_once() -> None:
    s = state()
    offer_batch(s, 100, [(41, True)])
    outcome = s.on_result(request(s), gone(), NOW)
    assert outcome.disabled == "the receiver answered 410 Gone at 2025-01-02 03:04:05Z"
    assert s.progress.disable == outcome.disabled
    assert s.stopping and s.dirty
    assert s.position(followed=at(101)) == at(100)  # the change is not acknowledged


def test_exhausted_schedule_disables() -> None:
    s = state(attempts=len(SCHEDULE) - 1)
    offer_batch(s, 100, [(41, True)])
    outcome = s.on_result(request(s), failed(500), NOW)
    assert outcome.disabled is not None
    assert outcome.disabled.startswith(f"{len(SCHEDULE)} attempts failed (last: HTTP 500)")
    assert s.stopping


# --- progress to write -----------------------------------------------------------------
def test_progress_is_written_once_and_compare_and_set_from_the_stored_text() -> None:
    s = state()
    offer_batch(s, 100, [(41, True)])
    s.on_result(request(s), delivered(), NOW)
    assert s.wants_write(at(101), clock=0.5, ended=False)
    update = s.take_update(at(101))
    assert (update.sub_id, update.generation, update.previous) == (7, 3, "100:100:")
    assert (update.position, update.progress.delivered) == (at(101), 1)
    s.flushed_to(update.position, clock=0.5)
    assert s.take_update(at(101)).progress.delivered == 0  # reported once
    assert s.flushed_text == str(at(101))


def test_a_position_past_non_matching_rows_only_is_written_lazily() -> None:
    s = state()
    s.flushed_to(at(100), clock=10.0)
    offer_batch(s, 100, [(1, False)])
    assert not s.wants_write(at(101), clock=10.5, ended=False)
    assert s.wants_write(at(101), clock=11.5, ended=False)
    assert s.wants_write(at(101), clock=10.5, ended=True)
    assert not s.wants_write(at(100), clock=99.0, ended=True)  # nothing moved


def test_idle_for_counts_only_with_nothing_to_send() -> None:
    s = state()
    s.idle(clock=5.0)
    assert s.idle_for(8.0) == 3.0
    offer_batch(s, 100, [(41, True)])
    assert s.idle_for(8.0) == 0.0


# --- purity (import cycles inside webhooks: tests/test_layers.py, for every package) -
def test_the_core_does_no_io() -> None:
    """state.py imports no sockets, database, asyncio or HTTP client."""
    imported = imported_modules(Path(livedata.webhooks.__file__).with_name("state.py"))
    forbidden = {"asyncio", "socket", "psycopg", "aiohttp", "time", "django.db"}
    assert not {m for m in imported if m.split(".")[0] in forbidden or m in forbidden}
