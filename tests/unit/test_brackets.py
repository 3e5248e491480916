"""A bracket's exits as orders of their own (Order.bracket_exits), and the core never placing one alone."""

from __future__ import annotations

from decimal import Decimal

import pytest

from adapters.memory import InMemoryStore
from execution.breaker import CircuitBreaker
from execution.fallback import CompositeBrokerAdapter
from execution.fill_tracker import FillTracker
from execution.risk import PreTradeLimits
from execution.service import ExecutionService
from schemas import AssetClass, Broker, OrderState, OrderType, Side, TimeInForce, bracket_exit_id
from tests.unit.fakes import RecordingEvents, ScriptedBroker, make_order


def bracket(side: Side = Side.BUY):
    stop, profit = (Decimal(590), Decimal(610)) if side is Side.BUY else (Decimal(610), Decimal(590))
    return make_order(broker=Broker.IBKR, asset_class=AssetClass.EQUITY, symbol="SPY", side=side,
                      quantity=Decimal(10), order_type=OrderType.BRACKET, stop_price=stop,
                      take_profit_price=profit, reference_price=Decimal(600))


@pytest.mark.parametrize("side", [Side.BUY, Side.SELL])
def test_the_exits_close_the_entry_at_its_stop_and_its_target(side: Side) -> None:
    entry = bracket(side)
    stop, profit = entry.bracket_exits()
    assert (stop.client_order_id, profit.client_order_id) == (bracket_exit_id(entry.client_order_id, "sl"),
                                                               bracket_exit_id(entry.client_order_id, "tp"))
    for leg in (stop, profit):
        assert leg.side is not side and leg.quantity == entry.quantity and leg.symbol == entry.symbol
        assert leg.time_in_force is TimeInForce.GTC and leg.state is OrderState.PENDING
        assert leg.bracket_parent == entry.client_order_id and leg.group_id == entry.client_order_id
    assert (stop.order_type, stop.stop_price) == (OrderType.STOP, entry.stop_price)
    assert (profit.order_type, profit.limit_price) == (OrderType.LIMIT, entry.take_profit_price)
    assert entry.bracket_parent is None


def test_only_a_bracket_has_exits() -> None:
    with pytest.raises(ValueError, match="not a BRACKET"):
        make_order(broker=Broker.IBKR, asset_class=AssetClass.EQUITY, symbol="SPY").bracket_exits()


async def test_an_exit_the_venue_never_held_is_cancelled_never_placed_alone() -> None:
    """A sweep finds an exit leg whose venue does not know it: placing it as a lone stop would
    open a position nobody asked for."""
    store, sink = InMemoryStore(), RecordingEvents()
    venue = ScriptedBroker(Broker.IBKR, poll_interval=None)
    service = ExecutionService(
        broker=CompositeBrokerAdapter(venue, venue, CircuitBreaker("ibkr"), health_ttl=0), store=store, sink=sink,
        tracker=FillTracker(store, sink), limits=PreTradeLimits(Decimal(10**6), Decimal(10**9)),
        executor=Broker.IBKR, owner="A", lease_seconds=0.0)
    stop, _ = bracket().bracket_exits()
    await store.insert_orders([stop])
    await service.sweep()
    assert venue.placed == []
    row = store.orders[stop.client_order_id]
    assert row.state is OrderState.CANCELLED and "never placed on its own" in row.reason
