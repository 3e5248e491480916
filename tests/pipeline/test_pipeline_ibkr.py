"""EQUITY, OPTION and FUTURE end to end on Interactive Brokers: signals -> router -> orders.ibkr ->
executor (real ib_async over TCP to the TWS simulator) -> fills -> PostgreSQL + Redis, with real
worker processes.

The simulator runs in this process (as the Binance pipeline test's does), so the assertions
compare what the database and Redis hold with what "IB" itself booked: every IB execution is one
fill row ``ibkr-<execId>`` with the commission IB reported for it, and every order was placed
once (``engine.orders_by_ref``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from decimal import Decimal as D
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from schemas import OrderType, Side, Signal, TimeInForce
from tests.fixtures.binance import STILL
from tests.pipeline.harness import FillSubscriber, Pipeline, eventually, pipeline
from tests.pipeline.test_pipeline import assert_books_balance, wait_all_terminal, wait_fills_settled
from venues.tws import TwsSimulator
from venues.tws.orders import Order as IbOrder

pytestmark = pytest.mark.pipeline

#: the simulator's option (SPY 2027-01-15 500 call) as the OCC symbol a strategy sends
SPY_CALL = "SPY270115C00500000"


@pytest_asyncio.fixture(loop_scope="session")
async def sim() -> AsyncIterator[TwsSimulator]:
    """A TWS whose prices move only when a test moves them; each order fills in two executions,
    so "one fill row per IB execution" is tested on orders with more than one."""
    simulator = TwsSimulator(price_path=STILL, tick_interval=None, partial_fill_steps=2)
    await simulator.start()
    yield simulator
    await simulator.stop()


def ibkr_env(sim: TwsSimulator) -> dict[str, str]:
    return {"IBKR_ENABLED": "true", "IBKR_HOST": "127.0.0.1", "IBKR_PORT": str(sim.port), "IBKR_CLIENT_ID": "7",
            "IBKR_CONNECT_TIMEOUT": "5", "IBKR_REQUEST_TIMEOUT": "5"}


@contextlib.asynccontextmanager
async def ticking(sim: TwsSimulator, every: float = 0.3) -> AsyncIterator[None]:
    """The simulator's matching runs every ``every`` seconds (the still price path moves nothing)."""
    async def tick() -> None:
        while True:
            await asyncio.sleep(every)
            sim.engine.tick()

    task = asyncio.create_task(tick())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def signal(signal_id: str, symbol: str, side: Side, qty: str, **kw: Any) -> Signal:
    return Signal(signal_id=signal_id, strategy="e2e-ibkr", symbol=symbol, side=side, quantity=D(qty), **kw)


def only_order(sim: TwsSimulator, client_order_id: str) -> IbOrder:
    """The one IB order with this orderRef: placed exactly once."""
    placed = sim.engine.orders_by_ref(client_order_id)
    assert len(placed) == 1, f"{client_order_id} placed {len(placed)} times at IB"
    return placed[0]


async def fills_by_order(pipe: Pipeline) -> dict[str, list[dict[str, Any]]]:
    """Fill rows with their effective commission (a fee IB reported after the execution is in
    ``fill_fees``, which readers prefer), per client order id."""
    rows = await pipe.sql(
        "SELECT f.*, coalesce(ff.commission, f.commission) AS fee, "
        "coalesce(ff.commission_asset, f.commission_asset) AS fee_asset "
        "FROM fills f LEFT JOIN fill_fees ff USING (broker, exec_id) ORDER BY f.cumulative_quantity")
    out: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        out.setdefault(row["client_order_id"], []).append(dict(row))
    return out


def assert_fills_match_executions(rows: list[dict[str, Any]], order: IbOrder) -> None:
    """One fill row per IB execution, ``ibkr-<execId>``, its size, price and commission."""
    assert sorted(r["exec_id"] for r in rows) == sorted(f"ibkr-{e.exec_id}" for e in order.executions)
    by_exec = {r["exec_id"]: r for r in rows}
    for execution in order.executions:
        row = by_exec[f"ibkr-{execution.exec_id}"]
        assert (row["broker"], row["quantity"], row["price"]) == ("ibkr", execution.shares, execution.price), row
        assert row["cumulative_quantity"] == execution.cum_qty
        assert (row["fee"], row["fee_asset"]) == (execution.commission, "USD"), row


