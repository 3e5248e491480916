"""The IBKR adapter end to end (issue 13): real ib_async -> the TWS simulator over TCP, composed
with the real core.

No mocks: every test starts a ``TwsSimulator`` on free ports, builds the ``IbkrAdapter`` from
``IbkrConfig`` and composes it as an executor does (``ExecutionService`` over
``CompositeBrokerAdapter(ibkr, PaperAdapter(), CircuitBreaker)``, a ``FillTracker`` listening to the
adapter's pushes and running on its own task, the package's ``InMemoryStore`` and
``InMemoryFillPublisher`` behind the fills topic). What the issue calls "recorded" is read back
from the store: order rows, fill rows (one per IB execution, exec id ``ibkr-<execId>``, IB's
commission), positions. Prices stand still (volatility 0, no ticker) unless a test moves them
with ``set_price``, so every fill price is known in advance.

What the venue contract suite (``test_venue_contract.py``) already proves for every venue is not
repeated here; these are IBKR's own promises: the four contract types, push fills with IB's
execIds and late commission reports, IB's error codes, the nightly restart and its policies,
the master client id, and the ambiguous submit.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from functools import partial
from typing import Any

import pytest
import pytest_asyncio

from adapters.ibkr.config import DisconnectedPolicy, IbkrConfig
from adapters.ibkr.execution import IbkrAdapter
from adapters.memory import InMemoryFillPublisher, InMemoryStore
from adapters.paper import PaperAdapter
from adapters.timescale import TimescaleStore
from execution.breaker import CircuitBreaker
from execution.fallback import CompositeBrokerAdapter
from execution.fill_tracker import FillTracker
from execution.ports import BrokerUnavailable, OrderRejected
from execution.retry import Backoff
from execution.risk import PreTradeLimits
from execution.router import BrokerRouter
from execution.service import ExecutionService
from schemas import AssetClass, Broker, Fill, Order, OrderState, Signal, utcnow
from tests.fixtures.rig import Store, WritingSink
from tests.fixtures.rig import until as wait_until
from venues.common.prices import PricePath
from venues.tws import TwsSimulator
from venues.tws.orders import Execution
from venues.tws.orders import Order as SimOrder

STILL = PricePath(seed=3, volatility=Decimal(0))
#: how long a test waits for something the simulator and the adapter do by themselves
PATIENCE = 10.0

_ids = itertools.count(1)


async def until(predicate: Callable[[], bool | Awaitable[bool]], what: str, timeout: float = PATIENCE) -> None:
    await wait_until(predicate, what, timeout)






@dataclass
class Executor:
    """One IBKR executor as the bootstrap composes it, without Kafka."""

    sim: TwsSimulator
    adapter: IbkrAdapter
    store: Store
    publisher: InMemoryFillPublisher
    sink: WritingSink
    tracker: FillTracker
    service: ExecutionService
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def submit(self, symbol: str = "SPY", *, asset_class: AssetClass = AssetClass.EQUITY,
                     quantity: str | int = 10, side: str = "BUY", **fields: Any) -> Order:
        """A signal routed as the router does (FX to IBKR as its secondary route) and handled
        by the service (steps 1-4); returns the order as it stands after placement."""
        signal = Signal.model_validate({
            "signal_id": f"ibkr-{next(_ids)}", "symbol": symbol, "side": side, "quantity": Decimal(quantity),
            "asset_class": asset_class, "reference_price": Decimal(fields.pop("reference_price", "600")), **fields})
        router = BrokerRouter([Broker.IBKR], secondary={AssetClass.FX: Broker.IBKR})
        [order] = await self.service.handle([router.route(signal)])
        return order

    async def row(self, client_order_id: str) -> Order:
        return (await self.store.get_orders([client_order_id]))[client_order_id]

    async def fills(self, client_order_id: str) -> list[Fill]:
        return await self.store.recorded_fills(client_order_id)

    async def filled(self, client_order_id: str) -> Decimal:
        return (await self.row(client_order_id)).filled_quantity

    async def filled_is(self, client_order_id: str, quantity: Decimal | int) -> bool:
        return await self.filled(client_order_id) == quantity

    async def state_is(self, client_order_id: str, state: OrderState) -> bool:
        return (await self.row(client_order_id)).state is state


def venue_orders(sim: TwsSimulator, client_order_id: str) -> list[SimOrder]:
    return sim.engine.orders_by_ref(client_order_id)


def venue_executions(sim: TwsSimulator, client_order_id: str) -> list[Execution]:
    return [e for e in sim.engine.executions if e.order_ref == client_order_id]


def config(sim: TwsSimulator, **overrides: Any) -> IbkrConfig:
    """Short timeouts and a quick reconnect backoff: a test waits seconds, not the defaults."""
    values: dict[str, Any] = {
        "enabled": True, "port": sim.port, "client_id": 1, "connect_timeout": 3.0, "request_timeout": 2.0,
        "ack_timeout": 1.5, "reconnect_backoff": Backoff(attempts=1_000_000, base=0.05, factor=2.0, cap=0.3),
        **overrides}
    return IbkrConfig(**values)


SimFactory = Callable[..., Awaitable[TwsSimulator]]
ExecutorFactory = Callable[..., Awaitable[Executor]]


@pytest_asyncio.fixture(loop_scope="session")
async def tws_factory() -> AsyncIterator[SimFactory]:
    """Start simulators (still prices, no ticker); all stopped at teardown."""
    started: list[TwsSimulator] = []

    async def start(**knobs: Any) -> TwsSimulator:
        knobs.setdefault("price_path", STILL)
        knobs.setdefault("tick_interval", None)
        sim = TwsSimulator(**knobs)
        await sim.start()
        started.append(sim)
        return sim

    yield start
    for sim in started:
        await sim.stop()


@pytest_asyncio.fixture(loop_scope="session")
async def tws(tws_factory: SimFactory) -> TwsSimulator:
    return await tws_factory()


@pytest_asyncio.fixture(loop_scope="session")
async def executor_factory() -> AsyncIterator[ExecutorFactory]:
    """``await executor_factory(sim, store=..., **IbkrConfig fields)``: a connected executor whose
    tracker runs on its own task (``run_tracker=False``: the test applies pushes itself);
    everything stopped and closed at teardown."""
    built: list[Executor] = []

    async def build(sim: TwsSimulator, *, store: Store | None = None,
                    publisher: InMemoryFillPublisher | None = None, owner: str | None = None,
                    run_tracker: bool = True, **settings: Any) -> Executor:
        store = store or InMemoryStore()
        publisher = publisher or InMemoryFillPublisher()
        adapter = IbkrAdapter(config(sim, **settings))
        sink = WritingSink(store, publisher)
        tracker = FillTracker(store, sink)
        tracker.listen_to(adapter)
        gateway = CompositeBrokerAdapter(adapter, PaperAdapter(), CircuitBreaker("ibkr"), health_ttl=0.0)
        service = ExecutionService(broker=gateway, store=store, sink=sink, tracker=tracker,
                                   limits=PreTradeLimits(Decimal(100_000), Decimal(10**9)),
                                   executor=Broker.IBKR, owner=owner)
        executor = Executor(sim, adapter, store, publisher, sink, tracker, service)
        built.append(executor)
        await adapter.connect()
        if run_tracker:
            executor.tasks.append(asyncio.create_task(tracker.run(), name="fill-tracker"))
        return executor

    yield build
    for executor in built:
        for task in executor.tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await executor.adapter.close()


@pytest_asyncio.fixture(loop_scope="session")
async def ibkr(tws: TwsSimulator, executor_factory: ExecutorFactory) -> Executor:
    return await executor_factory(tws)


# -- helpers over what was recorded --------------------------------------------------------------------


def one_venue_order(sim: TwsSimulator, client_order_id: str) -> SimOrder:
    """The order IB holds under this orderRef; fails if there is none or more than one."""
    orders = venue_orders(sim, client_order_id)
    assert len(orders) == 1, f"IB holds {len(orders)} orders with orderRef {client_order_id}"
    return orders[0]


async def assert_recorded_once(ibkr: Executor, client_order_id: str, *, at_placement: bool = False) -> list[Fill]:
    """The store holds one fill per IB execution of the order, in order, with IB's execId, its
    quantity, price and commission, and the order's filled quantity is IB's; nothing of it was
    emitted or published twice.

    ``at_placement``: the order executed while its placement still waited for IB's answer.
    Then the totals of that answer may reach the FillTracker before the executions it queued
    (see ``test_executions_that_come_before_the_placement_answer_keep_their_execids``), so only
    the totals are asserted: the same quantity, never counted twice."""
    executions = venue_executions(ibkr.sim, client_order_id)
    fills = await ibkr.fills(client_order_id)
    if at_placement:
        assert 1 <= len(fills) <= len(executions) and len({f.exec_id for f in fills}) == len(fills)
        assert sum((f.quantity for f in fills), Decimal(0)) == sum((e.shares for e in executions), Decimal(0))
    else:
        assert [f.exec_id for f in fills] == [f"ibkr-{e.exec_id}" for e in executions]
        assert [(f.quantity, f.price, f.commission) for f in fills] == \
            [(e.shares, e.price, e.commission) for e in executions]
        assert all(f.commission_asset == e.commission_currency for f, e in zip(fills, executions, strict=True))
    venue = one_venue_order(ibkr.sim, client_order_id)
    assert await ibkr.filled(client_order_id) == venue.filled
    emitted = [f.exec_id for f in ibkr.sink.emitted if f.client_order_id == client_order_id]
    assert sorted(emitted) == sorted(f.exec_id for f in fills), "a fill was emitted twice (or not at all)"
    published = [f for f in ibkr.publisher.published if f.client_order_id == client_order_id]
    assert sum((f.quantity for f in published), Decimal(0)) == venue.filled
    return fills


async def position(ibkr: Executor, symbol: str) -> Decimal:
    return next((p.quantity for p in await ibkr.store.positions(Broker.IBKR) if p.symbol == symbol), Decimal(0))


def states(ibkr: Executor, client_order_id: str) -> list[OrderState]:
    return [e.state for e in ibkr.sink.events if e.client_order_id == client_order_id]


# -- 1. contracts, order types, fills by push ------------------------------------------------------------


@pytest.mark.parametrize(("written", "asset_class", "canonical", "key", "quantity"), [
    ("SPY", AssetClass.EQUITY, "SPY", "SPY", "10"),
    # the OCC symbol as strategies write it (root padded to six) and as the mapper keeps it
    ("SPY   270115C00500000", AssetClass.OPTION, "SPY270115C00500000", "SPY270115C500", "2"),
    ("SPY270115C00500000", AssetClass.OPTION, "SPY270115C00500000", "SPY270115C500", "2"),
    ("/ESZ6", AssetClass.FUTURE, "ESZ6", "ESZ6", "1"),
    ("EUR/USD", AssetClass.FX, "EURUSD", "EURUSD", "20000"),
], ids=["STK", "OPT-padded", "OPT", "FUT", "CASH"])
async def test_each_contract_type_is_qualified_once_and_traded_with_fills_recorded_by_push(
        ibkr: Executor, written: str, asset_class: AssetClass, canonical: str, key: str, quantity: str) -> None:
    """Buy, then sell, each a limit one tick off the touch that rests until the price comes to
    it: the fills arrive by push, one per IB execution, at the limit, with IB's commission."""
    sim = ibkr.sim
    instrument = sim.engine.instruments[key]
    start, tick = instrument.start_price, instrument.min_tick
    bought = await ibkr.submit(written, asset_class=asset_class, quantity=quantity, order_type="LIMIT",
                               limit_price=start - tick, reference_price=start)
    cid = bought.client_order_id
    assert (bought.symbol, bought.broker, bought.state) == (canonical, Broker.IBKR, OrderState.SUBMITTED)
    if asset_class is AssetClass.FX:  # MT4 is FX's venue; IBKR takes it as the secondary route
        assert bought.rerouted_from is Broker.MT4 and "secondary route ibkr" in bought.reason
    assert one_venue_order(sim, cid).instrument is instrument
    sim.set_price(key, start - 2 * tick)  # the ask comes down to the limit
    await until(partial(ibkr.state_is, cid, OrderState.FILLED), f"{written} to be bought")
    [fill] = await assert_recorded_once(ibkr, cid)
    assert (fill.quantity, fill.price, fill.symbol) == (Decimal(quantity), start - tick, canonical)
    assert fill.commission > 0
    assert await position(ibkr, canonical) == Decimal(quantity)

    sold = await ibkr.submit(written, asset_class=asset_class, quantity=quantity, side="SELL", order_type="LIMIT",
                             limit_price=start + tick, reference_price=start)
    sim.set_price(key, start + 2 * tick)  # the bid comes up to the limit
    await until(partial(ibkr.state_is, sold.client_order_id, OrderState.FILLED), f"{written} to be sold")
    [fill] = await assert_recorded_once(ibkr, sold.client_order_id)
    assert fill.price == start + tick
    assert await position(ibkr, canonical) == 0
    assert sim.stats.by_endpoint["reqContractDetails"] == 1  # qualified once, then cached


