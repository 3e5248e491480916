"""The executor's lifecycle against Binance: ExecutionService + CompositeBrokerAdapter + FillTracker
with the real ccxt-based adapter talking HTTP to the simulator, and the real PostgreSQL store
(whose ``apply_fills`` is steps 6-7). Only the Kafka sink is a recorder here; the pipeline tests
cover the topics."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal as D
from typing import Any

import pytest_asyncio

from adapters.binance.execution import BinanceAdapter
from adapters.paper import PaperAdapter
from adapters.timescale import TimescaleStore
from execution.breaker import BreakerState, CircuitBreaker
from execution.fallback import CompositeBrokerAdapter
from execution.fill_tracker import FillTracker
from execution.risk import PreTradeLimits
from execution.service import ExecutionService
from schemas import AssetClass, Broker, OrderRequest, OrderState, OrderType, Side, Signal, TimeInForce
from tests.fixtures.binance import SimFactory, binance_test_config
from tests.unit.fakes import RecordingEvents
from venues.binance import BinanceSimulator, Faults


@dataclass
class Executor:
    """One binance executor process: what a restart throws away and builds again."""

    sim: BinanceSimulator
    store: TimescaleStore
    adapter: BinanceAdapter
    sink: RecordingEvents
    breaker: CircuitBreaker
    service: ExecutionService

    async def poll(self) -> None:
        """One FillTracker round once the poll interval has passed (as its own task would)."""
        await asyncio.sleep(self.adapter.poll_interval or 0)
        await self.service.tracker.poll_due()

    async def settle(self) -> None:
        """Steps 6-7 for everything emitted so far (what the fills writer does from the topic)."""
        await self.store.apply_fills(self.sink.emitted_fills)


async def build_executor(sim: BinanceSimulator, store: TimescaleStore, threshold: int = 3) -> Executor:
    adapter = BinanceAdapter(binance_test_config(sim.base_url))
    await adapter.connect()
    sink = RecordingEvents()
    breaker = CircuitBreaker("binance", failure_threshold=threshold, cooldown=60)
    composite = CompositeBrokerAdapter(adapter, PaperAdapter(), breaker, health_ttl=0)
    service = ExecutionService(broker=composite, store=store, sink=sink, tracker=FillTracker(store, sink),
                               limits=PreTradeLimits(D("1000"), D("10000000")))
    return Executor(sim, store, adapter, sink, breaker, service)


@pytest_asyncio.fixture(loop_scope="session")
async def executor(binance_sim_factory: SimFactory, store: TimescaleStore) -> AsyncIterator[Executor]:
    sim = await binance_sim_factory(partial_fill_steps=3)
    ex = await build_executor(sim, store)
    yield ex
    await ex.adapter.close()


async def lease_expires(store: TimescaleStore) -> None:
    """What the passing of a lease does to a dead worker's claims (without waiting 15 s for it)."""
    await store.pool.execute("UPDATE orders SET lease_until = now() - interval '1 second' WHERE owner IS NOT NULL")


def request(signal_id: str, **kw: Any) -> OrderRequest:
    fields: dict[str, Any] = {"signal_id": signal_id, "symbol": "BTC-USDT", "side": Side.BUY,
                              "quantity": D("0.03"), "reference_price": D("60000"), **kw}
    return OrderRequest.from_signal(Signal(**fields), asset_class=AssetClass.CRYPTO, broker=Broker.BINANCE,
                                    reason="CRYPTO -> binance")


async def stored(store: TimescaleStore, client_order_id: str) -> Any:
    return (await store.get_orders([client_order_id]))[client_order_id]


async def test_market_order_fills_at_the_venue_and_lands_in_the_books(executor: Executor) -> None:
    _, ask = executor.sim.engine.bid_ask("BTCUSDT")
    [order] = await executor.service.handle([request("bx-market")])
    await executor.settle()
    row = await stored(executor.store, order.client_order_id)
    assert (row.broker, row.state, row.filled_quantity, row.avg_fill_price) == (
        Broker.BINANCE, OrderState.FILLED, D("0.03"), ask)
    assert row.venue_order_id is not None
    [fill] = await executor.store.recorded_fills(order.client_order_id)
    assert (fill.quantity, fill.price, fill.commission) == (D("0.03"), ask, D("0.00003"))
    [position] = await executor.store.positions(Broker.BINANCE)
    assert (position.symbol, position.quantity) == ("BTC-USDT", D("0.03"))


async def test_resting_limit_fills_in_parts_while_the_partition_moves_on(executor: Executor) -> None:
    [order] = await executor.service.handle([request("bx-limit", order_type=OrderType.LIMIT,
                                                     limit_price=D("59000"), quantity=D("0.3"))])
    assert order.state is OrderState.SUBMITTED  # handle() returned: the partition is not blocked
    assert executor.service.tracker.is_tracking(order.client_order_id)
    executor.sim.set_price("BTCUSDT", D("58500"))
    for _ in range(3):
        await executor.poll()
        executor.sim.tick()
    await executor.poll()
    await executor.settle()
    fills = executor.sink.fills_for(order.client_order_id)
    assert [f.cumulative_quantity for f in fills] == [D("0.1"), D("0.2"), D("0.3")]
    assert all(f.quantity == D("0.1") and f.price == D("59000") for f in fills)
    assert sum(f.commission for f in fills) == D("0.0003")  # split, not repeated
    row = await stored(executor.store, order.client_order_id)
    assert (row.state, row.filled_quantity) == (OrderState.FILLED, D("0.3"))
    assert not executor.service.tracker.is_tracking(order.client_order_id)


