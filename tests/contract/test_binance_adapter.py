"""BinanceAdapter through real ccxt to the simulator over HTTP: every outcome the core relies on."""

from __future__ import annotations

import asyncio
import logging
from decimal import Decimal
from typing import Any

import pytest
from pydantic import SecretStr

from adapters.binance import PLUGIN
from adapters.binance.client import CCXT_LOGGER
from adapters.binance.errors import TRANSIENT, OrderStateUnknown, maybe_reached_venue
from adapters.binance.execution import BinanceAdapter
from adapters.binance.parsing import order_state, parse_order, to_ccxt_symbol
from execution.clock import ManualClock
from execution.ports import BrokerPort, BrokerUnavailable, OrderRejected, VenueOrderStatus
from schemas import AssetClass, Broker, Order, OrderState, OrderType, Side, TimeInForce, client_order_id_for
from tests.fixtures.binance import SIM_API_KEY, SIM_API_SECRET, binance_test_config

D = Decimal
_seq = iter(range(1, 1_000_000))


def make_order(
    *,
    symbol: str = "BTC-USDT",
    side: Side = Side.BUY,
    quantity: str = "0.01",
    order_type: OrderType = OrderType.MARKET,
    limit_price: str | None = None,
    stop_price: str | None = None,
    take_profit_price: str | None = None,
    tif: TimeInForce = TimeInForce.GTC,
) -> Order:
    signal_id = f"sig-binance-{next(_seq)}"
    return Order(
        signal_id=signal_id,
        client_order_id=client_order_id_for(signal_id),
        symbol=symbol,
        side=side,
        quantity=D(quantity),
        order_type=order_type,
        limit_price=D(limit_price) if limit_price else None,
        stop_price=D(stop_price) if stop_price else None,
        take_profit_price=D(take_profit_price) if take_profit_price else None,
        time_in_force=tif,
        asset_class=AssetClass.CRYPTO,
        broker=Broker.BINANCE,
    )


def must(status: VenueOrderStatus | None) -> VenueOrderStatus:
    assert status is not None
    return status


def posts(sim: Any) -> int:
    return int(sim.stats.by_endpoint.get("POST /api/v3/order", 0))


# -- pure parsing ----------------------------------------------------------------------------


@pytest.mark.parametrize("symbol", ["BTC-USDT", "BTCUSDT", "BTC/USDT", "btc_usdt", " btc-usdt "])
def test_symbol_mapping(symbol):
    assert to_ccxt_symbol(symbol) == "BTC/USDT"


def test_symbol_mapping_uses_longest_quote_and_refuses_nonsense():
    assert to_ccxt_symbol("ETHFDUSD") == "ETH/FDUSD"
    assert to_ccxt_symbol("ETHBTC") == "ETH/BTC"
    with pytest.raises(ValueError, match="BASE-QUOTE"):
        to_ccxt_symbol("SPY")


@pytest.mark.parametrize(
    ("status", "filled", "state"),
    [
        ("NEW", "0", OrderState.SUBMITTED),
        ("PARTIALLY_FILLED", "1", OrderState.PARTIALLY_FILLED),
        ("FILLED", "2", OrderState.FILLED),
        ("CANCELED", "1", OrderState.CANCELLED),
        ("REJECTED", "0", OrderState.REJECTED),
        ("EXPIRED", "0", OrderState.EXPIRED),
        ("EXPIRED_IN_MATCH", "0", OrderState.EXPIRED),
        ("PENDING_CANCEL", "1", OrderState.PARTIALLY_FILLED),
    ],
)
def test_order_state_mapping(status, filled, state):
    assert order_state(status, D(filled)) is state


def test_parse_order_keeps_exact_decimals_and_original_client_id():
    status = parse_order(
        {"symbol": "BTCUSDT", "orderId": 7, "clientOrderId": "cancel-id", "origClientOrderId": "si-own",
         "executedQty": "0.30000000", "cummulativeQuoteQty": "17700.03000000", "status": "CANCELED"}
    )
    assert status.client_order_id == "si-own" and status.venue_order_id == "7"
    assert status.filled_quantity == D("0.3") and status.avg_fill_price == D("59000.1")
    assert status.state is OrderState.CANCELLED


# -- connection and health -------------------------------------------------------------------


