"""Issue 12, item 8 "Books drift", against the machine's real PostgreSQL (TimescaleStore).

* fills carrying ``cumulative_notional`` price any gap from the database's own watermark, and
  the notional is stored with each fill and read back;
* migration 005 adds the column to a database that already holds fills and backfills it with
  each order's running notional, and fills applied afterwards continue from it;
* three spellings of one market are one position.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import asyncpg
import pytest_asyncio

from adapters.binance.parsing import parse_order
from adapters.timescale import TimescaleStore, load_migrations
from adapters.timescale.migrations import apply_migrations
from execution.fill_tracker import derive_fill
from execution.router import BrokerRouter
from schemas import AssetClass, Broker, Fill, Order, OrderState, Side, Signal

D = Decimal
T0 = datetime(2026, 5, 4, 12, 0, tzinfo=UTC)


@pytest_asyncio.fixture(loop_scope="session")
async def fresh_store(empty_database_url: str) -> AsyncIterator[TimescaleStore]:
    store = TimescaleStore(empty_database_url, max_pool_size=2, now=lambda: T0)
    await store.start()
    try:
        yield store
    finally:
        await store.close()


def binance_order(signal_id: str, symbol: str = "BTC-USDT", quantity: str = "1") -> Order:
    request = BrokerRouter({Broker.BINANCE}).route(
        Signal(signal_id=signal_id, symbol=symbol, side=Side.BUY, quantity=D(quantity), ts=T0))
    return Order.from_request(request, at=T0)


def binance_fill(order: Order, executed: str, quote: str) -> Fill:
    """What the tracker emits from Binance's totals, from ``order``'s baseline."""
    status = parse_order({"orderId": 1, "clientOrderId": order.client_order_id, "status": "PARTIALLY_FILLED",
                          "executedQty": executed, "cummulativeQuoteQty": quote})
    fill = derive_fill(order, status, at=T0)
    assert fill is not None
    return fill


async def test_a_restarted_trackers_fill_is_priced_from_the_database_watermark(
    fresh_store: TimescaleStore,
) -> None:
    order = binance_order("books-gap")
    await fresh_store.insert_orders([order])
    first = binance_fill(order, "0.50000000", "50.00000000")
    assert await fresh_store.apply_fills([first]) == [first]
    # the tracker restarted before the fills writer recorded the first fill: baseline 0
    restarted = binance_fill(order, "1.00000000", "101.00000000")
    assert (restarted.quantity, restarted.price) == (D("1"), D("101"))
    (applied,) = await fresh_store.apply_fills([restarted])
    assert (applied.quantity, applied.price, applied.cumulative_notional) == (D("0.5"), D("102"), D("101"))

    stored = (await fresh_store.get_orders([order.client_order_id]))[order.client_order_id]
    assert (stored.filled_quantity, stored.avg_fill_price, stored.state) == (D("1"), D("101"), OrderState.FILLED)
    (position,) = await fresh_store.positions(Broker.BINANCE)
    assert (position.symbol, position.quantity, position.avg_price) == ("BTC-USDT", D("1"), D("101"))
    recorded = await fresh_store.recorded_fills(order.client_order_id)
    assert [(f.quantity, f.price, f.cumulative_quantity, f.cumulative_notional) for f in recorded] == [
        (D("0.5"), D("100"), D("0.5"), D("50")), (D("0.5"), D("102"), D("1"), D("101"))]
    assert await fresh_store.apply_fills([first, restarted]) == []  # redelivered: nothing


async def test_a_fill_without_the_notional_is_stored_without_it(fresh_store: TimescaleStore) -> None:
    order = binance_order("books-old-producer")
    await fresh_store.insert_orders([order])
    raw = binance_fill(order, "0.5", "50").model_dump(mode="json")
    del raw["cumulative_notional"]
    old = Fill.model_validate(raw)
    assert await fresh_store.apply_fills([old]) == [old]
    (recorded,) = await fresh_store.recorded_fills(order.client_order_id)
    assert recorded.cumulative_notional is None and recorded.price == D("100")


async def test_symbol_aliases_are_one_position_in_postgresql(fresh_store: TimescaleStore) -> None:
    orders = [binance_order(f"alias-{n}", symbol, "2") for n, symbol in enumerate(("ETH-USDT", "ETHUSDT", "eth/usdt"))]
    await fresh_store.insert_orders(orders)
    await fresh_store.apply_fills([binance_fill(o, "2", quote) for o, quote in zip(orders, ("20", "22", "24"),
                                                                                  strict=True)])
    positions = [p for p in await fresh_store.positions(Broker.BINANCE) if p.symbol.startswith("ETH")]
    assert [(p.symbol, p.quantity, p.avg_price) for p in positions] == [("ETH-USDT", D("6"), D("11"))]
    rows = await fresh_store.pool.fetch("SELECT DISTINCT symbol FROM orders WHERE client_order_id = ANY($1::text[])",
                                        [o.client_order_id for o in orders])
    assert [r["symbol"] for r in rows] == ["ETH-USDT"]


async def test_migration_005_backfills_existing_fills_and_later_fills_continue_from_them(
    empty_database_url: str,
) -> None:
    before = [m for m in load_migrations() if m.version < "005"]
    conn = await asyncpg.connect(empty_database_url)
    try:
        await apply_migrations(conn, before)
        # fills recorded by the previous version: no order rows (orphans), quantities as applied
        rows = [("a1", "ord-a", "0.5", "100", "0.5"), ("a2", "ord-a", "0.5", "102", "1"),
                ("b1", "ord-b", "2", "10", "2")]
        for n, (exec_id, cid, quantity, price, cumulative) in enumerate(rows):
            await conn.execute(
                "INSERT INTO fills (exec_id, broker, client_order_id, symbol, asset_class, strategy, side, quantity, "
                "reported_quantity, price, cumulative_quantity, ts) VALUES ($1, 'binance', $2, 'BTC-USDT', "
                "'CRYPTO', 'manual', 'BUY', $3, $3, $4, $5, $6)",
                exec_id, cid, D(quantity), D(price), D(cumulative), T0 + timedelta(seconds=n))
            await conn.execute("INSERT INTO fill_ids (broker, exec_id) VALUES ('binance', $1)", exec_id)
    finally:
        await conn.close()

    store = TimescaleStore(empty_database_url, max_pool_size=2, now=lambda: T0)
    await store.start()  # applies 005
    try:
        backfilled = {r["exec_id"]: r["cumulative_notional"] for r in await store.pool.fetch(
            "SELECT exec_id, cumulative_notional FROM fills")}
        assert backfilled == {"a1": D("50.0"), "a2": D("101.0"), "b1": D("20")}
        assert await store.migrate() == []

        # the order grows to 1.5 for a notional of 153 (the venue's): 0.5 more at 104
        later = Fill(exec_id="a3", cumulative_quantity=D("1.5"), cumulative_notional=D("153"),
                     client_order_id="ord-a", broker=Broker.BINANCE, symbol="BTC-USDT",
                     asset_class=AssetClass.CRYPTO, side=Side.BUY, quantity=D("1.5"), price=D("102"), ts=T0)
        (applied,) = await store.apply_fills([later])
        assert (applied.quantity, applied.price) == (D("0.5"), D("104"))
        recorded = await store.recorded_fills("ord-a")
        by_watermark = sorted(recorded, key=lambda f: f.cumulative_quantity)
        assert [f.cumulative_notional for f in by_watermark] == [D("50.0"), D("101.0"), D("153")]
    finally:
        await store.close()