@pytest.mark.parametrize(("order_type", "side", "prices", "move_to", "fill_price"), [
    ("MARKET", "BUY", {}, None, "600.01"),
    ("MARKET", "SELL", {}, None, "599.99"),
    ("LIMIT", "BUY", {"limit_price": "598.99"}, "598.98", "598.99"),  # rests, then fills at its limit
    ("LIMIT", "SELL", {"limit_price": "601.01"}, "601.02", "601.01"),
    ("STOP", "BUY", {"stop_price": "601.00"}, "601.00", "601.01"),  # triggered, then at the touch
    ("STOP", "SELL", {"stop_price": "599.00"}, "599.00", "598.99"),
], ids=["market-buy", "market-sell", "limit-buy", "limit-sell", "stop-buy", "stop-sell"])
async def test_market_limit_and_stop_orders(ibkr: Executor, order_type: str, side: str, prices: dict[str, Any],
                                            move_to: str | None, fill_price: str) -> None:
    placed = await ibkr.submit("SPY", side=side, order_type=order_type, **prices)
    cid = placed.client_order_id
    venue = one_venue_order(ibkr.sim, cid)
    assert venue.request.order_type == {"MARKET": "MKT", "LIMIT": "LMT", "STOP": "STP"}[order_type]
    if move_to is not None:
        assert placed.state is OrderState.SUBMITTED and placed.venue_order_id == str(venue.perm_id)
        assert ibkr.tracker.is_tracking(cid)  # watched by push, never polled
        ibkr.sim.set_price("SPY", "600.00")  # a tick that crosses nothing changes nothing
        assert (await ibkr.row(cid)).state is OrderState.SUBMITTED and venue.status == "Submitted"
        ibkr.sim.set_price("SPY", move_to)
    await until(lambda: ibkr.state_is(cid, OrderState.FILLED), f"the {order_type} order to fill")
    [fill] = await assert_recorded_once(ibkr, cid, at_placement=move_to is None)
    assert fill.price == Decimal(fill_price) and fill.side.value == side
    assert not ibkr.tracker.is_tracking(cid)


