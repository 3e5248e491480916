"""The MT4 adapter end to end (issue 14): real httpx -> the MT4 bridge simulator over HTTP, composed
with the real core.

No mocks: every test starts an ``Mt4Simulator`` (``venues/mt4/``) on a free port, with a bearer
token, builds the ``Mt4Adapter`` from ``Mt4Config`` and composes it as an executor does
(``ExecutionService`` over ``CompositeBrokerAdapter(mt4, PaperAdapter(), CircuitBreaker)``, a
``FillTracker`` polling the adapter on its own task, the package's ``InMemoryStore`` and
``InMemoryFillPublisher`` behind the fills topic; the restart runs on the real PostgreSQL). What the
issue calls "recorded" is read back from the store: order rows, fill rows, positions; what MT4 did
is read from the simulator's own tickets. Prices stand still unless a test moves them.

The venue contract suite (``test_venue_contract.py``) already proves the venue-neutral promises
for MT4; these are MT4's own: lots and units, tickets, SL/TP, partial close, MT4's retcodes, the
hedging and netting account models, and the bridge going away and coming back.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import partial
from typing import Any

import pytest
import pytest_asyncio

from adapters.memory import InMemoryFillPublisher, InMemoryStore
from adapters.mt4.config import Mt4Config
from adapters.mt4.execution import Mt4Adapter
from adapters.paper import PaperAdapter
from adapters.timescale import TimescaleStore
from execution.breaker import BreakerState, CircuitBreaker
from execution.fallback import CompositeBrokerAdapter
from execution.fill_tracker import FillTracker
from execution.ports import OrderRejected, PlacementUnknown
from execution.risk import PreTradeLimits
from execution.router import BrokerRouter
from execution.service import ExecutionService
from schemas import AssetClass, Broker, Fill, Order, OrderState, Signal
from tests.contract.venue_harness import MT4_SIM_TOKEN, mt4_test_config
from tests.fixtures.rig import Store, WritingSink
from tests.fixtures.rig import until as wait_until
from venues.common.prices import PricePath
from venues.mt4 import Mt4Simulator
from venues.mt4.tickets import Ticket as SimTicket

STILL = PricePath(seed=5, volatility=Decimal(0))
#: how long a test waits for something the simulator and the adapter do by themselves
PATIENCE = 10.0
CONTRACT = Decimal(100_000)

_ids = itertools.count(1)



async def until(predicate: Callable[[], bool | Awaitable[bool]], what: str, timeout: float = PATIENCE) -> None:
    await wait_until(predicate, what, timeout)




@dataclass
class Executor:
    """One MT4 executor as the bootstrap composes it, without Kafka."""

    sim: Mt4Simulator
    adapter: Mt4Adapter
    store: Store
    publisher: InMemoryFillPublisher
    sink: WritingSink
    tracker: FillTracker
    breaker: CircuitBreaker
    gateway: CompositeBrokerAdapter
    service: ExecutionService
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def submit(self, symbol: str = "EURUSD", *, quantity: str | int = 10_000, side: str = "BUY",
                     **fields: Any) -> Order:
        """A signal routed as the router does (FX to MT4) and handled by the service (steps 1-4);
        returns the order as it stands after placement."""
        signal = Signal.model_validate({
            "signal_id": f"mt4-{next(_ids)}", "strategy": "mt4-test", "symbol": symbol, "side": side,
            "quantity": Decimal(quantity), "asset_class": AssetClass.FX,
            "reference_price": Decimal(fields.pop("reference_price", "1.085")), **fields})
        [order] = await self.service.handle([BrokerRouter([Broker.MT4]).route(signal)])
        return order

    async def row(self, client_order_id: str) -> Order:
        return (await self.store.get_orders([client_order_id]))[client_order_id]

    async def state_is(self, client_order_id: str, state: OrderState) -> bool:
        return (await self.row(client_order_id)).state is state

    async def fills(self, client_order_id: str) -> list[Fill]:
        return await self.store.recorded_fills(client_order_id)

    async def position(self, symbol: str = "EURUSD") -> Decimal:
        return next((p.quantity for p in await self.store.positions(Broker.MT4) if p.symbol == symbol), Decimal(0))

    async def stop(self) -> None:
        """The process dies: its tasks stop and its connections close; claims are not released."""
        for task in self.tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.tasks.clear()
        await self.adapter.close()


def tickets(sim: Mt4Simulator, client_order_id: str) -> list[SimTicket]:
    """What MT4 holds under this client id (tickets it opened, remainders included)."""
    return [t for t in sim.engine.orders_for_client(client_order_id) if t.client_id == client_order_id]


def placements(sim: Mt4Simulator, client_order_id: str) -> int:
    """Tickets MT4 opened for this client id (remainders of partial closes are not placements)."""
    return sum(t.from_ticket is None for t in tickets(sim, client_order_id))


def breaker(mt4: Executor) -> BreakerState:
    return mt4.breaker.state


def units(lots: Decimal) -> Decimal:
    return (lots * CONTRACT).normalize()


async def assert_recorded_once(mt4: Executor, client_order_id: str) -> list[Fill]:
    """MT4 opened the order once; the store holds its fills adding up to what MT4 executed, at
    MT4's prices; nothing was emitted or published twice."""
    assert placements(mt4.sim, client_order_id) == 1, f"MT4 holds {placements(mt4.sim, client_order_id)} tickets"
    [ticket] = [t for t in tickets(mt4.sim, client_order_id) if t.from_ticket is None]
    fills = await mt4.fills(client_order_id)
    assert sum((f.quantity for f in fills), Decimal(0)) == units(ticket.volume)
    assert all(f.price == ticket.open_price for f in fills)
    emitted = [f.exec_id for f in mt4.sink.emitted if f.client_order_id == client_order_id]
    assert sorted(emitted) == sorted(f.exec_id for f in fills), "a fill was emitted twice (or not at all)"
    published = [f for f in mt4.publisher.published if f.client_order_id == client_order_id]
    assert sum((f.quantity for f in published), Decimal(0)) == sum((f.quantity for f in fills), Decimal(0))
    return fills


