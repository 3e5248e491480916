"""The shared fault flags and ``/_sim`` control endpoints, driven from outside as a chaos drill does:
the Binance simulator as its own process, plain HTTP, no import of the simulator's objects."""

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

from tests.fixtures.binance import SIM_API_KEY, SIM_API_SECRET


@pytest_asyncio.fixture(loop_scope="session")
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def signed(params: dict[str, Any]) -> str:
    query = urllib.parse.urlencode({**params, "timestamp": int(time.time() * 1000)})
    return f"{query}&signature={hmac.new(SIM_API_SECRET.encode(), query.encode(), hashlib.sha256).hexdigest()}"


async def get(http: aiohttp.ClientSession, url: str, *, key: bool = False) -> tuple[int, Any]:
    async with http.get(url, headers={"X-MBX-APIKEY": SIM_API_KEY} if key else {}) as resp:
        return resp.status, await resp.json(content_type=None) if resp.status != 503 else await resp.text()


async def post_json(http: aiohttp.ClientSession, url: str, body: Any) -> tuple[int, Any]:
    async with http.post(url, json=body) as resp:
        return resp.status, await resp.json()


async def place(http: aiohttp.ClientSession, base: str, **fields: str) -> tuple[int, Any]:
    form = signed({"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.001", **fields})
    headers = {"X-MBX-APIKEY": SIM_API_KEY, "Content-Type": "application/x-www-form-urlencoded"}
    async with http.post(f"{base}/api/v3/order", data=form, headers=headers) as resp:
        return resp.status, await resp.json(content_type=None) if resp.status != 503 else await resp.text()


# -- the command line --------------------------------------------------------------------------


async def test_fail_rate_one_answers_503_while_the_control_endpoints_answer(http, sim_process_factory):
    sim = await sim_process_factory("--fail-rate", "1", "--latency", "0.05", "--tick-ms", "0")
    base = sim.base_url
    assert await get(http, f"{base}/api/v3/time") == (503, "Service Unavailable")
    assert (await get(http, f"{base}/api/v3/exchangeInfo"))[0] == 503
    assert (await get(http, f"{base}/api/v3/account?{signed({})}", key=True))[0] == 503
    assert (await place(http, base, newClientOrderId="never"))[0] == 503

    status, faults = await get(http, f"{base}/_sim/faults")
    assert status == 200
    assert faults == {"latency": 0.05, "fail_rate": 1.0, "lose_rate": 0.0, "seed": 0, "fail_next": 0,
                      "drop_next": 0, "lose_response_next": 0, "match": None}
    status, stats = await get(http, f"{base}/_sim/stats")
    assert status == 200
    assert stats["requests"] == 4 and stats["orders_placed"] == 0
    assert stats["by_endpoint"] == {"GET /api/v3/time": 1, "GET /api/v3/exchangeInfo": 1,
                                    "GET /api/v3/account": 1, "POST /api/v3/order": 1}
    # the control calls were neither faulted, delayed nor counted
    assert stats["faults"] == {"latency": 4, "fail": 4, "drop": 0, "lose": 0}

    status, faults = await post_json(http, f"{base}/_sim/faults", {"fail_rate": 0})
    assert status == 200 and faults["fail_rate"] == 0 and faults["latency"] == 0.05  # the rest kept
    assert (await get(http, f"{base}/api/v3/time"))[0] == 200
    status, body = await place(http, base, newClientOrderId="after-outage")
    assert status == 200 and body["status"] == "FILLED"
    assert (await get(http, f"{base}/_sim/stats"))[1]["orders_placed"] == 1


async def test_lose_rate_one_places_the_order_and_drops_the_answer(http, sim_process_factory):
    sim = await sim_process_factory("--lose-rate", "1", "--tick-ms", "0")
    base = sim.base_url
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await place(http, base, newClientOrderId="lost-in-transit")
    # The venue has it: the client can find out by asking (reads are never lost).
    query = signed({"symbol": "BTCUSDT", "origClientOrderId": "lost-in-transit"})
    status, order = await get(http, f"{base}/api/v3/order?{query}", key=True)
    assert status == 200 and order["status"] == "FILLED" and Decimal(order["executedQty"]) == Decimal("0.001")
    status, rows = await get(http, f"{base}/api/v3/allOrders?{signed({'symbol': 'BTCUSDT'})}", key=True)
    assert [r["clientOrderId"] for r in rows] == ["lost-in-transit"]
    stats = (await get(http, f"{base}/_sim/stats"))[1]
    assert stats["orders_placed"] == 1 and stats["faults"]["lose"] == 1
    # A refused placement is lost too (the client cannot tell), but places nothing.
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await place(http, base, newClientOrderId="too-big", quantity="100000")
    assert (await get(http, f"{base}/_sim/stats"))[1]["orders_placed"] == 1


async def _pattern(http: aiohttp.ClientSession, base: str, n: int = 40) -> list[int]:
    return [(await get(http, f"{base}/api/v3/ping"))[0] for _ in range(n)]


async def test_fault_seed_makes_the_faults_reproducible(http, sim_process_factory):
    a, b, c = await asyncio.gather(
        sim_process_factory("--fail-rate", "0.5", "--seed", "11", "--tick-ms", "0"),
        sim_process_factory("--fail-rate", "0.5", "--seed", "11", "--tick-ms", "0"),
        sim_process_factory("--fail-rate", "0.5", "--seed", "12", "--tick-ms", "0"),
    )
    first, same, other = await _pattern(http, a.base_url), await _pattern(http, b.base_url), await _pattern(
        http, c.base_url)
    assert first == same
    assert first != other
    assert 5 < first.count(503) < 35  # about half, as asked
    # Re-seeding over the control endpoint restarts the same draws.
    assert (await post_json(http, f"{a.base_url}/_sim/faults", {"seed": 11}))[0] == 200
    assert await _pattern(http, a.base_url) == first


