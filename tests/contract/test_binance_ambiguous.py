"""Ambiguous submits at Binance (issue 12: "An executed Binance order also filled on paper"), through
the executor's core: ExecutionService + CompositeBrokerAdapter + FillTracker with the real
ccxt-based adapter talking HTTP to the simulator, and the real PostgreSQL store. Only the Kafka
sink is a recorder.

The adapter (and the composite's health cache) run on a ManualClock: the safe delay after an
uncertain submit (recvWindow + margin, measured on the adapter's clock) passes only when a test
moves that clock, so no test waits for it and none depends on the machine's speed for it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from decimal import Decimal as D
from typing import Any

import pytest
import pytest_asyncio

from adapters.binance.execution import BinanceAdapter
from adapters.paper import PaperAdapter
from adapters.timescale import TimescaleStore
from execution.breaker import CircuitBreaker
from execution.clock import ManualClock
from execution.fallback import CompositeBrokerAdapter
from execution.fill_tracker import FillTracker
from execution.ports import PlacementUnknown
from execution.risk import PreTradeLimits
from execution.service import ExecutionService
from schemas import AssetClass, Broker, Order, OrderRequest, OrderState, Side, Signal
from tests.fixtures.binance import SimFactory, binance_test_config
from tests.unit.fakes import RecordingEvents
from venues.binance import BinanceSimulator

#: short, so the simulator's own recvWindow check stays fast; long enough for a late execution
RECV_WINDOW_MS = 2500
MARGIN_MS = 500


@dataclass
class Rig:
    """One Binance executor: the core over the real adapter, the adapter on ``clock``."""

    sim: BinanceSimulator
    store: TimescaleStore
    clock: ManualClock
    adapter: BinanceAdapter
    composite: CompositeBrokerAdapter
    sink: RecordingEvents
    service: ExecutionService

    def posts(self) -> int:
        return int(self.sim.stats.by_endpoint.get("POST /api/v3/order", 0))

    def at_venue(self, order: Order) -> int:
        """Orders the venue holds under ``order``'s client id: 2 would be "sent twice"."""
        return len(self.sim.engine.orders_for(order.client_order_id))

    async def settle(self) -> None:
        """Steps 6-7 for everything emitted so far (the fills writer's job)."""
        await self.store.apply_fills(self.sink.emitted_fills)

    async def row(self, order: Order) -> Order:
        return (await self.store.get_orders([order.client_order_id]))[order.client_order_id]


@pytest_asyncio.fixture(loop_scope="session")
async def rig(binance_sim_factory: SimFactory, store: TimescaleStore) -> AsyncIterator[Rig]:
    sim = await binance_sim_factory()
    clock = ManualClock()
    adapter = BinanceAdapter(binance_test_config(sim.base_url, recv_window_ms=RECV_WINDOW_MS,
                                                 ambiguous_submit_margin_ms=MARGIN_MS), clock=clock)
    await adapter.connect()
    sink = RecordingEvents()
    breaker = CircuitBreaker("binance", failure_threshold=3, cooldown=60, clock=clock)
    composite = CompositeBrokerAdapter(adapter, PaperAdapter(), breaker, health_ttl=0, clock=clock)
    tracker = FillTracker(store, sink)
    tracker.listen_to(adapter)  # as streams/bootstrap.py does: late fees come this way
    service = ExecutionService(broker=composite, store=store, sink=sink, tracker=tracker,
                               limits=PreTradeLimits(D("1000"), D("10000000")))
    yield Rig(sim, store, clock, adapter, composite, sink, service)
    await adapter.close()


def request(signal_id: str, quantity: str = "0.05") -> OrderRequest:
    signal = Signal(signal_id=signal_id, symbol="BTC-USDT", side=Side.BUY, quantity=D(quantity),
                    reference_price=D("60000"))
    return OrderRequest.from_signal(signal, asset_class=AssetClass.CRYPTO, broker=Broker.BINANCE,
                                    reason="CRYPTO -> binance")