SimFactory = Callable[..., Awaitable[Mt4Simulator]]
ExecutorFactory = Callable[..., Awaitable[Executor]]


@pytest_asyncio.fixture(loop_scope="session")
async def sim_factory() -> AsyncIterator[SimFactory]:
    """Start bridge simulators (still prices, the suite's token); all stopped at teardown."""
    started: list[Mt4Simulator] = []

    async def start(*, port: int = 0, **knobs: Any) -> Mt4Simulator:
        knobs.setdefault("price_path", STILL)
        knobs.setdefault("api_token", MT4_SIM_TOKEN)
        sim = Mt4Simulator(**knobs)
        await sim.start(port=port)
        started.append(sim)
        return sim

    yield start
    for sim in started:
        await sim.stop()


@pytest_asyncio.fixture(loop_scope="session")
async def sim(sim_factory: SimFactory) -> Mt4Simulator:
    return await sim_factory()


def config(sim: Mt4Simulator, **overrides: Any) -> Mt4Config:
    config = mt4_test_config(sim.base_url, **overrides)
    assert isinstance(config, Mt4Config)
    return config


@pytest_asyncio.fixture(loop_scope="session")
async def executor_factory() -> AsyncIterator[ExecutorFactory]:
    """``await executor_factory(sim, store=..., **Mt4Config fields)``: a connected executor whose
    tracker polls on its own task; everything stopped and closed at teardown."""
    built: list[Executor] = []

    async def build(sim: Mt4Simulator, *, store: Store | None = None, owner: str | None = None,
                    lease_seconds: float = 30.0, failure_threshold: int = 5, cooldown: float = 30.0,
                    health_ttl: float = 0.0, **settings: Any) -> Executor:
        store = store if store is not None else InMemoryStore()
        publisher = InMemoryFillPublisher()
        adapter = Mt4Adapter(config(sim, **settings))
        sink = WritingSink(store, publisher)
        tracker = FillTracker(store, sink)
        tracker.listen_to(adapter)
        breaker = CircuitBreaker("mt4", failure_threshold=failure_threshold, cooldown=cooldown)
        gateway = CompositeBrokerAdapter(adapter, PaperAdapter(), breaker, health_ttl=health_ttl)
        service = ExecutionService(broker=gateway, store=store, sink=sink, tracker=tracker,
                                   limits=PreTradeLimits(Decimal(100_000_000), Decimal(10**10)),
                                   executor=Broker.MT4, owner=owner, lease_seconds=lease_seconds)
        executor = Executor(sim, adapter, store, publisher, sink, tracker, breaker, gateway, service)
        built.append(executor)
        with contextlib.suppress(Exception):  # a bridge that is down at start is the breaker's business
            await adapter.connect()
        executor.tasks.append(asyncio.create_task(tracker.run(), name="fill-tracker"))
        return executor

    yield build
    for executor in built:
        await executor.stop()


@pytest_asyncio.fixture(loop_scope="session")
async def mt4(sim: Mt4Simulator, executor_factory: ExecutorFactory) -> Executor:
    return await executor_factory(sim)


# -- 1. order types, polled to fill through the FillTracker ----------------------------------------------


