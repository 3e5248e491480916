"""Issue 12, item 8 "Books drift": gaps priced by the cumulative notional, one symbol per instrument.

The gap cases (the tracker's emitted fills against what the fills writer and the publisher have
applied), all for one order of 1.0 that the venue fills 0.5 @ 100, then 0.5 @ 102 (venue: 1.0 @
average 101, notional 101):

* A. nothing missed: the tracker emits 0.5 @ 100, then 0.5 @ 102 -> books at 101 (always were);
* B. the tracker restarted from a baseline behind the books (it reloaded the order before the
  fills writer recorded the first fill) and emits 1.0 @ 101 as one fill -> books at 101; without
  the notional (an older producer) the growth of 0.5 is taken at 101: 100.5, the issue's case;
* C. the consumer missed the first fill (only the second, 0.5 @ 102, cumulative 1.0 reaches it)
  -> books at 101; without the notional: 102;
* D. the fills arrive out of order, the later one first -> the earlier one adds nothing;
* E. the publisher sees B: it passes on 0.5 and 0.5 (prices 100 and 102), never 1.5 for a 1.0
  order.

Everything here runs on the in-memory store, which ``tests/contract/test_store_parity.py`` and
``tests/contract/test_books_store.py`` hold to PostgreSQL's answers.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from adapters.binance.parsing import parse_order, to_ccxt_symbol
from adapters.memory import InMemoryFillPublisher, InMemoryStore
from adapters.paper import PaperAdapter, SlippageModel
from execution.fill_tracker import derive_fill
from execution.fills import OrderFillState, Watermark, advance_watermarks, cumulative_notional
from execution.mapper import ExchangeMapper, UnknownSymbol
from execution.ports import VenueOrderStatus
from execution.router import BrokerRouter
from schemas import AssetClass, Broker, Fill, Order, OrderRequest, OrderState, Side, Signal
from schemas.symbols import KNOWN_QUOTES, canonical_symbol, split_crypto_pair
from tests.unit.fakes import make_order

D = Decimal
T0 = datetime(2026, 5, 4, 12, 0, tzinfo=UTC)


def status(order: Order, filled: str, avg: str, *, notional: str | None = None) -> VenueOrderStatus:
    state = OrderState.FILLED if D(filled) >= order.quantity else OrderState.PARTIALLY_FILLED
    return VenueOrderStatus(client_order_id=order.client_order_id, venue_order_id="V-1", state=state,
                            filled_quantity=D(filled), avg_fill_price=D(avg),
                            filled_notional=None if notional is None else D(notional))


def emitted(order: Order, filled: str, avg: str) -> Fill:
    fill = derive_fill(order, status(order, filled, avg), at=T0)
    assert fill is not None
    return fill


def after(order: Order, fill: Fill) -> Order:
    """The tracker's own view of ``order`` once it emitted ``fill`` (what observe keeps)."""
    assert fill.cumulative_notional is not None
    return order.model_copy(update={"filled_quantity": fill.cumulative_quantity,
                                    "avg_fill_price": fill.cumulative_notional / fill.cumulative_quantity,
                                    "state": OrderState.PARTIALLY_FILLED})


def without_notional(fill: Fill) -> Fill:
    """The same fill as an older producer sends it (no cumulative_notional on the wire)."""
    raw = fill.model_dump(mode="json")
    del raw["cumulative_notional"]
    return Fill.model_validate(raw)


async def books(fills: list[list[Fill]], order: Order) -> tuple[Order, list[Fill], tuple[Decimal, Decimal]]:
    """Apply the batches to a fresh in-memory store: the order, its recorded fills, its position."""
    store = InMemoryStore(now=lambda: T0)
    await store.insert_orders([order])
    for batch in fills:
        await store.apply_fills(batch)
    (position,) = await store.positions()
    return (store.orders[order.client_order_id], await store.recorded_fills(order.client_order_id),
            (position.quantity, position.avg_price))


@pytest.fixture
def order() -> Order:
    return make_order(quantity=D("1"), state=OrderState.SUBMITTED)


# ---- what the tracker emits --------------------------------------------------------------------