async def test_partial_fills_are_one_fill_per_ib_execution_and_a_resync_counts_nothing_twice(
        tws_factory: SimFactory, executor_factory: ExecutorFactory) -> None:
    """Three executions of a resting limit (IB's execDetails, then its commissionReport), each
    recorded as one fill with IB's execId and commission. Between them the connection drops:
    after the reconnect the adapter pushes the order's executions and status again, and the
    tracker's watermark (and the store's exec ids) let none of it count twice."""
    sim = await tws_factory(partial_fill_steps=3)
    ibkr = await executor_factory(sim)
    placed = await ibkr.submit("SPY", quantity=30, order_type="LIMIT", limit_price="598.99")
    cid = placed.client_order_id

    sim.set_price("SPY", "598.98")  # the ask reaches the limit: the first third
    await until(lambda: ibkr.state_is(cid, OrderState.PARTIALLY_FILLED), "the first partial fill")
    assert await ibkr.filled(cid) == 10

    assert sim.drop_connections() == 1
    await until(lambda: ibkr.adapter.connection.connects == 2 and ibkr.adapter.connection.usable, "the reconnect")
    await ibkr.adapter.query(placed)  # a lookup re-pushes the executions too (as a takeover would)

    sim.set_price("SPY", "598.98")  # the next match: two thirds
    await until(partial(ibkr.filled_is, cid, 20), "the second partial fill")
    sim.set_price("SPY", "598.98")
    await until(lambda: ibkr.state_is(cid, OrderState.FILLED), "the last third")

    fills = await assert_recorded_once(ibkr, cid)
    assert [f.quantity for f in fills] == [10, 10, 10]
    assert [f.cumulative_quantity for f in fills] == [10, 20, 30]
    assert len({f.exec_id for f in fills}) == 3
    assert sum(f.commission for f in fills) == one_venue_order(sim, cid).commission_charged
    assert states(ibkr, cid).count(OrderState.FILLED) == 1
    assert await position(ibkr, "SPY") == 30


