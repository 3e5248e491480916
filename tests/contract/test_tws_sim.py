"""The TWS simulator against the real client: ib_async connects to it over TCP and trades.

No mocks: every test starts a ``TwsSimulator`` on free ports and talks to it with ``ib_async.IB``
exactly as the IBKR adapter does (connect with its synchronisation requests, qualify, place,
cancel, listen to execDetails/commissionReport). Prices stand still (volatility 0, no ticker)
unless a test moves them with ``set_price``, so every fill price is known in advance.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from ib_async import (
    IB,
    Contract,
    ExecutionFilter,
    Fill,
    Forex,
    Future,
    LimitOrder,
    MarketOrder,
    Option,
    Stock,
    StopOrder,
    Trade,
)

from tests.fixtures.binance import free_port
from tests.fixtures.rig import until
from venues.common.faults import Faults
from venues.common.prices import PricePath
from venues.tws import DEFAULT_ACCOUNT, ES_FUTURE, EURUSD, SPY, SPY_OPTION, TwsSimulator

ROOT = Path(__file__).resolve().parents[2]
STILL = PricePath(seed=3, volatility=Decimal(0))

SimFactory = Callable[..., Awaitable[TwsSimulator]]
Connect = Callable[..., Awaitable[IB]]


@pytest_asyncio.fixture(loop_scope="session")
async def tws_factory() -> AsyncIterator[SimFactory]:
    """Start simulators (still prices, no ticker unless asked); all stopped at teardown."""
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
async def connect() -> AsyncIterator[Connect]:
    """``await connect(sim, client_id)``: a connected ``ib_async.IB``; all disconnected at teardown."""
    clients: list[IB] = []

    async def go(sim: TwsSimulator, client_id: int = 1, *, timeout: float = 5.0, **kwargs: Any) -> IB:
        ib = IB()
        ib.RequestTimeout = 5
        clients.append(ib)
        await ib.connectAsync("127.0.0.1", sim.port, clientId=client_id, timeout=timeout, **kwargs)
        return ib

    yield go
    for ib in clients:
        ib.disconnect()


@pytest_asyncio.fixture(loop_scope="session")
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def roundtrip(ib: IB) -> None:
    """Everything the simulator sent before answering this has been read by the client."""
    await ib.reqCurrentTimeAsync()


def errors_of(ib: IB) -> list[tuple[int, int, str]]:
    """Collects (reqId, code, message) of every error message from now on."""
    seen: list[tuple[int, int, str]] = []
    ib.errorEvent += lambda req_id, code, message, _contract: seen.append((req_id, code, message))
    return seen


def spy() -> Contract:
    return Stock("SPY", "SMART", "USD")


# -- connecting ---------------------------------------------------------------------------------


async def test_connect_answers_every_sync_request_and_says_the_farms_are_ok(tws, connect):
    ib = IB()
    ib.RequestTimeout = 5
    notices = errors_of(ib)
    try:
        # raiseSyncErrors: any connect-time request left without its End message fails the connect
        await ib.connectAsync("127.0.0.1", tws.port, clientId=11, timeout=5, raiseSyncErrors=True)
        assert ib.isConnected()
        assert ib.managedAccounts() == [DEFAULT_ACCOUNT]
        assert {code for _, code, _ in notices} == {2104, 2106, 2158}  # informational only
        values = {v.tag: v.value for v in ib.accountValues() if v.currency in ("USD", "")}
        assert values["NetLiquidation"] == "1000000.00" and values["AccountCode"] == DEFAULT_ACCOUNT
        asked = tws.stats.by_endpoint
        for request in ("startApi", "reqPositions", "reqOpenOrders", "reqCompletedOrders", "reqAccountUpdates",
                        "reqAccountUpdatesMulti", "reqExecutions"):
            assert asked.get(request) == 1, request
        assert tws.connected_clients == [11]
    finally:
        ib.disconnect()
    await until(lambda: tws.connected_clients == [], "the session to end")


async def test_a_second_connection_with_a_client_id_in_use_gets_326_and_is_closed(tws, connect):
    first = await connect(tws, 5)
    second = IB()
    refused = errors_of(second)
    with pytest.raises((TimeoutError, ConnectionError)):
        await second.connectAsync("127.0.0.1", tws.port, clientId=5, timeout=1.5)
    assert (-1, 326, "Unable to connect as the client id is already in use. Retry with a unique client id.") \
        in refused
    assert not second.isConnected()
    assert tws.connected_clients == [5] and first.isConnected()
    await roundtrip(first)  # the first connection is untouched
    other = await connect(tws, 6)
    assert other.isConnected() and tws.connected_clients == [5, 6]


def test_the_simulator_needs_neither_client_library():
    """venues.tws is the server side: importing it loads neither ib_async nor ib_insync."""
    code = ("import sys, venues.tws, venues.tws.cli; "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('ib_async', 'ib_insync', 'eventkit')]; "
            "assert not bad, bad")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, env=env, timeout=60)


# -- contracts ------------------------------------------------------------------------------------


async def test_qualify_each_security_type(tws, connect):
    ib = await connect(tws)
    stock, gbtc, aapl = Stock("SPY", "SMART", "USD"), Stock("GBTC", "SMART", "USD"), Stock("AAPL", "SMART", "USD")
    option = Option("SPY", "20270115", 500, "C", "SMART", multiplier="100", currency="USD")
    future = Future("ES", "202612", "CME", currency="USD")
    fx = Forex("EURUSD")
    qualified = await ib.qualifyContractsAsync(stock, gbtc, aapl, option, future, fx)
    assert [c.conId for c in qualified] == [756733, 311853364, 265598, 700000501, 700000612, 12087792]
    assert stock.primaryExchange == "ARCA" and aapl.primaryExchange == "NASDAQ" and stock.exchange == "SMART"
    assert option.localSymbol == "SPY   270115C00500000" and option.multiplier == "100"
    assert future.lastTradeDateOrContractMonth == "20261218" and future.localSymbol == "ESZ6"
    assert future.multiplier == "50" and future.exchange == "CME"
    assert fx.secType == "CASH" and fx.exchange == "IDEALPRO" and fx.localSymbol == "EUR.USD"

    [details] = await ib.reqContractDetailsAsync(Contract(secType="FUT", localSymbol="ESZ6", exchange="CME"))
    assert details.minTick == 0.25 and details.contractMonth == "202612" and details.longName == "E-mini S&P 500"
    [by_id] = await ib.reqContractDetailsAsync(Contract(conId=SPY_OPTION.con_id))
    assert by_id.contract is not None and by_id.contract.right == "C" and by_id.contract.strike == 500.0
    ambiguous = await ib.reqContractDetailsAsync(Contract(symbol="SPY"))
    assert sorted(d.contract.secType for d in ambiguous if d.contract) == ["OPT", "STK"]


async def test_an_unknown_contract_is_error_200(tws, connect):
    ib = await connect(tws)
    errors = errors_of(ib)
    assert await ib.qualifyContractsAsync(Stock("NOPE", "SMART", "USD")) == [None]
    assert [code for _, code, _ in errors] == [200]

    trade = ib.placeOrder(Stock("NOPE", "SMART", "USD"), MarketOrder("BUY", 1))
    await until(trade.isDone, "the order on an unknown contract to end")
    assert trade.orderStatus.status == "Cancelled"
    assert errors[-1] == (trade.order.orderId, 200, "No security definition has been found for the request")
    assert tws.stats.orders_placed == 0 and tws.engine.orders == {}


# -- orders and fills -----------------------------------------------------------------------------------


async def test_market_order_fills_in_partial_executions_each_with_its_commission_report(tws_factory, connect):
    sim = await tws_factory(partial_fill_steps=3)
    ib = await connect(sim)
    fills: list[Fill] = []
    reports: dict[str, float] = {}
    ib.execDetailsEvent += lambda _trade, fill: fills.append(fill)
    ib.commissionReportEvent += lambda _trade, _fill, report: reports.__setitem__(report.execId, report.commission)

    trade = ib.placeOrder(spy(), MarketOrder("BUY", 30, orderRef="sig-mkt-1"))
    await until(lambda: trade.orderStatus.status == "Filled" and len(reports) == 3, "three fills and reports")

    assert [f.execution.shares for f in fills] == [10.0, 10.0, 10.0]
    assert [f.execution.cumQty for f in fills] == [10.0, 20.0, 30.0]
    assert {f.execution.price for f in fills} == {600.01}  # the ask, one tick over the path's 600.00
    assert {f.execution.orderRef for f in fills} == {"sig-mkt-1"}
    assert {f.execution.side for f in fills} == {"BOT"}
    assert len({f.execution.execId for f in fills}) == 3 and set(reports) == {f.execution.execId for f in fills}
    assert sum(Decimal(str(c)) for c in reports.values()) == Decimal("1.00")  # IB's minimum per order
    assert trade.orderStatus.filled == 30 and trade.orderStatus.remaining == 0
    assert trade.orderStatus.avgFillPrice == 600.01 and trade.order.permId > 0
    await until(lambda: [(p.contract.conId, p.position) for p in ib.positions()] == [(SPY.con_id, 30.0)],
                "the position update")
    assert sim.stats.orders_placed == 1


async def test_limit_order_rests_until_the_price_crosses_it(tws_factory, connect):
    sim = await tws_factory(partial_fill_steps=2)
    ib = await connect(sim)
    trade = ib.placeOrder(spy(), LimitOrder("BUY", 10, 599.50, orderRef="sig-lmt-1", tif="GTC"))
    await until(lambda: trade.orderStatus.status == "Submitted", "the order to work")
    assert trade.fills == []

    sim.set_price("SPY", "599.49")  # the ask (599.50) reaches the limit: one slice per price step
    await until(lambda: len(trade.fills) == 1, "the first slice")
    assert trade.orderStatus.status == "Submitted" and trade.orderStatus.remaining == 5
    sim.set_price("SPY", "599.40")
    await until(lambda: trade.orderStatus.status == "Filled", "the second slice")
    assert [(f.execution.shares, f.execution.price, f.execution.lastLiquidity) for f in trade.fills] \
        == [(5.0, 599.5, 1), (5.0, 599.5, 1)]  # resting: at its limit, adding liquidity


async def test_stop_order_triggers_when_the_last_price_reaches_it(tws, connect):
    ib = await connect(tws)
    trade = ib.placeOrder(spy(), StopOrder("SELL", 10, 590.00))
    await until(lambda: trade.orderStatus.status == "Submitted", "the stop to work")
    tws.set_price("SPY", "595.00")
    await roundtrip(ib)
    assert trade.fills == []
    tws.set_price("SPY", "590.00")
    await until(lambda: trade.orderStatus.status == "Filled", "the stop to fill")
    assert [(f.execution.side, f.execution.price) for f in trade.fills] == [("SLD", 589.99)]  # at the bid


async def test_option_future_and_fx_trade_with_their_multipliers(tws, connect):
    ib = await connect(tws)
    option = Option("SPY", "20270115", 500, "C", "SMART", multiplier="100", currency="USD")
    future = Future("ES", "202612", "CME", currency="USD")
    fx = Forex("EURUSD")
    await ib.qualifyContractsAsync(option, future, fx)
    reports: dict[int, float] = {}
    ib.commissionReportEvent += lambda trade, _f, r: reports.__setitem__(trade.contract.conId, r.commission)
    trades = [ib.placeOrder(option, MarketOrder("BUY", 2)), ib.placeOrder(future, MarketOrder("SELL", 3)),
              ib.placeOrder(fx, MarketOrder("BUY", 20000))]
    await until(lambda: all(t.orderStatus.status == "Filled" for t in trades) and len(reports) == 3, "fills")
    assert [t.fills[0].execution.price for t in trades] == [120.01, 5999.75, 1.08005]
    assert reports == {SPY_OPTION.con_id: 1.30, ES_FUTURE.con_id: 2.55, EURUSD.con_id: 2.00}
    await until(lambda: len(ib.positions()) == 3, "three positions")
    avg_cost = {p.contract.conId: (p.position, p.avgCost) for p in ib.positions()}
    assert avg_cost[SPY_OPTION.con_id] == (2.0, 12001.0)  # IB's average cost includes the multiplier
    assert avg_cost[ES_FUTURE.con_id] == (-3.0, 299987.5)


@pytest.mark.parametrize(
    ("order", "code"),
    [
        (MarketOrder("BUY", 0), 201),
        (LimitOrder("BUY", 10, 600.001), 110),
    ],
    ids=["quantity-zero-201", "off-tick-110"],
)
async def test_rejections_carry_ib_codes(tws, connect, order, code):
    ib = await connect(tws)
    errors = errors_of(ib)
    trade = ib.placeOrder(spy(), order)
    await until(trade.isDone, "the rejection")
    assert trade.orderStatus.status == "Cancelled"  # how ib_async records a rejected order
    assert [(req_id, c) for req_id, c, _ in errors] == [(trade.order.orderId, code)]
    assert trade.log[-1].errorCode == code


async def test_cancel_answers_cancelled_and_202(tws, connect):
    ib = await connect(tws)
    errors = errors_of(ib)
    trade = ib.placeOrder(spy(), LimitOrder("BUY", 10, 500.00, orderRef="sig-cxl-1"))
    await until(lambda: trade.orderStatus.status == "Submitted", "the order to work")
    ib.cancelOrder(trade.order)
    await until(lambda: trade.orderStatus.status == "Cancelled", "the cancel")
    await until(lambda: errors != [], "the 202")
    assert errors == [(trade.order.orderId, 202, "Order Canceled - reason:")]
    [done] = await ib.reqCompletedOrdersAsync(apiOnly=True)
    assert done.order.orderRef == "sig-cxl-1" and done.orderStatus.status == "Cancelled"

    ib.client.cancelOrder(trade.order.orderId + 100)  # never placed
    await until(lambda: len(errors) == 2, "the unknown-order error")
    assert errors[1][1] == 10147


# -- brackets and OCA ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("exit_price", "exit_leg"), [("605.01", "take-profit"), ("594.99", "stop-loss")])
async def test_bracket_entry_fills_then_one_child_fills_and_the_other_is_cancelled(
    tws, connect, exit_price, exit_leg
):
    ib = await connect(tws)
    contract = spy()
    bracket = ib.bracketOrder("BUY", 10, limitPrice=600.01, takeProfitPrice=605.00, stopLossPrice=595.00)
    ib.oneCancelsAll([bracket.takeProfit, bracket.stopLoss], "bracket-1", 1)  # as the adapter sends them
    parent = ib.placeOrder(contract, bracket.parent)
    take_profit = ib.placeOrder(contract, bracket.takeProfit)
    await roundtrip(ib)
    # transmit=0: held by TWS, nothing works or fills yet
    assert tws.engine.open_orders() == [] and parent.fills == []
    assert parent.orderStatus.status == "PendingSubmit"

    stop_loss = ib.placeOrder(contract, bracket.stopLoss)  # the last child transmits the bracket
    await until(lambda: parent.orderStatus.status == "Filled", "the entry to fill")  # marketable at 600.01
    await until(lambda: take_profit.orderStatus.status == stop_loss.orderStatus.status == "Submitted",
                "the children to work")
    assert [t.orderStatus.parentId for t in (take_profit, stop_loss)] == [parent.order.orderId] * 2

    tws.set_price("SPY", exit_price)
    winner, loser = (take_profit, stop_loss) if exit_leg == "take-profit" else (stop_loss, take_profit)
    await until(lambda: winner.orderStatus.status == "Filled" and loser.orderStatus.status == "Cancelled",
                f"the {exit_leg} to fill and the other child to be cancelled")
    assert loser.fills == []
    await until(lambda: ib.positions() == [], "the position to net to zero (IB then drops it)")
    [position] = tws.engine.account_positions()
    assert position.quantity == 0 and position.realized_pnl != 0


async def test_cancelling_a_bracket_parent_cancels_its_children(tws, connect):
    ib = await connect(tws)
    contract = spy()
    bracket = ib.bracketOrder("BUY", 10, limitPrice=590.00, takeProfitPrice=605.00, stopLossPrice=585.00)
    trades = [ib.placeOrder(contract, o) for o in bracket]
    await until(lambda: [t.orderStatus.status for t in trades] == ["Submitted", "PreSubmitted", "PreSubmitted"],
                "the parent to work and its children to wait")
    ib.cancelOrder(trades[0].order)
    await until(lambda: all(t.orderStatus.status == "Cancelled" for t in trades), "all three cancelled")


async def test_oca_group_one_fills_the_others_are_cancelled(tws, connect):
    ib = await connect(tws)
    orders = ib.oneCancelsAll([LimitOrder("BUY", 10, 599.00), LimitOrder("BUY", 10, 598.00)], "oca-1", 1)
    first, second = (ib.placeOrder(spy(), o) for o in orders)
    await until(lambda: first.orderStatus.status == second.orderStatus.status == "Submitted", "both working")
    tws.set_price("SPY", "598.99")
    await until(lambda: first.orderStatus.status == "Filled" and second.orderStatus.status == "Cancelled",
                "one filled, the other cancelled")


# -- who sees what ----------------------------------------------------------------------------------------


async def test_master_client_sees_every_clients_orders_and_executions(tws_factory, connect):
    sim = await tws_factory(master_client_id=0)
    master = await connect(sim, 0)
    owner = await connect(sim, 1)
    bystander = await connect(sim, 2)
    live: list[Fill] = []
    master.execDetailsEvent += lambda _t, fill: live.append(fill)

    trade = owner.placeOrder(spy(), LimitOrder("BUY", 10, 599.00, orderRef="sig-own-1"))
    await until(lambda: [t.order.orderRef for t in master.openTrades()] == ["sig-own-1"], "the master to see it")
    [seen] = master.openTrades()
    assert seen.order.clientId == 1 and seen.order.orderId == trade.order.orderId
    sim.set_price("SPY", "598.99")
    await until(lambda: trade.orderStatus.status == "Filled" and len(live) == 1, "the fill, live at the master")
    assert live[0].execution.clientId == 1 and live[0].execution.orderRef == "sig-own-1"
    await until(lambda: seen.orderStatus.status == "Filled", "the master's copy to be filled")

    # requests from the master answer for every client; from another client, for itself only
    assert [f.execution.orderRef for f in await master.reqExecutionsAsync()] == ["sig-own-1"]
    assert [t.order.orderRef for t in await master.reqCompletedOrdersAsync(False)] == ["sig-own-1"]
    assert await bystander.reqExecutionsAsync() == []
    assert await bystander.reqCompletedOrdersAsync(False) == []
    assert bystander.trades() == []

    resting = owner.placeOrder(spy(), LimitOrder("SELL", 5, 650.00, orderRef="sig-own-2"))
    await until(lambda: resting.orderStatus.status == "Submitted", "the second order to work")
    assert await bystander.reqOpenOrdersAsync() == []
    assert [t.order.orderRef for t in await bystander.reqAllOpenOrdersAsync()] == ["sig-own-2"]

    # a master that connects later learns them all at connect time
    master.disconnect()
    late = await connect(sim, 0)
    assert [t.order.orderRef for t in late.openTrades()] == ["sig-own-2"]
    assert [f.execution.orderRef for f in late.fills()] == ["sig-own-1"]


async def test_each_client_sees_only_its_own_orders_without_a_master(tws, connect):
    one = await connect(tws, 1)
    two = await connect(tws, 2)
    trade = one.placeOrder(spy(), MarketOrder("BUY", 1, orderRef="only-mine"))
    await until(lambda: trade.orderStatus.status == "Filled", "the fill")
    await roundtrip(two)
    assert two.trades() == [] and two.fills() == []
    assert await two.reqExecutionsAsync(ExecutionFilter(clientId=1)) == []


async def test_execution_filter(tws, connect):
    ib = await connect(tws)
    trades = [ib.placeOrder(spy(), MarketOrder("BUY", 1)), ib.placeOrder(Stock("AAPL", "SMART", "USD"),
                                                                          MarketOrder("SELL", 2))]
    await until(lambda: all(t.orderStatus.status == "Filled" for t in trades), "both fills")
    assert [f.contract.symbol for f in await ib.reqExecutionsAsync(ExecutionFilter(symbol="AAPL"))] == ["AAPL"]
    assert [f.execution.side for f in await ib.reqExecutionsAsync(ExecutionFilter(side="BUY"))] == ["BOT"]
    assert await ib.reqExecutionsAsync(ExecutionFilter(time="20990101 00:00:00")) == []


# -- market data ----------------------------------------------------------------------------------------


async def test_snapshot_quotes_for_paper_pricing(tws, connect):
    ib = await connect(tws)
    stock, es = spy(), Future("ES", "202612", "CME")
    await ib.qualifyContractsAsync(stock, es)  # ib_async keys tickers by conId
    [spy_ticker, es_ticker] = await ib.reqTickersAsync(stock, es)
    assert (spy_ticker.bid, spy_ticker.ask, spy_ticker.last) == (599.99, 600.01, 600.0)
    assert (es_ticker.bid, es_ticker.ask, es_ticker.last) == (5999.75, 6000.25, 6000.0)

    errors = errors_of(ib)
    [unknown] = await ib.reqTickersAsync(Stock("NOPE", "SMART", "USD", conId=1))
    assert [code for _, code, _ in errors] == [200] and unknown.last != unknown.last  # nan: no data


async def test_streaming_quotes_follow_the_price_path(tws, connect):
    ib = await connect(tws)
    [stock] = await ib.qualifyContractsAsync(spy())
    ticker = ib.reqMktData(stock)
    await until(lambda: ticker.last == 600.0, "the first quote")
    tws.set_price("SPY", "601.50")
    await until(lambda: (ticker.bid, ticker.ask, ticker.last) == (601.49, 601.51, 601.5), "the move")


# -- faults and the nightly restart -----------------------------------------------------------------------


async def test_lost_acknowledgement_the_order_works_and_its_fills_are_reported(tws, connect):
    ib = await connect(tws)
    tws.faults.update({"lose_response_next": 1, "match": "placeOrder"})
    trade = ib.placeOrder(spy(), LimitOrder("BUY", 10, 599.00, orderRef="sig-lost-1"))
    await roundtrip(ib)
    assert trade.orderStatus.status == "PendingSubmit"  # neither openOrder nor orderStatus came back
    assert tws.stats.orders_placed == 1 and tws.stats.faults["lose"] == 1 and ib.isConnected()
    [found] = await ib.reqOpenOrdersAsync()  # asking IB finds it by orderRef
    assert found.order.orderRef == "sig-lost-1" and found.order.orderId == trade.order.orderId

    tws.set_price("SPY", "598.99")
    await until(lambda: trade.orderStatus.status == "Filled", "the fill")
    assert [f.execution.orderRef for f in trade.fills] == ["sig-lost-1"]


async def test_a_dropped_placement_closes_the_connection_unprocessed(tws, connect):
    ib = await connect(tws, 4)
    tws.faults.update({"drop_next": 1, "match": "placeOrder"})
    trade = ib.placeOrder(spy(), MarketOrder("BUY", 1, orderRef="sig-drop-1"))
    await until(lambda: not ib.isConnected(), "the connection to drop")
    assert tws.engine.orders_by_ref("sig-drop-1") == [] and tws.stats.orders_placed == 0
    assert trade.orderStatus.status == "PendingSubmit"
    again = await connect(tws, 4)  # nothing of it is known after reconnecting either
    assert again.trades() == [] and again.fills() == []


async def test_fail_rate_refuses_connections_until_lifted(tws_factory, http):
    sim = await tws_factory(faults=Faults(fail_rate=1.0))
    with pytest.raises((ConnectionError, TimeoutError)):
        await IB().connectAsync("127.0.0.1", sim.port, clientId=1, timeout=2)
    async with http.post(f"{sim.control_url}/_sim/faults", json={"fail_rate": 0}) as resp:
        assert resp.status == 200
    ib = IB()
    await ib.connectAsync("127.0.0.1", sim.port, clientId=1, timeout=5)
    try:
        assert ib.isConnected()
    finally:
        ib.disconnect()
    async with http.get(f"{sim.control_url}/_sim/stats") as resp:
        stats = await resp.json()
    assert stats["faults"]["fail"] == 1 and stats["by_endpoint"]["CONNECT"] == 2


async def test_restart_drops_everyone_orders_fill_meanwhile_and_reconnect_resyncs(tws, connect, http):
    ib = await connect(tws, 3)
    resting = ib.placeOrder(spy(), LimitOrder("BUY", 10, 599.00, orderRef="sig-night-1", tif="GTC"))
    await until(lambda: resting.orderStatus.status == "Submitted", "the order to work")
    used_id = resting.order.orderId

    async with http.post(f"{tws.control_url}/_sim/restart", json={"seconds": 1.0}) as resp:
        assert resp.status == 200 and (await resp.json())["dropped_connections"] == 1
    await until(lambda: not ib.isConnected(), "the client to notice the disconnect")
    with pytest.raises(ConnectionRefusedError):  # the port is closed while TWS restarts
        await IB().connectAsync("127.0.0.1", tws.port, clientId=3, timeout=2)
    tws.set_price("SPY", "598.99")  # fills during the outage: nobody is told
    assert [o.status for o in tws.engine.orders_by_ref("sig-night-1")] == ["Filled"]

    async def reconnect() -> IB:
        deadline = asyncio.get_running_loop().time() + 10
        while True:
            try:
                return await connect(tws, 3)
            except (ConnectionRefusedError, OSError):
                if asyncio.get_running_loop().time() > deadline:
                    raise
                await asyncio.sleep(0.05)

    again = await reconnect()
    # the connect-time reqExecutions and reqCompletedOrders report what happened meanwhile
    [fill] = again.fills()
    assert (fill.execution.orderRef, fill.execution.shares, fill.execution.price) == ("sig-night-1", 10.0, 599.0)
    assert fill.commissionReport.execId == fill.execution.execId and fill.commissionReport.commission == 1.0
    [done] = await again.reqCompletedOrdersAsync(False)
    assert done.order.orderRef == "sig-night-1" and done.orderStatus.status == "Filled"
    assert done.order.filledQuantity == 10 and done.order.permId == fill.execution.permId

    # order ids are never reused: nextValidId is above every id this client id used
    next_id = again.client.getReqId()
    assert next_id > used_id
    errors = errors_of(again)
    stale = again.placeOrder(spy(), LimitOrder("BUY", 1, 500.00, orderId=used_id))
    await until(stale.isDone, "the duplicate order id to be refused")
    assert [code for _, code, _ in errors] == [103]
    fresh = again.placeOrder(spy(), MarketOrder("BUY", 1))
    await until(lambda: fresh.orderStatus.status == "Filled", "a new order after the restart")
    assert fresh.order.orderId > used_id


async def test_control_endpoints_validate_and_report(tws, http):
    async with http.post(f"{tws.control_url}/_sim/restart", json={"seconds": -1}) as resp:
        assert resp.status == 400
    async with http.post(f"{tws.control_url}/_sim/price", json={"key": "SPY", "price": "612.34"}) as resp:
        assert resp.status == 200 and (await resp.json())["price"] == "612.34"
    async with http.get(f"{tws.control_url}/_sim/tws") as resp:
        state = await resp.json()
    assert state["listening"] is True and state["prices"]["SPY"] == "612.34"
    assert state["con_ids"]["ESZ6"] == ES_FUTURE.con_id and state["master_client_id"] is None


async def test_a_notice_is_delivered_and_changes_nothing(tws, connect, http):
    ib = await connect(tws)
    trade = ib.placeOrder(spy(), LimitOrder("BUY", 1, 590.00))
    await until(lambda: trade.orderStatus.status == "Submitted", "the order to work")
    errors = errors_of(ib)
    body = {"code": 2104, "message": "Market data farm connection is OK:usfarm"}
    async with http.post(f"{tws.control_url}/_sim/notice", json=body) as resp:
        assert (await resp.json()) == {"sent_to": 1}
    await until(lambda: errors != [], "the notice")
    assert errors == [(-1, 2104, "Market data farm connection is OK:usfarm")]
    assert trade.orderStatus.status == "Submitted" and ib.isConnected()


# -- standalone -------------------------------------------------------------------------------------------


async def test_superintel_venue_tws_runs_standalone(http):
    from devstack.cli import available_venues, venue_main

    assert "tws" in available_venues() and venue_main("tws") is not None
    port, control = free_port(), free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "venues.tws.cli", "--port", str(port), "--control-port", str(control),
        "--master-client-id", "9", "--tick-ms", "50", "--partial-fill-steps", "2", "--seed", "4",
        cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    ib = IB()
    try:
        deadline = asyncio.get_running_loop().time() + 20
        while True:
            try:
                await ib.connectAsync("127.0.0.1", port, clientId=9, timeout=5)
                break
            except (ConnectionRefusedError, OSError):
                assert proc.returncode is None and asyncio.get_running_loop().time() < deadline
                await asyncio.sleep(0.1)
        trade: Trade = ib.placeOrder(Stock("GBTC", "SMART", "USD"), MarketOrder("BUY", 4))
        await until(lambda: trade.orderStatus.status == "Filled", "the fill")
        assert len(trade.fills) == 2
        async with http.get(f"http://127.0.0.1:{control}/_sim/tws") as resp:
            state = await resp.json()
        assert state["master_client_id"] == 9 and state["clients"] == [9]
    finally:
        ib.disconnect()
        proc.terminate()
        output, _ = await asyncio.wait_for(proc.communicate(), timeout=10)
    assert proc.returncode == 0, output.decode(errors="replace")
    assert b"tws simulator on 127.0.0.1:" in output
