"""FX end to end on MT4: signals -> router -> orders.mt4 -> executor (real httpx to the MT4 bridge
simulator) -> fills -> PostgreSQL + Redis, with real worker processes.

The simulator runs in this process (as the Binance pipeline test's does), with a bearer token, so
the assertions compare what the database and Redis hold with what "MT4" itself booked: every
order is one ticket carrying its client order id, filled at the ticket's open price, its units
the ticket's lots x 100 000, with the commission MT4 charged.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from decimal import Decimal as D
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from schemas import Side, Signal
from tests.pipeline.harness import FillSubscriber, eventually, pipeline
from tests.pipeline.test_pipeline import assert_books_balance, wait_all_terminal, wait_fills_settled
from venues.common.prices import PricePath
from venues.mt4 import Mt4Simulator
from venues.mt4.tickets import Ticket

pytestmark = pytest.mark.pipeline
REDIS = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/6")
TOKEN = "mt4-pipeline-token-8c2f"
CONTRACT = D(100_000)


@pytest_asyncio.fixture(loop_scope="session")
async def sim() -> AsyncIterator[Mt4Simulator]:
    simulator = Mt4Simulator(price_path=PricePath(seed=14, volatility=D(0)), api_token=TOKEN)
    await simulator.start()
    yield simulator
    await simulator.stop()


def mt4_env(sim: Mt4Simulator) -> dict[str, str]:
    return {"MT4_ENABLED": "true", "MT4_BASE_URL": sim.base_url, "MT4_API_TOKEN": TOKEN, "MT4_POLL_INTERVAL": "0.2"}


def signal(signal_id: str, symbol: str, side: Side, qty: str, **kw: Any) -> Signal:
    return Signal(signal_id=signal_id, strategy="e2e-mt4", symbol=symbol, side=side, quantity=D(qty), **kw)


def only_ticket(sim: Mt4Simulator, client_order_id: str) -> Ticket:
    """The one ticket MT4 opened for this client id: placed exactly once."""
    placed = [t for t in sim.engine.orders_for_client(client_order_id) if t.client_id == client_order_id]
    assert len(placed) == 1, f"{client_order_id} placed {len(placed)} times at MT4"
    return placed[0]


async def test_fx_trades_on_mt4_into_the_database_and_redis(database_url: str, tmp_path: Path,
                                                            sim: Mt4Simulator) -> None:
    markets = [signal(f"fx-{i}", sym, side, qty)
               for i, (sym, side, qty) in enumerate([("EURUSD", Side.BUY, "10000"), ("EUR/USD", Side.SELL, "20000"),
                                                     ("GBP-USD", Side.BUY, "5000"), ("USDJPY", Side.SELL, "30000"),
                                                     ("AUDUSD", Side.BUY, "1000")] * 3)]
    limits = [signal(f"fx-lim-{i}", "EURUSD", Side.BUY, "10000", order_type="LIMIT", limit_price=D("1.08000"),
                     time_in_force="GTC") for i in range(3)]
    bracket = signal("fx-bracket", "GBPUSD", Side.BUY, "10000", order_type="BRACKET", stop_price=D("1.26000"),
                     take_profit_price=D("1.28000"), reference_price=D("1.27"))
    odd = signal("fx-odd", "EURUSD", Side.BUY, "12345")
    equity = signal("fx-eq", "SPY", Side.BUY, "1", reference_price=D("500"))
    everything = [*markets, *limits, bracket, odd, equity]
    exits = [f"{bracket.client_order_id}/{leg}" for leg in ("sl", "tp")]  # the core's orders for its SL and TP
    async with pipeline(database_url, REDIS, tmp_path, **mt4_env(sim)) as pipe:
        subscriber = FillSubscriber(pipe.redis_url, {s.client_order_id for s in everything} | set(exits))
        await subscriber.start()
        try:
            await pipe.ready_worker()
            await pipe.publish(everything)

            async def limits_resting() -> bool:
                rows = await pipe.sql("SELECT count(*) AS n FROM orders WHERE state = 'SUBMITTED' "
                                      "AND client_order_id = ANY($1::text[])", [s.client_order_id for s in limits])
                return int(rows[0]["n"]) == len(limits)

            await eventually(limits_resting, 90, "the limits to rest at MT4")
            sim.set_price("EURUSD", D("1.07990"))  # the ask reaches 1.08000: MT4 opens them
            await wait_all_terminal(pipe, [s for s in everything if s is not bracket])
            sim.set_price("GBPUSD", D("1.28000"))  # the bracket's take-profit

            async def exits_done() -> bool:
                rows = await pipe.sql("SELECT count(*) AS n FROM orders WHERE client_order_id = ANY($1::text[]) "
                                      "AND state IN ('FILLED', 'CANCELLED')", exits)
                return int(rows[0]["n"]) == 2

            await eventually(exits_done, 60, "the bracket's exits")
            await wait_fills_settled(pipe, subscriber)
        finally:
            await subscriber.stop()

        rows = {r["client_order_id"]: r for r in await pipe.sql("SELECT * FROM orders")}
        for s in [*markets, *limits, bracket]:
            row = rows[s.client_order_id]
            assert (row["broker"], row["state"], row["rerouted_from"]) == ("mt4", "FILLED", None), dict(row)
            ticket = only_ticket(sim, s.client_order_id)
            assert ticket.volume * CONTRACT == s.quantity
            assert row["venue_order_id"] == str(ticket.ticket) and row["avg_fill_price"] == ticket.open_price
        assert {rows[s.client_order_id]["symbol"] for s in markets} == {"EURUSD", "GBPUSD", "USDJPY", "AUDUSD"}
        assert only_ticket(sim, bracket.client_order_id).comment.endswith("[tp]")
        assert rows[exits[1]]["state"] == "FILLED" and rows[exits[0]]["state"] == "CANCELLED"
        assert rows[odd.client_order_id]["state"] == "REJECTED"
        assert "not a multiple of 1000 units (0.01 lot)" in rows[odd.client_order_id]["reason"]
        assert sim.engine.orders_for_client(odd.client_order_id) == []
        assert (rows[equity.client_order_id]["broker"], rows[equity.client_order_id]["rerouted_from"]) == \
            ("paper", "ibkr")

        fills = await pipe.sql("SELECT * FROM fills WHERE broker = 'mt4'")
        assert len(fills) == len(markets) + len(limits) + 2  # the bracket's entry and its take-profit
        by_order = {f["client_order_id"]: f for f in fills}
        for s in [*markets, *limits]:
            ticket = only_ticket(sim, s.client_order_id)
            fill = by_order[s.client_order_id]
            assert (fill["quantity"], fill["price"]) == (s.quantity, ticket.open_price)
            assert (fill["commission"], fill["commission_asset"]) == (-ticket.commission, "USD")
        exit_fill = by_order[exits[1]]
        assert (exit_fill["side"], exit_fill["quantity"], exit_fill["price"]) == ("SELL", D(10000), D("1.28"))
        await assert_books_balance(pipe)
        positions = {p["symbol"]: p["quantity"] for p in await pipe.sql("SELECT * FROM positions WHERE broker = 'mt4'")}
        assert positions.get("EURUSD", D(0)) == 3 * (10000 - 20000) + 3 * 10000  # hedged at MT4, netted
        assert positions.get("GBPUSD", D(0)) == 3 * 5000  # the bracket is flat
        on_redis = {f.exec_id for f in subscriber.fills if f.broker == "mt4"}
        assert on_redis == {f["exec_id"] for f in fills}
        for worker in pipe.workers:  # the worker logs at INFO with the adapter live: no token in it
            log_text = worker.log_path.read_text(errors="replace")
            assert "mt4" in log_text and TOKEN not in log_text


async def test_fills_made_while_the_worker_is_down_are_recovered_once(database_url: str, tmp_path: Path,
                                                                      sim: Mt4Simulator) -> None:
    resting = [signal(f"fx-rest-{i}", "EURUSD", Side.BUY, "20000", order_type="LIMIT", limit_price=D("1.07000"),
                      time_in_force="GTC") for i in range(6)]
    async with pipeline(database_url, REDIS, tmp_path, **mt4_env(sim)) as pipe:
        subscriber = FillSubscriber(pipe.redis_url, {s.client_order_id for s in resting})
        await subscriber.start()
        try:
            worker = await pipe.ready_worker()
            await pipe.publish(resting)

            async def all_resting() -> bool:
                rows = await pipe.sql("SELECT count(*) AS n FROM orders WHERE state = 'SUBMITTED'")
                return int(rows[0]["n"]) == len(resting)

            await eventually(all_resting, 60, "the limits to rest at MT4")
            worker.kill()                                    # down, with six open orders
            sim.set_price("EURUSD", D("1.06990"))            # MT4 opens them meanwhile
            await asyncio.sleep(0.5)
            assert int((await pipe.sql("SELECT count(*) AS n FROM fills"))[0]["n"]) == 0
            await pipe.ready_worker()                        # reconcile on start (and the sweep)
            await wait_all_terminal(pipe, resting)
            await wait_fills_settled(pipe, subscriber)
        finally:
            await subscriber.stop()
            sim.engine.release("EURUSD")

        for s in resting:
            assert only_ticket(sim, s.client_order_id).state == "open"
        fills = await pipe.sql("SELECT client_order_id, quantity, price FROM fills")
        assert sorted(f["client_order_id"] for f in fills) == sorted(s.client_order_id for s in resting)
        assert all((f["quantity"], f["price"]) == (D("20000"), D("1.07000")) for f in fills)
        assert len(subscriber.fills) == len(resting)
        await assert_books_balance(pipe)
