"""The core's fill and position arithmetic (execution/fills.py): no store, no venue."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from execution.fills import (
    AppliedFill,
    FillIncrement,
    OrderFillState,
    PositionState,
    apply_to_orders,
    average_after,
    commission_increment,
    fill_increment,
    fill_state,
    first_of_each,
    move_positions,
)
from schemas import AssetClass, Broker, Fill, OrderState, Side
from tests.unit.fakes import make_order

D = Decimal
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def fill_of(cid: str, cumulative: str, price: str, *, exec_id: str | None = None, quantity: str | None = None,
            broker: Broker = Broker.BINANCE, symbol: str = "BTC-USDT", side: Side = Side.BUY) -> Fill:
    return Fill(
        exec_id=exec_id or f"x-{cid}-{cumulative}",
        cumulative_quantity=D(cumulative),
        client_order_id=cid,
        venue_order_id=f"V-{cid}",
        broker=broker,
        symbol=symbol,
        asset_class=AssetClass.CRYPTO,
        side=side,
        quantity=D(quantity or cumulative),
        price=D(price),
        ts=T0,
    )


# ---- positions: average cost --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        ([("2", "100"), ("1", "130")], ("3", "110", "0")),  # adding: weighted average
        ([("-2", "50"), ("-1", "44")], ("-3", "48", "0")),  # short adds at weighted average
        ([("3", "110"), ("-1.5", "120")], ("1.5", "110", "15")),  # reduce: realise, keep the average
        ([("-2", "50"), ("1", "40")], ("-1", "50", "10")),  # covering a short below avg is a gain
        ([("1", "10"), ("-3", "12")], ("-2", "12", "2")),  # flip long -> short at the fill price
        ([("-1", "100"), ("3", "90")], ("2", "90", "10")),  # flip short -> long at the fill price
        ([("1", "10"), ("-1", "9")], ("0", "0", "-1")),  # flat resets the average
        ([("1", "10"), ("-1", "9"), ("2", "20")], ("2", "20", "-1")),  # reopened: pnl stays, new average
    ],
)
def test_average_cost_position_arithmetic(steps: list[tuple[str, str]], expected: tuple[str, str, str]) -> None:
    state = PositionState()
    for quantity, price in steps:
        state = state.apply(D(quantity), D(price))
    assert (state.quantity, state.avg_price, state.realized_pnl) == tuple(D(v) for v in expected)


def test_averages_keep_fifty_digits_not_the_default_context() -> None:
    state = PositionState().apply(D("1"), D("1")).apply(D("2"), D("2"))  # 5/3
    assert len(state.avg_price.as_tuple().digits) == 50


def test_move_positions_returns_only_touched_keys_in_order_and_chains_within_a_batch() -> None:
    held = {(Broker.PAPER, "ETH-USDT"): PositionState(D("1"), D("100"))}
    applied = [
        AppliedFill(fill_of("a", "1", "110", broker=Broker.PAPER, symbol="ETH-USDT", side=Side.SELL), D("1")),
        AppliedFill(fill_of("b", "2", "50", broker=Broker.BINANCE, symbol="SOL-USDT"), D("2")),
        AppliedFill(fill_of("c", "1", "60", broker=Broker.BINANCE, symbol="SOL-USDT"), D("1")),
    ]
    moved = move_positions(held, applied)
    assert list(moved) == [(Broker.BINANCE, "SOL-USDT"), (Broker.PAPER, "ETH-USDT")]
    assert moved[(Broker.PAPER, "ETH-USDT")] == PositionState(D("0"), D("0"), D("10"))
    sol = moved[(Broker.BINANCE, "SOL-USDT")]
    assert (sol.quantity, sol.avg_price.quantize(D("0.0001"))) == (D("3"), D("53.3333"))
    assert held[(Broker.PAPER, "ETH-USDT")].quantity == D("1")  # input untouched


# ---- one order's watermark ----------------------------------------------------------------------


def test_watermark_applies_growth_and_ignores_duplicates_and_stale_fills() -> None:
    order = make_order(quantity=D("1"), state=OrderState.SUBMITTED)
    cid = order.client_order_id
    watermark = OrderFillState.of(order)

    assert watermark.absorb(fill_of(cid, "0.4", "100")) == D("0.4")
    assert (watermark.filled, watermark.avg_price, watermark.state) == (D("0.4"), D("100"), OrderState.PARTIALLY_FILLED)
    assert watermark.changed and watermark.venue_order_id == f"V-{cid}"

    assert watermark.absorb(fill_of(cid, "0.4", "100", exec_id="again")) is None  # re-emitted, new id
    assert watermark.absorb(fill_of(cid, "0.2", "99")) is None  # stale, behind the watermark
    # a fill reporting 0.3 but at cumulative 1.0: a lost fill in between is covered by the growth
    assert watermark.absorb(fill_of(cid, "1.0", "110", quantity="0.3")) == D("0.6")
    assert (watermark.filled, watermark.avg_price, watermark.state) == (D("1.0"), D("106"), OrderState.FILLED)


def test_a_late_fill_on_a_terminal_order_grows_totals_but_keeps_the_state() -> None:
    order = make_order(quantity=D("2"), state=OrderState.CANCELLED)
    watermark = OrderFillState.of(order)
    assert watermark.absorb(fill_of(order.client_order_id, "0.5", "10")) == D("0.5")
    assert (watermark.state, watermark.filled) == (OrderState.CANCELLED, D("0.5"))


def test_an_orphan_starts_from_its_recorded_fills_and_has_no_state() -> None:
    orphan = OrderFillState.orphan("ghost", D("2"), D("40"))
    assert (orphan.exists, orphan.filled, orphan.avg_price) == (False, D("2"), D("20"))
    assert orphan.absorb(fill_of("ghost", "2", "20")) is None
    assert orphan.absorb(fill_of("ghost", "3", "26")) == D("1")
    assert (orphan.state, orphan.avg_price) == (None, D("22"))
    assert OrderFillState.orphan("new", D("0"), D("0")).filled == 0


def test_apply_to_orders_walks_the_batch_in_order_with_events() -> None:
    order = make_order(quantity=D("1"), state=OrderState.SUBMITTED)
    cid = order.client_order_id
    states = {cid: OrderFillState.of(order), "ghost": OrderFillState("ghost")}
    fills = [
        fill_of(cid, "0.8", "104", quantity="0.3"),
        fill_of(cid, "0.5", "102", quantity="0.2"),  # out of order: behind the watermark
        fill_of("ghost", "1", "5"),
        fill_of(cid, "1", "100", quantity="0.2"),
    ]
    applied, events = apply_to_orders(states, fills, T0)
    assert [(a.fill.client_order_id, a.fill.quantity, a.reported_quantity) for a in applied] == [
        (cid, D("0.8"), D("0.3")), ("ghost", D("1"), D("1")), (cid, D("0.2"), D("0.2"))]
    assert [(e.previous_state, e.state, e.ts) for e in events] == [
        (OrderState.SUBMITTED, OrderState.PARTIALLY_FILLED, T0),
        (OrderState.PARTIALLY_FILLED, OrderState.FILLED, T0),
    ]
    assert events[0].reason == f"fill x-{cid}-0.8: 0.8 @ 104, cumulative 0.8"


def test_first_of_each_keeps_the_first_per_broker_and_exec_id() -> None:
    a, b = fill_of("o", "1", "1", exec_id="e1"), fill_of("o", "2", "1", exec_id="e1")
    other_broker = fill_of("o", "1", "1", exec_id="e1", broker=Broker.PAPER)
    assert first_of_each([a, b, other_broker, a]) == [a, other_broker]


# ---- what the fill tracker derives from venue totals ---------------------------------------------


def test_increment_from_average_prices() -> None:
    assert fill_increment(D("0"), None, D("0.3"), avg_price=D("100")) == FillIncrement(D("0.3"), D("100"))
    # 0.3 @ 100 known, the venue now says 1.0 @ 101 -> 0.7 @ 101.428571428571 (rounded to 12 places)
    step = fill_increment(D("0.3"), D("100"), D("1.0"), avg_price=D("101"))
    assert step == FillIncrement(D("0.7"), D("101.428571428571"))
    assert fill_increment(D("1"), D("100"), D("1"), avg_price=D("100")) is None  # no growth
    assert fill_increment(D("1"), D("100"), D("0.5"), avg_price=D("100")) is None  # behind
    assert fill_increment(D("0"), None, D("1")) is None  # no price at all


def test_increment_from_a_cumulative_notional() -> None:
    # Binance reports executedQty and cummulativeQuoteQty: 0.5 for 50, then 1.5 for 170
    assert fill_increment(D("0.5"), D("100"), D("1.5"), notional=D("170")) == FillIncrement(D("1"), D("120"))


def test_a_non_positive_increment_price_falls_back_to_the_cumulative_average() -> None:
    # the venue rounded its average down below what the known fills imply
    step = fill_increment(D("1"), D("100.5"), D("1.000001"), avg_price=D("100"))
    assert step == FillIncrement(D("0.000001"), D("100"))


def test_average_after_and_fill_state() -> None:
    assert average_after(D("0"), None, D("2"), D("10")) == D("10")
    assert average_after(D("1"), D("10"), D("3"), D("20")) == D("17.5")
    assert fill_state(D("0.5"), D("1")) is OrderState.PARTIALLY_FILLED
    assert fill_state(D("1"), D("1")) is OrderState.FILLED


def test_commission_increment() -> None:
    assert commission_increment(D("0.3"), D("0.1"), D("1"), D("3")) == D("0.2")
    assert commission_increment(D("0.1"), D("0.3"), D("1"), D("3")) == D("0")  # never negative
    assert commission_increment(D("0.3"), None, D("1"), D("3")) == D("0.1")  # first sight: pro rata
    assert commission_increment(D("0.3"), None, D("1"), D("0")) == D("0")