def test_every_emitted_fill_carries_the_cumulative_notional(order: Order) -> None:
    first = emitted(order, "0.5", "100")
    assert (first.quantity, first.price, first.cumulative_quantity, first.cumulative_notional) == (
        D("0.5"), D("100"), D("0.5"), D("50.0"))
    second = emitted(after(order, first), "1.0", "101")
    # the increment from the tracker's baseline, and the venue's totals
    assert (second.quantity, second.price, second.cumulative_quantity, second.cumulative_notional) == (
        D("0.5"), D("102"), D("1.0"), D("101.0"))
    restarted = emitted(order, "1.0", "101")  # baseline 0: one fill for everything
    assert (restarted.quantity, restarted.price, restarted.cumulative_notional) == (D("1.0"), D("101"), D("101.0"))


def test_binance_notional_is_the_venues_own_exact_quote_quantity(order: Order) -> None:
    # 0.3 for 10.0000000001 quote: the average (a repeating decimal) times the quantity would not
    # give the notional back exactly; the fill carries Binance's cummulativeQuoteQty itself
    venue = parse_order({"orderId": 7, "clientOrderId": order.client_order_id, "status": "PARTIALLY_FILLED",
                         "executedQty": "0.30000000", "cummulativeQuoteQty": "10.00000001"})
    assert venue.filled_notional == D("10.00000001")
    fill = derive_fill(order, venue, at=T0)
    assert fill is not None and fill.cumulative_notional == D("10.00000001")
    assert (fill.quantity, fill.price) == (D("0.3"), D("33.333333366667"))  # rounded to 12 places


async def test_paper_fills_carry_quantity_times_price(order: Order) -> None:
    paper_order = make_order(broker=Broker.PAPER, quantity=D("2"), reference_price=D("100"))
    paper = PaperAdapter(SlippageModel(D("0.001")))
    fill = derive_fill(paper_order, await paper.place(paper_order), at=T0)
    assert fill is not None
    assert (fill.price, fill.cumulative_quantity, fill.cumulative_notional) == (D("100.1"), D("2"), D("200.2"))


def test_no_fill_without_a_price_and_notional_helper_edges() -> None:
    assert cumulative_notional(D("0"), avg_price=D("5")) is None
    assert cumulative_notional(D("2"), avg_price=None) is None
    assert cumulative_notional(D("2"), avg_price=D("5")) == D("10")
    assert cumulative_notional(D("2"), avg_price=D("5"), notional=D("10.5")) == D("10.5")
    assert cumulative_notional(D("2"), avg_price=D("5"), notional=D("0")) == D("10")  # not a usable notional
    order = make_order(quantity=D("1"))
    no_price = VenueOrderStatus(client_order_id=order.client_order_id, venue_order_id=None,
                                state=OrderState.PARTIALLY_FILLED, filled_quantity=D("0.5"))
    assert derive_fill(order, no_price) is None


# ---- the gap cases, applied by the fills writer -------------------------------------------------


async def test_a_nothing_missed(order: Order) -> None:
    first = emitted(order, "0.5", "100")
    second = emitted(after(order, first), "1.0", "101")
    stored, recorded, position = await books([[first], [second]], order)
    assert (stored.filled_quantity, stored.avg_fill_price, stored.state) == (D("1.0"), D("101"), OrderState.FILLED)
    assert [(f.quantity, f.price) for f in recorded] == [(D("0.5"), D("100")), (D("0.5"), D("102"))]
    assert position == (D("1.0"), D("101"))


async def test_b_tracker_restarted_behind_the_books(order: Order) -> None:
    first = emitted(order, "0.5", "100")
    restarted = emitted(order, "1.0", "101")  # the tracker reloaded the order at 0 filled
    stored, recorded, position = await books([[first], [restarted]], order)
    assert (stored.filled_quantity, stored.avg_fill_price) == (D("1.0"), D("101"))
    # the growth of 0.5 is priced from the books' own notional (50): 51 / 0.5
    assert [(f.quantity, f.price, f.cumulative_notional) for f in recorded] == [
        (D("0.5"), D("100"), D("50.0")), (D("0.5"), D("102"), D("101.0"))]
    assert position == (D("1.0"), D("101"))

    # the same two fills from a producer without the notional: handled as before (wrong, 100.5)
    old_stored, _, old_position = await books([[without_notional(first)], [without_notional(restarted)]], order)
    assert (old_stored.avg_fill_price, old_position[1]) == (D("100.5"), D("100.5"))


