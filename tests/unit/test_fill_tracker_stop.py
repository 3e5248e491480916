"""The fill tracker's task stops when it is cancelled, whatever it was waiting for.

An executor cancels its tracker when it stops (agents/executor.py: shutdown, a rebalance that
takes its partitions). A tracker that kept running would keep polling and emitting fills for
orders whose claims it has just handed over. Python 3.11's ``asyncio.wait_for`` drops a
cancellation that arrives while the awaited thing has just completed (an order tracked, which
wakes the tracker, then the stop at once): found by tests/contract/test_mt4_adapter.py's restart.
"""

from __future__ import annotations

import asyncio

from execution.fill_tracker import FillTracker
from execution.outcome import BatchOutcome
from execution.ports import VenueOrderStatus
from schemas import OrderState
from tests.unit.fakes import InMemoryOrderStore, RecordingEvents, ScriptedBroker, make_order


async def test_a_stop_right_after_an_order_woke_the_tracker_stops_it() -> None:
    store, sink = InMemoryOrderStore(), RecordingEvents()
    tracker = FillTracker(store, sink)
    venue = ScriptedBroker(poll_interval=30.0)  # polling venue: the tracker sleeps in short ticks
    order = make_order(signal_id="stop-1", state=OrderState.SUBMITTED)
    outcome = BatchOutcome(tracker._clock)
    tracker.observe(order, VenueOrderStatus(order.client_order_id, "V-1", OrderState.SUBMITTED), venue, outcome)
    await outcome.flush(store, sink)
    task = asyncio.create_task(tracker.run(tick=30.0))
    for _ in range(5):  # let it reach its wait
        await asyncio.sleep(0)

    tracker._wake.set()  # an order tracked (or an update pushed) ...
    task.cancel()  # ... and the executor stops before the tracker ran again
    done, _ = await asyncio.wait([task], timeout=5)
    assert done, "the tracker kept running after it was cancelled"
    assert task.cancelled()