async def test_venue_options_reach_the_simulator(http, sim_process_factory):
    sim = await sim_process_factory("--tick-ms", "0", "--price", "BTCUSDT=20000", "--balance", "USDT=500",
                                    "--weight-limit", "30", "--weight-window", "30", "--spread-bps", "10")
    base = sim.base_url
    status, ticker = await get(http, f"{base}/api/v3/ticker/bookTicker?symbol=BTCUSDT")
    assert status == 200
    assert (Decimal(ticker["bidPrice"]), Decimal(ticker["askPrice"])) == (Decimal("19990"), Decimal("20010"))
    status, account = await get(http, f"{base}/api/v3/account?{signed({})}", key=True)  # weight 20
    balances = {b["asset"]: Decimal(b["free"]) for b in account["balances"]}
    assert balances["USDT"] == 500 and balances["BTC"] == 10  # the other defaults kept
    status, body = await get(http, f"{base}/api/v3/exchangeInfo")  # weight 20: over 30
    assert (status, body["code"]) == (429, -1003)


@pytest.mark.parametrize("flags", [["--fail-rate", "1.5"], ["--latency", "-1"], ["--lose-rate", "x"]])
async def test_bad_fault_flags_are_refused(flags):
    from venues.binance.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(flags)
    assert exit_.value.code == 2


# -- the control endpoints, in process -------------------------------------------------------


async def test_post_faults_changes_only_the_keys_sent_and_refuses_bad_ones(http, binance_sim):
    url = f"{binance_sim.base_url}/_sim/faults"
    status, faults = await post_json(http, url, {"latency": 0.01, "lose_rate": 0.25})
    assert status == 200 and (faults["latency"], faults["lose_rate"], faults["fail_rate"]) == (0.01, 0.25, 0.0)
    status, faults = await post_json(http, url, {"fail_rate": 0.5})
    assert (faults["latency"], faults["lose_rate"], faults["fail_rate"]) == (0.01, 0.25, 0.5)
    for bad in ({"fail_rate": 2}, {"latency": -1}, {"fail_next": 1.5}, {"match": 3}, {"bogus": 1},
                {"fail_rate": 0.1, "lose_rate": "high"}, [1, 2], "text"):
        status, body = await post_json(http, url, bad)
        assert status == 400 and "error" in body, bad
    async with http.post(url, data=b"{not json", headers={"Content-Type": "application/json"}) as resp:
        assert resp.status == 400
    assert (await get(http, url))[1] == {**faults}  # nothing half-applied
    assert binance_sim.faults.fail_rate == 0.5 and binance_sim.faults.lose_rate == 0.25


async def test_one_shot_counters_over_the_control_endpoint(http, binance_sim):
    base = binance_sim.base_url
    status, faults = await post_json(http, f"{base}/_sim/faults", {"fail_next": 1, "match": "GET /api/v3/time"})
    assert status == 200 and faults["fail_next"] == 1
    assert (await get(http, f"{base}/api/v3/ping"))[0] == 200  # not matched
    assert (await get(http, f"{base}/api/v3/time"))[0] == 503
    assert (await get(http, f"{base}/api/v3/time"))[0] == 200  # one shot
    await post_json(http, f"{base}/_sim/faults", {"lose_response_next": 1, "match": "POST /api/v3/order"})
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await place(http, base, newClientOrderId="counter-lost")
    [order] = binance_sim.engine.orders_for("counter-lost")
    assert order["status"] == "FILLED"
    assert (await get(http, f"{base}/_sim/faults"))[1]["lose_response_next"] == 0


async def test_stats_count_requests_orders_and_faults(http, binance_sim):
    base = binance_sim.base_url
    await get(http, f"{base}/api/v3/time")
    await get(http, f"{base}/api/v3/time")
    assert (await place(http, base, newClientOrderId="s-1"))[0] == 200
    assert (await place(http, base, newClientOrderId="s-2", quantity="100"))[0] == 400  # refused: not placed
    binance_sim.faults.fail_next = 1
    assert (await get(http, f"{base}/api/v3/ping"))[0] == 503
    status, stats = await get(http, f"{base}/_sim/stats")
    assert status == 200
    assert stats["requests"] == 5
    assert stats["by_endpoint"] == {"GET /api/v3/time": 2, "POST /api/v3/order": 2, "GET /api/v3/ping": 1}
    assert stats["orders_placed"] == 1
    assert stats["faults"] == {"latency": 0, "fail": 1, "drop": 0, "lose": 0} and stats["faults_injected"] == 1
    assert stats["errors"] == {"-2010": 1}
    assert stats["uptime_seconds"] >= 0


async def test_a_replaced_faults_object_is_what_the_control_endpoint_sees(http, binance_sim):
    from venues.binance import Faults

    binance_sim.faults = Faults(fail_rate=1.0, seed=5)
    status, faults = await get(http, f"{binance_sim.base_url}/_sim/faults")
    assert status == 200 and (faults["fail_rate"], faults["seed"]) == (1.0, 5)
    assert (await get(http, f"{binance_sim.base_url}/api/v3/time"))[0] == 503