async def test_c_the_consumer_missed_the_first_fill(order: Order) -> None:
    first = emitted(order, "0.5", "100")
    second = emitted(after(order, first), "1.0", "101")  # 0.5 @ 102 from the tracker's baseline
    stored, recorded, position = await books([[second]], order)
    assert (stored.filled_quantity, stored.avg_fill_price) == (D("1.0"), D("101"))
    assert [(f.quantity, f.price) for f in recorded] == [(D("1.0"), D("101"))]
    assert position == (D("1.0"), D("101"))
    old_stored, _, _ = await books([[without_notional(second)]], order)
    assert old_stored.avg_fill_price == D("102")


async def test_d_out_of_order_and_repeated_fills_add_nothing(order: Order) -> None:
    first = emitted(order, "0.5", "100")
    second = emitted(after(order, first), "1.0", "101")
    stored, recorded, position = await books([[second, first], [first, second]], order)
    assert (stored.filled_quantity, stored.avg_fill_price) == (D("1.0"), D("101"))
    assert len(recorded) == 1 and position == (D("1.0"), D("101"))


async def test_a_sell_after_a_gap_realises_against_the_right_average() -> None:
    buy = make_order(signal_id="buy", quantity=D("1"), state=OrderState.SUBMITTED)
    sell = make_order(signal_id="sell", side=Side.SELL, quantity=D("1"), state=OrderState.SUBMITTED)
    store = InMemoryStore(now=lambda: T0)
    await store.insert_orders([buy, sell])
    await store.apply_fills([emitted(buy, "0.5", "100")])
    await store.apply_fills([emitted(buy, "1.0", "101")])  # restarted tracker
    await store.apply_fills([emitted(sell, "1", "111")])
    (position,) = await store.positions()
    assert (position.quantity, position.realized_pnl) == (D("0"), D("10"))  # 111 - 101, not 111 - 100.5


def test_a_watermark_prices_growth_from_its_own_notional() -> None:
    state = OrderFillState.orphan("o", D("0.5"), D("50"))
    fill = Fill(exec_id="x", cumulative_quantity=D("1"), cumulative_notional=D("101"), client_order_id="o",
                broker=Broker.BINANCE, symbol="BTC-USDT", asset_class=AssetClass.CRYPTO, side=Side.BUY,
                quantity=D("1"), price=D("101"), ts=T0)
    step = state.increment(fill)
    assert step is not None and (step.quantity, step.price) == (D("0.5"), D("102"))
    assert (state.filled, state.avg_price) == (D("1"), D("101"))
    # a notional below what is already known (the venue's rounding) never makes a negative price
    low = OrderFillState.orphan("o", D("0.5"), D("50.6"))
    step = low.increment(fill.model_copy(update={"cumulative_quantity": D("0.5000001"),
                                                 "cumulative_notional": D("50.5")}))
    assert step is not None and step.price > 0


def test_the_field_is_optional_on_the_wire(order: Order) -> None:
    fill = emitted(order, "0.5", "100")
    assert b'"cumulative_notional":"50.0"' in fill.to_bytes()
    old = without_notional(fill)
    assert old.cumulative_notional is None and Fill.model_validate_json(old.to_bytes()) == old
    with pytest.raises(ValueError, match="greater than 0"):
        Fill.model_validate({**fill.model_dump(), "cumulative_notional": "0"})


# ---- the publisher (item 8: never more than the order's quantity) -------------------------------


async def test_e_the_publisher_passes_on_growth_never_more_than_the_order(order: Order) -> None:
    publisher = InMemoryFillPublisher()
    first = emitted(order, "0.5", "100")
    restarted = emitted(order, "1.0", "101")
    assert await publisher.publish_fills([first]) == 1
    assert await publisher.publish_fills([restarted, first, restarted]) == 1
    assert [(f.quantity, f.price, f.exec_id) for f in publisher.published] == [
        (D("0.5"), D("100"), first.exec_id), (D("0.5"), D("102"), restarted.exec_id)]
    assert sum(f.quantity for f in publisher.published) == order.quantity
    assert publisher.watermark(order.client_order_id) == Watermark(D("1.0"), D("101.0"))


