"""The contract every venue adapter passes against its simulator, whatever the venue.

Each test runs once per harness in ``tests/contract/venue_harness.py`` (Binance now; IBKR and MT4
when they land), against a fresh simulator, with the adapter built by the venue's registered
plug-in. It asserts what the core (``execution/``) relies on from a ``BrokerPort``
(``execution/ports.py``): cumulative totals, ``None`` for an order the venue never saw,
``PlacementUnknown`` instead of a guess, no order placed twice, rejections that carry the venue's
own code and words. Venue-specific details stay in each venue's own tests
(``tests/contract/test_binance_adapter.py``).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest
import pytest_asyncio

from adapters.registry import default_registry
from execution.ports import (
    BrokerPort,
    BrokerUnavailable,
    OrderRejected,
    PlacementUnknown,
    VenueOrderStatus,
)
from schemas import Order, OrderState, Side
from tests.contract.venue_harness import HARNESSES, REJECTION_KINDS, RejectionKind, VenueHarness, VenueView

SIDES = pytest.mark.parametrize("side", [Side.BUY, Side.SELL], ids=["buy", "sell"])


@pytest_asyncio.fixture(loop_scope="session", params=HARNESSES, ids=[h.name for h in HARNESSES])
async def venue(request: pytest.FixtureRequest) -> AsyncIterator[VenueHarness]:
    """A fresh simulator per test; every adapter the test opened is closed before it stops."""
    harness: VenueHarness = request.param()
    await harness.start()
    try:
        yield harness
    finally:
        await harness.stop()


@pytest_asyncio.fixture(loop_scope="session")
async def adapter(venue: VenueHarness) -> BrokerPort:
    return await venue.connect()


def must(status: VenueOrderStatus | None) -> VenueOrderStatus:
    assert status is not None
    return status


def held(venue: VenueHarness, order: Order) -> VenueView:
    view = venue.venue_view(order.client_order_id)
    assert view is not None, f"the venue holds no order {order.client_order_id}"
    return view


def at_or_better(order: Order, price: Decimal | None) -> bool:
    assert price is not None and order.limit_price is not None
    return price <= order.limit_price if order.side is Side.BUY else price >= order.limit_price


# -- the plug-in -----------------------------------------------------------------------------


def test_every_registered_venue_runs_this_suite():
    assert {p.broker for p in default_registry()} == {h.broker for h in HARNESSES}


async def test_the_plugin_builds_a_healthy_broker_port(venue, adapter):
    assert isinstance(adapter, BrokerPort)
    assert adapter.name is venue.broker
    assert await adapter.health_check() is True


# -- placement -------------------------------------------------------------------------------


@SIDES
async def test_market_order_fills_in_full(venue, adapter, side):
    market = venue.price()
    order = venue.order(side=side)
    status = await adapter.place(order)
    assert status.client_order_id == order.client_order_id and status.venue_order_id
    assert (status.state, status.filled_quantity) == (OrderState.FILLED, order.quantity)
    assert status.avg_fill_price is not None and status.avg_fill_price > 0
    assert abs(status.avg_fill_price - market) <= market / 100  # at the touch, not some other price
    view = held(venue, order)
    assert (view.placements, view.state, view.filled_quantity) == (1, OrderState.FILLED, order.quantity)


@SIDES
async def test_limit_order_rests_then_fills_when_the_price_crosses(venue, adapter, side):
    order = venue.resting_limit(side)
    placed = await adapter.place(order)
    assert (placed.state, placed.filled_quantity) == (OrderState.SUBMITTED, 0)
    assert held(venue, order).state is OrderState.SUBMITTED
    assert must(await adapter.query(order)).state is OrderState.SUBMITTED  # nothing moved yet

    venue.cross(order)
    filled = must(await adapter.query(order))
    assert (filled.state, filled.filled_quantity) == (OrderState.FILLED, order.quantity)
    assert at_or_better(order, filled.avg_fill_price)
    view = held(venue, order)
    assert (view.placements, view.state, view.filled_quantity) == (1, OrderState.FILLED, order.quantity)


@SIDES
async def test_partial_fills_are_reported_as_growing_cumulative_totals(venue, adapter, side):
    venue.set_partial_fill_steps(3)
    order = venue.resting_limit(side, quantity=venue.base_quantity * 3)
    assert (await adapter.place(order)).state is OrderState.SUBMITTED

    venue.cross(order)
    seen = [must(await adapter.query(order))]
    for _ in range(10):
        if seen[-1].state is OrderState.FILLED:
            break
        seen.append(must(await adapter.query(order)))  # asked again before the venue moved
        venue.advance()
        seen.append(must(await adapter.query(order)))

    filled = [s.filled_quantity for s in seen]
    assert filled == sorted(filled), f"cumulative totals went backwards: {filled}"
    assert [s.commission for s in seen] == sorted(s.commission for s in seen)
    partial = [s for s in seen if 0 < s.filled_quantity < order.quantity]
    assert len({s.filled_quantity for s in partial}) >= 2, f"fewer than two partial fills seen: {filled}"
    assert all(s.state is OrderState.PARTIALLY_FILLED for s in partial)
    assert all(at_or_better(order, s.avg_fill_price) for s in seen)
    assert (seen[-1].state, seen[-1].filled_quantity) == (OrderState.FILLED, order.quantity)
    assert held(venue, order).placements == 1


# -- cancel and query ------------------------------------------------------------------------


async def test_cancel_of_a_resting_limit(venue, adapter):
    order = venue.resting_limit(Side.BUY)
    await adapter.place(order)
    cancelled = await adapter.cancel(order)
    assert cancelled.client_order_id == order.client_order_id
    assert (cancelled.state, cancelled.filled_quantity) == (OrderState.CANCELLED, 0)
    assert held(venue, order).state is OrderState.CANCELLED
    venue.cross(order)  # a cancelled order no longer fills
    assert must(await adapter.query(order)).state is OrderState.CANCELLED


async def test_query_by_client_order_id(venue, adapter):
    resting = venue.resting_limit(Side.SELL)
    market = venue.order()
    await adapter.place(resting)
    await adapter.place(market)

    found = must(await adapter.query(resting))
    assert (found.client_order_id, found.state) == (resting.client_order_id, OrderState.SUBMITTED)
    assert found.venue_order_id
    done = must(await adapter.query(market))
    assert (done.state, done.filled_quantity) == (OrderState.FILLED, market.quantity)
    assert await adapter.query(venue.order()) is None  # never sent: the venue never saw it


# -- ambiguity, faults, restarts -------------------------------------------------------------


@pytest.mark.parametrize("then_down", [True, False], ids=["venue-then-down", "venue-reachable"])
async def test_lost_placement_response_is_resolved_by_asking_never_by_resending(venue, adapter, then_down):
    """The venue takes the order but the answer is lost. With the venue down right after, the
    adapter cannot tell and must say so (``PlacementUnknown``, never ``None`` from ``query``:
    that would invite a second order); reachable, it may resolve the order itself, by asking."""
    order = venue.order()
    venue.lose_next_placement_response()
    venue.unreachable(then_down)
    outcome: VenueOrderStatus | PlacementUnknown
    try:
        outcome = await adapter.place(order)
    except PlacementUnknown as exc:
        outcome = exc
    assert venue.sim.stats.faults["lose"] == 1
    assert held(venue, order).placements == 1  # it reached the venue

    if then_down:
        assert isinstance(outcome, PlacementUnknown)
        with pytest.raises(BrokerUnavailable):  # still cannot tell: neither None nor a guess
            await adapter.query(order)
        venue.unreachable(False)
    resolved = must(await adapter.query(order))
    assert (resolved.state, resolved.filled_quantity) == (OrderState.FILLED, order.quantity)
    if isinstance(outcome, VenueOrderStatus):
        assert (outcome.state, outcome.filled_quantity) == (resolved.state, resolved.filled_quantity)
    assert held(venue, order).placements == 1  # never sent twice


async def test_a_5xx_on_placement_is_ambiguous_and_never_resent_blindly(venue, adapter):
    """A gateway error on a placement leaves its outcome unknown (the venue may still execute
    it): the adapter says so (PlacementUnknown) and does not send it again while the venue
    cannot yet tell; the core asks again later (tests/contract/test_binance_ambiguous.py)."""
    order = venue.order()
    venue.fail_next_placements(2)
    with pytest.raises(PlacementUnknown):
        await adapter.place(order)
    assert venue.sim.stats.faults["fail"] >= 1
    assert venue.venue_view(order.client_order_id) is None  # the 503 never reached the engine
    with pytest.raises(PlacementUnknown):  # placed again at once: still not sent
        await adapter.place(order)
    assert venue.venue_view(order.client_order_id) is None


async def test_a_restarted_adapter_finds_its_orders_by_client_order_id(venue, adapter):
    market = venue.order()
    resting = venue.resting_limit(Side.BUY)
    to_fill = venue.resting_limit(Side.SELL)
    for order in (market, resting, to_fill):
        await adapter.place(order)

    fresh = await venue.restart(adapter)
    venue.cross(to_fill)  # fills while the new process starts, unseen by the old one

    assert must(await fresh.query(market)).state is OrderState.FILLED
    assert must(await fresh.query(resting)).state is OrderState.SUBMITTED
    filled = must(await fresh.query(to_fill))
    assert (filled.state, filled.filled_quantity) == (OrderState.FILLED, to_fill.quantity)
    assert (await fresh.cancel(resting)).state is OrderState.CANCELLED
    assert await fresh.query(venue.order()) is None
    assert all(held(venue, o).placements == 1 for o in (market, resting, to_fill))


async def test_a_burst_beyond_the_rate_limit_is_never_lost_silently(venue, adapter):
    """Every placement of the burst either fills once or fails visibly: a plain
    ``BrokerUnavailable`` means the venue does not hold the order, ``PlacementUnknown`` that it
    might (and then only once)."""
    venue.tighten_rate_limit()
    orders = [venue.order() for _ in range(venue.burst)]
    outcomes = await asyncio.gather(*(adapter.place(o) for o in orders), return_exceptions=True)
    assert venue.throttled > 0, "the burst never hit the venue's limit: the test proves nothing"

    placed = 0
    for order, outcome in zip(orders, outcomes, strict=True):
        view = venue.venue_view(order.client_order_id)
        if isinstance(outcome, VenueOrderStatus):
            assert (outcome.state, outcome.filled_quantity) == (OrderState.FILLED, order.quantity)
            assert view is not None and view.placements == 1
            placed += 1
        elif isinstance(outcome, PlacementUnknown):
            assert view is None or view.placements == 1
        else:
            assert isinstance(outcome, BrokerUnavailable), f"{order.client_order_id}: {outcome!r}"
            assert view is None, f"{order.client_order_id} is at the venue but was reported unavailable"
    assert placed > 0


# -- rejections ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", REJECTION_KINDS)
async def test_rejections_carry_the_venues_code_and_message(venue, adapter, kind: RejectionKind):
    case = venue.rejection(kind)
    with pytest.raises(OrderRejected) as err:
        await adapter.place(case.order)
    assert err.value.code == case.code
    assert re.search(case.message, str(err.value)), str(err.value)
    view = venue.venue_view(case.order.client_order_id)
    assert view is None or view.state in (OrderState.REJECTED, OrderState.CANCELLED)  # nothing working