async def test_connects_and_is_healthy(binance_adapter, binance_sim):
    port: BrokerPort = binance_adapter  # structurally a BrokerPort, checked by mypy
    assert isinstance(port, BrokerPort)
    assert binance_adapter.name is Broker.BINANCE
    assert binance_adapter.poll_interval == 0.05
    assert await binance_adapter.health_check() is True
    client = binance_adapter.client
    assert client.enableRateLimit is True
    assert {"BTC/USDT", "ETH/USDT", "SOL/USDT"} <= set(client.markets)
    assert binance_sim.stats.by_endpoint["GET /api/v3/exchangeInfo"] == 1
    assert binance_sim.stats.by_endpoint["GET /api/v3/time"] >= 1  # clock synced on connect


async def test_one_shared_ccxt_client_per_process_and_credentials(binance_sim):
    config = binance_test_config(binance_sim.base_url)
    a, b = BinanceAdapter(config), BinanceAdapter(config)
    await a.connect()
    await b.connect()
    try:
        assert a.client is b.client
        await a.close()
        assert await b.health_check() is True  # still open for the other user
    finally:
        await b.close()


async def test_health_check_false_when_venue_down(binance_adapter, binance_sim):
    await binance_sim.stop()
    assert await binance_adapter.health_check() is False


# -- the plug-in ------------------------------------------------------------------------------


async def test_plugin_builds_one_adapter_for_orders_and_prices(binance_sim):
    parts = PLUGIN.build(binance_test_config(binance_sim.base_url), ManualClock())
    assert isinstance(parts.broker, BinanceAdapter) and parts.market_data is parts.broker
    await parts.broker.connect()
    try:
        assert await parts.broker.health_check() is True
        _, ask = binance_sim.engine.bid_ask("BTCUSDT")
        quote = await parts.market_data.quote("BTC-USDT")
        assert quote is not None and quote.ask == ask
        order = make_order(quantity="0.01")
        status = await parts.broker.place(order)
        assert status.state is OrderState.FILLED and status.avg_fill_price == ask
        assert must(await parts.broker.query(order)).filled_quantity == D("0.01")
    finally:
        await parts.broker.close()


async def test_credential_rechecks_follow_the_handed_clock(binance_sim):
    clock = ManualClock()
    config = binance_test_config(binance_sim.base_url, api_secret=SecretStr("wrong-secret-0a1b"),
                                 auth_recheck_interval=30.0)
    adapter = PLUGIN.build(config, clock).broker
    await adapter.connect()

    def account_calls() -> int:
        return int(binance_sim.stats.by_endpoint.get("GET /api/v3/account", 0))

    try:
        probed = account_calls()
        assert probed >= 1  # connect verified the credentials once
        assert await adapter.health_check() is False
        assert account_calls() == probed  # the clock has not moved: no re-check yet
        clock.advance(30)
        assert await adapter.health_check() is False
        assert account_calls() > probed  # due by the handed clock, not the wall clock
    finally:
        await adapter.close()


# -- execution -------------------------------------------------------------------------------


async def test_market_order_fills_with_client_order_id(binance_adapter, binance_sim):
    _, ask = binance_sim.engine.bid_ask("BTCUSDT")
    order = make_order(quantity="0.02")
    status = await binance_adapter.place(order)
    assert status.state is OrderState.FILLED
    assert status.client_order_id == order.client_order_id
    assert status.filled_quantity == D("0.02") and status.avg_fill_price == ask
    assert status.commission == D("0.00002") and status.commission_asset == "BTC"
    [venue] = binance_sim.engine.orders_for(order.client_order_id)
    assert str(venue["orderId"]) == status.venue_order_id and venue["type"] == "MARKET"


async def test_limit_order_rests_lists_and_cancels(binance_adapter, binance_sim):
    order = make_order(side=Side.SELL, quantity="0.5", order_type=OrderType.LIMIT, limit_price="65000.5",
                       tif=TimeInForce.DAY)
    placed = await binance_adapter.place(order)
    assert placed.state is OrderState.SUBMITTED and placed.filled_quantity == 0
    [venue] = binance_sim.engine.orders_for(order.client_order_id)
    assert venue["timeInForce"] == "GTC" and D(venue["price"]) == D("65000.5")  # DAY -> GTC

    listed = await binance_adapter.fetch_open_orders("BTC-USDT")
    assert [s.client_order_id for s in listed] == [order.client_order_id]
    assert [s.client_order_id for s in await binance_adapter.fetch_open_orders()] == [order.client_order_id]

    cancelled = await binance_adapter.cancel(order)
    assert cancelled.state is OrderState.CANCELLED and cancelled.client_order_id == order.client_order_id
    assert await binance_adapter.fetch_open_orders("BTC-USDT") == []
    assert binance_sim.engine.balance("BTC")[1] == 0