async def test_equities_options_and_futures_trade_on_ibkr(database_url: str, redis_url: str, tmp_path: Path,
                                                          sim: TwsSimulator) -> None:
    equities = [signal(f"ib-eq-{i}", sym, side, qty) for i, (sym, side, qty) in enumerate(
        [("SPY", Side.BUY, "10"), ("GBTC", Side.SELL, "40"), ("AAPL", Side.BUY, "6")] * 2)]
    limits = [signal(f"ib-lim-{i}", "AAPL", Side.BUY, "4", order_type=OrderType.LIMIT, limit_price=D("231.50"))
              for i in range(2)]  # through the 230.01 ask: fill at once
    stops = [signal("ib-stop-0", "SPY", Side.SELL, "2", order_type=OrderType.STOP, stop_price=D("600.50"))]
    options = [signal(f"ib-opt-{i}", SPY_CALL, side, "2") for i, side in enumerate([Side.BUY, Side.BUY, Side.SELL])]
    futures = [signal(f"ib-fut-{i}", "ESZ6", side, "2") for i, side in enumerate([Side.BUY, Side.SELL, Side.BUY])]
    everything = equities + limits + stops + options + futures
    async with pipeline(database_url, redis_url, tmp_path, **ibkr_env(sim)) as pipe:
        subscriber = FillSubscriber(pipe.redis_url, {s.client_order_id for s in everything})
        await subscriber.start()
        try:
            await pipe.ready_worker()
            await pipe.publish(everything)
            async with ticking(sim):  # a limit takes one execution on arrival, the next on a tick
                await wait_all_terminal(pipe, everything)
            await wait_fills_settled(pipe, subscriber)
        finally:
            await subscriber.stop()

        rows = {r["signal_id"]: r for r in await pipe.sql("SELECT * FROM orders")}
        fills = await fills_by_order(pipe)
        for s in everything:
            row = rows[s.signal_id]
            assert (row["broker"], row["state"], row["rerouted_from"]) == ("ibkr", "FILLED", None), dict(row)
            venue = only_order(sim, s.client_order_id)
            assert venue.status == "Filled" and len(venue.executions) == 2
            assert (row["filled_quantity"], row["avg_fill_price"]) == (venue.filled, venue.avg_fill_price)
            assert row["venue_order_id"] == str(venue.perm_id)
            assert_fills_match_executions(fills[s.client_order_id], venue)
        classes = {(r["symbol"], r["asset_class"]) for r in await pipe.sql("SELECT symbol, asset_class FROM orders")}
        assert classes == {("SPY", "EQUITY"), ("GBTC", "EQUITY"), ("AAPL", "EQUITY"), (SPY_CALL, "OPTION"),
                           ("ESZ6", "FUTURE")}
        await assert_books_balance(pipe)
        recorded = {r["exec_id"] for rs in fills.values() for r in rs}
        assert len(recorded) == 2 * len(everything)
        on_redis = [f.exec_id for f in subscriber.fills if f.broker == "ibkr"]
        assert sorted(on_redis) == sorted(recorded)  # each fill published once
        for worker in pipe.workers:
            assert "ibkr" in worker.log_path.read_text(errors="replace").lower()


