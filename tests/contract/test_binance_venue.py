"""The simulator's Binance rules, checked over raw HTTP (no ccxt): what a real client must satisfy."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
import urllib.parse
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
import yarl

from tests.fixtures.binance import SIM_API_KEY, SIM_API_SECRET, start_sim_process
from venues.binance import BinanceSimulator


@pytest_asyncio.fixture(loop_scope="session")
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def signed(params: dict[str, Any], *, secret: str = SIM_API_SECRET, ts_offset_ms: int = 0) -> str:
    query = urllib.parse.urlencode({**params, "timestamp": int(time.time() * 1000) + ts_offset_ms})
    sig = hmac.new(secret.encode(), query.encode(), hashlib.sha256).hexdigest()
    return f"{query}&signature={sig}"


async def call(
    http: aiohttp.ClientSession,
    sim: BinanceSimulator,
    method: str,
    path: str,
    *,
    query: str = "",
    body: str | None = None,
    key: str | None = SIM_API_KEY,
) -> tuple[int, Any, Any]:
    headers = {"X-MBX-APIKEY": key} if key else {}
    if body is not None:
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    url = f"{sim.base_url}{path}" + (f"?{query}" if query else "")
    async with http.request(method, url, data=body, headers=headers) as resp:
        return resp.status, await resp.json(content_type=None), resp.headers


async def test_exchange_info_lists_filters_and_order_types(http, binance_sim):
    status, body, headers = await call(http, binance_sim, "GET", "/api/v3/exchangeInfo")
    assert status == 200
    assert int(headers["X-MBX-USED-WEIGHT-1M"]) == 20
    by_symbol = {s["symbol"]: s for s in body["symbols"]}
    assert {"BTCUSDT", "ETHUSDT", "SOLUSDT"} <= set(by_symbol)
    btc = by_symbol["BTCUSDT"]
    assert btc["baseAsset"] == "BTC" and btc["quoteAsset"] == "USDT" and btc["status"] == "TRADING"
    assert {"LIMIT", "MARKET"} <= set(btc["orderTypes"])
    filters = {f["filterType"]: f for f in btc["filters"]}
    assert filters["PRICE_FILTER"]["tickSize"] == "0.01000000"
    assert filters["LOT_SIZE"]["stepSize"] == "0.00001000"
    assert Decimal(filters["NOTIONAL"]["minNotional"]) == 5


async def test_signed_request_with_valid_signature_is_accepted(http, binance_sim):
    status, body, _ = await call(http, binance_sim, "GET", "/api/v3/account", query=signed({}))
    assert status == 200
    balances = {b["asset"]: Decimal(b["free"]) for b in body["balances"]}
    assert balances["USDT"] == Decimal(1_000_000)


async def test_signature_over_post_body_is_checked(http, binance_sim):
    form = signed({"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.001",
                   "newClientOrderId": "raw-post-1"})
    status, body, _ = await call(http, binance_sim, "POST", "/api/v3/order", body=form)
    assert status == 200, body
    assert body["status"] == "FILLED" and body["clientOrderId"] == "raw-post-1"
    assert body["fills"] and Decimal(body["executedQty"]) == Decimal("0.001")

    tampered = form.replace("quantity=0.001", "quantity=0.002")
    status, body, _ = await call(http, binance_sim, "POST", "/api/v3/order", body=tampered)
    assert (status, body["code"]) == (400, -1022)


@pytest.mark.parametrize(
    ("key", "secret", "expected"),
    [
        (None, SIM_API_SECRET, (401, -2014)),
        ("someone-else", SIM_API_SECRET, (401, -2015)),
        (SIM_API_KEY, "wrong-secret", (400, -1022)),
    ],
)
async def test_bad_credentials_are_refused(http, binance_sim, key, secret, expected):
    status, body, _ = await call(
        http, binance_sim, "GET", "/api/v3/openOrders", query=signed({"symbol": "BTCUSDT"}, secret=secret), key=key
    )
    assert (status, body["code"]) == expected
    assert binance_sim.stats.auth_failures == 1


def _query_signature(params: dict[str, Any]) -> tuple[str, str]:
    query = urllib.parse.urlencode({**params, "timestamp": int(time.time() * 1000)})
    return query, hmac.new(SIM_API_SECRET.encode(), query.encode(), hashlib.sha256).hexdigest()


@pytest.mark.parametrize(
    "bad_signature",
    [
        "not-a-signature",          # not hex
        "%E2%82%AC",                # percent-encoded non-ASCII (was an HTTP 500)
        "%FF%FE",                   # percent-encoded bytes that are not UTF-8 (was an HTTP 500)
        "{good}00",                 # right signature, wrong length
        "{good_upper_tail}",        # one character changed
    ],
)
async def test_malformed_or_wrong_signature_is_1022_never_500(http, binance_sim, bad_signature):
    query, good = _query_signature({"symbol": "BTCUSDT"})
    signature = bad_signature.format(good=good, good_upper_tail=good[:-1] + ("0" if good[-1] != "0" else "1"))
    url = yarl.URL(f"{binance_sim.base_url}/api/v3/openOrders?{query}&signature={signature}", encoded=True)
    async with http.get(url, headers={"X-MBX-APIKEY": SIM_API_KEY}) as resp:
        assert (resp.status, await resp.json()) == (
            400, {"code": -1022, "msg": "Signature for this request is not valid."})
    assert binance_sim.stats.errors == {-1022: 1}


async def test_signature_over_raw_body_bytes_that_are_not_utf8_is_1022(http, binance_sim):
    query, _ = _query_signature({"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.001"})
    body = query.encode() + b"&signature=\xff\xfe\x80"
    headers = {"X-MBX-APIKEY": SIM_API_KEY, "Content-Type": "application/x-www-form-urlencoded"}
    async with http.post(f"{binance_sim.base_url}/api/v3/order", data=body, headers=headers) as resp:
        assert (resp.status, (await resp.json())["code"]) == (400, -1022)
    assert binance_sim.engine.open_orders({}) == [] and binance_sim.stats.orders_placed == 0


async def test_signature_covers_the_raw_query_as_sent(http, binance_sim):
    """A value that needs percent-encoding is signed as encoded on the wire, as Binance does."""
    params = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC", "quantity": "0.001",
              "price": "50000", "newClientOrderId": "a-b_c"}
    query, sig = _query_signature(params)
    query = query.replace("a-b_c", "a%2Db%5Fc")  # same value, encoded differently: a different payload
    sig = hmac.new(SIM_API_SECRET.encode(), query.encode(), hashlib.sha256).hexdigest()
    url = yarl.URL(f"{binance_sim.base_url}/api/v3/order?{query}&signature={sig}", encoded=True)
    async with http.post(url, headers={"X-MBX-APIKEY": SIM_API_KEY}) as resp:
        body = await resp.json()
        assert resp.status == 200, body
    assert body["clientOrderId"] == "a-b_c"


@pytest.mark.parametrize(
    ("offset_ms", "recv_window", "code"),
    [(-10_000, 5000, -1021), (2_000, 5000, -1021), (0, 70_000, -1131)],
)
async def test_timestamp_must_fall_inside_recv_window(http, binance_sim, offset_ms, recv_window, code):
    query = signed({"recvWindow": recv_window}, ts_offset_ms=offset_ms)
    status, body, _ = await call(http, binance_sim, "GET", "/api/v3/account", query=query)
    assert (status, body["code"]) == (400, code)


async def test_weight_limit_answers_429_with_retry_after_then_recovers(http, binance_sim_factory):
    sim = await binance_sim_factory(weight_limit_per_minute=6, weight_window_seconds=0.5)
    statuses = []
    for _ in range(4):  # ticker with symbol weighs 2: the 4th exceeds 6
        status, body, headers = await call(http, sim, "GET", "/api/v3/ticker/24hr", query="symbol=BTCUSDT")
        statuses.append(status)
    assert statuses == [200, 200, 200, 429]
    assert body["code"] == -1003
    assert int(headers["Retry-After"]) >= 1
    assert sim.stats.throttled == 1
    await asyncio.sleep(0.55)
    status, _, _ = await call(http, sim, "GET", "/api/v3/ticker/24hr", query="symbol=BTCUSDT")
    assert status == 200


async def test_unknown_symbol_and_unknown_order(http, binance_sim):
    status, body, _ = await call(http, binance_sim, "GET", "/api/v3/ticker/24hr", query="symbol=DOGEUSDT")
    assert (status, body["code"]) == (400, -1121)
    query = signed({"symbol": "BTCUSDT", "origClientOrderId": "never-sent"})
    status, body, _ = await call(http, binance_sim, "GET", "/api/v3/order", query=query)
    assert (status, body["code"], body["msg"]) == (400, -2013, "Order does not exist.")
    status, body, _ = await call(http, binance_sim, "DELETE", "/api/v3/order", query=query)
    assert (status, body["code"]) == (400, -2011)


@pytest.mark.parametrize(
    ("fields", "code", "msg"),
    [
        ({"type": "LIMIT", "timeInForce": "GTC", "quantity": "0.001", "price": "50000.005"}, -1013,
         "Filter failure: PRICE_FILTER"),
        ({"type": "LIMIT", "timeInForce": "GTC", "quantity": "0.000015", "price": "50000"}, -1013,
         "Filter failure: LOT_SIZE"),
        ({"type": "LIMIT", "timeInForce": "GTC", "quantity": "0.00001", "price": "50000"}, -1013,
         "Filter failure: NOTIONAL"),
        ({"type": "MARKET", "quantity": "100"}, -2010, "Account has insufficient balance for requested action."),
        ({"type": "LIMIT", "quantity": "0.001", "price": "50000"}, -1102,
         "Mandatory parameter 'timeInForce' was not sent, was empty/null, or malformed."),
        ({"type": "LIMIT", "timeInForce": "DAY", "quantity": "0.001", "price": "50000"}, -1115,
         "Invalid timeInForce."),
    ],
)
async def test_order_validation_codes(http, binance_sim, fields, code, msg):
    form = signed({"symbol": "BTCUSDT", "side": "BUY", **fields})
    status, body, _ = await call(http, binance_sim, "POST", "/api/v3/order", body=form)
    assert (status, body["code"], body["msg"]) == (400, code, msg)


async def test_duplicate_client_order_id_refused_while_open(http, binance_sim):
    fields = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC", "quantity": "0.001",
              "price": "50000", "newClientOrderId": "dup-1"}
    status, body, _ = await call(http, binance_sim, "POST", "/api/v3/order", body=signed(fields))
    assert status == 200 and body["status"] == "NEW"
    status, body, _ = await call(http, binance_sim, "POST", "/api/v3/order", body=signed(fields))
    assert (status, body["code"], body["msg"]) == (400, -2010, "Duplicate order sent.")
    assert len(binance_sim.engine.orders_for("dup-1")) == 1


async def test_resting_limit_is_listed_queried_and_cancelled(http, binance_sim):
    fields = {"symbol": "ETHUSDT", "side": "SELL", "type": "LIMIT", "timeInForce": "GTC", "quantity": "0.5",
              "price": "3500", "newClientOrderId": "rest-1"}
    status, placed, _ = await call(http, binance_sim, "POST", "/api/v3/order", body=signed(fields))
    assert status == 200 and placed["status"] == "NEW" and placed["fills"] == []
    _, rows, _ = await call(http, binance_sim, "GET", "/api/v3/openOrders", query=signed({"symbol": "ETHUSDT"}))
    assert [r["clientOrderId"] for r in rows] == ["rest-1"]
    _, account, _ = await call(http, binance_sim, "GET", "/api/v3/account", query=signed({}))
    eth = next(b for b in account["balances"] if b["asset"] == "ETH")
    assert Decimal(eth["locked"]) == Decimal("0.5")

    query = signed({"symbol": "ETHUSDT", "orderId": placed["orderId"]})
    status, cancelled, _ = await call(http, binance_sim, "DELETE", "/api/v3/order", query=query)
    assert status == 200 and cancelled["status"] == "CANCELED" and cancelled["origClientOrderId"] == "rest-1"
    _, rows, _ = await call(http, binance_sim, "GET", "/api/v3/openOrders", query=signed({"symbol": "ETHUSDT"}))
    assert rows == []


async def test_market_data_shapes(http, binance_sim):
    _, ticker, _ = await call(http, binance_sim, "GET", "/api/v3/ticker/24hr", query="symbol=BTCUSDT")
    assert Decimal(ticker["bidPrice"]) < Decimal(ticker["lastPrice"]) < Decimal(ticker["askPrice"])
    _, book, _ = await call(http, binance_sim, "GET", "/api/v3/ticker/bookTicker", query="symbol=BTCUSDT")
    assert book["bidPrice"] == ticker["bidPrice"] and book["askPrice"] == ticker["askPrice"]
    _, depth, _ = await call(http, binance_sim, "GET", "/api/v3/depth", query="symbol=BTCUSDT&limit=5")
    assert len(depth["bids"]) == 5 and depth["bids"][0][0] == ticker["bidPrice"]
    _, klines, _ = await call(http, binance_sim, "GET", "/api/v3/klines",
                              query="symbol=BTCUSDT&interval=1m&limit=3")
    assert len(klines) == 3 and all(len(k) == 12 for k in klines)
    assert klines[1][0] - klines[0][0] == 60_000
    status, body, _ = await call(http, binance_sim, "GET", "/api/v3/klines", query="symbol=BTCUSDT&interval=7m")
    assert (status, body["code"]) == (400, -1120)
    status, body, _ = await call(http, binance_sim, "GET", "/api/v3/time")
    assert abs(body["serverTime"] - time.time() * 1000) < 5000


async def test_fault_injection_5xx_drop_and_latency(http, binance_sim):
    binance_sim.faults.fail_next = 1
    async with http.get(f"{binance_sim.base_url}/api/v3/time") as resp:
        assert resp.status == 503
    # aiohttp (and so ccxt) retries an idempotent request once after a dropped connection: drop two
    binance_sim.faults.drop_next = 2
    with pytest.raises(aiohttp.ServerDisconnectedError):
        async with http.get(f"{binance_sim.base_url}/api/v3/time") as resp:
            await resp.read()
    binance_sim.faults.latency = 0.2
    started = time.monotonic()
    async with http.get(f"{binance_sim.base_url}/api/v3/time") as resp:
        assert resp.status == 200
    assert time.monotonic() - started >= 0.2
    assert binance_sim.stats.faults == {"fail": 1, "drop": 2, "lose": 0, "latency": 1}
    assert binance_sim.stats.faults_injected == 4


async def test_lost_response_still_executes_the_order(http, binance_sim):
    binance_sim.faults.lose_response_next = 1
    binance_sim.faults.match = "POST /api/v3/order"
    form = signed({"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.001",
                   "newClientOrderId": "lost-1"})
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await call(http, binance_sim, "POST", "/api/v3/order", body=form)
    [order] = binance_sim.engine.orders_for("lost-1")
    assert order["status"] == "FILLED"


@pytest.mark.parametrize("module", ["venues.binance.cli", "venues.binance"])
async def test_runs_standalone(http, module):
    sim = await start_sim_process("--tick-ms", "50", secret="standalone-secret", module=module)
    try:
        async with http.get(f"{sim.base_url}/api/v3/time") as resp:
            assert resp.status == 200
    finally:
        output = await sim.stop()
    assert sim.proc.returncode == 0  # SIGTERM stops it cleanly
    assert b"listening on http://127.0.0.1" in output
    assert b"standalone-secret" not in output


ORDER_FIELDS = {  # Binance's documented GET /api/v3/allOrders row
    "symbol", "orderId", "orderListId", "clientOrderId", "price", "origQty", "executedQty", "cummulativeQuoteQty",
    "status", "timeInForce", "type", "side", "stopPrice", "icebergQty", "time", "updateTime", "isWorking",
    "origQuoteOrderQty", "workingTime", "selfTradePreventionMode",
}


async def test_all_orders_lists_open_and_closed_orders_of_a_symbol(http, binance_sim):
    def limit(cid: str, price: str) -> dict[str, str]:
        return {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC", "quantity": "0.001",
                "price": price, "newClientOrderId": cid}

    placed = []
    for fields in (
        {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.001", "newClientOrderId": "all-1"},
        limit("all-2", "50000"),
        limit("all-3", "51000"),
        {"symbol": "ETHUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.01", "newClientOrderId": "all-eth"},
    ):
        status, body, _ = await call(http, binance_sim, "POST", "/api/v3/order", body=signed(fields))
        assert status == 200, body
        placed.append(body)
    status, _, _ = await call(http, binance_sim, "DELETE", "/api/v3/order",
                              query=signed({"symbol": "BTCUSDT", "origClientOrderId": "all-3"}))
    assert status == 200

    status, rows, _ = await call(http, binance_sim, "GET", "/api/v3/allOrders",
                                 query=signed({"symbol": "BTCUSDT"}))
    assert status == 200
    assert [(r["clientOrderId"], r["status"]) for r in rows] == [
        ("all-1", "FILLED"), ("all-2", "NEW"), ("all-3", "CANCELED")]
    assert all(set(r) == ORDER_FIELDS for r in rows)
    assert rows[0]["orderId"] < rows[1]["orderId"] < rows[2]["orderId"]

    async def ids(**params: Any) -> list[str]:
        status, rows, _ = await call(http, binance_sim, "GET", "/api/v3/allOrders",
                                     query=signed({"symbol": "BTCUSDT", **params}))
        assert status == 200, rows
        return [r["clientOrderId"] for r in rows]

    assert await ids(orderId=placed[1]["orderId"]) == ["all-2", "all-3"]       # from that id on
    assert await ids(orderId=placed[0]["orderId"], limit=2) == ["all-1", "all-2"]
    assert await ids(limit=1) == ["all-3"]                                     # else the most recent
    assert await ids(startTime=rows[1]["time"]) == [r["clientOrderId"] for r in rows if r["time"] >= rows[1]["time"]]
    assert await ids(startTime=int(time.time() * 1000) + 60_000) == []
    assert await ids(endTime=rows[0]["time"] - 1) == []


@pytest.mark.parametrize(
    ("params", "code", "msg"),
    [
        ({}, -1102, "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed."),
        ({"symbol": "DOGEUSDT"}, -1121, "Invalid symbol."),
        ({"symbol": "BTCUSDT", "startTime": 0, "endTime": 86_400_001}, -1127,
         "More than 24 hours between startTime and endTime."),
    ],
)
async def test_all_orders_refusals(http, binance_sim, params, code, msg):
    status, body, _ = await call(http, binance_sim, "GET", "/api/v3/allOrders", query=signed(params))
    assert (status, body["code"], body["msg"]) == (400, code, msg)


async def test_all_orders_weighs_20_and_is_signed(http, binance_sim):
    status, body, _ = await call(http, binance_sim, "GET", "/api/v3/allOrders", query="symbol=BTCUSDT")
    assert (status, body["code"]) == (400, -1102)  # no timestamp/signature
    status, _, headers = await call(http, binance_sim, "GET", "/api/v3/allOrders",
                                    query=signed({"symbol": "BTCUSDT"}))
    assert status == 200
    assert int(headers["X-MBX-USED-WEIGHT-1M"]) == 40  # both calls were charged 20