async def test_executions_that_come_before_the_placement_answer_keep_their_execids(
        tws_factory: SimFactory, executor_factory: ExecutorFactory) -> None:
    """A market order fills in three executions while ``place`` still waits for IB's answer.
    Their pushes are queued; the tracker's task has not run yet (here: it runs only when the
    test says, so the order of events is fixed) when the service observes the answer. Each
    execution must still become one fill with IB's execId and commission."""
    sim = await tws_factory(partial_fill_steps=3)
    ibkr = await executor_factory(sim, run_tracker=False)
    placed = await ibkr.submit("SPY", quantity=30)
    await ibkr.tracker.apply_pushed()
    await ibkr.tracker.apply_pushed()
    assert await ibkr.state_is(placed.client_order_id, OrderState.FILLED)
    fills = await assert_recorded_once(ibkr, placed.client_order_id)
    assert [f.quantity for f in fills] == [10, 10, 10]


async def test_cancel_of_a_partly_filled_order_reaches_the_store_by_push(
        tws_factory: SimFactory, executor_factory: ExecutorFactory) -> None:
    sim = await tws_factory(partial_fill_steps=3)
    ibkr = await executor_factory(sim)
    placed = await ibkr.submit("SPY", quantity=30, order_type="LIMIT", limit_price="598.99")
    cid = placed.client_order_id
    sim.set_price("SPY", "598.98")
    await until(lambda: ibkr.state_is(cid, OrderState.PARTIALLY_FILLED), "the first partial fill")
    sim.set_price("SPY", "600.00")  # away from the limit: nothing more fills

    status = await ibkr.adapter.cancel(await ibkr.row(cid))
    assert (status.state, status.filled_quantity) == (OrderState.CANCELLED, Decimal(10))
    assert one_venue_order(sim, cid).status == "Cancelled"
    await until(lambda: ibkr.state_is(cid, OrderState.CANCELLED), "the cancel to be recorded")
    row = await ibkr.row(cid)
    assert row.filled_quantity == 10 and "Cancelled" in row.reason
    await assert_recorded_once(ibkr, cid)
    assert not ibkr.tracker.is_tracking(cid)


@pytest.mark.parametrize(("symbol", "asset_class"), [
    ("ZZZZ", AssetClass.EQUITY),
    ("SPY270115C00510000", AssetClass.OPTION),  # a well-formed OCC symbol IB has no contract for
    ("ESH7", AssetClass.FUTURE),
], ids=["STK", "OPT", "FUT"])
async def test_an_unknown_contract_is_rejected_with_ibs_code_200(ibkr: Executor, symbol: str,
                                                                 asset_class: AssetClass) -> None:
    placed = await ibkr.submit(symbol, asset_class=asset_class)
    cid = placed.client_order_id
    row = await ibkr.row(cid)
    assert row.state is OrderState.REJECTED and row.broker is Broker.IBKR and row.rerouted_from is None
    assert "IB 200" in row.reason and "No security definition has been found" in row.reason
    assert venue_orders(ibkr.sim, cid) == [] and ibkr.sim.stats.orders_placed == 0
    with pytest.raises(OrderRejected) as refused:
        await ibkr.adapter.place(row.model_copy(update={"state": OrderState.PENDING}))
    assert refused.value.code == 200
    assert await ibkr.adapter.health_check()  # a rejection is an answer, not an outage
    assert ibkr.service.broker.breaker.state == "closed"  # type: ignore[attr-defined]