async def test_partial_fills_reported_cumulatively_with_commission(binance_sim_factory):
    sim = await binance_sim_factory(partial_fill_steps=3)
    adapter = BinanceAdapter(binance_test_config(sim.base_url))
    await adapter.connect()
    try:
        order = make_order(quantity="0.3", order_type=OrderType.LIMIT, limit_price="59000")
        assert (await adapter.place(order)).state is OrderState.SUBMITTED
        sim.set_price("BTCUSDT", D("58500"))  # crosses: first third fills
        seen = [must(await adapter.query(order))]
        seen.append(must(await adapter.query(order)))  # unchanged: no extra trade lookup
        sim.tick()
        seen.append(must(await adapter.query(order)))
        sim.tick()
        seen.append(must(await adapter.query(order)))
    finally:
        await adapter.close()
    assert [(s.state, s.filled_quantity, s.commission) for s in seen] == [
        (OrderState.PARTIALLY_FILLED, D("0.1"), D("0.0001")),
        (OrderState.PARTIALLY_FILLED, D("0.1"), D("0.0001")),
        (OrderState.PARTIALLY_FILLED, D("0.2"), D("0.0002")),
        (OrderState.FILLED, D("0.3"), D("0.0003")),
    ]
    assert all(s.avg_fill_price == D("59000") for s in seen)
    assert sim.stats.by_endpoint["GET /api/v3/myTrades"] == 3


async def test_ioc_passes_through_and_expires_the_rest(binance_sim_factory):
    sim = await binance_sim_factory(partial_fill_steps=2)
    adapter = BinanceAdapter(binance_test_config(sim.base_url))
    await adapter.connect()
    try:
        order = make_order(quantity="0.2", order_type=OrderType.LIMIT, limit_price="61000", tif=TimeInForce.IOC)
        status = await adapter.place(order)
        fok = make_order(quantity="0.2", order_type=OrderType.LIMIT, limit_price="61000", tif=TimeInForce.FOK)
        fok_status = await adapter.place(fok)
    finally:
        await adapter.close()
    assert (status.state, status.filled_quantity) == (OrderState.EXPIRED, D("0.1"))
    assert (fok_status.state, fok_status.filled_quantity) == (OrderState.EXPIRED, D(0))


async def test_stop_orders_map_to_stop_loss_types(binance_adapter, binance_sim):
    stop = make_order(side=Side.SELL, quantity="0.1", order_type=OrderType.STOP, stop_price="59000")
    stop_limit = make_order(side=Side.SELL, quantity="0.1", order_type=OrderType.STOP, stop_price="58000",
                            limit_price="57900")
    assert (await binance_adapter.place(stop)).state is OrderState.SUBMITTED
    assert (await binance_adapter.place(stop_limit)).state is OrderState.SUBMITTED
    assert binance_sim.engine.orders_for(stop.client_order_id)[0]["type"] == "STOP_LOSS"
    assert binance_sim.engine.orders_for(stop_limit.client_order_id)[0]["type"] == "STOP_LOSS_LIMIT"
    binance_sim.set_price("BTCUSDT", D("58950"))
    assert must(await binance_adapter.query(stop)).state is OrderState.FILLED
    assert must(await binance_adapter.query(stop_limit)).state is OrderState.SUBMITTED

    already = make_order(side=Side.SELL, quantity="0.1", order_type=OrderType.STOP, stop_price="60000")
    with pytest.raises(OrderRejected, match="Stop price would trigger immediately"):
        await binance_adapter.place(already)


async def test_bracket_is_rejected_with_a_reason(binance_adapter, binance_sim):
    order = make_order(order_type=OrderType.BRACKET, limit_price="60000", stop_price="59000",
                       take_profit_price="62000")
    with pytest.raises(OrderRejected, match="BRACKET not supported on Binance spot"):
        await binance_adapter.place(order)
    assert posts(binance_sim) == 0


