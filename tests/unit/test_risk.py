"""PreTradeLimits: quantity and notional, with the price the order carries."""

from __future__ import annotations

from decimal import Decimal

import pytest

from execution.risk import PreTradeLimits
from tests.unit.fakes import make_order, make_signal

D = Decimal
LIMITS = PreTradeLimits(max_quantity=D("10"), max_notional=D("1000"))


def test_within_limits_passes() -> None:
    assert LIMITS.violation(make_signal(quantity=D("10"), reference_price=D("100"))) is None
    assert LIMITS.violation(make_signal(quantity=D("0.001"), reference_price=D("1"))) is None


def test_max_quantity() -> None:
    reason = LIMITS.violation(make_signal(quantity=D("10.0001"), reference_price=None))
    assert reason == "quantity 10.0001 exceeds max_order_quantity 10"


def test_quantity_is_checked_before_notional() -> None:
    reason = LIMITS.violation(make_signal(quantity=D("11"), reference_price=D("1000")))
    assert reason is not None and reason.startswith("quantity 11 exceeds")


def test_max_notional_with_reference_price() -> None:
    assert LIMITS.violation(make_signal(quantity=D("4"), reference_price=D("250"))) is None  # == 1000
    reason = LIMITS.violation(make_signal(quantity=D("4"), reference_price=D("250.01")))
    assert reason == "notional 1000.04 exceeds max_order_notional 1000"


def test_limit_price_is_used_over_reference_price() -> None:
    # the limit is the worst price the order can trade at
    signal = make_signal(quantity=D("5"), order_type="LIMIT", limit_price=D("201"), reference_price=D("100"))
    assert LIMITS.violation(signal) == "notional 1005 exceeds max_order_notional 1000"
    cheap = make_signal(quantity=D("5"), order_type="LIMIT", limit_price=D("100"), reference_price=D("999"))
    assert LIMITS.violation(cheap) is None


def test_stop_price_is_used_for_stop_orders() -> None:
    signal = make_signal(quantity=D("2"), order_type="STOP", stop_price=D("600"), reference_price=None)
    assert LIMITS.violation(signal) == "notional 1200 exceeds max_order_notional 1000"


def test_market_order_without_price_is_checked_on_quantity_only() -> None:
    huge_but_unpriced = make_signal(quantity=D("10"), reference_price=None)
    assert LIMITS.violation(huge_but_unpriced) is None
    assert LIMITS.violation(make_signal(quantity=D("10.5"), reference_price=None)) is not None


def test_bracket_notional_uses_the_entry_not_the_protective_stop() -> None:
    # BUY 10 entering at 200 is 2000 notional: the protective stop at 10 must not make it look like 100
    signal = make_signal(quantity=D("10"), order_type="BRACKET", reference_price=D("200"),
                         stop_price=D("10"), take_profit_price=D("300"))
    assert LIMITS.violation(signal) == "notional 2000 exceeds max_order_notional 1000"
    limit_entry = make_signal(quantity=D("10"), order_type="BRACKET", limit_price=D("150"),
                              stop_price=D("10"), take_profit_price=D("300"))
    assert LIMITS.violation(limit_entry) == "notional 1500 exceeds max_order_notional 1000"


def test_bracket_without_entry_price_is_bounded_by_its_exits() -> None:
    # no entry price: the higher exit bounds the entry from above (BUY: take profit, SELL: stop)
    buy = make_signal(quantity=D("10"), order_type="BRACKET", reference_price=None,
                      stop_price=D("50"), take_profit_price=D("110"))
    assert LIMITS.violation(buy) == "notional 1100 exceeds max_order_notional 1000"
    sell = make_signal(side="SELL", quantity=D("10"), order_type="BRACKET", reference_price=None,
                       stop_price=D("110"), take_profit_price=D("50"))
    assert LIMITS.violation(sell) == "notional 1100 exceeds max_order_notional 1000"


def test_orders_are_checked_like_signals() -> None:
    order = make_order(quantity=D("3"), reference_price=D("400"))
    assert LIMITS.violation(order) == "notional 1200 exceeds max_order_notional 1000"


@pytest.mark.parametrize(("qty", "price"), [("0.1", "0.1"), ("3", "333.333")])
def test_exact_decimal_arithmetic(qty: str, price: str) -> None:
    limits = PreTradeLimits(max_quantity=D("100"), max_notional=D(qty) * D(price))
    assert limits.violation(make_signal(quantity=D(qty), reference_price=D(price))) is None