def test_advance_watermarks_is_the_rule_both_publishers_share() -> None:
    def f(cid: str, cumulative: str, price: str, notional: str | None) -> Fill:
        return Fill(exec_id=f"{cid}-{cumulative}", cumulative_quantity=D(cumulative), client_order_id=cid,
                    cumulative_notional=None if notional is None else D(notional), broker=Broker.PAPER,
                    symbol="ETH-USDT", asset_class=AssetClass.CRYPTO, side=Side.BUY, quantity=D(cumulative),
                    price=D(price), ts=T0)

    known = {"a": Watermark(D("1"), D("10"))}
    published, marks = advance_watermarks(
        [f("a", "1", "10", "10"), f("a", "3", "12", "34"), f("b", "2", "5", None), f("b", "1", "5", None)], known)
    assert [(p.client_order_id, p.quantity, p.price) for p in published] == [("a", D("2"), D("12")),
                                                                           ("b", D("2"), D("5"))]
    assert marks == {"a": Watermark(D("3"), D("34")), "b": Watermark(D("2"), D("10"))}
    assert advance_watermarks([f("a", "1", "10", "10")], known) == ([], {})


# ---- one canonical symbol per instrument ---------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "asset_class", "canonical"),
    [
        ("BTC-USDT", AssetClass.CRYPTO, "BTC-USDT"),
        ("BTCUSDT", AssetClass.CRYPTO, "BTC-USDT"),
        ("BTC/USDT", AssetClass.CRYPTO, "BTC-USDT"),
        (" btc_usdt ", AssetClass.CRYPTO, "BTC-USDT"),
        ("btc.usdt", AssetClass.CRYPTO, "BTC-USDT"),
        ("BNBFDUSD", AssetClass.CRYPTO, "BNB-FDUSD"),  # longest quote: not BNBFD-USD
        ("BTCTUSD", AssetClass.CRYPTO, "BTC-TUSD"),
        ("ETHBTC", AssetClass.CRYPTO, "ETH-BTC"),
        ("BTCUSD", AssetClass.CRYPTO, "BTC-USD"),
        ("USDTTRY", AssetClass.CRYPTO, "USDT-TRY"),
        ("SOLEUR", AssetClass.CRYPTO, "SOL-EUR"),
        ("PEPEXYZ", AssetClass.CRYPTO, "PEPEXYZ"),  # unknown quote: as written, never guessed
        ("BTC/USDT:USDT", AssetClass.CRYPTO, "BTC/USDT:USDT"),
        ("EURUSD", AssetClass.FX, "EURUSD"),
        ("eur/usd", AssetClass.FX, "EURUSD"),
        ("EUR-USD", AssetClass.FX, "EURUSD"),
        ("EUR.USD", AssetClass.FX, "EURUSD"),
        ("XAU/USD", AssetClass.FX, "XAUUSD"),
        ("aapl", AssetClass.EQUITY, "AAPL"),
        ("BRK.B", AssetClass.EQUITY, "BRK.B"),  # equities as written
        ("GBTC", AssetClass.EQUITY, "GBTC"),
        ("ETHE", AssetClass.EQUITY, "ETHE"),
        ("AAPL  250117C00150000", AssetClass.OPTION, "AAPL250117C00150000"),
        ("SPY250321P00400000", AssetClass.OPTION, "SPY250321P00400000"),
        ("/ESZ5", AssetClass.FUTURE, "ESZ5"),
        ("clf26", AssetClass.FUTURE, "CLF26"),
        ("btcusdt", None, "BTCUSDT"),  # no class known: case only
    ],
)
def test_canonical_symbols(written: str, asset_class: AssetClass | None, canonical: str) -> None:
    assert canonical_symbol(written, asset_class) == canonical
    if asset_class is not None:
        assert canonical_symbol(canonical, asset_class) == canonical  # a fixed point


def test_concatenated_pairs_split_on_the_longest_known_quote_with_a_real_base() -> None:
    assert {"USDT", "USDC", "BUSD", "FDUSD", "BTC", "ETH", "BNB", "EUR", "USD", "TRY"} <= set(KNOWN_QUOTES)
    assert split_crypto_pair("GBTC") is None  # "G" is no base
    assert split_crypto_pair("USDT") is None
    assert split_crypto_pair("WBTCBTC") == ("WBTC", "BTC")