# -- error mapping ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message", "code"),
    [
        ({"quantity": "100"}, "insufficient funds: Account has insufficient balance", -2010),
        ({"quantity": "0.00001", "order_type": OrderType.LIMIT, "limit_price": "50000"},
         "Filter failure: NOTIONAL", -1013),
        ({"quantity": "0.001", "order_type": OrderType.LIMIT, "limit_price": "2000000"},
         "Filter failure: PRICE_FILTER", -1013),
    ],
)
async def test_venue_refusals_become_order_rejected_with_binance_message(binance_adapter, binance_sim,
                                                                         kwargs, message, code):
    with pytest.raises(OrderRejected, match=message) as err:
        await binance_adapter.place(make_order(**kwargs))
    assert err.value.code == code
    assert posts(binance_sim) == 1  # refused at the venue, not retried


async def test_symbol_unknown_to_the_venue_is_rejected(binance_adapter, binance_sim):
    with pytest.raises(OrderRejected, match="not a Binance spot market"):
        await binance_adapter.place(make_order(symbol="DOGE-USDT"))
    binance_sim.engine.symbols.pop("SOLUSDT")  # ccxt still lists it; the venue no longer does
    with pytest.raises(OrderRejected, match="Invalid symbol") as err:
        await binance_adapter.place(make_order(symbol="SOL-USDT", quantity="1"))
    assert err.value.code == -1121
    assert await binance_adapter.quote("SOL-USDT") is None


async def test_quantity_off_the_lot_step_is_refused_before_sending(binance_adapter, binance_sim):
    with pytest.raises(OrderRejected, match=r"not a multiple of BTC/USDT's LOT_SIZE stepSize 0\.00001"):
        await binance_adapter.place(make_order(quantity="0.000015"))
    with pytest.raises(OrderRejected, match="PRICE_FILTER tickSize"):
        await binance_adapter.place(make_order(order_type=OrderType.LIMIT, limit_price="50000.001"))
    assert posts(binance_sim) == 0


@pytest.mark.parametrize(
    ("code", "msg", "expected"),
    [
        (-2010, "Account has insufficient balance for requested action.", "InsufficientFunds"),
        (-1013, "Filter failure: LOT_SIZE", "InvalidOrder"),
        (-1013, "Filter failure: NOTIONAL", "BadRequest"),
        (-1121, "Invalid symbol.", "BadSymbol"),
        (-2013, "Order does not exist.", "OrderNotFound"),
        (-2011, "Unknown order sent.", "OrderNotFound"),
        (-1021, "Timestamp for this request is outside of the recvWindow.", "InvalidNonce"),
        (-1022, "Signature for this request is not valid.", "AuthenticationError"),
        (-2015, "Invalid API-key, IP, or permissions for action.", "AuthenticationError"),
        (-1003, "Too much request weight used", "RateLimitExceeded"),
        (-2008, "Invalid Api-Key ID.", "AuthenticationError"),  # only in ccxt's *spot* table
    ],
)
async def test_ccxt_error_table_holds_against_the_simulator_url(binance_adapter, binance_sim, code, msg, expected):
    client = binance_adapter.client
    # ccxt turns -2015 into DDoSProtection (a temporary ban) once a key has worked; test the cold table
    client.options["hasAlreadyAuthenticatedSuccessfully"] = False
    url = f"{binance_sim.base_url}/api/v3/order"
    spot = client.exceptions["spot"]["exact"]
    assert client.get_exceptions_by_url(url, "exact") == spot  # as for https://api.binance.com/
    body = {"code": code, "msg": msg}
    with pytest.raises(Exception) as err:
        client.handle_errors(400, "Bad Request", url, "POST", {"Retry-After": "2"}, str(body), body, {}, "")
    assert type(err.value).__name__ == expected
    assert getattr(err.value, "binance_code", None) == code
    assert getattr(err.value, "retry_after", None) == 2.0


async def test_invalid_nonce_resyncs_clock_and_retries_once(binance_adapter, binance_sim):
    binance_sim.engine.clock_offset_ms = -4_000  # server now lags: our timestamps look 4 s ahead
    status = await binance_adapter.place(make_order())
    assert status.state is OrderState.FILLED
    assert binance_sim.stats.errors[-1021] == 1
    assert posts(binance_sim) == 2


async def test_persistent_clock_skew_is_unavailable_not_rejected(binance_adapter, binance_sim, monkeypatch):
    async def no_resync(*_args: Any) -> int:
        return 0

    monkeypatch.setattr(binance_adapter.client, "load_time_difference", no_resync)
    binance_sim.engine.clock_offset_ms = -4_000
    with pytest.raises(BrokerUnavailable, match="recvWindow") as err:
        await binance_adapter.place(make_order())
    assert err.value.code == -1021
    assert binance_sim.engine.orders_for(make_order().client_order_id) == []


