"""Admission control's queues (livedata.runtime.admission) on a real event loop: the
token bucket paces arrivals in order, the slots cap holders, and both refuse with
``Busy`` past their deadline instead of queueing without bound."""

from __future__ import annotations

import asyncio
import time

import pytest

from livedata.runtime.admission import Admission, Busy, Pacer, Slots


def test_the_pacer_books_turns_in_arrival_order_and_refuses_past_the_wait():
    pacer = Pacer(rate=10, burst=3)
    waits = [pacer.reserve(100.0, max_wait=0.5) for _ in range(10)]
    # three at once (the burst), then one every 0.1 s up to the 0.5 s wait
    assert waits[:8] == pytest.approx([0, 0, 0, 0.1, 0.2, 0.3, 0.4, 0.5])
    assert waits[8:] == [None, None]  # refused at once: no token taken
    assert pacer.reserve(100.55, max_wait=0.5) == pytest.approx(0.05)  # the 9th slot, 100.6
    assert Pacer(rate=0, burst=0).reserve(0.0, max_wait=0) == 0  # off


def test_a_burst_beyond_the_rate_is_admitted_spread_over_time():
    async def main() -> list[float]:
        admission = Admission(rate=20, burst=5, wait=10)
        start = time.monotonic()

        async def one() -> float:
            await admission.admit()
            return time.monotonic() - start

        times = await asyncio.wait_for(asyncio.gather(*(one() for _ in range(25))), 10)
        assert admission.waiting == 0
        return sorted(times)

    times = asyncio.run(main())
    assert len(times) == 25  # none refused
    assert times[4] < 0.1  # the burst at once
    for k, t in enumerate(times):  # the rest no faster than the rate
        assert t >= (k - 4) / 20 - 0.01, (k, t)
    assert times[-1] < 1.0 + 0.5


def test_slots_cap_the_holders_and_a_waiter_past_its_deadline_gets_busy():
    async def main() -> tuple[int, int, list[str]]:
        slots = Slots(limit=3, wait=0.35, what="a new subscription")
        peak = 0
        outcomes: list[str] = []

        async def hold() -> None:
            nonlocal peak
            try:
                async with slots.slot():
                    peak = max(peak, slots.active)
                    await asyncio.sleep(0.2)
                outcomes.append("done")
            except Busy as exc:
                outcomes.append(exc.reason or "")

        await asyncio.wait_for(asyncio.gather(*(hold() for _ in range(12))), 10)
        return peak, slots.active + slots.waiting, outcomes

    peak, left, outcomes = asyncio.run(main())
    assert peak == 3
    assert left == 0
    # 3 at once for 0.2 s, waiters give up after 0.35 s: two rounds get through
    assert outcomes.count("done") == 6
    busy = [o for o in outcomes if o != "done"]
    assert busy == ["Server busy: a new subscription would wait more than 0.35 s"] * 6