@pytest.mark.parametrize(("order_type", "side", "prices", "cross"), [
    ("MARKET", "BUY", {}, None),
    ("MARKET", "SELL", {}, None),
    ("LIMIT", "BUY", {"limit_price": "1.08000"}, "1.07990"),     # buy limit: ask <= 1.08000
    ("LIMIT", "SELL", {"limit_price": "1.09000"}, "1.09000"),    # sell limit: bid >= 1.09000
    ("STOP", "BUY", {"stop_price": "1.09000"}, "1.09000"),       # buy stop: ask >= 1.09000
    ("STOP", "SELL", {"stop_price": "1.08000"}, "1.07995"),      # sell stop: bid <= 1.08000
], ids=["market-buy", "market-sell", "limit-buy", "limit-sell", "stop-buy", "stop-sell"])
async def test_market_limit_and_stop_orders_fill_by_polling(mt4: Executor, order_type: str, side: str,
                                                            prices: dict[str, str], cross: str | None) -> None:
    decimals: dict[str, Any] = {k: Decimal(v) for k, v in prices.items()}
    placed = await mt4.submit(quantity=20_000, side=side, order_type=order_type, time_in_force="GTC", **decimals)
    cid = placed.client_order_id
    [ticket] = tickets(mt4.sim, cid)
    assert (ticket.symbol, ticket.side, ticket.type, ticket.volume) == \
        ("EURUSD", side.lower(), order_type.lower(), Decimal("0.20"))
    assert placed.venue_order_id == str(ticket.ticket) and placed.broker is Broker.MT4
    if cross is None:
        assert ticket.state == "open"  # executed at once: buy at the ask, sell at the bid
        assert ticket.open_price == (Decimal("1.08510") if side == "BUY" else Decimal("1.08500"))
    else:
        assert (placed.state, ticket.state) == (OrderState.SUBMITTED, "pending")
        polls = mt4.sim.stats.by_endpoint.get("GET /orders", 0)
        await until(lambda: mt4.sim.stats.by_endpoint.get("GET /orders", 0) >= polls + 3, "three polls")
        assert await mt4.state_is(cid, OrderState.SUBMITTED) and mt4.tracker.is_tracking(cid)
        mt4.sim.set_price("EURUSD", Decimal(cross))
        assert ticket.state == "open"
    await until(partial(mt4.state_is, cid, OrderState.FILLED), "the fill, by polling")
    [fill] = await assert_recorded_once(mt4, cid)
    assert (fill.quantity, fill.price, fill.commission, fill.commission_asset) == \
        (Decimal(20_000), ticket.open_price, Decimal("1.40"), "USD")  # 7.00 per lot per side, charged at open
    assert fill.exec_id == f"mt4-{cid}-20000"
    row = await mt4.row(cid)
    assert (row.filled_quantity, row.avg_fill_price) == (Decimal(20_000), ticket.open_price)
    assert await mt4.position() == (20_000 if side == "BUY" else -20_000)
    assert not mt4.tracker.is_tracking(cid)


async def test_a_resting_limit_does_not_block_the_executor(mt4: Executor) -> None:
    """While limits rest at MT4 (tracked on the tracker's task), new orders are placed and filled."""
    resting = [await mt4.submit(order_type="LIMIT", limit_price=Decimal("1.07000"), time_in_force="GTC")
               for _ in range(3)]
    market = await mt4.submit(quantity=30_000)
    await until(partial(mt4.state_is, market.client_order_id, OrderState.FILLED), "the market order")
    assert all(mt4.tracker.is_tracking(o.client_order_id) for o in resting)
    assert [t.state for o in resting for t in tickets(mt4.sim, o.client_order_id)] == ["pending"] * 3


async def test_quantities_are_units_converted_to_lots_exactly_or_refused_with_the_reason(mt4: Executor) -> None:
    fine = await mt4.submit(quantity="123000")  # 1.23 lots
    assert [t.volume for t in tickets(mt4.sim, fine.client_order_id)] == [Decimal("1.23")]
    odd = await mt4.submit(quantity=12_345)
    row = await mt4.row(odd.client_order_id)
    assert row.state is OrderState.REJECTED and row.broker is Broker.MT4
    assert "quantity 12345 is not a multiple of 1000 units (0.01 lot)" in row.reason
    assert tickets(mt4.sim, odd.client_order_id) == []  # never sent
    assert mt4.sim.stats.by_endpoint.get("POST /order/place") == 1


async def test_a_stop_limit_and_an_ioc_limit_are_refused_before_sending(mt4: Executor) -> None:
    stop_limit = await mt4.submit(order_type="STOP", stop_price=Decimal("1.09"), limit_price=Decimal("1.0905"))
    ioc = await mt4.submit(order_type="LIMIT", limit_price=Decimal("1.08"), time_in_force="IOC")
    assert "no stop-limit" in (await mt4.row(stop_limit.client_order_id)).reason
    assert "IOC is not supported" in (await mt4.row(ioc.client_order_id)).reason
    assert "POST /order/place" not in mt4.sim.stats.by_endpoint


# -- 2. BRACKET as one MT4 order with SL/TP; modify ------------------------------------------------------


