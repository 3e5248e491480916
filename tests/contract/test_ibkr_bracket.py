"""A BRACKET order through the real core and the real IBKR adapter, against the TWS simulator.

The entry is placed with its stop-loss and take-profit as IB children (transmit on the last,
one OCA group); the core keeps each exit as an order of its own (``Order.bracket_exits``), so
when the take-profit fills and IB cancels the stop-loss, the books show three orders, the exit's
fill closes the entry's position to zero, and nothing was placed by the core on its own."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest_asyncio

from adapters.ibkr.config import IbkrConfig
from adapters.ibkr.execution import IbkrAdapter
from adapters.memory import InMemoryStore
from adapters.paper import PaperAdapter
from execution.breaker import CircuitBreaker
from execution.fallback import CompositeBrokerAdapter
from execution.fill_tracker import FillTracker
from execution.risk import PreTradeLimits
from execution.router import BrokerRouter
from execution.service import ExecutionService
from schemas import Broker, OrderState, OrderType, bracket_exit_id
from tests.fixtures.rig import WritingSink, until
from tests.unit.fakes import make_signal
from venues.common.prices import PricePath
from venues.tws import TwsSimulator

STILL = PricePath(seed=3, volatility=Decimal(0))


@pytest_asyncio.fixture(loop_scope="session")
async def sim() -> AsyncIterator[TwsSimulator]:
    simulator = TwsSimulator(price_path=STILL, tick_interval=None)
    await simulator.start()
    yield simulator
    await simulator.stop()


async def test_bracket_entry_fills_take_profit_fills_stop_is_cancelled_position_flat(sim: TwsSimulator) -> None:
    store = InMemoryStore()
    sink = WritingSink(store)
    adapter = IbkrAdapter(IbkrConfig(enabled=True, port=sim.port, ack_timeout=3, request_timeout=3))
    await adapter.connect()
    tracker = FillTracker(store, sink)
    tracker.listen_to(adapter)
    gateway = CompositeBrokerAdapter(adapter, PaperAdapter(), CircuitBreaker("ibkr"), health_ttl=0)
    service = ExecutionService(broker=gateway, store=store, sink=sink, tracker=tracker,
                               limits=PreTradeLimits(Decimal(10_000), Decimal(10**8)), executor=Broker.IBKR,
                               owner="bracket-test")
    running = asyncio.create_task(tracker.run())
    try:
        signal = make_signal(signal_id="bracket-1", symbol="SPY", quantity=Decimal(10), order_type=OrderType.BRACKET,
                             stop_price=Decimal("590.00"), take_profit_price=Decimal("610.00"),
                             reference_price=Decimal("600.00"))
        request = BrokerRouter([Broker.IBKR]).route(signal)
        entry_id = request.client_order_id
        sl, tp = bracket_exit_id(entry_id, "sl"), bracket_exit_id(entry_id, "tp")
        await service.handle([request])

        def state(cid: str) -> OrderState | None:
            order = store.orders.get(cid)
            return order.state if order is not None else None

        await until(lambda: state(entry_id) is OrderState.FILLED, "the entry to fill")
        await until(lambda: state(sl) is OrderState.SUBMITTED and state(tp) is OrderState.SUBMITTED,
                    "both exits to rest")
        assert [p.quantity for p in await store.positions() if p.symbol == "SPY"] == [Decimal(10)]

        sim.set_price("SPY", "610.50")  # through the take-profit
        await until(lambda: state(tp) is OrderState.FILLED and state(sl) is OrderState.CANCELLED,
                    "the take-profit to fill and IB to cancel the stop-loss")
        assert [p.quantity for p in await store.positions() if p.symbol == "SPY"] == [Decimal(0)]
        exit_fill = [f for f in sink.emitted if f.client_order_id == tp]
        assert len(exit_fill) == 1 and exit_fill[0].exec_id.startswith("ibkr-") and exit_fill[0].side.value == "SELL"
        # the venue holds exactly one entry and one of each exit, all placed by the entry's placement
        assert [len(sim.engine.orders_by_ref(ref)) for ref in (entry_id, sl, tp)] == [1, 1, 1]
    finally:
        running.cancel()
        await adapter.close()