async def test_worker_killed_with_ib_orders_resting_recovers_their_fills_once(
        database_url: str, redis_url: str, tmp_path: Path, sim: TwsSimulator) -> None:
    """A worker killed -9 with IB orders resting: the restarted executor finds them by orderRef
    and recovers their fills once. Half of each order fills while no executor runs (its
    connection is gone, so nobody hears the executions), the other half after the new executor
    took the orders over; nothing is placed twice."""
    resting = [
        *(signal(f"ib-rest-spy-{i}", "SPY", Side.BUY, "10", order_type=OrderType.LIMIT, limit_price=D("590.00"),
                 time_in_force=TimeInForce.GTC) for i in range(3)),
        signal("ib-rest-aapl", "AAPL", Side.SELL, "8", order_type=OrderType.LIMIT, limit_price=D("240.00"),
               time_in_force=TimeInForce.GTC),
        signal("ib-rest-es", "ESZ6", Side.BUY, "4", order_type=OrderType.LIMIT, limit_price=D("5950.00"),
               time_in_force=TimeInForce.GTC),
    ]
    ids = [s.client_order_id for s in resting]
    async with pipeline(database_url, redis_url, tmp_path, **ibkr_env(sim)) as pipe:
        subscriber = FillSubscriber(pipe.redis_url, set(ids))
        await subscriber.start()
        try:
            first = await pipe.ready_worker()
            await pipe.publish(resting)

            async def all_resting() -> bool:
                rows = await pipe.sql("SELECT count(*) AS n FROM orders WHERE state = 'SUBMITTED' "
                                      "AND client_order_id = ANY($1::text[])", ids)
                return int(rows[0]["n"]) == len(resting)

            await eventually(all_resting, 60, "the limits to rest at IB")
            placed_before = {cid: only_order(sim, cid).perm_id for cid in ids}
            first.kill()                                     # -9, with five orders working at IB

            async def connection_gone() -> bool:
                return not sim.connected_clients
            await eventually(connection_gone, 10, "IB to see the killed worker's connection close")
            for key, price in (("SPY", "589.00"), ("AAPL", "241.00"), ("ESZ6", "5940.00")):
                sim.set_price(key, price)                    # one execution each, nobody listening
            assert all(only_order(sim, cid).filled > 0 for cid in ids)
            assert int((await pipe.sql("SELECT count(*) AS n FROM fills"))[0]["n"]) == 0

            await pipe.ready_worker()                        # takes the orders over once their claims lapse

            async def partial_fills_recovered() -> bool:
                rows = await pipe.sql("SELECT client_order_id, filled_quantity FROM orders "
                                      "WHERE client_order_id = ANY($1::text[])", ids)
                return all(r["filled_quantity"] == only_order(sim, r["client_order_id"]).filled for r in rows)

            await eventually(partial_fills_recovered, 90, "the fills made while no worker ran",
                             lambda: _orders_detail(pipe, sim, ids))
            sim.engine.tick()  # the second execution of each, heard by the new executor
            await wait_all_terminal(pipe, resting)
            await wait_fills_settled(pipe, subscriber)
        finally:
            await subscriber.stop()
            for key in ("SPY", "AAPL", "ESZ6"):
                sim.release(key)

        rows = {r["client_order_id"]: r for r in await pipe.sql("SELECT * FROM orders")}
        fills = await fills_by_order(pipe)
        for cid in ids:
            venue = only_order(sim, cid)                     # placed once: the same IB order
            assert venue.perm_id == placed_before[cid]
            assert venue.status == "Filled" and len(venue.executions) == 2
            row = rows[cid]
            assert (row["broker"], row["state"]) == ("ibkr", "FILLED"), dict(row)
            assert (row["filled_quantity"], row["avg_fill_price"]) == (venue.filled, venue.avg_fill_price)
            assert_fills_match_executions(fills[cid], venue)
        await assert_books_balance(pipe)
        assert sorted(f.exec_id for f in subscriber.fills) == sorted(
            f"ibkr-{e.exec_id}" for cid in ids for e in only_order(sim, cid).executions)


async def _orders_detail(pipe: Pipeline, sim: TwsSimulator, ids: list[str]) -> str:
    rows = await pipe.sql("SELECT client_order_id, state, filled_quantity, reason FROM orders "
                          "WHERE client_order_id = ANY($1::text[])", ids)
    venue = {cid: [(o.status, o.filled, o.client_id) for o in sim.engine.orders_by_ref(cid)] for cid in ids}
    logs = "\n".join(w.tail(30) for w in pipe.workers)
    return f"db: {[dict(r) for r in rows]}\nib: {venue}\nclients: {sim.connected_clients}\n{logs}"
