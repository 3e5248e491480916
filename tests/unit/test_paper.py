"""PaperAdapter: slippage against the trader, order types, market data, determinism."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from adapters.paper import PaperAdapter, SlippageModel, marketable
from execution.ports import BrokerPort, OrderRejected, Quote
from schemas import AssetClass, Broker, Order, OrderState, OrderType, Side
from tests.unit.fakes import FakeMarketData, make_order

D = Decimal


def paper_order(**kw: Any) -> Order:
    kw.setdefault("signal_id", "paper-1")
    return make_order(broker=Broker.PAPER, **kw)


def test_paper_is_a_broker_port() -> None:
    adapter = PaperAdapter()
    assert isinstance(adapter, BrokerPort)
    assert adapter.name is Broker.PAPER
    assert adapter.poll_interval is None  # nothing can move a resting order without market data
    assert PaperAdapter(market_data=FakeMarketData(), poll_interval=0.5).poll_interval == 0.5


@pytest.mark.parametrize(
    ("side", "mid", "expected"),
    [
        (Side.BUY, "100", "100.1"),
        (Side.SELL, "100", "99.9"),
        (Side.BUY, "0.1", "0.1001"),
        (Side.SELL, "0.1", "0.0999"),
        (Side.BUY, "64321.57", "64385.89157"),
        (Side.SELL, "64321.57", "64257.24843"),
        (Side.BUY, "1.08735", "1.08843735"),
    ],
)
def test_default_slippage_is_a_tenth_of_a_percent_against_the_trader(
    side: Side, mid: str, expected: str
) -> None:
    price = SlippageModel().fill_price(D(mid), side)
    assert price == D(expected)
    assert isinstance(price, Decimal)


def test_slippage_is_quantized_to_ten_places() -> None:
    assert SlippageModel().fill_price(D("1.23456789012345"), Side.BUY) == D("1.2358024580")


@pytest.mark.parametrize(("rate", "buy", "sell"), [("0", "100", "100"), ("0.005", "100.5", "99.5"),
                                                   ("0.0001", "100.01", "99.99")])
def test_slippage_rate_is_configurable(rate: str, buy: str, sell: str) -> None:
    model = SlippageModel(D(rate))
    assert model.fill_price(D("100"), Side.BUY) == D(buy)
    assert model.fill_price(D("100"), Side.SELL) == D(sell)


@pytest.mark.parametrize("rate", ["-0.001", "1", "2"])
def test_slippage_rate_out_of_range_is_refused(rate: str) -> None:
    with pytest.raises(ValueError, match="slippage rate"):
        SlippageModel(D(rate))


@pytest.mark.parametrize(("side", "price"), [("BUY", "100.1"), ("SELL", "99.9")])
async def test_market_order_fills_at_once(side: str, price: str) -> None:
    order = paper_order(side=side, quantity=D("2.5"), reference_price=D("100"))
    status = await PaperAdapter().place(order)
    assert status.state is OrderState.FILLED
    assert status.filled_quantity == D("2.5")
    assert status.avg_fill_price == D(price)
    assert status.client_order_id == order.client_order_id
    assert status.venue_order_id == f"P{order.client_order_id}"


async def test_configured_slippage_is_used_for_fills() -> None:
    order = paper_order(reference_price=D("200"))
    status = await PaperAdapter(SlippageModel(D("0.01"))).place(order)
    assert status.avg_fill_price == D("202")


@pytest.mark.parametrize(
    ("side", "limit", "price"),
    [("BUY", "101", "100.1"), ("BUY", "100.1", "100.1"), ("SELL", "99", "99.9"), ("SELL", "99.9", "99.9")],
)
async def test_marketable_limit_fills_at_the_slipped_price(side: str, limit: str, price: str) -> None:
    order = paper_order(side=side, order_type="LIMIT", limit_price=D(limit), reference_price=D("100"))
    status = await PaperAdapter().place(order)
    assert (status.state, status.filled_quantity, status.avg_fill_price) == (
        OrderState.FILLED, order.quantity, D(price))


@pytest.mark.parametrize(("side", "limit"), [("BUY", "100"), ("BUY", "100.09"), ("SELL", "100"),
                                             ("SELL", "99.91")])
async def test_non_marketable_limit_rests(side: str, limit: str) -> None:
    order = paper_order(side=side, order_type="LIMIT", limit_price=D(limit), reference_price=D("100"))
    adapter = PaperAdapter()
    status = await adapter.place(order)
    assert status.state is OrderState.SUBMITTED
    assert status.filled_quantity == 0 and status.avg_fill_price is None
    # the venue remembers it: a query answers (still resting, no market data to move it)
    again = await adapter.query(order)
    assert again is not None and again.state is OrderState.SUBMITTED


@pytest.mark.parametrize("tif", ["IOC", "FOK"])
async def test_immediate_non_marketable_limit_expires(tif: str) -> None:
    order = paper_order(order_type="LIMIT", limit_price=D("99"), reference_price=D("100"), time_in_force=tif)
    status = await PaperAdapter().place(order)
    assert status.state is OrderState.EXPIRED
    assert status.filled_quantity == 0
    assert status.reason == f"{tif} LIMIT not marketable at mid 100"


async def test_immediate_marketable_limit_fills() -> None:
    order = paper_order(order_type="LIMIT", limit_price=D("101"), reference_price=D("100"),
                        time_in_force="IOC")
    assert (await PaperAdapter().place(order)).state is OrderState.FILLED


@pytest.mark.parametrize(
    ("side", "stop", "mid", "fills"),
    [
        ("BUY", "105", "100", False),
        ("BUY", "105", "104.99", False),
        ("BUY", "105", "105", True),
        ("BUY", "105", "106", True),
        ("SELL", "95", "100", False),
        ("SELL", "95", "95.01", False),
        ("SELL", "95", "95", True),
        ("SELL", "95", "94", True),
    ],
)
async def test_stop_triggers_only_when_crossed(side: str, stop: str, mid: str, fills: bool) -> None:
    order = paper_order(side=side, order_type="STOP", stop_price=D(stop), reference_price=D(mid))
    status = await PaperAdapter().place(order)
    if fills:
        assert status.state is OrderState.FILLED
        assert status.avg_fill_price == SlippageModel().fill_price(D(mid), Side(side))
    else:
        assert status.state is OrderState.SUBMITTED
        assert status.filled_quantity == 0


def test_marketable_rules() -> None:
    buy = paper_order(order_type="LIMIT", limit_price=D("100"))
    assert marketable(buy, D("99"), D("100"))
    assert not marketable(buy, D("99"), D("100.01"))
    market = paper_order()
    assert marketable(market, D("1"), D("1000000"))


async def test_no_price_at_all_is_rejected_with_a_reason() -> None:
    order = paper_order(symbol="SPY", reference_price=None)
    with pytest.raises(OrderRejected) as info:
        await PaperAdapter().place(order)
    assert str(info.value) == (
        "no reference_price and no market data for SPY; cannot price a fill")


async def test_no_quote_from_market_data_and_no_reference_is_rejected() -> None:
    data = FakeMarketData({"SPY": RuntimeError("symbol not listed")})
    with pytest.raises(OrderRejected, match="no reference_price and no market data for SPY"):
        await PaperAdapter(market_data=data).place(paper_order(symbol="SPY", reference_price=None))
    assert data.asked == ["SPY"]


async def test_market_data_failure_falls_back_to_reference_price() -> None:
    data = FakeMarketData({"BTC-USDT": RuntimeError("down")})
    status = await PaperAdapter(market_data=data).place(paper_order(reference_price=D("50")))
    assert status.avg_fill_price == D("50.05")


async def test_bracket_is_rejected_with_reason() -> None:
    order = paper_order(order_type=OrderType.BRACKET, stop_price=D("90"), take_profit_price=D("110"),
                        reference_price=D("100"))
    adapter = PaperAdapter()
    with pytest.raises(OrderRejected, match="BRACKET orders are not simulated on paper"):
        await adapter.place(order)
    assert await adapter.query(order) is None  # nothing was remembered


async def test_market_data_mid_wins_over_reference_price() -> None:
    data = FakeMarketData({"BTC-USDT": Quote("BTC-USDT", bid=D("199"), ask=D("201"), last=D("150"))})
    status = await PaperAdapter(market_data=data).place(paper_order(reference_price=D("100")))
    assert status.avg_fill_price == D("200.2")


async def test_last_price_is_used_when_the_book_is_one_sided() -> None:
    data = FakeMarketData({"BTC-USDT": Quote("BTC-USDT", bid=None, ask=D("201"), last=D("150"))})
    status = await PaperAdapter(market_data=data).place(paper_order(reference_price=None))
    assert status.avg_fill_price == D("150.15")


async def test_resting_limit_fills_on_a_later_query_when_the_price_moves() -> None:
    data = FakeMarketData()
    data.set_mid("BTC-USDT", "100")
    adapter = PaperAdapter(market_data=data)
    order = paper_order(order_type="LIMIT", limit_price=D("95"), quantity=D("0.5"))
    assert (await adapter.place(order)).state is OrderState.SUBMITTED
    data.set_mid("BTC-USDT", "97")
    resting = await adapter.query(order)
    assert resting is not None and resting.state is OrderState.SUBMITTED  # 97.097 > 95
    data.set_mid("BTC-USDT", "94")
    filled = await adapter.query(order)
    assert filled is not None
    assert (filled.state, filled.filled_quantity, filled.avg_fill_price) == (
        OrderState.FILLED, D("0.5"), D("94.094"))
    # terminal now: the price moving back does not change the answer
    data.set_mid("BTC-USDT", "200")
    assert await adapter.query(order) == filled


async def test_resting_stop_triggers_on_a_later_query() -> None:
    data = FakeMarketData()
    data.set_mid("ETH-USDT", "100")
    adapter = PaperAdapter(market_data=data)
    order = paper_order(symbol="ETH-USDT", side="SELL", order_type="STOP", stop_price=D("90"))
    assert (await adapter.place(order)).state is OrderState.SUBMITTED
    data.set_mid("ETH-USDT", "89")
    status = await adapter.query(order)
    assert status is not None and status.state is OrderState.FILLED
    assert status.avg_fill_price == D("88.911")


async def test_query_of_an_unknown_order_is_none() -> None:
    assert await PaperAdapter().query(paper_order(signal_id="never-placed")) is None


async def test_cancel_resting_order_and_cancel_is_terminal() -> None:
    adapter = PaperAdapter()
    order = paper_order(order_type="LIMIT", limit_price=D("90"), reference_price=D("100"))
    await adapter.place(order)
    cancelled = await adapter.cancel(order)
    assert cancelled.state is OrderState.CANCELLED and cancelled.reason == "cancelled on request"
    after = await adapter.query(order)
    assert after is not None and after.state is OrderState.CANCELLED
    with pytest.raises(OrderRejected, match="unknown order"):
        await adapter.cancel(paper_order(signal_id="other"))


async def test_cancel_of_filled_order_keeps_the_fill() -> None:
    adapter = PaperAdapter()
    order = paper_order(reference_price=D("100"))
    filled = await adapter.place(order)
    assert await adapter.cancel(order) == filled


async def test_venue_ids_and_fills_are_deterministic_across_instances() -> None:
    order = paper_order(signal_id="replay-me", reference_price=D("123.45"))
    first = await PaperAdapter().place(order)
    second = await PaperAdapter().place(order)
    assert first == second
    assert first.venue_order_id == "P" + order.client_order_id


async def test_remember_bound_evicts_the_oldest() -> None:
    adapter = PaperAdapter(remember=2)
    orders = [paper_order(signal_id=f"o{i}", reference_price=D("10")) for i in range(3)]
    for o in orders:
        await adapter.place(o)
    assert await adapter.query(orders[0]) is None
    newest = await adapter.query(orders[2])
    assert newest is not None and newest.state is OrderState.FILLED


async def test_health_connect_close() -> None:
    adapter = PaperAdapter()
    await adapter.connect()
    assert await adapter.health_check() is True
    await adapter.close()


async def test_market_data_is_only_asked_for_the_classes_it_lists() -> None:
    data = FakeMarketData()
    data.set_mid("SPY", "999")  # would win if asked: it must not be asked for an equity
    adapter = PaperAdapter(market_data=data, market_data_classes=frozenset({AssetClass.CRYPTO}))
    status = await adapter.place(paper_order(symbol="SPY", asset_class=AssetClass.EQUITY, reference_price=D("100")))
    assert status.avg_fill_price == D("100.1")
    assert data.asked == []