async def test_informational_errors_change_nothing(ibkr: Executor) -> None:
    """IB sends 10349 ("TIF set to DAY by preset"), 399 (order message) and farm notices (2104)
    about working orders; ib_async marks a trade Cancelled on 10349 and "ValidationError" on the
    others. None of them is a rejection or a cancel: the orders stay SUBMITTED, and what IB does
    with them later (a fill, a real cancel) is still recorded."""
    notices = {
        10349: "Order TIF was set to DAY based on order preset.",
        399: "Order Message:\nBUY 10 SPY ARCA\nWarning: your order will not be placed at the exchange until "
             "2026-12-01 09:30:00 US/Eastern",
        2104: "Market data farm connection is OK:usfarm",
    }
    sim = ibkr.sim
    plan = {"fill": [10349, 399, 2104], "cancel-after-10349": [10349], "cancel-after-warnings": [399, 2104]}
    orders = {name: await ibkr.submit("SPY", order_type="LIMIT", limit_price="598.99" if name == "fill" else "597.99")
              for name in plan}
    for name, codes in plan.items():
        order_id = one_venue_order(sim, orders[name].client_order_id).order_id
        for code in codes:
            assert sim.notify(code, notices[code], req_id=order_id) == 1
    sim.notify(2104, notices[2104])  # and one about no order at all
    for placed in orders.values():
        status = await ibkr.adapter.query(placed)  # a round trip: every notice has been read
        assert status is not None and status.state is OrderState.SUBMITTED
        assert one_venue_order(sim, placed.client_order_id).status == "Submitted"
    await ibkr.tracker.apply_pushed()  # whatever the adapter pushed about them is applied now
    for placed in orders.values():
        cid = placed.client_order_id
        assert (await ibkr.row(cid)).state is OrderState.SUBMITTED and ibkr.tracker.is_tracking(cid)
        assert states(ibkr, cid) == [OrderState.SUBMITTED]
    assert await ibkr.adapter.health_check()

    sim.set_price("SPY", "598.98")
    filled = orders["fill"].client_order_id
    await until(lambda: ibkr.state_is(filled, OrderState.FILLED), "the order to still fill")
    await assert_recorded_once(ibkr, filled)

    for name in ("cancel-after-10349", "cancel-after-warnings"):
        cid = orders[name].client_order_id
        status = await ibkr.adapter.cancel(orders[name])
        assert status.state is OrderState.CANCELLED, name
        assert one_venue_order(sim, cid).status == "Cancelled", name
        await until(partial(ibkr.state_is, cid, OrderState.CANCELLED), f"{name}: the cancel to be recorded")


# -- 2. the nightly restart ---------------------------------------------------------------------------------


async def wait_down(ibkr: Executor) -> None:
    await until(lambda: not ibkr.adapter.connection.usable, "the adapter to see the connection lost")
    assert not await ibkr.adapter.health_check()


async def wait_back(ibkr: Executor, connects: int = 2) -> None:
    await until(lambda: ibkr.adapter.connection.connects >= connects and ibkr.adapter.connection.usable,
                "the adapter to reconnect by itself")
    assert await ibkr.adapter.health_check()


async def test_a_restart_mid_stream_records_every_fill_once_and_never_reuses_an_order_id(
        tws_factory: SimFactory, executor_factory: ExecutorFactory) -> None:
    """Resting orders at IB; the gateway restarts (every connection dropped, the port closed)
    and the price moves while it is down, so one order fills in full and another in part during
    the outage. The adapter reconnects by itself and resynchronises: every execution becomes
    exactly one fill row, the rest fills afterwards by push, and a new order gets an IB order id
    above every id used before."""
    await restart_mid_stream(tws_factory, executor_factory, InMemoryStore())


async def test_a_restart_mid_stream_records_every_fill_once_in_postgresql(
        tws_factory: SimFactory, executor_factory: ExecutorFactory, store: TimescaleStore) -> None:
    """The same, with the fills writer and the order rows in PostgreSQL (``fills`` unique per
    ``(broker, exec_id)``, positions in the same transaction)."""
    await restart_mid_stream(tws_factory, executor_factory, store)


