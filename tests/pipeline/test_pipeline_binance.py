"""CRYPTO end to end on Binance: signals -> router -> orders.binance -> executor (real ccxt over
HTTP to the simulator) -> fills -> PostgreSQL + Redis, with real worker processes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal as D
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from schemas import Side, Signal
from tests.fixtures.binance import SIM_API_KEY, SIM_API_SECRET, STILL
from tests.pipeline.harness import FillSubscriber, eventually, pipeline
from tests.pipeline.test_pipeline import assert_books_balance, wait_all_terminal, wait_fills_settled
from venues.binance import BinanceSimulator

pytestmark = pytest.mark.pipeline
REDIS = "redis://127.0.0.1:6379/6"


@pytest_asyncio.fixture(loop_scope="session")
async def sim() -> AsyncIterator[BinanceSimulator]:
    simulator = BinanceSimulator(api_key=SIM_API_KEY, api_secret=SIM_API_SECRET, price_path=STILL)
    await simulator.start()
    yield simulator
    await simulator.stop()


def binance_env(sim: BinanceSimulator) -> dict[str, str]:
    return {"BINANCE_ENABLED": "true", "BINANCE_BASE_URL": sim.base_url, "BINANCE_API_KEY": SIM_API_KEY,
            "BINANCE_API_SECRET": SIM_API_SECRET, "BINANCE_POLL_INTERVAL": "0.2"}


def signal(signal_id: str, symbol: str, side: Side, qty: str, **kw: Any) -> Signal:
    return Signal(signal_id=signal_id, strategy="e2e-binance", symbol=symbol, side=side,
                  quantity=D(qty), **kw)


async def test_crypto_trades_on_binance_and_the_rest_on_paper(database_url: str, tmp_path: Path,
                                                              sim: BinanceSimulator) -> None:
    crypto = [signal(f"bn-{i}", sym, side, qty)
              for i, (sym, side, qty) in enumerate([("BTC-USDT", Side.BUY, "0.01"), ("ETHUSDT", Side.SELL, "0.5"),
                                                    ("SOL/USDT", Side.BUY, "3"), ("BTC-USDT", Side.SELL, "0.004")] * 5)]
    limits = [signal(f"bn-lim-{i}", "ETH-USDT", Side.BUY, "0.2", order_type="LIMIT", limit_price=D("3010.00"))
              for i in range(5)]  # through the 3000 market: fill at once
    equities = [signal(f"bn-eq-{i}", "SPY", Side.BUY, "1", reference_price=D("500")) for i in range(5)]
    everything = crypto + limits + equities
    async with pipeline(database_url, REDIS, tmp_path, **binance_env(sim)) as pipe:
        subscriber = FillSubscriber(pipe.redis_url, {s.client_order_id for s in everything})
        await subscriber.start()
        try:
            await pipe.ready_worker()
            await pipe.publish(everything)
            await wait_all_terminal(pipe, everything)
            await wait_fills_settled(pipe, subscriber)
        finally:
            await subscriber.stop()

        rows = {r["signal_id"]: r for r in await pipe.sql("SELECT * FROM orders")}
        for s in crypto + limits:
            row = rows[s.signal_id]
            assert (row["broker"], row["state"], row["rerouted_from"]) == ("binance", "FILLED", None), dict(row)
            [venue] = sim.engine.orders_for(s.client_order_id)  # placed exactly once, with our id
            assert venue["status"] == "FILLED"
            assert D(row["avg_fill_price"]) == D(venue["cummulativeQuoteQty"]) / D(venue["executedQty"])
        for s in equities:
            assert (rows[s.signal_id]["broker"], rows[s.signal_id]["rerouted_from"]) == ("paper", "ibkr")
        fills = await pipe.sql("SELECT * FROM fills WHERE broker = 'binance'")
        assert len(fills) == len(crypto) + len(limits)
        assert all(f["commission"] > 0 for f in fills)
        await assert_books_balance(pipe)
        on_redis = {f.exec_id for f in subscriber.fills if f.broker == "binance"}
        assert on_redis == {f["exec_id"] for f in fills}
        for worker in pipe.workers:  # the worker logs at INFO with the adapter live: no secret in it
            log_text = worker.log_path.read_text(errors="replace")
            assert "binance" in log_text and SIM_API_SECRET not in log_text


async def test_fills_made_while_the_worker_is_down_are_recovered_once(database_url: str, tmp_path: Path,
                                                                      sim: BinanceSimulator) -> None:
    resting = [signal(f"bn-rest-{i}", "BTC-USDT", Side.BUY, "0.02", order_type="LIMIT",
                      limit_price=D("59000.00"), time_in_force="GTC") for i in range(6)]
    async with pipeline(database_url, REDIS, tmp_path, **binance_env(sim)) as pipe:
        subscriber = FillSubscriber(pipe.redis_url, {s.client_order_id for s in resting})
        await subscriber.start()
        try:
            worker = await pipe.ready_worker()
            await pipe.publish(resting)

            async def all_resting() -> bool:
                rows = await pipe.sql("SELECT count(*) AS n FROM orders WHERE state = 'SUBMITTED'")
                return int(rows[0]["n"]) == len(resting)

            await eventually(all_resting, 60, "the limits to rest at Binance")
            worker.kill()                                   # down, with six open orders
            sim.set_price("BTCUSDT", D("58000"))            # the venue fills them meanwhile
            await asyncio.sleep(0.5)
            assert int((await pipe.sql("SELECT count(*) AS n FROM fills"))[0]["n"]) == 0
            await pipe.ready_worker()                       # reconcile on start
            await wait_all_terminal(pipe, resting)
            await wait_fills_settled(pipe, subscriber)
        finally:
            await subscriber.stop()
            sim.engine.release("BTCUSDT")

        for s in resting:
            assert len(sim.engine.orders_for(s.client_order_id)) == 1
        fills = await pipe.sql("SELECT client_order_id, quantity, price FROM fills")
        assert sorted(f["client_order_id"] for f in fills) == sorted(s.client_order_id for s in resting)
        assert all((f["quantity"], f["price"]) == (D("0.02"), D("59000")) for f in fills)
        assert len(subscriber.fills) == len(resting)
        await assert_books_balance(pipe)
