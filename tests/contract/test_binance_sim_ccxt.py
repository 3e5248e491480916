"""The simulator through plain ccxt (no adapter): the calls a user of ccxt makes must just work."""

from __future__ import annotations

import ccxt.async_support as ccxt_async
import pytest

from tests.fixtures.binance import ccxt_client


async def test_fetch_orders_returns_open_filled_and_cancelled_orders(binance_sim):
    async with ccxt_client(binance_sim.base_url) as client:
        filled = await client.create_order("BTC/USDT", "market", "buy", 0.001, params={"newClientOrderId": "fo-1"})
        resting = await client.create_order("BTC/USDT", "limit", "buy", 0.001, 50000,
                                            params={"newClientOrderId": "fo-2"})
        cancelled = await client.create_order("BTC/USDT", "limit", "sell", 0.001, 70000,
                                              params={"newClientOrderId": "fo-3"})
        await client.cancel_order(cancelled["id"], "BTC/USDT")
        await client.create_order("ETH/USDT", "market", "buy", 0.01, params={"newClientOrderId": "fo-eth"})

        orders = await client.fetch_orders("BTC/USDT")
        assert [(o["clientOrderId"], o["status"]) for o in orders] == [
            ("fo-1", "closed"), ("fo-2", "open"), ("fo-3", "canceled")]
        assert [o["id"] for o in orders] == [filled["id"], resting["id"], cancelled["id"]]
        first = orders[0]
        assert first["symbol"] == "BTC/USDT" and first["type"] == "market" and first["side"] == "buy"
        assert first["filled"] == 0.001 and first["remaining"] == 0 and first["cost"] > 0
        assert orders[1]["price"] == 50000 and orders[1]["timeInForce"] == "GTC"

        assert [o["clientOrderId"] for o in await client.fetch_orders("BTC/USDT", limit=1)] == ["fo-3"]
        since = orders[1]["timestamp"]
        later = {o["clientOrderId"] for o in await client.fetch_orders("BTC/USDT", since=since)}
        assert {"fo-2", "fo-3"} <= later <= {"fo-1", "fo-2", "fo-3"}  # fo-1 only if in the same millisecond
        assert await client.fetch_orders("BTC/USDT", since=since + 3_600_000) == []
        assert [o["clientOrderId"] for o in await client.fetch_orders("ETH/USDT")] == ["fo-eth"]
    assert binance_sim.stats.by_endpoint["GET /api/v3/allOrders"] == 5


async def test_fetch_orders_with_a_wrong_secret_is_an_authentication_error(binance_sim):
    async with ccxt_client(binance_sim.base_url, secret="not-the-secret") as client:
        await client.load_markets()
        with pytest.raises(ccxt_async.AuthenticationError, match="-1022"):
            await client.fetch_orders("BTC/USDT")
    assert binance_sim.stats.errors == {-1022: 1}