async def test_each_refusal_ends_rejected_with_the_venues_message(executor: Executor) -> None:
    cases = {
        "bx-funds": request("bx-funds", quantity=D("100")),                        # -2010
        "bx-tick": request("bx-tick", order_type=OrderType.LIMIT, limit_price=D("59000.005")),
        "bx-symbol": request("bx-symbol", symbol="DOGE-USDT"),                     # not listed
        "bx-bracket": request("bx-bracket", order_type=OrderType.BRACKET, stop_price=D("55000"),
                              take_profit_price=D("65000")),
    }
    placed = {o.signal_id: o for o in await executor.service.handle(list(cases.values()))}
    for signal_id, needle in (("bx-funds", "insufficient"), ("bx-tick", "PRICE_FILTER"),
                              ("bx-symbol", "DOGE"), ("bx-bracket", "BRACKET")):
        row = await stored(executor.store, placed[signal_id].client_order_id)
        assert row.state is OrderState.REJECTED, signal_id
        assert row.broker is Broker.BINANCE and row.rerouted_from is None
        assert needle.lower() in row.reason.lower(), (signal_id, row.reason)
    assert executor.breaker.state is BreakerState.CLOSED  # the venue answered every time


async def test_network_faults_open_the_breaker_and_reroute_to_paper(executor: Executor) -> None:
    executor.sim.faults = Faults(fail_next=1000)
    orders = [await executor.service.handle([request(f"bx-down-{i}")]) for i in range(5)]
    rows = [await stored(executor.store, o.client_order_id) for [o] in orders]
    assert all(r.broker is Broker.PAPER and r.rerouted_from is Broker.BINANCE for r in rows)
    assert all(r.state is OrderState.SUBMITTED or r.state is OrderState.FILLED for r in rows)
    assert executor.breaker.state is BreakerState.OPEN
    reasons = [r.reason for r in rows]
    assert any("binance" in r and ("unavailable" in r or "health_check" in r) for r in reasons[:3])
    assert "circuit breaker open" in reasons[-1]
    await executor.settle()
    assert all(r.state is OrderState.FILLED
               for r in [await stored(executor.store, o.client_order_id) for [o] in orders])
    assert executor.sim.engine.orders_for(rows[0].client_order_id) == []  # never at the venue


async def test_restart_recovers_fills_made_while_down_and_duplicates_none(executor: Executor) -> None:
    resting = [request(f"bx-rest-{i}", order_type=OrderType.LIMIT, limit_price=D("59000"),
                       quantity=D("0.3"), time_in_force=TimeInForce.GTC) for i in range(3)]
    placed = await executor.service.handle(resting)
    assert {o.state for o in placed} == {OrderState.SUBMITTED}
    await executor.adapter.close()                                   # the worker dies here
    executor.sim.set_price("BTCUSDT", D("58000"))                   # ...and the venue fills
    executor.sim.tick()
    executor.sim.tick()

    await lease_expires(executor.store)                               # the dead worker's claims lapse
    reborn = await build_executor(executor.sim, executor.store)
    try:
        report = await reborn.service.reconcile()
        assert (report.checked, report.replaced) == (3, 0)
        await reborn.settle()
        again = await build_executor(executor.sim, executor.store)  # a second restart changes nothing
        await again.service.reconcile()
        await again.settle()
        await again.adapter.close()
    finally:
        await reborn.adapter.close()
    for order in placed:
        row = await stored(executor.store, order.client_order_id)
        assert (row.state, row.filled_quantity) == (OrderState.FILLED, D("0.3"))
        assert len(executor.sim.engine.orders_for(order.client_order_id)) == 1   # never placed twice
        fills = await executor.store.recorded_fills(order.client_order_id)
        assert sum(f.quantity for f in fills) == D("0.3")
    [position] = await executor.store.positions(Broker.BINANCE)
    assert position.quantity == D("0.9")


async def test_resting_orders_are_swept_with_one_listing_not_one_query_each(executor: Executor) -> None:
    resting = [request(f"bx-sweep-{i}", order_type=OrderType.LIMIT, limit_price=D("59000"), quantity=D("0.01"),
                       time_in_force=TimeInForce.GTC) for i in range(10)]
    placed = await executor.service.handle(resting)
    assert {o.state for o in placed} == {OrderState.SUBMITTED}
    stats = executor.sim.stats.by_endpoint
    lookups, listings = stats.get("GET /api/v3/order", 0), stats.get("GET /api/v3/openOrders", 0)

    await executor.poll()  # nothing moved: one listing answers for all ten
    assert stats.get("GET /api/v3/openOrders", 0) == listings + 1
    assert stats.get("GET /api/v3/order", 0) == lookups
    assert executor.sink.emitted_fills == []

    executor.sim.set_price("BTCUSDT", D("58000"))  # a third of each fills (partial_fill_steps=3)
    await executor.poll()  # the listing shows all ten changed: each is asked about once
    assert stats.get("GET /api/v3/order", 0) == lookups + 10
    await executor.poll()  # nothing moved since: the listing alone again
    assert stats.get("GET /api/v3/order", 0) == lookups + 10
    for _ in range(2):
        executor.sim.tick()
        await executor.poll()
    await executor.settle()
    for order in placed:
        row = await stored(executor.store, order.client_order_id)
        assert (row.state, row.filled_quantity) == (OrderState.FILLED, D("0.01"))
    assert not any(executor.service.tracker.is_tracking(o.client_order_id) for o in placed)