async def restart_mid_stream(tws_factory: SimFactory, executor_factory: ExecutorFactory, store: Store) -> None:
    sim = await tws_factory(partial_fill_steps=2)
    ibkr = await executor_factory(sim, store=store)
    buy = await ibkr.submit("SPY", quantity=20, order_type="LIMIT", limit_price="598.99", time_in_force="GTC")
    sell = await ibkr.submit("SPY", quantity=20, side="SELL", order_type="LIMIT", limit_price="601.00",
                             time_in_force="GTC")
    later = await ibkr.submit("SPY", quantity=20, order_type="LIMIT", limit_price="595.00", time_in_force="GTC")
    resting = (buy, sell, later)
    assert all(o.state is OrderState.SUBMITTED for o in resting)

    assert await sim.restart(2.0) == 1
    await wait_down(ibkr)
    sim.set_price("SPY", "598.98")  # the buy's two executions, while nobody is connected
    sim.set_price("SPY", "598.98")
    sim.set_price("SPY", "601.01")  # half of the sell
    assert one_venue_order(sim, buy.client_order_id).status == "Filled"
    assert one_venue_order(sim, sell.client_order_id).filled == 10
    assert sim.connected_clients == []
    assert (await ibkr.row(buy.client_order_id)).filled_quantity == 0  # nothing heard yet

    await wait_back(ibkr)
    await until(lambda: ibkr.state_is(buy.client_order_id, OrderState.FILLED), "the buy's outage fills")
    await until(partial(ibkr.filled_is, sell.client_order_id, 10), "the sell's outage fill")
    assert (await ibkr.row(sell.client_order_id)).state is OrderState.PARTIALLY_FILLED

    sim.set_price("SPY", "601.01")  # the rest of the sell, by push
    sim.set_price("SPY", "594.98")  # and the order that rested through the restart
    sim.set_price("SPY", "594.98")
    for placed in (sell, later):
        await until(partial(ibkr.state_is, placed.client_order_id, OrderState.FILLED), "the fills after the reconnect")
    fresh = await ibkr.submit("SPY", quantity=5, order_type="LIMIT", limit_price="590.00")
    assert fresh.state is OrderState.SUBMITTED
    sim.set_price("SPY", "589.99")
    sim.set_price("SPY", "589.99")
    await until(lambda: ibkr.state_is(fresh.client_order_id, OrderState.FILLED), "a new order after the restart")

    for placed in (*resting, fresh):
        fills = await assert_recorded_once(ibkr, placed.client_order_id)
        assert len(fills) == len(venue_executions(sim, placed.client_order_id))
    assert len(ibkr.sink.emitted) == len(sim.engine.executions) == 8  # two each; nothing emitted twice
    keys = [o.key for o in sim.engine.orders.values()]
    assert len(keys) == len(set(keys)) == 4  # (client id, order id) never reused
    fresh_id = one_venue_order(sim, fresh.client_order_id).order_id
    assert fresh_id > max(one_venue_order(sim, o.client_order_id).order_id for o in resting)
    assert await position(ibkr, "SPY") == 20 - 20 + 20 + 5


@pytest.mark.parametrize("policy", ["paper", "hold", "reject"])
async def test_an_order_arriving_while_disconnected_follows_the_policy_with_its_reason(
        tws: TwsSimulator, executor_factory: ExecutorFactory, policy: DisconnectedPolicy) -> None:
    """IBKR_DISCONNECTED_POLICY: paper reroutes with the reason, hold keeps the order PENDING
    with the reason on its row and places it once IB is back, reject refuses it with the reason."""
    ibkr = await executor_factory(tws, disconnected_policy=policy)
    assert ibkr.adapter.config.policy_for(AssetClass.EQUITY) == policy
    await tws.restart(2.0)
    await wait_down(ibkr)
    placed = await ibkr.submit("SPY", quantity=10, order_type="LIMIT", limit_price="598.99")
    cid = placed.client_order_id
    row = await ibkr.row(cid)
    if policy == "paper":
        assert (row.state, row.broker, row.rerouted_from) == (OrderState.SUBMITTED, Broker.PAPER, Broker.IBKR)
        assert "ibkr failed health_check" in row.reason
    elif policy == "hold":
        assert (row.state, row.broker) == (OrderState.PENDING, Broker.IBKR)
        assert "held" in row.reason and "IBKR_DISCONNECTED_POLICY=hold" in row.reason
        assert cid in ibkr.service.unresolved
        await ibkr.service.retry_unresolved()  # still down: still held, nothing sent
        assert (await ibkr.row(cid)).state is OrderState.PENDING and venue_orders(tws, cid) == []
    else:
        assert (row.state, row.broker) == (OrderState.REJECTED, Broker.IBKR)
        assert "IBKR_DISCONNECTED_POLICY=reject" in row.reason and "ibkr failed health_check" in row.reason
    assert venue_orders(tws, cid) == []

    await wait_back(ibkr)
    if policy == "hold":
        await ibkr.service.retry_unresolved()
        row = await ibkr.row(cid)
        assert (row.state, row.broker) == (OrderState.SUBMITTED, Broker.IBKR) and cid not in ibkr.service.unresolved
        assert row.venue_order_id == str(one_venue_order(tws, cid).perm_id)
        await ibkr.service.retry_unresolved()  # nothing left to do: never placed twice
        tws.set_price("SPY", "598.98")
        await until(lambda: ibkr.state_is(cid, OrderState.FILLED), "the held order's fill, by push")
        await assert_recorded_once(ibkr, cid)
    assert len(venue_orders(tws, cid)) == (1 if policy == "hold" else 0)
    assert (await ibkr.row(cid)).state is {"paper": OrderState.SUBMITTED, "hold": OrderState.FILLED,
                                           "reject": OrderState.REJECTED}[policy]


# -- 3. the master client id and takeovers ------------------------------------------------------------------