async def eventually(check: Callable[[], Any], timeout: float = 2.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def test_commission_lookup_failing_after_an_executed_order_keeps_it_at_binance(rig: Rig) -> None:
    """Binance executes the market order but its answer is lost; the adapter finds the order by its
    client id, and then ``myTrades`` (the commission, which ``GET /order`` lacks) answers 503.
    The order is FILLED at Binance and nowhere else; its fee arrives later, once."""
    sim = rig.sim
    sim.faults.update({"lose_response_next": 1, "match": "POST /api/v3/order"})
    execute = sim.engine.new_order

    def execute_then_fail_trades(params: Any) -> Any:  # the 503s start right after the execution
        answer = execute(params)
        sim.faults.update({"fail_next": 100, "match": "GET /api/v3/myTrades"})
        return answer

    sim.engine.new_order = execute_then_fail_trades  # type: ignore[method-assign]
    [order] = await rig.service.handle([request("amb-fee")])

    assert (order.broker, order.rerouted_from, order.state) == (Broker.BINANCE, None, OrderState.FILLED)
    assert rig.posts() == 1 and rig.at_venue(order) == 1
    # it was asked, and every ask failed: three times by the placement, and once more for each
    # round of the owed-fee collector that started meanwhile (it runs a poll interval after the
    # fee was owed, so how many rounds fit in the placement depends on the machine's load)
    asked = sim.stats.by_endpoint["GET /api/v3/myTrades"]
    assert asked >= 3 and sim.stats.faults["fail"] == asked
    [fill] = rig.sink.emitted_fills
    assert (fill.broker, fill.quantity, fill.commission) == (Broker.BINANCE, D("0.05"), D(0))

    sim.faults.update({"fail_next": 0})  # Binance answers again: the owed fee is collected and pushed
    await eventually(lambda: not rig.adapter._owed, timeout=10.0)  # the collector backs off between rounds
    assert await rig.service.tracker.apply_pushed() == 1
    await rig.settle()
    row = await rig.row(order)
    assert (row.broker, row.state, row.filled_quantity) == (Broker.BINANCE, OrderState.FILLED, D("0.05"))
    [recorded] = await rig.store.recorded_fills(order.client_order_id)
    assert (recorded.quantity, recorded.commission, recorded.commission_asset) == (D("0.05"), D("0.00005"), "BTC")

    later = await rig.adapter.query(order)  # a later query reports the commission too...
    assert later is not None and (later.state, later.commission) == (OrderState.FILLED, D("0.00005"))
    assert await rig.service.tracker.apply_pushed() == 0  # ...without a second fee
    [recorded] = await rig.store.recorded_fills(order.client_order_id)
    assert recorded.commission == D("0.00005") and rig.sink.emitted_fills == [fill]


async def test_lost_submit_that_executes_later_is_never_sent_twice(rig: Rig) -> None:
    """The gateway takes the order, the answer is lost, and the matching engine executes it only
    later. Asked in between, Binance says "no such order": the core keeps the order and asks
    again; it never places it a second time, nor on paper."""
    sim = rig.sim
    sim.late_next, sim.late_delay = 1, 0.6
    [order] = await rig.service.handle([request("amb-late")])
    assert (order.broker, order.state) == (Broker.BINANCE, OrderState.PENDING)
    assert order.client_order_id in rig.service.unresolved

    report = await rig.service.retry_unresolved()  # -2013, but too early to believe it
    assert report is not None and report.replaced == 0
    assert rig.at_venue(order) == 0, "the venue executed before it was asked: the test proved nothing"
    assert order.client_order_id in rig.service.unresolved and rig.posts() == 1

    await eventually(lambda: rig.at_venue(order) == 1)  # the matching engine gets it now
    report = await rig.service.retry_unresolved()
    assert report is not None and (report.checked, report.replaced) == (1, 0)
    rig.clock.advance(rig.adapter.settle_delay + 1)
    assert await rig.service.retry_unresolved() is None  # nothing left to ask about
    await rig.service.handle([request("amb-late")])  # a redelivery changes nothing

    await rig.settle()
    row = await rig.row(order)
    assert (row.broker, row.rerouted_from, row.state, row.filled_quantity) == (
        Broker.BINANCE, None, OrderState.FILLED, D("0.05"))
    assert rig.posts() == 1 and rig.at_venue(order) == 1
    # the redelivery may emit the same fill again (same exec id, deduplicated downstream): one fill
    assert {(f.broker, f.exec_id) for f in rig.sink.emitted_fills} == {
        (Broker.BINANCE, f"binance-{order.client_order_id}-0.05")}
    assert sum(f.quantity for f in await rig.store.recorded_fills(order.client_order_id)) == D("0.05")


async def test_lost_submit_that_never_reached_binance_is_placed_again_once_after_the_safe_delay(rig: Rig) -> None:
    """The connection drops before Binance processed the order. Nothing can tell that apart from a
    lost answer, so the order is placed again only once Binance, asked after recvWindow + margin on
    the adapter's clock, still says it does not exist; and then exactly once."""
    sim = rig.sim
    sim.faults.update({"drop_next": 1, "match": "POST /api/v3/order"})
    [order] = await rig.service.handle([request("amb-dropped")])
    assert (order.broker, order.state) == (Broker.BINANCE, OrderState.PENDING)
    assert rig.posts() == 1 and rig.at_venue(order) == 0

    rig.clock.advance(rig.adapter.settle_delay - 0.01)
    report = await rig.service.retry_unresolved()  # just before the delay: still not re-sent
    assert report is not None and report.replaced == 0
    with pytest.raises(PlacementUnknown):  # nor by a direct placement
        await rig.adapter.place(await rig.row(order))
    assert rig.posts() == 1 and order.client_order_id in rig.service.unresolved

    rig.clock.advance(0.01)
    report = await rig.service.retry_unresolved()
    assert report is not None and report.replaced == 1
    assert rig.posts() == 2 and rig.at_venue(order) == 1
    assert await rig.service.retry_unresolved() is None
    await rig.service.handle([request("amb-dropped")])  # a redelivery changes nothing
    assert rig.posts() == 2

    await rig.settle()
    row = await rig.row(order)
    assert (row.broker, row.rerouted_from, row.state, row.filled_quantity) == (
        Broker.BINANCE, None, OrderState.FILLED, D("0.05"))
    assert sum(f.quantity for f in await rig.store.recorded_fills(order.client_order_id)) == D("0.05")
