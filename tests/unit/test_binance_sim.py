"""The pure simulator engine: matching, balances, price path, no HTTP."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from venues.binance import BinanceApiError, BinanceExchangeSim, PricePath

D = Decimal
STILL = PricePath(seed=1, volatility=D(0))


def sim(**kwargs) -> BinanceExchangeSim:
    kwargs.setdefault("price_path", STILL)
    return BinanceExchangeSim(**kwargs)


def order(engine: BinanceExchangeSim, **fields: str) -> dict[str, Any]:
    params = {"symbol": "BTCUSDT", "side": "BUY", **fields}
    return engine.new_order(params)


def test_market_buy_fills_at_ask_and_moves_balances():
    engine = sim()
    bid, ask = engine.bid_ask("BTCUSDT")
    assert bid < engine.price("BTCUSDT") < ask
    resp = order(engine, type="MARKET", quantity="0.5", newClientOrderId="m1")
    assert resp["status"] == "FILLED"
    assert D(resp["executedQty"]) == D("0.5")
    assert D(resp["cummulativeQuoteQty"]) == D("0.5") * ask
    [fill] = resp["fills"]
    assert D(fill["price"]) == ask and fill["commissionAsset"] == "BTC"
    assert D(fill["commission"]) == D("0.0005")
    assert engine.balance("BTC") == (D(10) + D("0.5") - D("0.0005"), D(0))
    assert engine.balance("USDT") == (D(1_000_000) - D("0.5") * ask, D(0))


def test_market_sell_pays_commission_in_quote():
    engine = sim()
    bid, _ = engine.bid_ask("ETHUSDT")
    resp = engine.new_order({"symbol": "ETHUSDT", "side": "SELL", "type": "MARKET", "quantity": "2"})
    assert resp["fills"][0]["commissionAsset"] == "USDT"
    assert engine.balance("ETH")[0] == D(98)
    assert engine.balance("USDT")[0] == D(1_000_000) + 2 * bid * (1 - D("0.001"))


def test_resting_limit_locks_funds_then_fills_as_maker_when_crossed():
    engine = sim()
    resp = order(engine, type="LIMIT", timeInForce="GTC", quantity="1", price="59000", newClientOrderId="l1")
    assert resp["status"] == "NEW" and resp["fills"] == []
    assert engine.balance("USDT") == (D(1_000_000) - D(59000), D(59000))
    engine.set_price("BTCUSDT", D("58000"))
    [row] = engine.orders_for("l1")
    assert row["status"] == "FILLED"
    assert D(row["cummulativeQuoteQty"]) == D(59000)  # at its limit, not the better market
    assert engine.balance("USDT") == (D(1_000_000) - D(59000), D(0))
    trades = engine.my_trades({"symbol": "BTCUSDT", "orderId": str(row["orderId"])})
    assert [t["isMaker"] for t in trades] == [True]


def test_partial_fills_one_chunk_per_tick():
    engine = sim(partial_fill_steps=3)
    order(engine, type="LIMIT", timeInForce="GTC", quantity="0.3", price="59000", newClientOrderId="p1")
    engine.set_price("BTCUSDT", D("58000"))
    seen = [engine.orders_for("p1")[0]]
    engine.tick()
    seen.append(engine.orders_for("p1")[0])
    engine.tick()
    seen.append(engine.orders_for("p1")[0])
    assert [(r["status"], D(r["executedQty"])) for r in seen] == [
        ("PARTIALLY_FILLED", D("0.1")),
        ("PARTIALLY_FILLED", D("0.2")),
        ("FILLED", D("0.3")),
    ]
    assert engine.balance("USDT")[1] == 0


def test_partial_fills_of_an_odd_lot_complete_in_the_configured_steps():
    """0.01 in three steps on a 0.00001 lot: 0.00333, 0.00333, then the remaining 0.00334."""
    engine = sim(partial_fill_steps=3)
    order(engine, type="LIMIT", timeInForce="GTC", quantity="0.01", price="59000", newClientOrderId="odd")
    engine.set_price("BTCUSDT", D("58000"))
    engine.tick()
    engine.tick()
    [final] = engine.orders_for("odd")
    assert (final["status"], D(final["executedQty"])) == ("FILLED", D("0.01"))


def test_ioc_keeps_one_chunk_and_fok_expires_when_partial_liquidity():
    engine = sim(partial_fill_steps=2)
    ioc = order(engine, type="LIMIT", timeInForce="IOC", quantity="0.2", price="61000")
    assert (ioc["status"], D(ioc["executedQty"])) == ("EXPIRED", D("0.1"))
    fok = order(engine, type="LIMIT", timeInForce="FOK", quantity="0.2", price="61000")
    assert (fok["status"], D(fok["executedQty"])) == ("EXPIRED", D(0))
    not_marketable = order(engine, type="LIMIT", timeInForce="IOC", quantity="0.2", price="50000")
    assert not_marketable["status"] == "EXPIRED"
    assert engine.balance("USDT")[1] == 0


def test_cancel_releases_funds_and_a_closed_order_cannot_be_cancelled():
    engine = sim()
    resp = order(engine, type="LIMIT", timeInForce="GTC", quantity="1", price="50000", newClientOrderId="c1")
    cancelled = engine.cancel_order({"symbol": "BTCUSDT", "origClientOrderId": "c1"})
    assert cancelled["status"] == "CANCELED" and cancelled["orderId"] == resp["orderId"]
    assert engine.balance("USDT") == (D(1_000_000), D(0))
    with pytest.raises(BinanceApiError) as err:
        engine.cancel_order({"symbol": "BTCUSDT", "origClientOrderId": "c1"})
    assert err.value.code == -2011


def test_same_client_id_allowed_again_once_the_first_is_closed():
    engine = sim()
    order(engine, type="MARKET", quantity="0.01", newClientOrderId="again")
    order(engine, type="MARKET", quantity="0.01", newClientOrderId="again")  # Binance accepts this
    assert len(engine.orders_for("again")) == 2
    order(engine, type="LIMIT", timeInForce="GTC", quantity="0.01", price="50000", newClientOrderId="open")
    with pytest.raises(BinanceApiError) as err:
        order(engine, type="LIMIT", timeInForce="GTC", quantity="0.01", price="50000", newClientOrderId="open")
    assert (err.value.code, err.value.msg) == (-2010, "Duplicate order sent.")


def test_stop_loss_waits_for_its_trigger():
    engine = sim()
    engine.set_balance("BTC", D(1))
    with pytest.raises(BinanceApiError) as err:
        engine.new_order({"symbol": "BTCUSDT", "side": "SELL", "type": "STOP_LOSS", "quantity": "1",
                          "stopPrice": "61000"})
    assert err.value.msg == "Stop price would trigger immediately."
    engine.new_order({"symbol": "BTCUSDT", "side": "SELL", "type": "STOP_LOSS", "quantity": "1",
                      "stopPrice": "59000", "newClientOrderId": "s1"})
    assert engine.orders_for("s1")[0]["isWorking"] is False
    engine.set_price("BTCUSDT", D("59500"))
    assert engine.orders_for("s1")[0]["status"] == "NEW"
    engine.set_price("BTCUSDT", D("58990"))
    row = engine.orders_for("s1")[0]
    assert row["status"] == "FILLED" and row["isWorking"] is True
    assert engine.balance("BTC") == (D(0), D(0))


def test_stop_loss_limit_becomes_a_resting_limit():
    engine = sim()
    engine.new_order({"symbol": "BTCUSDT", "side": "BUY", "type": "STOP_LOSS_LIMIT", "quantity": "0.1",
                      "stopPrice": "61000", "price": "61500", "timeInForce": "GTC", "newClientOrderId": "sl"})
    engine.set_price("BTCUSDT", D("61100"))
    row = engine.orders_for("sl")[0]
    assert row["status"] == "FILLED"
    assert D(row["cummulativeQuoteQty"]) / D(row["executedQty"]) <= D("61500")


def test_random_walk_is_reproducible_and_series_replays_exactly():
    a = BinanceExchangeSim(price_path=PricePath(seed=9))
    b = BinanceExchangeSim(price_path=PricePath(seed=9))
    path_a, path_b = [], []
    for _ in range(20):
        a.tick()
        b.tick()
        path_a.append(a.price("BTCUSDT"))
        path_b.append(b.price("BTCUSDT"))
    assert path_a == path_b and len(set(path_a)) > 1
    assert all(p == p.quantize(D("0.01")) for p in path_a)

    series = [D("100"), D("101.5"), D("99.25")]
    replay = BinanceExchangeSim(price_path=PricePath(series={"SOLUSDT": series}))
    seen = [replay.price("SOLUSDT")]
    for _ in range(3):
        replay.tick()
        seen.append(replay.price("SOLUSDT"))
    assert seen == [*series, series[-1]]


def test_held_price_ignores_the_walk():
    engine = BinanceExchangeSim(price_path=PricePath(seed=3, volatility=D("0.01")))
    engine.set_price("BTCUSDT", D("50000"))
    for _ in range(5):
        engine.tick()
    assert engine.price("BTCUSDT") == D("50000")
    engine.release("BTCUSDT")
    engine.tick()
    assert engine.price("BTCUSDT") != D("50000")


def test_klines_and_ticker_reflect_trades_and_prices():
    engine = sim()
    order(engine, type="MARKET", quantity="0.2")
    engine.set_price("BTCUSDT", D("61000"))
    [candle] = engine.klines({"symbol": "BTCUSDT", "interval": "1d", "limit": "1"})
    assert D(candle[2]) == D("61000") and D(candle[3]) == D("60000")
    assert D(candle[5]) == D("0.2") and candle[8] == 1
    ticker = engine.ticker_24hr("BTCUSDT")
    assert D(ticker["lastPrice"]) == D("61000") and D(ticker["volume"]) == D("0.2")
    assert D(ticker["priceChange"]) == D("1000")


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"symbol": "XRPUSDT", "side": "BUY", "type": "MARKET", "quantity": "1"}, -1121),
        ({"symbol": "BTCUSDT", "side": "HOLD", "type": "MARKET", "quantity": "1"}, -1117),
        ({"symbol": "BTCUSDT", "side": "BUY", "type": "ICEBERG", "quantity": "1"}, -1116),
        ({"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "1e3"}, -1100),
        ({"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.000000001"}, -1111),
        ({"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.01", "newClientOrderId": "a b"},
         -1100),
        ({"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET"}, -1102),
    ],
)
def test_parameter_errors(params, code):
    with pytest.raises(BinanceApiError) as err:
        sim().new_order(params)
    assert err.value.code == code


def test_get_order_requires_an_id_and_knows_unknown_orders():
    engine = sim()
    with pytest.raises(BinanceApiError) as err:
        engine.get_order({"symbol": "BTCUSDT"})
    assert err.value.code == -1102
    with pytest.raises(BinanceApiError) as err:
        engine.get_order({"symbol": "BTCUSDT", "orderId": "42"})
    assert err.value.code == -2013


def test_all_orders_oldest_first_with_binance_selection_rules():
    clock = iter(range(1_700_000_000_000, 1_800_000_000_000, 1_000))  # one second per reading
    engine = sim(clock=lambda: next(clock) / 1000)
    ids = []
    for i in range(5):
        ids.append(order(engine, type="LIMIT", timeInForce="GTC", quantity="0.01", price="50000",
                         newClientOrderId=f"a{i}")["orderId"])
    engine.new_order({"symbol": "ETHUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.1"})
    engine.cancel_order({"symbol": "BTCUSDT", "origClientOrderId": "a1"})

    def ids_of(**params: str) -> list[int]:
        return [r["orderId"] for r in engine.all_orders({"symbol": "BTCUSDT", **params})]

    rows = engine.all_orders({"symbol": "BTCUSDT"})
    assert [r["orderId"] for r in rows] == ids and rows[1]["status"] == "CANCELED"
    assert ids_of(orderId=str(ids[2])) == ids[2:]
    assert ids_of(orderId=str(ids[1]), limit="2") == ids[1:3]
    assert ids_of(limit="2") == ids[-2:]  # no orderId, no startTime: the most recent
    times = [r["time"] for r in rows]
    assert ids_of(startTime=str(times[3])) == ids[3:]
    assert ids_of(startTime=str(times[0]), limit="2") == ids[:2]
    assert ids_of(endTime=str(times[1])) == ids[:2]
    assert ids_of(limit="5000") == ids  # kept within 1000
    with pytest.raises(BinanceApiError) as err:
        engine.all_orders({"symbol": "BTCUSDT", "startTime": "0", "endTime": str(86_400_001)})
    assert err.value.code == -1127
    with pytest.raises(BinanceApiError) as err:
        engine.all_orders({})
    assert err.value.code == -1102