async def test_a_bracket_is_one_ticket_with_sl_and_tp_and_its_take_profit_closes_the_position(
        mt4: Executor) -> None:
    entry = await mt4.submit(order_type="BRACKET", stop_price=Decimal("1.07500"),
                             take_profit_price=Decimal("1.09500"), time_in_force="GTC")
    cid = entry.client_order_id
    [ticket] = tickets(mt4.sim, cid)
    assert (ticket.type, ticket.state, ticket.sl, ticket.tp) == \
        ("market", "open", Decimal("1.07500"), Decimal("1.09500"))
    await until(partial(mt4.state_is, cid, OrderState.FILLED), "the entry")
    sl, tp = f"{cid}/sl", f"{cid}/tp"
    await until(lambda: mt4.tracker.is_tracking(sl) and mt4.tracker.is_tracking(tp), "both exits tracked")
    assert await mt4.state_is(sl, OrderState.SUBMITTED) and await mt4.position() == 10_000

    mt4.sim.set_price("EURUSD", Decimal("1.09510"))  # bid through the TP: MT4 closes the ticket "[tp]"
    assert ticket.state == "closed" and ticket.comment.endswith("[tp]")
    await until(partial(mt4.state_is, tp, OrderState.FILLED), "the take-profit's fill")
    await until(partial(mt4.state_is, sl, OrderState.CANCELLED), "the stop-loss, cancelled by the TP")
    [exit_fill] = await mt4.fills(tp)
    assert (exit_fill.side.value, exit_fill.quantity, exit_fill.price) == ("SELL", Decimal(10_000), Decimal("1.0951"))
    assert "take-profit closed it" in (await mt4.row(sl)).reason
    assert await mt4.fills(sl) == []
    assert await mt4.position() == 0
    assert placements(mt4.sim, cid) == 1 and mt4.sim.stats.by_endpoint["POST /order/place"] == 1


async def test_modify_sets_sl_and_tp_on_the_ticket_and_mt4_checks_the_stop_level(mt4: Executor) -> None:
    placed = await mt4.submit(side="SELL")
    [ticket] = tickets(mt4.sim, placed.client_order_id)
    [modified] = await mt4.adapter.modify(placed, sl=Decimal("1.09000"), tp=Decimal("1.08000"))
    assert (modified.ticket, modified.sl, modified.tp) == (ticket.ticket, Decimal("1.09000"), Decimal("1.08000"))
    assert (ticket.sl, ticket.tp) == (Decimal("1.09000"), Decimal("1.08000"))
    moved = await mt4.adapter.modify_ticket(ticket.ticket, tp=Decimal("1.07000"))
    assert (moved.sl, moved.tp) == (Decimal("1.09000"), Decimal("1.07000"))  # what was left out stays
    with pytest.raises(OrderRejected) as err:  # an SL 2 points above a sell's ask
        await mt4.adapter.modify_ticket(ticket.ticket, sl=Decimal("1.08512"))
    assert err.value.code == 130 and "invalid stops" in str(err.value)

    pending = await mt4.submit(order_type="LIMIT", limit_price=Decimal("1.08000"), time_in_force="GTC")
    [repriced] = await mt4.adapter.modify(pending, price=Decimal("1.07900"), sl=Decimal("1.07000"))
    assert (repriced.state, repriced.price, repriced.sl) == ("pending", Decimal("1.07900"), Decimal("1.07000"))


# -- 3. close, full and partial; account -----------------------------------------------------------------


async def test_partial_then_full_close_leave_the_orders_fills_as_they_were(mt4: Executor) -> None:
    placed = await mt4.submit(quantity=100_000)  # 1.00 lot
    cid = placed.client_order_id
    await until(partial(mt4.state_is, cid, OrderState.FILLED), "the order")
    balance = (await mt4.adapter.account()).balance
    mt4.sim.set_price("EURUSD", Decimal("1.08700"))

    [first] = await mt4.adapter.close_position(placed, Decimal(40_000))
    assert (first.closed.state, first.closed.volume, first.closed.close_price) == \
        ("closed", Decimal("0.40"), Decimal("1.08700"))
    assert first.remainder is not None
    assert (first.remainder.volume, first.remainder.from_ticket, first.remainder.client_id) == \
        (Decimal("0.60"), first.closed.ticket, cid)
    after_partial = await mt4.adapter.query(placed)
    assert after_partial is not None
    assert (after_partial.state, after_partial.filled_quantity, after_partial.avg_fill_price,
            after_partial.commission) == (OrderState.FILLED, Decimal(100_000), Decimal("1.0851"), Decimal("7.00"))
    account = await mt4.adapter.account()
    # 0.40 lot x 100 000 x (1.08700 - 1.08510) = 76.00 profit, and that part's 2.80 commission
    assert account.balance == balance + Decimal("76.00") - Decimal("2.80")

    [rest] = await mt4.adapter.close_position(placed)
    assert (rest.closed.ticket, rest.closed.volume, rest.remainder) == (first.remainder.ticket, Decimal("0.60"), None)
    assert [t.state for t in tickets(mt4.sim, cid)] == ["closed", "closed"]
    final = await mt4.adapter.query(placed)
    assert final is not None and (final.state, final.filled_quantity) == (OrderState.FILLED, Decimal(100_000))
    assert placements(mt4.sim, cid) == 1 and len(await mt4.fills(cid)) == 1
    with pytest.raises(OrderRejected, match="0 open at MT4"):
        await mt4.adapter.close_position(placed, Decimal(1_000))