async def test_wrong_secret_is_an_authentication_rejection_and_never_logged(binance_sim, caplog):
    caplog.set_level(logging.DEBUG)
    secret = "wrong-secret-value-9c41"
    adapter = BinanceAdapter(binance_test_config(binance_sim.base_url, api_secret=SecretStr(secret)))
    await adapter.connect()  # market data works; the credential probe fails
    try:
        assert await adapter.health_check() is False
        order = make_order()
        with pytest.raises(OrderRejected, match="authentication failed") as err:
            await adapter.place(order)
    finally:
        await adapter.close()
    assert err.value.code == -1022
    assert binance_sim.stats.errors[-1022] >= 2 and binance_sim.engine.orders_for(order.client_order_id) == []
    ccxt_lines = [r for r in caplog.records if r.name == CCXT_LOGGER.name]
    assert any("api/v3/order" in r.getMessage() for r in ccxt_lines)  # ccxt debug logging was on
    assert secret not in caplog.text and SIM_API_SECRET not in caplog.text
    assert SIM_API_KEY not in caplog.text  # the X-MBX-APIKEY header is masked too
    assert secret not in str(err.value)


async def test_without_credentials_market_data_works_and_orders_are_rejected(binance_sim):
    adapter = BinanceAdapter(binance_test_config(binance_sim.base_url, api_key=SecretStr(""),
                                                 api_secret=SecretStr("")))
    await adapter.connect()
    try:
        assert (await adapter.quote("BTC-USDT")) is not None
        assert await adapter.health_check() is False
        with pytest.raises(OrderRejected, match=r"authentication failed.*apiKey"):
            await adapter.place(make_order())
    finally:
        await adapter.close()


# -- transport faults ------------------------------------------------------------------------


async def test_5xx_on_submit_is_never_resent_blindly(binance_adapter, binance_sim):
    """Binance: a 5xx leaves the execution status UNKNOWN. The adapter asks once and, when Binance
    does not show the order, says so instead of sending it again (test_binance_ambiguous.py
    follows such an order until the safe delay has passed)."""
    binance_sim.faults.fail_next = 2
    binance_sim.faults.match = "POST /api/v3/order"
    order = make_order()
    with pytest.raises(OrderStateUnknown, match="not sent again") as err:
        await binance_adapter.place(order)
    assert err.value.code == "state-unknown"
    assert posts(binance_sim) == 1
    assert binance_sim.engine.orders_for(order.client_order_id) == []
    with pytest.raises(OrderStateUnknown, match="can still execute"):  # too early to believe -2013
        await binance_adapter.query(order)


@pytest.mark.parametrize(
    ("code", "msg"),
    [
        (-1006, "An unexpected response was received from the message bus. Execution status unknown."),
        (-1007, "Timeout waiting for response from backend server. Send status unknown; execution status unknown."),
        (-1000, "An unknown error occurred while processing the request."),
    ],
)
async def test_execution_status_unknown_codes_count_as_maybe_sent(binance_adapter, binance_sim, code, msg):
    client = binance_adapter.client
    url = f"{binance_sim.base_url}/api/v3/order"
    body = {"code": code, "msg": msg}
    with pytest.raises(Exception) as err:
        client.handle_errors(503, "Service Unavailable", url, "POST", {}, str(body), body, {}, "")
    assert isinstance(err.value, TRANSIENT) and maybe_reached_venue(err.value)


async def test_lost_response_is_found_by_client_order_id_not_placed_twice(binance_adapter, binance_sim):
    binance_sim.faults.lose_response_next = 1
    binance_sim.faults.match = "POST /api/v3/order"
    order = make_order(quantity="0.05")
    status = await binance_adapter.place(order)
    assert status.state is OrderState.FILLED and status.filled_quantity == D("0.05")
    assert status.commission == D("0.00005")  # recovered from myTrades
    assert len(binance_sim.engine.orders_for(order.client_order_id)) == 1
    assert posts(binance_sim) == 1


async def test_duplicate_submission_returns_the_existing_order(binance_adapter, binance_sim):
    order = make_order(order_type=OrderType.LIMIT, limit_price="50000")
    first = await binance_adapter.place(order)
    again = await binance_adapter.place(order)
    assert again.venue_order_id == first.venue_order_id and again.state is OrderState.SUBMITTED
    assert len(binance_sim.engine.orders_for(order.client_order_id)) == 1


