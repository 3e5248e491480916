"""IBKR lookups asked at the same time all answer (real ib_async over TCP to the TWS simulator).

An executor's resolver asks IB about many orders at once after a reconnect (held orders, a
takeover). ib_async keys its currentTime, openOrders and completedOrders requests by name, so two
lookups in flight at once would share one future and all but the last would time out: the
adapter makes them one at a time.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest_asyncio

from adapters.ibkr.execution import IbkrAdapter
from schemas import OrderState, Side
from tests.contract.venue_harness import IbkrHarness


@pytest_asyncio.fixture(loop_scope="session")
async def venue() -> AsyncIterator[IbkrHarness]:
    harness = IbkrHarness()
    await harness.start()
    try:
        yield harness
    finally:
        await harness.stop()


async def test_concurrent_lookups_of_many_orders_all_answer(venue: IbkrHarness) -> None:
    placer = await venue.connect()
    resting = [venue.resting_limit(Side.BUY) for _ in range(6)]
    for order in resting:
        assert (await placer.place(order)).state is OrderState.SUBMITTED
    never_placed = [venue.resting_limit(Side.BUY) for _ in range(4)]

    fresh = await venue.restart(placer)  # a new process: it knows none of them yet
    assert isinstance(fresh, IbkrAdapter)
    answers = await asyncio.gather(*(fresh.query(order) for order in resting + never_placed))

    found, unknown = answers[:len(resting)], answers[len(resting):]
    assert [a.client_order_id if a else None for a in found] == [o.client_order_id for o in resting]
    assert all(a is not None and a.state is OrderState.SUBMITTED for a in found)
    assert unknown == [None] * len(never_placed)  # IB, asked on a live connection, never got them
    for order in resting:
        assert venue.venue_view(order.client_order_id) is not None
        assert venue.venue_view(order.client_order_id).placements == 1  # type: ignore[union-attr]