async def test_cancel_deletes_the_pending_ticket(mt4: Executor) -> None:
    placed = await mt4.submit(order_type="LIMIT", limit_price=Decimal("1.07000"), time_in_force="GTC")
    status = await mt4.adapter.cancel(placed)
    assert (status.state, status.filled_quantity) == (OrderState.CANCELLED, Decimal(0))
    assert [t.state for t in tickets(mt4.sim, placed.client_order_id)] == ["deleted"]
    await until(partial(mt4.state_is, placed.client_order_id, OrderState.CANCELLED), "the cancel recorded")


async def test_the_account_view_and_quotes_for_paper(mt4: Executor) -> None:
    await mt4.submit(quantity=50_000)
    account = await mt4.adapter.account()
    engine = mt4.sim.engine.account()
    assert (account.login, account.currency, account.leverage) == (5012345, "USD", 100)
    assert (str(account.balance), str(account.equity), str(account.margin), str(account.free_margin)) == \
        (engine["balance"], engine["equity"], engine["margin"], engine["free_margin"])
    assert account.margin == Decimal("542.55")  # 0.50 lot x 100 000 EUR / 100, at 1.08510
    quote = await mt4.adapter.quote("EURUSD")
    assert quote is not None and (quote.bid, quote.ask, quote.mid) == \
        (Decimal("1.08500"), Decimal("1.08510"), Decimal("1.08505"))
    assert await mt4.adapter.quote("EURCHF") is None
    paper = PaperAdapter(market_data=mt4.adapter)  # paper prices FX at MT4's quote
    priced = await paper.place(Order.model_validate({
        "signal_id": "paper-fx", "client_order_id": "paper-fx", "symbol": "EURUSD", "side": "BUY",
        "quantity": Decimal(10_000), "asset_class": AssetClass.FX, "broker": Broker.PAPER}))
    assert priced.avg_fill_price is not None and abs(priced.avg_fill_price - Decimal("1.08505")) < Decimal("0.01")