@pytest.mark.parametrize(
    ("written", "explicit", "canonical"),
    [
        ("BTCUSDT", None, "BTC-USDT"),
        ("btc/usdt", None, "BTC-USDT"),
        ("SOLUSDT", None, "SOL-USDT"),
        ("ETH_BTC", None, "ETH-BTC"),
        ("GBTC", None, "GBTC"),
        ("EUR/USD", None, "EURUSD"),
        ("/ESH6", None, "ESH6"),
        ("FOOUSDT", AssetClass.CRYPTO, "FOO-USDT"),  # the explicit class decides the shape
    ],
)
def test_the_mapper_answers_the_canonical_symbol(written: str, explicit: AssetClass | None, canonical: str) -> None:
    assert ExchangeMapper().canonical(written, explicit) == canonical


def test_the_mapper_still_refuses_what_it_cannot_classify() -> None:
    with pytest.raises(UnknownSymbol):
        ExchangeMapper().canonical("NOT A SYMBOL!")


def test_the_router_builds_orders_with_the_canonical_symbol() -> None:
    router = BrokerRouter({Broker.BINANCE})
    for written in ("BTC-USDT", "BTCUSDT", "BTC/USDT", "btc_usdt"):
        request = router.route(Signal(signal_id=f"s-{written}", symbol=written, side=Side.BUY, quantity=D("1")))
        assert (request.symbol, request.broker) == ("BTC-USDT", Broker.BINANCE)
        assert Order.from_request(request).symbol == "BTC-USDT"
        assert to_ccxt_symbol(request.symbol) == "BTC/USDT"  # the venue's market, inside the adapter


def test_models_with_an_asset_class_fold_aliases_at_the_edge() -> None:
    request = BrokerRouter({Broker.BINANCE}).route(Signal(signal_id="s", symbol="ETH-USDT", side=Side.BUY,
                                                          quantity=D("1")))
    raw = request.to_bytes().replace(b'"ETH-USDT"', b'"ethusdt"')
    assert OrderRequest.model_validate_json(raw).symbol == "ETH-USDT"  # a producer of orders.<broker>
    fill = Fill.model_validate({"exec_id": "x", "cumulative_quantity": "1", "client_order_id": "c",
                                "broker": "binance", "symbol": "ETH/USDT", "asset_class": "CRYPTO",
                                "side": "BUY", "quantity": "1", "price": "1"})
    assert fill.symbol == "ETH-USDT"
    signal = Signal(signal_id="s", symbol="ETHUSDT", side=Side.BUY, quantity=D("1"), asset_class=AssetClass.CRYPTO)
    assert signal.symbol == "ETH-USDT"
    assert Signal(signal_id="s", symbol="ethusdt", side=Side.BUY, quantity=D("1")).symbol == "ETHUSDT"  # no class yet
    with pytest.raises(ValueError, match="at most 64"):  # validation still judges what it was sent
        Fill.model_validate({**fill.model_dump(), "symbol": "X" * 65})


async def test_symbol_aliases_are_one_position_in_the_books() -> None:
    router = BrokerRouter({Broker.BINANCE})
    store = InMemoryStore(now=lambda: T0)
    orders = [Order.from_request(router.route(Signal(signal_id=f"alias-{n}", symbol=written, side=Side.BUY,
                                                     quantity=D("1"))), at=T0)
              for n, written in enumerate(("BTC-USDT", "BTCUSDT", "BTC/USDT"))]
    await store.insert_orders(orders)
    prices = ("100", "110", "120")
    await store.apply_fills([emitted(o, "1", price) for o, price in zip(orders, prices, strict=True)])
    positions = await store.positions()
    assert [(p.broker, p.symbol, p.quantity, p.avg_price) for p in positions] == [
        (Broker.BINANCE, "BTC-USDT", D("3"), D("110"))]
    assert {o.symbol for o in store.orders.values()} == {"BTC-USDT"}
    assert {f.symbol for f in await store.recorded_fills()} == {"BTC-USDT"}
