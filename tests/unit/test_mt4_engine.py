"""The MT4 bridge simulator's terminal without HTTP: the rules of the bridge contract (README "MT4
bridge contract"), driven directly with still prices, a fixed clock and known ticket numbers."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from venues.common.prices import PricePath
from venues.mt4.engine import Mt4Engine
from venues.mt4.knobs import TradeKnobs
from venues.mt4.wire import CloseRequest, ModifyRequest, Mt4Error, PlaceRequest

D = Decimal
NOW = 1_767_225_600.0  # 2026-01-01T00:00:00Z


def engine(**knobs: Any) -> Mt4Engine:
    knobs.setdefault("price_path", PricePath(seed=1, volatility=D(0)))
    knobs.setdefault("first_ticket", 1000)
    return Mt4Engine(clock=lambda: NOW, **knobs)


def place(eng: Mt4Engine, **fields: Any) -> Any:
    body = {"symbol": "EURUSD", "side": "buy", "type": "market", "volume": "0.10", **fields}
    return eng.place(PlaceRequest.parse(body))


def code_of(call: Any, *args: Any, **kwargs: Any) -> int:
    with pytest.raises(Mt4Error) as err:
        call(*args, **kwargs)
    return err.value.code


def account(eng: Mt4Engine) -> dict[str, Any]:
    return eng.account()


# -- quotes and market orders -------------------------------------------------------------------------


def test_quotes_start_at_the_contract_prices_with_a_ten_point_spread():
    eng = engine()
    assert eng.quote("EURUSD") == {"symbol": "EURUSD", "bid": "1.08500", "ask": "1.08510",
                                   "time": "2026-01-01T00:00:00.000Z"}
    assert eng.bid_ask("USDJPY") == (D("150.000"), D("150.010"))
    assert eng.bid_ask("GBPUSD") == (D("1.27000"), D("1.27010"))
    assert eng.bid_ask("AUDUSD") == (D("0.66000"), D("0.66010"))
    assert code_of(eng.quote, "XAUUSD") == 4106


def test_market_buy_opens_at_the_ask_and_moves_the_account():
    eng = engine()
    t = place(eng, client_id="c1", comment="hello", magic=7)
    order = eng.order_json(t)
    assert order == {
        "ticket": 1000, "symbol": "EURUSD", "side": "buy", "type": "market", "state": "open", "volume": "0.10",
        "open_price": "1.08510", "price": None, "open_time": "2026-01-01T00:00:00.000Z", "close_price": None,
        "close_time": None, "sl": None, "tp": None, "profit": "-1.00", "commission": "-0.70", "swap": "0.00",
        "magic": 7, "comment": "hello", "client_id": "c1", "close_client_id": None, "from_ticket": None,
    }
    # margin 0.1 lot x 100000 / 100 EUR at 1.08510; equity = balance + floating (-1.00 at the bid) + commission
    assert account(eng) == {"login": 5012345, "balance": "10000.00", "equity": "9998.30", "margin": "108.51",
                            "free_margin": "9889.79", "currency": "USD", "leverage": 100}
    eng.set_price("EURUSD", bid=D("1.08610"))
    assert eng.order_json(t)["profit"] == "10.00"
    assert account(eng)["equity"] == "10009.30" and account(eng)["free_margin"] == "9900.79"


def test_market_sell_opens_at_the_bid_and_profits_when_the_ask_falls():
    eng = engine()
    t = place(eng, side="sell", volume="0.20")
    assert t.open_price == D("1.08500") and t.commission == D("-1.40")
    eng.set_price("EURUSD", ask=D("1.08400"))
    assert eng.bid_ask("EURUSD") == (D("1.08390"), D("1.08400"))
    assert eng.order_json(t)["profit"] == "20.00"


def test_usdjpy_margin_is_in_usd_and_profit_converts_from_yen_at_the_closing_rate():
    eng = engine()
    t = place(eng, symbol="USDJPY", volume="1.00")
    assert t.open_price == D("150.010") and t.margin == D("1000.00")
    eng.set_price("USDJPY", bid=D("151.510"))
    closed, _ = eng.close(CloseRequest(ticket=t.ticket))
    # 1.5 JPY x 100000 = 150000 JPY / 151.510 = 990.03 USD
    assert closed.profit == D("990.03")
    assert eng.balance == D("10000") + D("990.03") - D("7.00")


def test_a_hedging_account_opens_a_second_ticket_for_the_opposite_side():
    eng = engine()
    buy, sell = place(eng), place(eng, side="sell")
    assert buy.ticket != sell.ticket
    assert [t.state for t in eng.orders(state="open")] == ["open", "open"]
    assert eng.margin == D("108.51") + D("108.50")


def test_the_same_client_id_twice_is_two_tickets_orders_send_is_not_idempotent():
    eng = engine()
    place(eng, client_id="dup")
    place(eng, client_id="dup")
    assert [t.ticket for t in eng.orders_for_client("dup")] == [1000, 1001]


def test_tickets_differ_between_instances_unless_the_first_is_given():
    first = Mt4Engine(price_path=PricePath(volatility=D(0)))
    second = Mt4Engine(price_path=PricePath(volatility=D(0)))
    assert place(first).ticket != place(second).ticket


# -- validation -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("volume", ["0.015", "0.001", "0", "100.01", "-0.10"])
def test_volume_off_the_lot_grid_is_131(volume):
    assert code_of(place, engine(), volume=volume) == 131


def test_volume_limits_themselves_are_accepted():
    eng = engine(balance=D(10_000_000))
    assert place(eng, volume="0.01").volume == D("0.01")
    assert place(eng, volume="100").volume == D(100)


def test_unknown_symbol_is_4106():
    assert code_of(place, engine(), symbol="EURXXX") == 4106


@pytest.mark.parametrize(
    ("side", "stops", "ok"),
    [
        ("buy", {"sl": "1.08470"}, True),  # bid 1.08500 - 30 points
        ("buy", {"sl": "1.08471"}, False),
        ("buy", {"sl": "1.08600"}, False),  # above the market
        ("buy", {"tp": "1.08530"}, True),
        ("buy", {"tp": "1.08529"}, False),
        ("sell", {"sl": "1.08540"}, True),  # ask 1.08510 + 30 points
        ("sell", {"sl": "1.08539"}, False),
        ("sell", {"tp": "1.08480"}, True),
        ("sell", {"tp": "1.08481"}, False),
    ],
)
def test_market_stops_must_be_the_stop_level_from_the_market(side, stops, ok):
    eng = engine()
    if ok:
        assert place(eng, side=side, **stops).is_open
    else:
        assert code_of(place, eng, side=side, **stops) == 130
        assert eng.orders() == []


@pytest.mark.parametrize(
    ("side", "order_type", "price", "ok"),
    [
        ("buy", "limit", "1.08480", True),  # ask 1.08510 - 30 points
        ("buy", "limit", "1.08481", False),
        ("buy", "stop", "1.08540", True),
        ("buy", "stop", "1.08539", False),
        ("sell", "limit", "1.08530", True),  # bid 1.08500 + 30 points
        ("sell", "limit", "1.08529", False),
        ("sell", "stop", "1.08470", True),
        ("sell", "stop", "1.08471", False),
    ],
)
def test_pending_prices_must_be_the_stop_level_from_the_market_on_their_side(side, order_type, price, ok):
    eng = engine()
    if ok:
        assert place(eng, side=side, type=order_type, price=price).is_pending
    else:
        assert code_of(place, eng, side=side, type=order_type, price=price) == 130


def test_pending_stops_are_measured_from_the_order_price():
    eng = engine()
    assert place(eng, type="limit", price="1.08000", sl="1.07970", tp="1.08030").is_pending
    assert code_of(place, eng, type="limit", price="1.08000", sl="1.07980") == 130
    assert code_of(place, eng, side="sell", type="limit", price="1.09000", tp="1.08980") == 130


def test_prices_are_normalized_to_the_symbols_digits():
    t = place(engine(), type="limit", price="1.0800049", sl="1.079695")  # rounded half up onto 5 digits
    assert (t.price, t.sl) == (D("1.08000"), D("1.07970"))


def test_not_enough_money_is_134_and_nothing_is_opened():
    eng = engine()
    assert code_of(place, eng, volume="10") == 134  # 10851.00 margin > 10000 free
    assert eng.orders() == [] and eng.margin == 0
    assert place(eng, volume="9").is_open  # 9765.90


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ({"volume": 0.1}, "volume must be a decimal"),
        ({"type": "limit"}, "price is required"),
        ({"side": "long"}, "side must be one of"),
        ({"type": "stop_limit", "price": "1.0"}, "type must be one of"),
        ({"client_id": 5}, "client_id must be a string"),
        ({"magic": "5"}, "magic must be an integer"),
        ({"sl": "abc"}, "sl must be a decimal"),
    ],
)
def test_malformed_requests_are_3_invalid_trade_parameters(body, detail):
    with pytest.raises(Mt4Error) as err:
        place(engine(), **body)
    assert err.value.code == 3 and err.value.status == 400 and detail in err.value.detail


def test_null_or_zero_stops_mean_none():
    t = place(engine(), sl=None, tp="0")
    assert t.sl is None and t.tp is None


# -- pending orders and SL/TP on the price path --------------------------------------------------------------


@pytest.mark.parametrize(
    ("side", "order_type", "price", "before", "after", "opens_at"),
    [
        ("buy", "limit", "1.08000", "1.07991", "1.07990", "1.08000"),  # ask <= price
        ("buy", "stop", "1.09000", "1.08989", "1.08990", "1.09000"),  # ask >= price
        ("sell", "limit", "1.09000", "1.08999", "1.09000", "1.09000"),  # bid >= price
        ("sell", "stop", "1.08000", "1.08001", "1.08000", "1.08000"),  # bid <= price
    ],
)
def test_pending_orders_trigger_on_their_side_of_the_quote_and_keep_their_ticket(
    side, order_type, price, before, after, opens_at
):
    eng = engine()
    t = place(eng, side=side, type=order_type, price=price, client_id="p1")
    assert eng.order_json(t)["open_price"] is None and eng.order_json(t)["open_time"] is None
    assert account(eng)["margin"] == "0.00"
    eng.set_price("EURUSD", bid=D(before))
    assert t.is_pending
    eng.set_price("EURUSD", bid=D(after))
    assert t.is_open and t.ticket == 1000 and t.open_price == D(opens_at)
    assert t.type == order_type and t.price == D(price) and t.commission == D("-0.70")
    assert eng.order_json(t)["open_time"] == "2026-01-01T00:00:00.000Z"
    assert account(eng)["margin"] != "0.00"


def test_a_gap_fills_a_limit_better_and_a_stop_worse_at_the_market():
    eng = engine()
    limit = place(eng, type="limit", price="1.08000")
    stop = place(eng, type="stop", price="1.09000")
    eng.set_price("EURUSD", bid=D("1.07000"))
    assert limit.open_price == D("1.07010")  # the ask, below the limit
    eng.set_price("EURUSD", bid=D("1.10000"))
    assert stop.open_price == D("1.10010")  # the ask, above the stop


def test_the_price_path_triggers_pending_orders_on_its_ticks():
    path = PricePath(seed=1, series={"EURUSD": [D("1.08500"), D("1.08200"), D("1.07900")]})
    eng = engine(price_path=path)
    t = place(eng, type="limit", price="1.08000")
    eng.tick()
    assert t.is_pending
    eng.tick()
    assert t.is_open and t.open_price == D("1.07910")


def test_stop_loss_closes_a_buy_at_the_bid_and_realises_the_loss():
    eng = engine()
    t = place(eng, sl="1.08000", tp="1.09000", comment="x")
    eng.set_price("EURUSD", bid=D("1.08001"))
    assert t.is_open
    eng.set_price("EURUSD", bid=D("1.08000"))
    assert t.state == "closed" and t.close_price == D("1.08000") and t.comment == "x[sl]"
    assert t.profit == D("-51.00") and t.close_client_id is None
    assert eng.balance == D("10000") - D("51.00") - D("0.70")
    assert account(eng)["equity"] == account(eng)["balance"] == "9948.30"
    assert account(eng)["margin"] == "0.00"


def test_take_profit_closes_a_sell_at_the_ask():
    eng = engine()
    t = place(eng, side="sell", tp="1.08000")
    eng.set_price("EURUSD", ask=D("1.08000"))
    assert t.state == "closed" and t.comment == "[tp]" and t.profit == D("50.00")


def test_a_triggered_pending_order_gets_its_sl_tp_and_a_later_move_closes_it():
    eng = engine()
    t = place(eng, type="stop", price="1.09000", tp="1.09500")
    eng.set_price("EURUSD", ask=D("1.09000"))
    assert t.is_open and t.tp == D("1.09500")
    eng.set_price("EURUSD", bid=D("1.09500"))
    assert t.state == "closed" and t.profit == D("50.00")


def test_a_pending_order_without_margin_when_it_triggers_is_deleted():
    eng = engine()
    t = place(eng, type="limit", price="1.08000", volume="50")  # no margin check while pending
    eng.set_price("EURUSD", bid=D("1.07900"))
    assert t.state == "deleted" and eng.margin == 0


def test_a_closed_market_triggers_nothing_until_it_reopens():
    eng = engine()
    t = place(eng, type="limit", price="1.08000")
    eng.knobs.update({"market_closed": ["EURUSD"]})
    eng.set_price("EURUSD", bid=D("1.07900"))
    assert t.is_pending
    eng.knobs.update({"market_closed": []})
    eng.tick()  # the held price is still there: the next run of the triggers opens it
    assert t.is_open


# -- modify ---------------------------------------------------------------------------------------------


def test_modify_sets_and_removes_sl_tp_of_an_open_ticket():
    eng = engine()
    t = place(eng)
    eng.modify(ModifyRequest.parse({"ticket": t.ticket, "sl": "1.08000", "tp": "1.09000"}))
    assert (t.sl, t.tp) == (D("1.08000"), D("1.09000"))
    eng.modify(ModifyRequest.parse({"ticket": t.ticket, "sl": None}))
    assert (t.sl, t.tp) == (None, D("1.09000"))
    assert code_of(eng.modify, ModifyRequest.parse({"ticket": t.ticket, "sl": "1.08490"})) == 130
    assert code_of(eng.modify, ModifyRequest.parse({"ticket": t.ticket, "price": "1.08000"})) == 3


def test_modify_moves_a_pending_order_and_checks_its_stops_against_the_new_price():
    eng = engine()
    t = place(eng, type="limit", price="1.08000", sl="1.07900")
    eng.modify(ModifyRequest.parse({"ticket": t.ticket, "price": "1.07950"}))
    assert t.price == D("1.07950") and t.sl == D("1.07900")
    assert code_of(eng.modify, ModifyRequest.parse({"ticket": t.ticket, "price": "1.07920"})) == 130
    assert code_of(eng.modify, ModifyRequest.parse({"ticket": t.ticket, "price": "1.08500"})) == 130
    assert t.price == D("1.07950")


def test_modify_or_close_of_an_unknown_closed_or_deleted_ticket_is_4108():
    eng = engine()
    t = place(eng)
    eng.close(CloseRequest(ticket=t.ticket))
    assert code_of(eng.modify, ModifyRequest(ticket=t.ticket, sl=D("1.0"))) == 4108
    assert code_of(eng.close, CloseRequest(ticket=t.ticket)) == 4108
    assert code_of(eng.close, CloseRequest(ticket=424242)) == 4108
    assert code_of(eng.ticket, 424242) == 4108


# -- close --------------------------------------------------------------------------------------------


def test_full_close_realises_profit_and_commission_into_the_balance():
    eng = engine()
    t = place(eng)
    eng.set_price("EURUSD", bid=D("1.08710"))
    closed, remainder = eng.close(CloseRequest(ticket=t.ticket, client_id="closer"))
    assert remainder is None and closed is t and t.state == "closed"
    assert t.close_price == D("1.08710") and t.profit == D("20.00") and t.close_client_id == "closer"
    assert account(eng) == {"login": 5012345, "balance": "10019.30", "equity": "10019.30", "margin": "0.00",
                            "free_margin": "10019.30", "currency": "USD", "leverage": 100}


def test_partial_close_leaves_the_remainder_on_a_new_ticket_that_names_its_origin():
    eng = engine()
    t = place(eng, volume="0.10", client_id="opener", sl="1.08000")
    eng.set_price("EURUSD", bid=D("1.08610"))
    closed, remainder = eng.close(CloseRequest(ticket=t.ticket, volume=D("0.03"), client_id="netting"))
    assert remainder is not None
    assert (closed.ticket, closed.volume, closed.state, closed.close_client_id) == (1000, D("0.03"), "closed",
                                                                                   "netting")
    assert closed.profit == D("3.00") and closed.commission == D("-0.21")
    r = eng.order_json(remainder)
    assert (r["ticket"], r["volume"], r["state"], r["from_ticket"], r["client_id"]) == (1001, "0.07", "open", 1000,
                                                                                          "opener")
    assert (r["open_price"], r["sl"], r["commission"], r["comment"]) == ("1.08510", "1.08000", "-0.49", "from #1000")
    assert r["close_client_id"] is None and r["open_time"] == eng.order_json(closed)["open_time"]
    assert account(eng)["margin"] == "75.96"  # 0.07 lot at 1.08510
    # The lookup finds both the opener's tickets and the ticket the netting order closed.
    assert [t.ticket for t in eng.orders_for_client("opener")] == [1000, 1001]
    assert [t.ticket for t in eng.orders_for_client("netting")] == [1000]
    # The remainder closes on its own; the sums come out exact.
    eng.close(CloseRequest(ticket=remainder.ticket))
    assert eng.balance == D("10000") + D("10.00") - D("0.70")


def test_close_volume_is_validated_against_the_ticket():
    eng = engine()
    t = place(eng)
    assert code_of(eng.close, CloseRequest(ticket=t.ticket, volume=D("0.11"))) == 131
    assert code_of(eng.close, CloseRequest(ticket=t.ticket, volume=D("0.005"))) == 131
    assert t.is_open


def test_closing_a_pending_ticket_deletes_it_whatever_the_volume():
    eng = engine()
    t = place(eng, type="limit", price="1.08000", client_id="p")
    closed, remainder = eng.close(CloseRequest(ticket=t.ticket, volume=D("0.05"), client_id="other"))
    assert remainder is None and closed.state == "deleted" and closed.volume == D("0.10")
    assert closed.close_client_id is None and eng.order_json(closed)["close_time"] == "2026-01-01T00:00:00.000Z"
    eng.set_price("EURUSD", bid=D("1.07000"))
    assert t.state == "deleted"


def test_orders_filter_by_state_and_reject_an_unknown_state():
    eng = engine()
    place(eng)
    place(eng, type="limit", price="1.08000")
    assert [t.ticket for t in eng.orders(state="pending")] == [1001]
    assert [t.ticket for t in eng.orders(state="open")] == [1000]
    assert eng.orders(client_id="nobody") == []
    assert code_of(eng.orders, state="filled") == 3


# -- MT4's own refusals ---------------------------------------------------------------------------------


def test_one_shot_requote_off_quotes_and_busy_refuse_and_change_nothing():
    eng = engine(knobs=TradeKnobs(requote_next=1, off_quotes_next=1, busy_next=1))
    with pytest.raises(Mt4Error) as busy:
        place(eng)
    assert (busy.value.code, busy.value.status, busy.value.text) == (146, 409, "trade context busy")
    assert code_of(place, eng) == 136
    assert code_of(place, eng) == 138
    assert eng.orders() == []
    assert place(eng).is_open


def test_requote_spares_pending_placements_and_modifications_but_not_closes():
    eng = engine()
    t = place(eng)
    eng.knobs.update({"requote_next": 1})
    assert place(eng, type="limit", price="1.08000").is_pending
    eng.modify(ModifyRequest(ticket=t.ticket, tp=D("1.09000")))
    assert code_of(eng.close, CloseRequest(ticket=t.ticket)) == 138
    assert t.is_open
    eng.close(CloseRequest(ticket=t.ticket))
    assert t.state == "closed"


def test_a_one_shot_is_not_spent_on_a_request_that_fails_validation():
    eng = engine(knobs=TradeKnobs(busy_next=1))
    assert code_of(place, eng, volume="0.001") == 131
    assert code_of(place, eng) == 146


def test_rates_are_reproducible_from_their_seed():
    def pattern(seed: int) -> list[int | None]:
        eng = engine(knobs=TradeKnobs(requote_rate=0.3, busy_rate=0.2, seed=seed), balance=D(10_000_000))
        codes: list[int | None] = []
        for _ in range(40):
            try:
                place(eng)
                codes.append(None)
            except Mt4Error as exc:
                codes.append(exc.code)
        return codes

    first = pattern(5)
    assert first == pattern(5) and first != pattern(6)
    assert 138 in first and 146 in first and None in first


def test_market_closed_and_trade_disabled():
    eng = engine()
    t = place(eng)
    eng.knobs.update({"market_closed": ["*"]})
    assert code_of(place, eng) == 132
    assert code_of(eng.close, CloseRequest(ticket=t.ticket)) == 132
    eng.knobs.update({"market_closed": [], "trade_disabled": ["EURUSD"]})
    assert code_of(place, eng) == 133
    assert place(eng, symbol="GBPUSD").is_open


def test_knob_updates_are_validated_all_or_nothing():
    knobs = TradeKnobs()
    for patch in ({"requote_next": -1}, {"busy_rate": 2}, {"market_closed": "EURUSD"}, {"bogus": 1},
                  {"requote_next": 2, "seed": "x"}):
        with pytest.raises(ValueError):
            knobs.update(patch)
    assert knobs.to_json()["requote_next"] == 0
