"""The MT4 bridge simulator over real HTTP: httpx talks to it exactly as a client of the bridge
contract (README "MT4 bridge contract") would, every endpoint and error code, the triggers, the
shared faults and the ``/_sim`` control endpoints, and the standalone command.

No mocks: each test starts an ``Mt4Simulator`` on a free port. Prices stand still (volatility 0, no
ticker) unless a test moves them through ``POST /_sim/price`` (or ``set_price``), so every price
is known in advance; tickets start at 1000.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from tests.fixtures.binance import free_port
from tests.fixtures.rig import until
from venues.common.faults import Faults
from venues.common.prices import PricePath
from venues.mt4 import Mt4Simulator

ROOT = Path(__file__).resolve().parents[2]
STILL = PricePath(seed=3, volatility=Decimal(0))

SimFactory = Callable[..., Awaitable[Mt4Simulator]]


@pytest_asyncio.fixture(loop_scope="session")
async def mt4_factory() -> AsyncIterator[SimFactory]:
    """Start simulators (still prices, no ticker, tickets from 1000 unless asked); all stopped at teardown."""
    started: list[Mt4Simulator] = []

    async def start(**knobs: Any) -> Mt4Simulator:
        knobs.setdefault("price_path", STILL)
        knobs.setdefault("first_ticket", 1000)
        sim = Mt4Simulator(**knobs)
        await sim.start()
        started.append(sim)
        return sim

    yield start
    for sim in started:
        await sim.stop()


@pytest_asyncio.fixture(loop_scope="session")
async def mt4(mt4_factory: SimFactory) -> Mt4Simulator:
    return await mt4_factory()


@pytest_asyncio.fixture(loop_scope="session")
async def client(mt4: Mt4Simulator) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=mt4.base_url, timeout=5) as c:
        yield c


async def place(client: httpx.AsyncClient, **fields: Any) -> httpx.Response:
    body = {"symbol": "EURUSD", "side": "buy", "type": "market", "volume": "0.10", **fields}
    return await client.post("/order/place", json=body)


async def ok(response: Awaitable[httpx.Response]) -> Any:
    resp = await response
    assert resp.status_code == 200, resp.text
    return resp.json()


async def error(response: Awaitable[httpx.Response]) -> tuple[int, int, str]:
    """(HTTP status, retcode, error text) of an error answer."""
    resp = await response
    body = resp.json()
    assert set(body) <= {"retcode", "error", "detail"}, body
    return resp.status_code, body["retcode"], body["error"]


async def move(client: httpx.AsyncClient, symbol: str, **price: str) -> Any:
    return await ok(client.post("/_sim/price", json={"symbol": symbol, **price}))


ORDER_FIELDS = {"ticket", "symbol", "side", "type", "state", "volume", "open_price", "price", "open_time",
                "close_price", "close_time", "sl", "tp", "profit", "commission", "swap", "magic", "comment",
                "client_id", "close_client_id", "from_ticket"}


# -- account and quotes ----------------------------------------------------------------------------------


async def test_account_is_the_health_check_and_the_account_view(client):
    assert await ok(client.get("/account")) == {
        "login": 5012345, "balance": "10000.00", "equity": "10000.00", "margin": "0.00",
        "free_margin": "10000.00", "currency": "USD", "leverage": 100,
    }


async def test_quote_gives_bid_and_ask_and_404_4106_for_an_unknown_symbol(client):
    quote = await ok(client.get("/quote/USDJPY"))
    assert (quote["symbol"], quote["bid"], quote["ask"]) == ("USDJPY", "150.000", "150.010")
    assert quote["time"].endswith("Z")
    assert await error(client.get("/quote/XAUUSD")) == (404, 4106, "unknown symbol")


# -- placing ------------------------------------------------------------------------------------------------


async def test_market_order_opens_and_the_account_moves_with_the_position(client):
    order = await ok(place(client, client_id="mkt-1", sl="1.08000", tp="1.09000", comment="c", magic=3))
    assert set(order) == ORDER_FIELDS
    assert {k: order[k] for k in ("ticket", "state", "type", "volume", "open_price", "price", "sl", "tp",
                                  "commission", "swap", "magic", "comment", "client_id", "from_ticket")} == {
        "ticket": 1000, "state": "open", "type": "market", "volume": "0.10", "open_price": "1.08510",
        "price": None, "sl": "1.08000", "tp": "1.09000", "commission": "-0.70", "swap": "0.00", "magic": 3,
        "comment": "c", "client_id": "mkt-1", "from_ticket": None,
    }
    assert order["open_time"].endswith("Z") and order["close_time"] is None
    assert await ok(client.get("/account")) == {
        "login": 5012345, "balance": "10000.00", "equity": "9998.30", "margin": "108.51",
        "free_margin": "9889.79", "currency": "USD", "leverage": 100,
    }
    await move(client, "EURUSD", bid="1.08810")
    account = await ok(client.get("/account"))
    assert (account["equity"], account["free_margin"], account["balance"]) == ("10029.30", "9920.79", "10000.00")
    assert (await ok(client.get("/order/1000")))["profit"] == "30.00"


async def test_sell_market_opens_at_the_bid_as_a_second_ticket_on_a_hedging_account(client):
    buy = await ok(place(client))
    sell = await ok(place(client, side="sell"))
    assert (buy["open_price"], sell["open_price"]) == ("1.08510", "1.08500")
    opened = await ok(client.get("/orders", params={"state": "open"}))
    assert [o["ticket"] for o in opened["orders"]] == [buy["ticket"], sell["ticket"]]


async def test_limit_order_is_pending_until_the_ask_reaches_it(client):
    order = await ok(place(client, type="limit", price="1.08000", client_id="lim-1"))
    assert (order["state"], order["open_price"], order["price"], order["open_time"]) == (
        "pending", None, "1.08000", None)
    assert (await ok(client.get("/account")))["margin"] == "0.00"
    await move(client, "EURUSD", ask="1.08001")
    assert (await ok(client.get(f"/order/{order['ticket']}")))["state"] == "pending"
    await move(client, "EURUSD", ask="1.08000")
    filled = await ok(client.get(f"/order/{order['ticket']}"))
    assert (filled["state"], filled["open_price"], filled["commission"]) == ("open", "1.08000", "-0.70")
    assert filled["ticket"] == order["ticket"] and filled["open_time"].endswith("Z")


async def test_stop_orders_trigger_on_their_side_buy_on_the_ask_sell_on_the_bid(client):
    buy_stop = await ok(place(client, type="stop", price="1.09000"))
    sell_stop = await ok(place(client, side="sell", type="stop", price="1.08000"))
    quote = await move(client, "EURUSD", bid="1.08990")  # ask 1.09000
    assert (quote["bid"], quote["ask"]) == ("1.08990", "1.09000")
    assert (await ok(client.get(f"/order/{buy_stop['ticket']}")))["state"] == "open"
    assert (await ok(client.get(f"/order/{sell_stop['ticket']}")))["state"] == "pending"
    await move(client, "EURUSD", price="1.08000")  # "price" is the bid
    sold = await ok(client.get(f"/order/{sell_stop['ticket']}"))
    assert (sold["state"], sold["open_price"]) == ("open", "1.08000")


async def test_a_ticking_price_path_triggers_a_pending_order_by_itself(mt4_factory):
    path = PricePath(seed=1, series={"EURUSD": [Decimal("1.08500"), Decimal("1.08300"), Decimal("1.07900")]})
    sim = await mt4_factory(price_path=path, tick_interval=0.02)
    async with httpx.AsyncClient(base_url=sim.base_url) as client:
        order = await ok(place(client, type="limit", price="1.08000"))

        async def opened() -> bool:
            return bool((await ok(client.get(f"/order/{order['ticket']}")))["state"] == "open")

        await until(opened, "the limit to trigger on the path")
        assert (await ok(client.get(f"/order/{order['ticket']}")))["open_price"] == "1.07910"


async def test_stop_loss_and_take_profit_close_open_tickets_when_the_quote_reaches_them(client):
    long = await ok(place(client, sl="1.08000", comment="L"))
    short = await ok(place(client, side="sell", tp="1.08200"))
    await move(client, "EURUSD", ask="1.08200")  # bid 1.08190: the short's TP
    short_now = await ok(client.get(f"/order/{short['ticket']}"))
    assert (short_now["state"], short_now["close_price"], short_now["profit"], short_now["comment"]) == (
        "closed", "1.08200", "30.00", "[tp]")
    await move(client, "EURUSD", bid="1.07990")
    long_now = await ok(client.get(f"/order/{long['ticket']}"))
    assert (long_now["state"], long_now["close_price"], long_now["profit"], long_now["comment"]) == (
        "closed", "1.07990", "-52.00", "L[sl]")
    assert long_now["close_client_id"] is None and long_now["close_time"].endswith("Z")
    account = await ok(client.get("/account"))
    assert account["balance"] == account["equity"] == "9976.60"  # 10000 + 30 - 52 - 2 x 0.70
    assert account["margin"] == "0.00"


# -- modify and close ------------------------------------------------------------------------------------


async def test_modify_sl_tp_of_an_open_ticket_and_the_price_of_a_pending_one(client):
    opened = await ok(place(client))
    changed = await ok(client.post("/order/modify", json={"ticket": opened["ticket"], "sl": "1.08100",
                                                          "tp": "1.09000"}))
    assert (changed["sl"], changed["tp"]) == ("1.08100", "1.09000")
    removed = await ok(client.post("/order/modify", json={"ticket": opened["ticket"], "tp": None}))
    assert (removed["sl"], removed["tp"]) == ("1.08100", None)
    pending = await ok(place(client, type="limit", price="1.08000"))
    moved = await ok(client.post("/order/modify", json={"ticket": pending["ticket"], "price": "1.07900",
                                                        "sl": "1.07800"}))
    assert (moved["price"], moved["sl"], moved["state"]) == ("1.07900", "1.07800", "pending")
    assert await error(client.post("/order/modify", json={"ticket": opened["ticket"], "sl": "1.08490"})) == (
        400, 130, "invalid stops")
    assert await error(client.post("/order/modify", json={"ticket": 999, "sl": "1.0"})) == (
        404, 4108, "invalid ticket")


async def test_partial_close_leaves_the_remainder_on_a_new_ticket_and_full_close_ends_it(client):
    opened = await ok(place(client, volume="0.10", client_id="open-1", sl="1.08000"))
    await move(client, "EURUSD", bid="1.08710")
    answer = await ok(client.post("/order/close", json={"ticket": opened["ticket"], "volume": "0.04",
                                                        "client_id": "close-1"}))
    closed, remainder = answer["closed"], answer["remainder"]
    assert set(answer) == {"closed", "remainder"} and set(closed) == set(remainder) == ORDER_FIELDS
    assert (closed["ticket"], closed["state"], closed["volume"], closed["close_price"], closed["profit"],
            closed["commission"], closed["close_client_id"]) == (
        opened["ticket"], "closed", "0.04", "1.08710", "8.00", "-0.28", "close-1")
    assert (remainder["state"], remainder["volume"], remainder["from_ticket"], remainder["client_id"],
            remainder["open_price"], remainder["sl"], remainder["commission"], remainder["close_client_id"]) == (
        "open", "0.06", opened["ticket"], "open-1", "1.08510", "1.08000", "-0.42", None)
    assert remainder["ticket"] > opened["ticket"]
    assert (await ok(client.get("/account")))["balance"] == "10007.72"
    done = await ok(client.post("/order/close", json={"ticket": remainder["ticket"]}))
    assert done["remainder"] is None and done["closed"]["state"] == "closed" and done["closed"]["profit"] == "12.00"
    account = await ok(client.get("/account"))
    assert account["balance"] == account["equity"] == "10019.30" and account["margin"] == "0.00"
    assert await error(client.post("/order/close", json={"ticket": remainder["ticket"]})) == (
        404, 4108, "invalid ticket")


async def test_closing_a_pending_ticket_deletes_it(client):
    pending = await ok(place(client, type="stop", price="1.09000"))
    answer = await ok(client.post("/order/close", json={"ticket": pending["ticket"], "volume": "0.05"}))
    assert answer["remainder"] is None
    assert (answer["closed"]["state"], answer["closed"]["volume"]) == ("deleted", "0.10")
    await move(client, "EURUSD", bid="1.10000")
    assert (await ok(client.get(f"/order/{pending['ticket']}")))["state"] == "deleted"


async def test_close_with_too_much_volume_is_131(client):
    opened = await ok(place(client))
    assert await error(client.post("/order/close", json={"ticket": opened["ticket"], "volume": "0.20"})) == (
        400, 131, "invalid trade volume")


# -- the client-id lookup -----------------------------------------------------------------------------------


async def test_orders_by_client_id_find_opened_remainder_and_netting_closes_oldest_first(client):
    assert await ok(client.get("/orders", params={"client_id": "nobody"})) == {"orders": []}
    first = await ok(place(client, client_id="A"))
    await ok(place(client, client_id="B"))
    second = await ok(place(client, client_id="A", side="sell"))  # not idempotent: a second ticket
    split = await ok(client.post("/order/close", json={"ticket": first["ticket"], "volume": "0.03",
                                                       "client_id": "N"}))
    a_orders = (await ok(client.get("/orders", params={"client_id": "A"})))["orders"]
    assert [o["ticket"] for o in a_orders] == [first["ticket"], second["ticket"], split["remainder"]["ticket"]]
    n_orders = (await ok(client.get("/orders", params={"client_id": "N"})))["orders"]
    assert [(o["ticket"], o["state"], o["volume"], o["close_client_id"]) for o in n_orders] == [
        (first["ticket"], "closed", "0.03", "N")]
    pending = await ok(place(client, type="limit", price="1.08000", client_id="A"))
    only_pending = await ok(client.get("/orders", params={"client_id": "A", "state": "pending"}))
    assert [o["ticket"] for o in only_pending["orders"]] == [pending["ticket"]]
    assert await error(client.get("/orders", params={"state": "filled"})) == (400, 3, "invalid trade parameters")


# -- errors ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"sl": "1.08480"}, (400, 130, "invalid stops")),
        ({"type": "limit", "price": "1.08500"}, (400, 130, "invalid stops")),
        ({"volume": "0.015"}, (400, 131, "invalid trade volume")),
        ({"volume": "100.01"}, (400, 131, "invalid trade volume")),
        ({"volume": "10"}, (400, 134, "not enough money")),
        ({"symbol": "EURXXX"}, (400, 4106, "unknown symbol")),
        ({"volume": 0.1}, (400, 3, "invalid trade parameters")),  # a JSON number: it went through a float
        ({"type": "limit"}, (400, 3, "invalid trade parameters")),
    ],
)
async def test_refused_placements_answer_the_mt4_code_and_place_nothing(mt4, client, fields, expected):
    assert await error(place(client, **fields)) == expected
    assert mt4.engine.orders() == [] and mt4.stats.orders_placed == 0
    assert mt4.stats.errors == {expected[1]: 1}


async def test_a_body_that_is_not_a_json_object_is_3(client):
    for content in (b"not json", b"[1, 2]"):
        resp = await client.post("/order/place", content=content, headers={"Content-Type": "application/json"})
        assert (resp.status_code, resp.json()["retcode"]) == (400, 3)


async def test_unknown_ticket_and_unknown_endpoint_are_404(client):
    assert await error(client.get("/order/424242")) == (404, 4108, "invalid ticket")
    assert await error(client.get("/order/abc")) == (404, 4108, "invalid ticket")
    assert await error(client.get("/orders/extra")) == (404, 404, "not found")
    assert await error(client.delete("/order/place")) == (404, 404, "not found")


async def test_market_closed_and_trade_disabled_from_the_control_endpoint(client):
    opened = await ok(place(client))
    knobs = await ok(client.post("/_sim/mt4", json={"market_closed": ["EURUSD"]}))
    assert knobs["market_closed"] == ["EURUSD"]
    assert await error(place(client)) == (400, 132, "market is closed")
    assert await error(client.post("/order/close", json={"ticket": opened["ticket"]})) == (
        400, 132, "market is closed")
    assert (await ok(place(client, symbol="GBPUSD")))["state"] == "open"
    await ok(client.post("/_sim/mt4", json={"market_closed": [], "trade_disabled": ["*"]}))
    assert await error(place(client, symbol="AUDUSD")) == (400, 133, "trade is disabled")


async def test_requote_then_success_and_busy_and_off_quotes_are_409_with_nothing_done(mt4, client):
    await ok(client.post("/_sim/mt4", json={"requote_next": 1}))
    assert await error(place(client, client_id="rq")) == (409, 138, "requote")
    assert await ok(client.get("/orders", params={"client_id": "rq"})) == {"orders": []}
    assert (await ok(place(client, client_id="rq")))["state"] == "open"
    await ok(client.post("/_sim/mt4", json={"busy_next": 1, "off_quotes_next": 1}))
    assert await error(place(client, client_id="rq")) == (409, 146, "trade context busy")
    assert await error(place(client, client_id="rq")) == (409, 136, "off quotes")
    assert len((await ok(client.get("/orders", params={"client_id": "rq"})))["orders"]) == 1
    state = await ok(client.get("/_sim/mt4"))
    assert state["knobs"]["requote_next"] == state["knobs"]["busy_next"] == state["knobs"]["off_quotes_next"] == 0
    assert state["tickets"] == {"pending": 0, "open": 1, "closed": 0, "deleted": 0}
    assert state["quotes"]["EURUSD"]["bid"] == "1.08500" and state["account"]["margin"] == "108.51"
    assert mt4.stats.errors == {138: 1, 146: 1, 136: 1}


async def test_requote_rate_from_the_control_endpoint(client):
    await ok(client.post("/_sim/mt4", json={"requote_rate": 1}))
    assert await error(place(client)) == (409, 138, "requote")
    assert (await ok(place(client, type="limit", price="1.08000")))["state"] == "pending"  # not at the market
    await ok(client.post("/_sim/mt4", json={"requote_rate": 0}))
    assert (await ok(place(client)))["state"] == "open"


# -- authentication ----------------------------------------------------------------------------------------


async def test_a_bridge_with_a_token_answers_401_without_it(mt4_factory):
    sim = await mt4_factory(api_token="s3cret-token")
    async with httpx.AsyncClient(base_url=sim.base_url) as anon:
        assert await error(anon.get("/account")) == (401, 401, "unauthorized")
        assert await error(place(anon)) == (401, 401, "unauthorized")
        wrong = {"Authorization": "Bearer nope"}
        assert await error(anon.get("/account", headers=wrong)) == (401, 401, "unauthorized")
        assert (await anon.get("/_sim/stats")).status_code == 200  # control needs no token
    assert sim.engine.orders() == [] and sim.stats.auth_failures == 3
    async with httpx.AsyncClient(base_url=sim.base_url, headers={"Authorization": "Bearer s3cret-token"}) as c:
        assert (await ok(c.get("/account")))["login"] == 5012345
        assert (await ok(place(c)))["state"] == "open"


# -- the shared faults -----------------------------------------------------------------------------------


async def test_fail_next_on_placement_answers_503_and_places_nothing(mt4, client):
    faults = await ok(client.post("/_sim/faults", json={"fail_next": 1, "match": "POST /order/place"}))
    assert faults["fail_next"] == 1
    assert (await client.get("/account")).status_code == 200  # not matched
    resp = await place(client, client_id="f1")
    assert resp.status_code == 503
    assert mt4.engine.orders() == []
    assert (await ok(place(client, client_id="f1")))["state"] == "open"


async def test_a_dropped_placement_resets_the_connection_and_places_nothing(mt4, client):
    await ok(client.post("/_sim/faults", json={"drop_next": 1, "match": "POST /order/place"}))
    with pytest.raises(httpx.TransportError):
        await place(client, client_id="d1")
    assert await ok(client.get("/orders", params={"client_id": "d1"})) == {"orders": []}
    assert mt4.stats.faults["drop"] == 1


async def test_a_lost_placement_is_processed_and_found_by_its_client_id(mt4, client):
    await ok(client.post("/_sim/faults", json={"lose_response_next": 1, "match": "POST /order/place"}))
    with pytest.raises(httpx.TransportError):
        await place(client, client_id="lost-1")
    found = (await ok(client.get("/orders", params={"client_id": "lost-1"})))["orders"]
    assert [(o["state"], o["volume"], o["open_price"]) for o in found] == [("open", "0.10", "1.08510")]
    stats = await ok(client.get("/_sim/stats"))
    assert stats["orders_placed"] == 1 and stats["faults"]["lose"] == 1


async def test_a_lost_close_answer_still_closed_the_ticket(client):
    opened = await ok(place(client, client_id="lc"))
    await ok(client.post("/_sim/faults", json={"lose_response_next": 1, "match": "POST /order/close"}))
    with pytest.raises(httpx.TransportError):
        await client.post("/order/close", json={"ticket": opened["ticket"], "client_id": "lc-close"})
    found = (await ok(client.get("/orders", params={"client_id": "lc-close"})))["orders"]
    assert [(o["ticket"], o["state"]) for o in found] == [(opened["ticket"], "closed")]


async def test_lose_rate_applies_to_placements_only(mt4_factory):
    sim = await mt4_factory(faults=Faults(lose_rate=1.0))
    async with httpx.AsyncClient(base_url=sim.base_url) as client:
        with pytest.raises(httpx.TransportError):
            await place(client, client_id="lr")
        assert len((await ok(client.get("/orders", params={"client_id": "lr"})))["orders"]) == 1
        assert (await ok(client.get("/account")))["margin"] == "108.51"


async def test_stats_count_each_endpoint_by_name_and_errors_by_retcode(client):
    opened = await ok(place(client))
    await ok(client.get(f"/order/{opened['ticket']}"))
    await client.get("/order/1")
    await ok(client.get("/quote/EURUSD"))
    await ok(client.post("/order/modify", json={"ticket": opened["ticket"], "tp": "1.09000"}))
    await ok(client.post("/order/close", json={"ticket": opened["ticket"]}))
    await ok(client.get("/orders", params={"client_id": "x"}))
    await ok(client.get("/account"))
    await ok(client.get("/_sim/mt4"))
    stats = await ok(client.get("/_sim/stats"))
    assert stats["by_endpoint"] == {
        "POST /order/place": 1, "GET /order/{ticket}": 2, "GET /quote/{symbol}": 1, "POST /order/modify": 1,
        "POST /order/close": 1, "GET /orders": 1, "GET /account": 1,
    }
    assert stats["errors"] == {"4108": 1} and stats["orders_placed"] == 1


# -- control endpoints ---------------------------------------------------------------------------------------


async def test_control_endpoints_validate_their_input(mt4, client):
    for body in ({"requote_next": -1}, {"busy_rate": 3}, {"nope": 1}, {"market_closed": "EURUSD"}):
        resp = await client.post("/_sim/mt4", json=body)
        assert resp.status_code == 400 and "error" in resp.json()
    for body in ({"symbol": "XXX", "bid": "1"}, {"symbol": "EURUSD"}, {"symbol": "EURUSD", "bid": "1", "ask": "1"},
                 {"symbol": "EURUSD", "bid": "abc"}, {"symbol": "EURUSD", "bid": "-1"},
                 {"symbol": "EURUSD", "bid": "1.1", "hold": "yes"}):
        resp = await client.post("/_sim/price", json=body)
        assert resp.status_code == 400 and "error" in resp.json(), body
    assert (await client.post("/_sim/mt4", content=b"[]")).status_code == 400
    assert mt4.engine.bid_ask("EURUSD") == (Decimal("1.08500"), Decimal("1.08510"))


async def test_in_process_conveniences(mt4, client):
    order = await ok(place(client, type="limit", price="1.08000", client_id="conv"))
    assert mt4.set_price("EURUSD", Decimal("1.07990")) == (Decimal("1.07990"), Decimal("1.08000"))
    [ticket] = mt4.engine.orders_for_client("conv")
    assert ticket.ticket == order["ticket"] and ticket.state == "open"
    mt4.knobs.busy_next = 1
    assert await error(place(client)) == (409, 146, "trade context busy")


# -- standalone ------------------------------------------------------------------------------------------------


async def test_superintel_venue_mt4_runs_standalone_with_its_flags_and_token():
    from devstack.cli import available_venues, venue_main
    from venues.mt4.cli import main

    assert "mt4" in available_venues() and venue_main("mt4") is main
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MT4_API_TOKEN": "tok-123"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "venues.mt4.cli", "--port", str(port), "--tick-ms", "0", "--first-ticket", "777",
        "--balance", "50000", "--price", "EURUSD=1.10000", "--commission-per-lot", "5", "--seed", "4",
        cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=base, headers={"Authorization": "Bearer tok-123"}) as client:
            deadline = asyncio.get_running_loop().time() + 20
            while True:
                try:
                    account = await ok(client.get("/account"))
                    break
                except httpx.TransportError:
                    assert proc.returncode is None and asyncio.get_running_loop().time() < deadline
                    await asyncio.sleep(0.1)
            assert account["balance"] == "50000.00"
            order = await ok(place(client, volume="1.00"))
            assert (order["ticket"], order["open_price"], order["commission"]) == (777, "1.10010", "-5.00")
            assert (await client.get("/account", headers={"Authorization": "Bearer wrong"})).status_code == 401
            assert (await ok(client.get("/_sim/faults")))["seed"] == 4
    finally:
        proc.terminate()
        output, _ = await asyncio.wait_for(proc.communicate(), timeout=10)
    assert proc.returncode == 0, output.decode(errors="replace")
    assert f"mt4 bridge simulator on {base}".encode() in output
    assert b"tok-123" not in output