async def test_exhausted_retries_raise_broker_unavailable(binance_adapter, binance_sim):
    binance_sim.faults.fail_next = 100
    order = make_order(order_type=OrderType.LIMIT, limit_price="50000")
    with pytest.raises(BrokerUnavailable, match="unavailable during fetch order after 3 attempts"):
        await binance_adapter.query(order)
    with pytest.raises(OrderStateUnknown) as err:  # a 5xx leaves the placement's fate unknown
        await binance_adapter.place(order)
    assert err.value.code == "state-unknown"
    assert await binance_adapter.health_check() is False
    binance_sim.faults.fail_next = 0
    assert await binance_adapter.health_check() is True


async def test_connection_refused_is_plain_broker_unavailable(binance_adapter, binance_sim):
    await binance_sim.stop()
    with pytest.raises(BrokerUnavailable) as err:
        await binance_adapter.place(make_order())
    assert not isinstance(err.value, OrderStateUnknown)  # never reached the venue: safe to reroute


async def test_rate_limit_burst_is_throttled_and_retried_not_lost(binance_sim_factory):
    sim = await binance_sim_factory(weight_limit_per_minute=25, weight_window_seconds=1.0)
    adapter = BinanceAdapter(binance_test_config(sim.base_url))
    await adapter.connect()  # exchangeInfo 20 + time 1 + account 20 > 25: connect already waits out a 429
    try:
        orders = [make_order(quantity="0.001") for _ in range(24)]
        statuses = await asyncio.gather(*(adapter.place(o) for o in orders))
    finally:
        await adapter.close()
    assert sim.stats.throttled > 0
    assert all(s.state is OrderState.FILLED for s in statuses)
    assert all(len(sim.engine.orders_for(o.client_order_id)) == 1 for o in orders)


# -- restart / reconcile ---------------------------------------------------------------------


async def test_new_process_finds_earlier_order_with_cumulative_fills(binance_sim_factory):
    sim = await binance_sim_factory(partial_fill_steps=4)
    first = BinanceAdapter(binance_test_config(sim.base_url), shared=False)
    await first.connect()
    order = make_order(quantity="0.4", order_type=OrderType.LIMIT, limit_price="59000")
    await first.place(order)
    await first.close()

    sim.set_price("BTCUSDT", D("58000"))
    sim.tick()  # fills that happen while "we" are down

    second = BinanceAdapter(binance_test_config(sim.base_url), shared=False)
    await second.connect()
    try:
        found = await second.query(order)
        never_sent = await second.query(make_order())
    finally:
        await second.close()
    assert found is not None
    assert (found.state, found.filled_quantity, found.avg_fill_price) == (
        OrderState.PARTIALLY_FILLED, D("0.2"), D("59000"))
    assert found.commission == D("0.0002") and found.venue_order_id is not None
    assert never_sent is None


async def test_cancel_of_filled_order_reports_fill_and_unknown_is_rejected(binance_adapter, binance_sim):
    order = make_order()
    await binance_adapter.place(order)
    status = await binance_adapter.cancel(order)
    assert status.state is OrderState.FILLED
    with pytest.raises(OrderRejected, match="no such order"):
        await binance_adapter.cancel(make_order())


# -- market data -----------------------------------------------------------------------------


async def test_quote_ticker_book_and_ohlcv(binance_adapter, binance_sim):
    bid, ask = binance_sim.engine.bid_ask("BTCUSDT")
    quote = await binance_adapter.quote("BTC-USDT")
    assert quote is not None
    assert (quote.bid, quote.ask, quote.last) == (bid, ask, D("60000"))
    assert quote.mid == D("60000")
    book = await binance_adapter.fetch_order_book_l1("BTCUSDT")
    assert (book.bid, book.ask) == (bid, ask) and book.bid_size and book.ask_size
    binance_sim.set_price("BTCUSDT", D("60123.45"))
    candles = await binance_adapter.fetch_ohlcv("BTC/USDT", "1m", limit=5)
    assert len(candles) == 5
    assert candles[-1].close == D("60123.45") and isinstance(candles[-1].close, Decimal)
    assert candles[-1].ts > candles[0].ts
    assert await binance_adapter.quote("NOPE-USDT") is None
