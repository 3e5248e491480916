"""The fallback chain (execution/fallback.py): live -> secondary live -> paper, and a venue's own
rule for its orders while it is unavailable (hold / reject instead of paper)."""

from __future__ import annotations

import pytest

from adapters.paper import PaperAdapter
from execution.breaker import CircuitBreaker
from execution.fallback import CompositeBrokerAdapter
from execution.ports import BrokerUnavailable, OrderRejected, PlacementDeferred
from schemas import AssetClass, Broker, Order
from tests.unit.fakes import FakeClock, ScriptedBroker, make_order


class PolicyBroker(ScriptedBroker):
    """A venue with an ``UnavailablePolicy`` (as IBKR's IBKR_DISCONNECTED_POLICY)."""

    def __init__(self, policy: str, **kwargs: object) -> None:
        super().__init__(Broker.IBKR, poll_interval=None, **kwargs)  # type: ignore[arg-type]
        self.policy = policy

    def when_unavailable(self, order: Order) -> str:
        return self.policy


def composite(live: ScriptedBroker | None, *, secondary: ScriptedBroker | None = None,
              force_paper: bool = False) -> CompositeBrokerAdapter:
    clock = FakeClock()
    return CompositeBrokerAdapter(live, PaperAdapter(), CircuitBreaker("live", clock=clock),
                                  force_paper=force_paper, health_ttl=0, clock=clock, secondary=secondary)


def fx_order() -> Order:
    return make_order(broker=Broker.MT4, asset_class=AssetClass.FX, symbol="EURUSD")


async def test_an_unhealthy_live_venue_sends_fx_to_the_secondary_with_the_reason() -> None:
    mt4 = ScriptedBroker(Broker.MT4, healthy=False)
    ibkr = ScriptedBroker(Broker.IBKR, poll_interval=None)
    gateway = composite(mt4, secondary=ibkr)
    adapter, reason = await gateway.gateway()
    assert adapter is ibkr
    placed = await gateway.place(fx_order(), adapter, reason)
    assert placed.adapter is ibkr and placed.order.broker is Broker.IBKR
    assert placed.order.rerouted_from is Broker.MT4
    assert "mt4 failed health_check" in placed.order.reason and "secondary route ibkr" in placed.order.reason
    assert ibkr.placed_ids() == [placed.order.client_order_id] and mt4.placed == []
    assert gateway.adapter_for(Broker.IBKR) is ibkr  # the tracker finds the order's venue


async def test_a_transport_failure_while_placing_tries_the_secondary_before_paper() -> None:
    mt4 = ScriptedBroker(Broker.MT4).on_place(BrokerUnavailable("connection reset"))
    ibkr = ScriptedBroker(Broker.IBKR, poll_interval=None)
    gateway = composite(mt4, secondary=ibkr)
    adapter, reason = await gateway.gateway()
    placed = await gateway.place(fx_order(), adapter, reason)
    assert placed.adapter is ibkr and "mt4 unavailable: connection reset" in placed.order.reason


async def test_paper_when_both_live_venues_are_down_and_the_reason_names_both() -> None:
    gateway = composite(ScriptedBroker(Broker.MT4, healthy=False),
                        secondary=ScriptedBroker(Broker.IBKR, healthy=False))
    adapter, reason = await gateway.gateway()
    placed = await gateway.place(fx_order(), adapter, reason)
    assert placed.order.broker is Broker.PAPER
    assert "mt4 failed health_check" in placed.order.reason and "secondary ibkr failed" in placed.order.reason


@pytest.mark.parametrize("policy", ["hold", "reject", "paper"])
async def test_the_venue_policy_decides_what_happens_while_it_is_down(policy: str) -> None:
    ibkr = PolicyBroker(policy, healthy=False)
    gateway = composite(ibkr)
    adapter, reason = await gateway.gateway()
    order = make_order(broker=Broker.IBKR, asset_class=AssetClass.EQUITY, symbol="SPY")
    if policy == "hold":
        with pytest.raises(PlacementDeferred, match="IBKR_DISCONNECTED_POLICY=hold"):
            await gateway.place(order, adapter, reason)
    elif policy == "reject":
        with pytest.raises(OrderRejected, match="IBKR_DISCONNECTED_POLICY=reject"):
            await gateway.place(order, adapter, reason)
    else:
        placed = await gateway.place(order, adapter, reason)
        assert placed.order.broker is Broker.PAPER and "ibkr failed health_check" in placed.order.reason
    assert ibkr.placed == []


async def test_the_policy_also_applies_when_the_connection_drops_during_placement() -> None:
    ibkr = PolicyBroker("hold").on_place(BrokerUnavailable("IBKR disconnected: connection lost"))
    gateway = composite(ibkr)
    adapter, reason = await gateway.gateway()
    with pytest.raises(PlacementDeferred, match="connection lost"):
        await gateway.place(make_order(broker=Broker.IBKR, asset_class=AssetClass.EQUITY, symbol="SPY"),
                            adapter, reason)


async def test_force_paper_is_the_operators_decision_whatever_the_venue_policy() -> None:
    gateway = composite(PolicyBroker("reject"), force_paper=True)
    adapter, reason = await gateway.gateway()
    placed = await gateway.place(make_order(broker=Broker.IBKR, asset_class=AssetClass.EQUITY, symbol="SPY"),
                                 adapter, reason)
    assert placed.order.broker is Broker.PAPER and placed.order.reason == "FORCE_PAPER_TRADING=true"


async def test_a_held_order_stays_pending_with_the_reason_and_is_placed_once_the_venue_is_back() -> None:
    """IBKR_DISCONNECTED_POLICY=hold through the whole executor: PENDING with the reason on the
    row while the gateway is down, placed exactly once by the resolver after it reconnects."""
    from decimal import Decimal

    from execution.fill_tracker import FillTracker
    from execution.risk import PreTradeLimits
    from execution.router import BrokerRouter
    from execution.service import ExecutionService
    from schemas import OrderState
    from tests.unit.fakes import InMemoryOrderStore, RecordingEvents, make_signal

    clock = FakeClock()
    store, sink = InMemoryOrderStore(clock), RecordingEvents()
    ibkr = PolicyBroker("hold", healthy=False)
    gateway = CompositeBrokerAdapter(ibkr, PaperAdapter(), CircuitBreaker("ibkr", clock=clock), health_ttl=0,
                                     clock=clock)
    service = ExecutionService(broker=gateway, store=store, sink=sink, tracker=FillTracker(store, sink, clock=clock),
                               limits=PreTradeLimits(Decimal(1000), Decimal(10**8)), clock=clock,
                               executor=Broker.IBKR, owner="A")
    request = BrokerRouter([Broker.IBKR]).route(make_signal(signal_id="held-1", symbol="SPY", ts=clock.now()))
    await service.handle([request])
    row = (await store.get_orders([request.client_order_id]))[request.client_order_id]
    assert row.state is OrderState.PENDING and "held" in row.reason and "IBKR_DISCONNECTED_POLICY=hold" in row.reason
    assert ibkr.placed == [] and request.client_order_id in service.unresolved

    await service.retry_unresolved()  # still down: still held, nothing placed
    assert ibkr.placed == []
    ibkr.healthy = True
    await service.retry_unresolved()
    await service.retry_unresolved()
    assert ibkr.placed_ids() == [request.client_order_id]
    row = (await store.get_orders([request.client_order_id]))[request.client_order_id]
    assert row.state is OrderState.SUBMITTED and row.broker is Broker.IBKR