class StoreClock:
    """The store's clock (the database's ``now()`` in production): moved on to expire leases."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def now(self) -> datetime:
        return utcnow() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += timedelta(seconds=seconds)


async def die(executor: Executor) -> None:
    """The executor's process ends without a word: its tracker stops, its socket closes, and
    its claims stay in the store until their lease runs out."""
    for task in executor.tasks:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    executor.tasks.clear()
    await executor.adapter.close()


def emitted_by(executors: Sequence[Executor], client_order_id: str) -> list[str]:
    return sorted(f.exec_id for e in executors for f in e.sink.emitted if f.client_order_id == client_order_id)


async def test_the_master_client_takes_over_another_clients_order_and_sees_its_fills_by_push(
        tws_factory: SimFactory, executor_factory: ExecutorFactory) -> None:
    """Two executors of one broker over one store: A holds IB's master client id (1), B is
    client 2. B places a resting order, records its first execution and dies; a second execution
    happens while nobody works the order. A's sweep takes it over once B's lease ran out, finds
    it by orderRef, records the missed execution with IB's execId, and the last one arrives at A
    by push (A is the master: IB sends it every client's executions)."""
    sim = await tws_factory(master_client_id=1, partial_fill_steps=3)
    clock = StoreClock()
    store = InMemoryStore(now=clock.now)
    a = await executor_factory(sim, store=store, owner="A", client_id=1, master_client_id=1)
    b = await executor_factory(sim, store=store, owner="B", client_id=2)
    assert a.adapter.connection.is_master and a.adapter.connection.client_id == 1
    assert not b.adapter.connection.is_master and b.adapter.connection.client_id == 2
    assert sim.connected_clients == [1, 2]

    placed = await b.submit("SPY", quantity=30, order_type="LIMIT", limit_price="598.99", time_in_force="GTC")
    cid = placed.client_order_id
    assert one_venue_order(sim, cid).client_id == 2
    sim.set_price("SPY", "598.98")
    await until(partial(b.filled_is, cid, 10), "B to record the first execution")
    await die(b)
    sim.set_price("SPY", "598.98")  # the second execution: B is gone, A does not work the order yet
    assert one_venue_order(sim, cid).filled == 20
    assert a.sink.emitted == [] and not a.tracker.is_tracking(cid)

    assert (await a.service.reconcile()).checked == 0  # B's lease is still running
    clock.advance(31)
    report = await a.service.reconcile()
    assert (report.checked, report.resumed, report.replaced) == (1, 1, 0)  # found by orderRef, not re-sent
    await until(partial(a.filled_is, cid, 20), "A to record the execution it missed")
    asked = dict(sim.stats.by_endpoint)
    sim.set_price("SPY", "598.98")
    await until(lambda: a.state_is(cid, OrderState.FILLED), "the last execution, pushed to the master")
    assert {k: v for k, v in sim.stats.by_endpoint.items() if k.startswith("req")} == \
        {k: v for k, v in asked.items() if k.startswith("req")}  # by push: nothing was asked for it

    executions = venue_executions(sim, cid)
    fills = await a.fills(cid)
    assert [f.exec_id for f in fills] == [f"ibkr-{e.exec_id}" for e in executions]
    assert [f.commission for f in fills] == [e.commission for e in executions]
    assert emitted_by([a, b], cid) == sorted(f.exec_id for f in fills)  # each emitted once, by one of them
    assert len(venue_orders(sim, cid)) == 1 and await position(a, "SPY") == 30


async def non_master_takeover(tws_factory: SimFactory, executor_factory: ExecutorFactory
                              ) -> tuple[TwsSimulator, Executor, Order]:
    """Client 2 places a resting order of 30 (three executions), records the first and dies;
    client 3, without the master client id, takes it over after the lease."""
    sim = await tws_factory(partial_fill_steps=3)
    clock = StoreClock()
    store = InMemoryStore(now=clock.now)
    b = await executor_factory(sim, store=store, owner="B", client_id=2)
    placed = await b.submit("SPY", quantity=30, order_type="LIMIT", limit_price="598.99", time_in_force="GTC")
    cid = placed.client_order_id
    sim.set_price("SPY", "598.98")
    await until(partial(b.filled_is, cid, 10), "B to record the first execution")
    await die(b)

    c = await executor_factory(sim, store=store, owner="C", client_id=3, foreign_refresh_interval=0.1)
    assert c.adapter.connection.client_id == 3 and not c.adapter.connection.is_master
    clock.advance(31)
    report = await c.service.reconcile()
    assert (report.checked, report.resumed, report.replaced) == (1, 1, 0)  # found by orderRef, not re-sent
    assert c.tracker.is_tracking(cid) and len(venue_orders(sim, cid)) == 1
    return sim, c, placed


async def test_a_non_master_takeover_finds_the_order_by_order_ref_and_refreshes_it(
        tws_factory: SimFactory, executor_factory: ExecutorFactory) -> None:
    """Without the master client id, the survivor learns of another client's order through IB's
    list of every client's open orders, matched by orderRef, and refreshes it (IB does not push
    another client's order to it): an execution while it is still open is recorded once."""
    sim, c, placed = await non_master_takeover(tws_factory, executor_factory)
    cid = placed.client_order_id
    status = await c.adapter.query(placed)
    assert status is not None and (status.state, status.filled_quantity) == (OrderState.PARTIALLY_FILLED, Decimal(10))
    sim.set_price("SPY", "598.98")  # the second execution: the order is still open at IB
    await until(partial(c.filled_is, cid, 20), "C's refresh to see the second execution")
    fills = await c.fills(cid)
    assert [f.cumulative_quantity for f in fills] == [10, 20]  # one fill per execution, none twice
    assert (await c.row(cid)).state is OrderState.PARTIALLY_FILLED and len(venue_orders(sim, cid)) == 1


async def test_a_non_master_never_reads_another_clients_completed_order_as_unknown(
        tws_factory: SimFactory, executor_factory: ExecutorFactory) -> None:
    """IB shows a client only its own completed orders and executions unless it is the master
    client, so a non-master that cannot find an order IB once acknowledged cannot tell: it says
    so (BrokerUnavailable, the core asks again later), never None (which would invite a second
    order). A master client id (the documented setup for scale-out) sees it."""
    sim, c, placed = await non_master_takeover(tws_factory, executor_factory)
    cid = placed.client_order_id
    sim.set_price("SPY", "598.98")
    sim.set_price("SPY", "598.98")  # the order completes at IB
    assert one_venue_order(sim, cid).status == "Filled"
    row = await c.row(cid)
    assert row.venue_order_id  # IB acknowledged it: its permId is on the row
    fresh = IbkrAdapter(IbkrConfig(enabled=True, port=sim.port, client_id=7, request_timeout=2))
    try:
        await fresh.connect()
        with pytest.raises(BrokerUnavailable, match="IBKR_MASTER_CLIENT_ID"):
            await fresh.query(row)
    finally:
        await fresh.close()
    assert len(venue_orders(sim, cid)) == 1


# -- 4. the ambiguous submit ----------------------------------------------------------------------------------


async def test_an_ambiguous_submit_is_resolved_by_asking_ib_never_by_resending(ibkr: Executor) -> None:
    """IB takes the order but its acknowledgement is lost (no openOrder, no orderStatus): the
    placement's outcome is unknown, so the order stays PENDING and unresolved, never rerouted
    to paper. The resolver asks IB (by orderRef) instead of placing it again, finds it working,
    and its fill later arrives by push. IB holds exactly one order."""
    sim = ibkr.sim
    sim.faults.update({"lose_response_next": 1, "match": "placeOrder"})
    placed = await ibkr.submit("SPY", order_type="LIMIT", limit_price="598.99")
    cid = placed.client_order_id
    assert sim.stats.faults["lose"] == 1
    row = await ibkr.row(cid)
    assert (row.state, row.broker, row.rerouted_from) == (OrderState.PENDING, Broker.IBKR, None)
    assert cid in ibkr.service.unresolved and not ibkr.tracker.is_tracking(cid)
    venue = one_venue_order(sim, cid)  # it reached IB, unacknowledged
    assert venue.status == "Submitted" and venue.ack_lost
    assert await ibkr.adapter.health_check()  # a lost answer is not an outage

    await ibkr.service.retry_unresolved()
    assert cid not in ibkr.service.unresolved and ibkr.tracker.is_tracking(cid)
    row = await ibkr.row(cid)
    assert (row.state, row.venue_order_id) == (OrderState.SUBMITTED, str(venue.perm_id))
    assert len(venue_orders(sim, cid)) == 1  # asked about, never sent again
    await ibkr.service.retry_unresolved()
    assert len(venue_orders(sim, cid)) == 1

    sim.set_price("SPY", "598.98")
    await until(lambda: ibkr.state_is(cid, OrderState.FILLED), "the fill, by push")
    await assert_recorded_once(ibkr, cid)
    assert len(venue_orders(sim, cid)) == 1 and sim.stats.orders_placed == 1


async def test_a_submit_that_never_reached_ib_is_placed_once_after_ib_says_it_does_not_know_it(
        ibkr: Executor) -> None:
    """The connection drops with the placeOrder unprocessed: unknown too, so PENDING and
    unresolved. After the reconnect IB, asked by orderRef, lists no such order: only then is it
    placed, once."""
    sim = ibkr.sim
    sim.faults.update({"drop_next": 1, "match": "placeOrder"})
    placed = await ibkr.submit("SPY", order_type="LIMIT", limit_price="598.99")
    cid = placed.client_order_id
    assert sim.stats.faults["drop"] == 1 and venue_orders(sim, cid) == []
    row = await ibkr.row(cid)
    assert (row.state, row.broker) == (OrderState.PENDING, Broker.IBKR) and cid in ibkr.service.unresolved

    await wait_back(ibkr)
    await ibkr.service.retry_unresolved()
    row = await ibkr.row(cid)
    assert row.state is OrderState.SUBMITTED and cid not in ibkr.service.unresolved
    assert row.venue_order_id == str(one_venue_order(sim, cid).perm_id)
    sim.set_price("SPY", "598.98")
    await until(lambda: ibkr.state_is(cid, OrderState.FILLED), "the fill, by push")
    await assert_recorded_once(ibkr, cid)