async def test_a_wrong_token_is_unhealthy_and_the_token_never_reaches_a_log(
        sim: Mt4Simulator, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    good = Mt4Adapter(config(sim))
    bad = Mt4Adapter(config(sim, api_token="wrong-token-0000"))
    try:
        await good.connect()
        assert await good.health_check()
        with pytest.raises(OrderRejected) as err:
            await bad.connect()
        assert err.value.code == 401 and "MT4_API_TOKEN" in str(err.value)
        assert not await bad.health_check()
        assert sim.stats.auth_failures >= 2
    finally:
        await good.close()
        await bad.close()
    assert MT4_SIM_TOKEN not in caplog.text and "wrong-token-0000" not in caplog.text
    assert MT4_SIM_TOKEN not in repr(good.config)


# -- 4. MT4's retcodes -----------------------------------------------------------------------------------


async def test_a_requote_and_a_busy_trade_context_are_retried_then_the_order_fills_once(mt4: Executor) -> None:
    mt4.sim.knobs.update({"requote_next": 2, "busy_next": 1})
    placed = await mt4.submit()
    assert placed.broker is Broker.MT4 and placed.rerouted_from is None
    await until(partial(mt4.state_is, placed.client_order_id, OrderState.FILLED), "the fill after the requotes")
    assert mt4.sim.stats.errors.get(138) == 2 and mt4.sim.stats.errors.get(146) == 1
    assert mt4.sim.stats.by_endpoint["POST /order/place"] == 4
    await assert_recorded_once(mt4, placed.client_order_id)


async def test_requotes_are_not_chased_past_the_orders_freshness(sim: Mt4Simulator,
                                                                 executor_factory: ExecutorFactory) -> None:
    """A signal older than MT4_REQUOTE_WINDOW is sent once; MT4's requote is not chased with a
    resend. Nothing was executed, so the order goes to paper with the reason (the fallback rule
    for a venue that cannot take an order now)."""
    mt4 = await executor_factory(sim, requote_window=5.0)
    sim.knobs.update({"requote_rate": 1.0})
    placed = await mt4.submit(ts=datetime.now(UTC) - timedelta(seconds=30))
    row = await mt4.row(placed.client_order_id)
    assert (row.broker, row.rerouted_from) == (Broker.PAPER, Broker.MT4)
    assert "requote (retcode 138)" in row.reason and "MT4_REQUOTE_WINDOW" in row.reason
    assert sim.stats.errors[138] == 1 and tickets(sim, placed.client_order_id) == []


async def test_not_enough_money_and_invalid_stops_are_rejected_with_mt4s_code(mt4: Executor) -> None:
    with pytest.raises(OrderRejected) as money:
        await mt4.adapter.place(Order.model_validate({
            "signal_id": "too-big", "client_order_id": "too-big", "symbol": "EURUSD", "side": "BUY",
            "quantity": Decimal(2_000_000), "asset_class": AssetClass.FX, "broker": Broker.MT4}))
    assert money.value.code == 134 and "not enough money (retcode 134)" in str(money.value)

    too_big = await mt4.submit(quantity=2_000_000)  # 20 lots need ~21 700 USD margin; 10 000 held
    tight = await mt4.submit(order_type="BRACKET", stop_price=Decimal("1.08490"), take_profit_price=Decimal("1.0950"))
    for order, code, words in ((too_big, 134, "not enough money"), (tight, 130, "invalid stops")):
        row = await mt4.row(order.client_order_id)
        assert (row.state, row.broker, row.rerouted_from) == (OrderState.REJECTED, Broker.MT4, None)
        assert f"{words} (retcode {code})" in row.reason
        assert mt4.sim.stats.errors[code] >= 1 and tickets(mt4.sim, order.client_order_id) == []
    assert mt4.breaker.state is BreakerState.CLOSED  # MT4 answered: nothing wrong with the transport
    assert "sl 1.08490 must be <= 1.08470" in (await mt4.row(tight.client_order_id)).reason


async def test_a_closed_market_is_rejected_with_code_132(mt4: Executor) -> None:
    mt4.sim.knobs.update({"market_closed": ["EURUSD"]})
    placed = await mt4.submit()
    row = await mt4.row(placed.client_order_id)
    assert row.state is OrderState.REJECTED and "market is closed (retcode 132)" in row.reason


# -- 5. ambiguity: a lost answer is resolved by asking, never by sending again ---------------------------


async def test_a_lost_placement_response_is_found_by_client_id_without_a_second_ticket(mt4: Executor) -> None:
    mt4.sim.faults.update({"lose_response_next": 1, "match": "POST /order/place"})
    placed = await mt4.submit()
    assert mt4.sim.stats.faults["lose"] == 1
    assert placed.broker is Broker.MT4 and placed.state is OrderState.FILLED
    await until(partial(mt4.state_is, placed.client_order_id, OrderState.FILLED), "the fill")
    await assert_recorded_once(mt4, placed.client_order_id)
    assert mt4.sim.stats.by_endpoint["POST /order/place"] == 1


async def test_a_lost_response_the_bridge_cannot_confirm_stays_at_mt4_until_it_can(
        sim: Mt4Simulator, executor_factory: ExecutorFactory) -> None:
    """The answer is lost and the bridge then fails every request: the order is neither called
    "not placed" (paper would trade it twice) nor sent again; once the bridge answers, the core's
    resolver asks by client id and finds the one ticket."""
    mt4 = await executor_factory(sim, health_ttl=60.0)
    assert await mt4.gateway.gateway() == (mt4.adapter, "")  # healthy, cached for the next placement
    attempts = mt4.adapter.config.backoff.attempts
    # every placement executes and loses its answer; the lookups after it fail (503) as often as
    # the adapter tries
    sim.faults.update({"lose_rate": 1.0, "fail_next": attempts, "match": "GET /orders"})
    placed = await mt4.submit()
    assert sim.stats.faults["lose"] == 1 and sim.stats.faults["fail"] == attempts
    cid = placed.client_order_id
    row = await mt4.row(cid)
    assert (row.state, row.broker, row.rerouted_from) == (OrderState.PENDING, Broker.MT4, None)
    assert cid in mt4.service.unresolved and placements(sim, cid) == 1

    sim.faults.update({"fail_next": attempts})
    await mt4.service.retry_unresolved()  # still cannot be asked: still unresolved, nothing sent
    assert cid in mt4.service.unresolved and sim.faults.fail_next == 0
    sim.faults.update({"lose_rate": 0.0})
    await mt4.service.retry_unresolved()
    await until(partial(mt4.state_is, cid, OrderState.FILLED), "the order, found by client id")
    assert cid not in mt4.service.unresolved
    await assert_recorded_once(mt4, cid)
    assert sim.stats.by_endpoint["POST /order/place"] == 1


async def test_a_5xx_on_placement_is_never_resent_while_mt4_may_still_execute_it(mt4: Executor) -> None:
    mt4.sim.faults.update({"fail_next": 1, "match": "POST /order/place"})
    placed = await mt4.submit()
    cid = placed.client_order_id
    assert (placed.state, placed.broker) == (OrderState.PENDING, Broker.MT4) and cid in mt4.service.unresolved
    with pytest.raises(PlacementUnknown, match="can still execute"):
        await mt4.adapter.query(placed)
    await mt4.service.retry_unresolved()
    assert cid in mt4.service.unresolved and tickets(mt4.sim, cid) == []  # asked; not sent
    assert mt4.sim.stats.by_endpoint["POST /order/place"] == 1


async def test_after_the_settle_delay_an_order_mt4_never_saw_is_placed_once(sim: Mt4Simulator,
                                                                          executor_factory: ExecutorFactory) -> None:
    mt4 = await executor_factory(sim, settle_delay=0.3)
    sim.faults.update({"fail_next": 1, "match": "POST /order/place"})
    placed = await mt4.submit()
    cid = placed.client_order_id
    assert cid in mt4.service.unresolved

    async def resolved() -> bool:
        await mt4.service.retry_unresolved()
        return await mt4.state_is(cid, OrderState.FILLED)

    await until(resolved, "the order placed once MT4's 'none' is final")
    await assert_recorded_once(mt4, cid)
    assert sim.stats.by_endpoint["POST /order/place"] == 2  # the 503 (never executed) and the one placement


# -- 6. the bridge goes away and comes back --------------------------------------------------------------


async def test_bridge_down_opens_the_breaker_reroutes_fx_to_paper_with_the_reason_and_recovers(
        sim_factory: SimFactory, executor_factory: ExecutorFactory) -> None:
    sim = await sim_factory()
    port = int(sim.base_url.rsplit(":", 1)[1])
    mt4 = await executor_factory(sim, failure_threshold=2, cooldown=1.5)
    before = await mt4.submit()
    assert before.broker is Broker.MT4

    await sim.stop()  # connection refused from now on
    down = [await mt4.submit(quantity=10_000, reference_price="1.0850") for _ in range(3)]
    rows = [await mt4.row(o.client_order_id) for o in down]
    assert all((r.broker, r.rerouted_from) == (Broker.PAPER, Broker.MT4) for r in rows)
    assert "mt4 failed health_check" in rows[0].reason
    assert breaker(mt4) is BreakerState.OPEN
    assert "mt4 circuit breaker open" in rows[2].reason
    for row in rows:
        await until(partial(mt4.state_is, row.client_order_id, OrderState.FILLED), "the paper fill")
    for placed in down:
        assert [f.broker for f in await mt4.fills(placed.client_order_id)] == [Broker.PAPER]

    back = await sim_factory(port=port, engine=sim.engine)  # the same terminal, its bridge restarted
    await until(lambda: breaker(mt4) is BreakerState.HALF_OPEN, "the breaker's cooldown")
    probe = await mt4.submit()
    assert (probe.broker, probe.rerouted_from) == (Broker.MT4, None)
    assert breaker(mt4) is BreakerState.CLOSED
    await until(partial(mt4.state_is, probe.client_order_id, OrderState.FILLED), "the order on MT4 again")
    assert placements(back, probe.client_order_id) == 1
    assert all(tickets(back, o.client_order_id) == [] for o in down)  # paper's orders never reached MT4


async def test_a_placement_refused_at_connect_goes_to_paper_with_the_reason(sim_factory: SimFactory,
                                                                          executor_factory: ExecutorFactory) -> None:
    """Healthy when asked (cached), then the bridge is gone when the order is sent: connection
    refused means it certainly never executed, so the order moves to paper rather than wait."""
    sim = await sim_factory()
    mt4 = await executor_factory(sim, health_ttl=60.0)
    assert await mt4.gateway.gateway() == (mt4.adapter, "")
    await sim.stop()
    placed = await mt4.submit(reference_price="1.0850")
    row = await mt4.row(placed.client_order_id)
    assert (row.broker, row.rerouted_from) == (Broker.PAPER, Broker.MT4)
    assert "mt4 unavailable: MT4 bridge unreachable during place order" in row.reason


# -- 7. restart with open MT4 orders ---------------------------------------------------------------------


async def test_a_restart_with_open_orders_recovers_the_fills_made_meanwhile_once(
        sim: Mt4Simulator, executor_factory: ExecutorFactory) -> None:
    """Limits rest at MT4; the executor dies (no graceful release) and the market takes them while
    nobody watches. A new process takes the expired claims over, finds every order by its client
    id and records each fill exactly once; nothing is placed again, and a new order still trades."""
    await restart_with_open_orders(sim, executor_factory, InMemoryStore())


async def test_a_restart_with_open_orders_recovers_the_fills_once_in_postgresql(
        sim: Mt4Simulator, executor_factory: ExecutorFactory, store: TimescaleStore) -> None:
    """The same with the order rows, claims and fills in PostgreSQL (fills unique per exec id,
    positions in the same transaction, leases on the database's clock)."""
    await restart_with_open_orders(sim, executor_factory, store)


async def restart_with_open_orders(sim: Mt4Simulator, executor_factory: ExecutorFactory, store: Store) -> None:
    first = await executor_factory(sim, store=store, owner="mt4-A", lease_seconds=1.0)
    buy = await first.submit(quantity=30_000, order_type="LIMIT", limit_price=Decimal("1.08000"), time_in_force="GTC")
    sell = await first.submit(quantity=20_000, side="SELL", order_type="LIMIT", limit_price=Decimal("1.09000"),
                              time_in_force="GTC")
    later = await first.submit(quantity=10_000, order_type="LIMIT", limit_price=Decimal("1.07000"),
                               time_in_force="GTC")
    resting = (buy, sell, later)
    assert all(o.state is OrderState.SUBMITTED for o in resting)
    await first.stop()

    sim.set_price("EURUSD", Decimal("1.07980"))  # the buy fills while nobody is watching
    sim.set_price("EURUSD", Decimal("1.09000"))  # and the sell
    assert [t.state for o in resting for t in tickets(sim, o.client_order_id)] == ["open", "open", "pending"]
    assert await store.recorded_fills() == []

    second = await executor_factory(sim, store=store, owner="mt4-B", lease_seconds=1.0)

    checked: list[int] = []

    async def taken_over() -> bool:  # the periodic sweep: each claim is taken once it expired
        checked.append((await second.service.reconcile()).checked)
        return sum(checked) == len(resting)

    await until(taken_over, "the dead executor's claims to expire and be taken over")
    for placed in (buy, sell):
        await until(partial(second.state_is, placed.client_order_id, OrderState.FILLED), "the outage fills")
    assert await second.state_is(later.client_order_id, OrderState.SUBMITTED)
    assert second.tracker.is_tracking(later.client_order_id)
    sim.set_price("EURUSD", Decimal("1.06990"))
    await until(partial(second.state_is, later.client_order_id, OrderState.FILLED), "the fill after the restart")
    fresh = await second.submit()
    await until(partial(second.state_is, fresh.client_order_id, OrderState.FILLED), "a new order")

    await second.service.reconcile()  # asked again: nothing more to record
    for placed in (*resting, fresh):
        assert placements(sim, placed.client_order_id) == 1
        [fill] = await store.recorded_fills(placed.client_order_id)
        [ticket] = tickets(sim, placed.client_order_id)
        assert (fill.quantity, fill.price) == (units(ticket.volume), ticket.open_price)
    assert sim.stats.by_endpoint["POST /order/place"] == 4
    assert await second.position() == 30_000 - 20_000 + 10_000 + 10_000


# -- 8. the two account models ---------------------------------------------------------------------------


async def test_hedging_by_default_a_sell_opens_a_second_ticket_and_positions_net(mt4: Executor) -> None:
    buy = await mt4.submit(quantity=10_000)
    sell = await mt4.submit(quantity=15_000, side="SELL")
    for placed in (buy, sell):
        await until(partial(mt4.state_is, placed.client_order_id, OrderState.FILLED), "the fills")
    assert [t.state for t in mt4.sim.engine.orders(state="open")] == ["open", "open"]
    assert await mt4.position() == -5_000


async def test_close_opposite_nets_fifo_and_only_the_excess_opens_a_ticket(sim: Mt4Simulator,
                                                                           executor_factory: ExecutorFactory) -> None:
    mt4 = await executor_factory(sim, close_opposite=True)
    first = await mt4.submit(quantity=10_000)
    sim.set_price("EURUSD", Decimal("1.08600"))
    second = await mt4.submit(quantity=20_000)
    sim.set_price("EURUSD", Decimal("1.08700"))
    sell = await mt4.submit(quantity=25_000, side="SELL")  # closes the first (FIFO), half of the second
    cid = sell.client_order_id
    await until(partial(mt4.state_is, cid, OrderState.FILLED), "the netting sell")

    closed = [t for t in sim.engine.orders_for_client(cid) if t.close_client_id == cid]
    assert [(t.client_id, t.volume, t.close_price) for t in closed] == [
        (first.client_order_id, Decimal("0.10"), Decimal("1.08700")),
        (second.client_order_id, Decimal("0.15"), Decimal("1.08700"))]
    assert tickets(sim, cid) == []  # nothing left to open: no ticket of its own
    [remainder] = [t for t in sim.engine.orders(state="open")]
    assert (remainder.client_id, remainder.volume, remainder.from_ticket) == \
        (second.client_order_id, Decimal("0.05"), closed[1].ticket)
    [fill] = await mt4.fills(cid)
    assert (fill.quantity, fill.price, fill.commission) == (Decimal(25_000), Decimal("1.087"), Decimal(0))
    assert await mt4.position() == 5_000

    flip = await mt4.submit(quantity=15_000, side="SELL")  # closes the last 0.05 and opens 0.10 short
    await until(partial(mt4.state_is, flip.client_order_id, OrderState.FILLED), "the flip")
    [opened] = tickets(sim, flip.client_order_id)
    assert (opened.side, opened.volume, opened.state) == ("sell", Decimal("0.10"), "open")
    [flip_fill] = await mt4.fills(flip.client_order_id)
    assert (flip_fill.quantity, flip_fill.price, flip_fill.commission) == \
        (Decimal(15_000), Decimal("1.087"), Decimal("0.70"))  # 5000 closed at the bid, 10000 sold at the bid
    assert await mt4.position() == -10_000
    assert [t.ticket for t in sim.engine.orders(state="open")] == [opened.ticket]
