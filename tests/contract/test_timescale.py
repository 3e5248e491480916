"""TimescaleStore against the machine's real PostgreSQL: schema, idempotency, fills, positions."""

from __future__ import annotations

import asyncio
import logging
import uuid
from decimal import Decimal
from typing import Any

import asyncpg
import pytest

from adapters.timescale import TimescaleStore, load_migrations, queries
from adapters.timescale.sql import FILL_COLUMNS, ORDER_COLUMNS
from schemas import (
    AssetClass,
    Broker,
    Fill,
    Order,
    OrderEvent,
    OrderState,
    OrderType,
    Side,
    TimeInForce,
    client_order_id_for,
)

D = Decimal


def make_order(
    symbol: str = "BTC-USDT",
    side: Side = Side.BUY,
    quantity: str = "1.0",
    broker: Broker = Broker.PAPER,
    asset_class: AssetClass = AssetClass.CRYPTO,
    **extra: Any,
) -> Order:
    signal_id = f"sig-{uuid.uuid4().hex}"
    return Order(
        signal_id=signal_id,
        client_order_id=client_order_id_for(signal_id),
        symbol=symbol,
        side=side,
        quantity=D(quantity),
        broker=broker,
        asset_class=asset_class,
        **extra,
    )


def make_fill(
    order: Order,
    cumulative: str,
    price: str,
    quantity: str | None = None,
    exec_id: str | None = None,
) -> Fill:
    return Fill(
        exec_id=exec_id or f"ex-{uuid.uuid4().hex}",
        cumulative_quantity=D(cumulative),
        quantity=D(quantity or cumulative),
        client_order_id=order.client_order_id,
        broker=order.broker,
        symbol=order.symbol,
        asset_class=order.asset_class,
        strategy=order.strategy,
        side=order.side,
        price=D(price),
        venue_order_id="V-" + order.client_order_id[-6:],
    )


async def one_order(store: TimescaleStore, order: Order) -> Order:
    return (await store.get_orders([order.client_order_id]))[order.client_order_id]


async def save(store: TimescaleStore, order: Order, new_state: OrderState, **changes: Any) -> Order:
    moved = order.transition(new_state, **changes)
    await store.save_transitions([(moved, OrderEvent.of(moved, order.state))])
    return moved


async def signed_fill_sum(store: TimescaleStore, broker: Broker, symbol: str) -> Decimal:
    total: Decimal = await store.pool.fetchval(
        "SELECT COALESCE(sum(CASE side WHEN 'BUY' THEN quantity ELSE -quantity END), 0) "
        "FROM fills WHERE broker = $1 AND symbol = $2",
        broker.value,
        symbol,
    )
    return total


# ---- schema and migrations ---------------------------------------------------------------------


def test_columns_cover_the_wire_models() -> None:
    assert {name for name, _ in ORDER_COLUMNS} == set(Order.model_fields)
    assert {name for name, _ in FILL_COLUMNS} == set(Fill.model_fields) | {"reported_quantity", "recorded_at"}


async def test_migrations_are_recorded_once_and_rerun_applies_nothing(store: TimescaleStore) -> None:
    assert await store.migrate() == []
    assert await store.migrate() == []
    rows = await store.pool.fetch("SELECT version, checksum FROM schema_migrations ORDER BY version")
    assert [(r["version"], r["checksum"]) for r in rows] == [
        (m.version, m.checksum) for m in load_migrations()
    ]


async def test_sql_files_replayed_by_hand_are_harmless(store: TimescaleStore) -> None:
    order = make_order()
    await store.insert_orders([order])
    async with store.pool.acquire() as conn, conn.transaction():
        for migration in load_migrations():
            await conn.execute(migration.sql)
    assert (await one_order(store, order)) == order


async def test_concurrent_starts_apply_each_migration_exactly_once(empty_database_url: str) -> None:
    stores = [TimescaleStore(empty_database_url, max_pool_size=2) for _ in range(3)]
    try:
        await asyncio.gather(*(s.start() for s in stores))
        rows = await stores[0].pool.fetch("SELECT version FROM schema_migrations ORDER BY version")
        assert [r["version"] for r in rows] == [m.version for m in load_migrations()]
        kinds = dict(
            await stores[0].pool.fetch(
                "SELECT relname, relkind::text FROM pg_class WHERE relname = ANY($1::text[])",
                [
                    "orders",
                    "order_events",
                    "fills",
                    "fill_ids",
                    "positions",
                    "paper_positions",
                    "nav_spreads",
                ],
            )
        )
        assert kinds.pop("paper_positions") == "v"
        assert set(kinds) == {"orders", "order_events", "fills", "fill_ids", "positions", "nav_spreads"}
        has_timescale = await stores[0].pool.fetchval(
            "SELECT count(*) > 0 FROM pg_extension WHERE extname = 'timescaledb'"
        )
        if not has_timescale:  # plain PostgreSQL: ordinary tables with their time indexes
            assert set(kinds.values()) == {"r"}
            indexes = {
                r["indexname"]
                for r in await stores[0].pool.fetch(
                    "SELECT indexname FROM pg_indexes WHERE schemaname='public'"
                )
            }
            assert {"fills_ts_idx", "order_events_ts_idx", "nav_spreads_ts_idx"} <= indexes
    finally:
        await asyncio.gather(*(s.close() for s in stores))


async def test_every_enum_value_round_trips_and_bad_values_are_rejected(store: TimescaleStore) -> None:
    orders = [
        make_order(
            symbol="AAPL", broker=broker, asset_class=asset_class, side=side, time_in_force=tif, state=state
        )
        for broker, asset_class, side, tif, state in zip(
            list(Broker) * 2,
            list(AssetClass) * 2,
            list(Side) * 4,
            list(TimeInForce) * 2,
            list(OrderState),
            strict=False,
        )
    ]
    orders += [
        make_order(order_type=OrderType.LIMIT, limit_price=D("10.5")),
        make_order(order_type=OrderType.STOP, stop_price=D("9.25")),
        make_order(
            order_type=OrderType.BRACKET,
            limit_price=D("10"),
            stop_price=D("9"),
            take_profit_price=D("12.000000001"),
            reference_price=D("10.1"),
            group_id="g-1",
        ),
        make_order(
            broker=Broker.PAPER,
            rerouted_from=Broker.IBKR,
            reason="gateway down",
            filled_quantity=D("0.5"),
            avg_fill_price=D("101.123456789"),
            venue_order_id="V1",
        ),
    ]
    assert await store.insert_orders(orders) == {o.client_order_id for o in orders}
    assert await store.get_orders([o.client_order_id for o in orders]) == {
        o.client_order_id: o for o in orders
    }
    with pytest.raises(asyncpg.CheckViolationError):
        await store.pool.execute(
            "UPDATE orders SET side = 'HOLD' WHERE client_order_id = $1", orders[0].client_order_id
        )
    with pytest.raises(asyncpg.CheckViolationError):
        await store.pool.execute(
            "UPDATE orders SET state = 'LOST' WHERE client_order_id = $1", orders[0].client_order_id
        )


# ---- orders ------------------------------------------------------------------------------------


async def test_insert_orders_is_the_idempotency_gate(store: TimescaleStore) -> None:
    first, second, third = make_order(), make_order(), make_order()
    assert await store.insert_orders([first]) == {first.client_order_id}
    assert await store.insert_orders([first, second]) == {second.client_order_id}
    assert await store.insert_orders([third, third]) == {third.client_order_id}
    assert await store.insert_orders([first, second, third]) == set()
    assert await store.insert_orders([]) == set()
    assert await store.order_counts() == {(Broker.PAPER, OrderState.PENDING): 3}
    for order in (first, second, third):
        events = await store.order_events(order.client_order_id)
        assert [(e.state, e.previous_state) for e in events] == [(OrderState.PENDING, None)]


async def test_transitions_are_saved_with_their_events_and_terminal_orders_stay_closed(
    store: TimescaleStore,
) -> None:
    order = make_order(quantity="2")
    await store.insert_orders([order])
    submitted = await save(store, order, OrderState.SUBMITTED, venue_order_id="V-77")
    partial = await save(
        store, submitted, OrderState.PARTIALLY_FILLED, filled_quantity=D("0.5"), avg_fill_price=D("100.5")
    )
    filled = await save(
        store, partial, OrderState.FILLED, reason="done", filled_quantity=D("2"), avg_fill_price=D("101")
    )
    stored = await one_order(store, order)
    assert (
        stored.state,
        stored.venue_order_id,
        stored.filled_quantity,
        stored.avg_fill_price,
        stored.reason,
    ) == (OrderState.FILLED, "V-77", D("0"), None, "done")
    # Fill totals are apply_fills' alone: a transition carrying them must not move the watermark,
    # or the fills writer would later skip the very fills those totals came from.

    # A cancel that lost the race against the fill: recorded for the audit, order stays FILLED.
    late_cancel = submitted.transition(OrderState.CANCELLED, reason="user cancel")
    await store.save_transitions([(late_cancel, OrderEvent.of(late_cancel, submitted.state))])
    stored = await one_order(store, order)
    assert (stored.state, stored.reason, stored.filled_quantity) == (OrderState.FILLED, "done", D("0"))

    events = await store.order_events(order.client_order_id)
    assert [(e.previous_state, e.state) for e in events] == [
        (None, OrderState.PENDING),
        (OrderState.PENDING, OrderState.SUBMITTED),
        (OrderState.SUBMITTED, OrderState.PARTIALLY_FILLED),
        (OrderState.PARTIALLY_FILLED, OrderState.FILLED),
        (OrderState.SUBMITTED, OrderState.CANCELLED),
    ]
    assert filled.state is OrderState.FILLED


async def test_several_transitions_of_one_order_in_one_batch_apply_in_order(store: TimescaleStore) -> None:
    order = make_order()
    await store.insert_orders([order])
    submitted = order.transition(OrderState.SUBMITTED, venue_order_id="V-1")
    rejected = submitted.transition(OrderState.REJECTED, reason="insufficient funds")
    await store.save_transitions(
        [
            (submitted, OrderEvent.of(submitted, order.state)),
            (rejected, OrderEvent.of(rejected, submitted.state)),
        ]
    )
    stored = await one_order(store, order)
    assert (stored.state, stored.reason, stored.venue_order_id) == (
        OrderState.REJECTED,
        "insufficient funds",
        "V-1",
    )
    assert len(await store.order_events(order.client_order_id)) == 3


async def test_a_stale_update_never_moves_an_order_backwards(store: TimescaleStore) -> None:
    order = make_order()
    await store.insert_orders([order])
    await store.apply_fills([make_fill(order, "0.4", "100")])  # fill writer wins the race
    submitted = order.transition(OrderState.SUBMITTED, venue_order_id="V-9")
    await store.save_transitions([(submitted, OrderEvent.of(submitted, order.state))])
    stored = await one_order(store, order)
    assert (stored.state, stored.filled_quantity, stored.avg_fill_price, stored.venue_order_id) == (
        OrderState.PARTIALLY_FILLED,
        D("0.4"),
        D("100"),
        "V-9",
    )


async def test_open_orders_lists_non_terminal_orders_of_one_broker(store: TimescaleStore) -> None:
    ibkr = [make_order(symbol="AAPL", broker=Broker.IBKR, asset_class=AssetClass.EQUITY) for _ in range(4)]
    binance = make_order(broker=Broker.BINANCE)
    await store.insert_orders([*ibkr, binance])
    await save(store, ibkr[1], OrderState.SUBMITTED)
    await save(store, ibkr[2], OrderState.REJECTED, reason="bad symbol")
    rerouted = ibkr[3].rerouted(Broker.PAPER, "circuit open")
    await store.save_transitions([(rerouted, OrderEvent.of(rerouted, ibkr[3].state))])

    open_ibkr = await store.open_orders(Broker.IBKR)
    assert [(o.client_order_id, o.state) for o in open_ibkr] == [
        (ibkr[0].client_order_id, OrderState.PENDING),
        (ibkr[1].client_order_id, OrderState.SUBMITTED),
    ]
    open_paper = await store.open_orders(Broker.PAPER)
    assert [(o.client_order_id, o.rerouted_from, o.reason) for o in open_paper] == [
        (ibkr[3].client_order_id, Broker.IBKR, "circuit open")
    ]
    assert [o.client_order_id for o in await store.open_orders(Broker.BINANCE)] == [binance.client_order_id]
    assert await store.open_orders(Broker.MT4) == []


# ---- fills -------------------------------------------------------------------------------------


async def test_partial_then_full_fill_advances_state_and_average_price(store: TimescaleStore) -> None:
    order = make_order(quantity="1.0")
    await store.insert_orders([order])
    first = await store.apply_fills([make_fill(order, "0.4", "100")])
    assert [f.quantity for f in first] == [D("0.4")]
    stored = await one_order(store, order)
    assert (stored.state, stored.filled_quantity, stored.avg_fill_price) == (
        OrderState.PARTIALLY_FILLED,
        D("0.4"),
        D("100"),
    )
    assert stored.venue_order_id == "V-" + order.client_order_id[-6:]

    second = await store.apply_fills([make_fill(order, "1.0", "110", quantity="0.6")])
    assert [f.quantity for f in second] == [D("0.6")]
    stored = await one_order(store, order)
    assert (stored.state, stored.filled_quantity, stored.avg_fill_price) == (
        OrderState.FILLED,
        D("1.0"),
        D("106"),
    )
    events = await store.order_events(order.client_order_id)
    assert [(e.previous_state, e.state) for e in events] == [
        (None, OrderState.PENDING),
        (OrderState.PENDING, OrderState.PARTIALLY_FILLED),
        (OrderState.PARTIALLY_FILLED, OrderState.FILLED),
    ]
    assert "0.6 @ 110" in events[-1].reason


async def test_the_same_fill_twice_is_applied_once(store: TimescaleStore) -> None:
    order = make_order()
    await store.insert_orders([order])
    fill = make_fill(order, "0.5", "100")
    assert await store.apply_fills([fill, fill]) == [fill]
    assert await store.apply_fills([fill]) == []
    assert await store.fill_count() == 1
    stored = await one_order(store, order)
    assert stored.filled_quantity == D("0.5")
    assert (await store.positions(Broker.PAPER))[0].quantity == D("0.5")


async def test_a_re_emitted_fill_with_a_new_exec_id_is_skipped(store: TimescaleStore) -> None:
    order = make_order()
    await store.insert_orders([order])
    await store.apply_fills([make_fill(order, "0.5", "100")])
    assert await store.apply_fills([make_fill(order, "0.5", "100")]) == []
    assert await store.apply_fills([make_fill(order, "0.2", "99")]) == []  # stale, behind the watermark
    assert await store.fill_count() == 1
    assert (await one_order(store, order)).filled_quantity == D("0.5")


async def test_crash_gap_fills_bring_the_total_to_the_last_cumulative(store: TimescaleStore) -> None:
    both, last_only, reordered = make_order(), make_order(), make_order()
    await store.insert_orders([both, last_only, reordered])
    await store.apply_fills([make_fill(o, "0.3", "100") for o in (both, last_only, reordered)])

    # Both later fills arrive: each applies its own growth.
    applied = await store.apply_fills(
        [
            make_fill(both, "0.5", "102", quantity="0.2"),
            make_fill(both, "0.8", "104", quantity="0.3"),
        ]
    )
    assert [f.quantity for f in applied] == [D("0.2"), D("0.3")]
    # Only the last one survived the crash: it covers the lost 0.2 as well.
    applied = await store.apply_fills([make_fill(last_only, "0.8", "104", quantity="0.3")])
    assert [f.quantity for f in applied] == [D("0.5")]
    # They arrive out of order: the older one is behind the watermark and skipped.
    applied = await store.apply_fills(
        [
            make_fill(reordered, "0.8", "104", quantity="0.3"),
            make_fill(reordered, "0.5", "102", quantity="0.2"),
        ]
    )
    assert [f.quantity for f in applied] == [D("0.5")]

    for order in (both, last_only, reordered):
        stored = await one_order(store, order)
        assert (stored.state, stored.filled_quantity) == (OrderState.PARTIALLY_FILLED, D("0.8"))
        assert sum(f.quantity for f in await store.recorded_fills(order.client_order_id)) == D("0.8")
    reported = await store.pool.fetchval(
        "SELECT reported_quantity FROM fills WHERE client_order_id = $1 AND quantity = 0.5",
        last_only.client_order_id,
    )
    assert reported == D("0.3")
    assert (await one_order(store, both)).avg_fill_price == (
        D("0.3") * 100 + D("0.2") * 102 + D("0.3") * 104
    ) / D("0.8")


async def test_a_late_fill_on_a_cancelled_order_counts_but_keeps_the_state(store: TimescaleStore) -> None:
    order = make_order()
    await store.insert_orders([order])
    submitted = await save(store, order, OrderState.SUBMITTED)
    await save(store, submitted, OrderState.CANCELLED, reason="user cancel")
    assert len(await store.apply_fills([make_fill(order, "0.25", "100")])) == 1
    stored = await one_order(store, order)
    assert (stored.state, stored.filled_quantity, stored.reason) == (
        OrderState.CANCELLED,
        D("0.25"),
        "user cancel",
    )
    last = (await store.order_events(order.client_order_id))[-1]
    assert (last.previous_state, last.state) == (OrderState.CANCELLED, OrderState.CANCELLED)
    assert last.reason.startswith("late fill")
    assert (await store.positions(Broker.PAPER))[0].quantity == D("0.25")


async def test_a_fill_without_an_order_row_is_recorded_not_lost(
    store: TimescaleStore, caplog: pytest.LogCaptureFixture
) -> None:
    ghost = make_order(symbol="SOL-USDT")  # never inserted
    with caplog.at_level(logging.WARNING, logger="adapters.timescale.store"):
        assert len(await store.apply_fills([make_fill(ghost, "2", "20")])) == 1
    assert any(ghost.client_order_id in r.getMessage() for r in caplog.records)
    assert await store.apply_fills([make_fill(ghost, "2", "20")]) == []  # re-emitted: watermark holds
    applied = await store.apply_fills([make_fill(ghost, "3", "26", quantity="1")])
    assert [f.quantity for f in applied] == [D("1")]
    assert await store.get_orders([ghost.client_order_id]) == {}
    assert await store.order_events(ghost.client_order_id) == []
    position = (await store.positions(Broker.PAPER))[0]
    assert (position.symbol, position.quantity, position.avg_price) == ("SOL-USDT", D("3"), D("22"))


async def test_positions_are_the_signed_sum_of_fills_with_realized_pnl(store: TimescaleStore) -> None:
    symbol = "ETH-USDT"
    buy_2, buy_1, sell_1_5, sell_2_5, buy_back = orders = [
        make_order(symbol, Side.BUY, "2"),
        make_order(symbol, Side.BUY, "1"),
        make_order(symbol, Side.SELL, "1.5"),
        make_order(symbol, Side.SELL, "2.5"),
        make_order(symbol, Side.BUY, "1"),
    ]
    other_broker = make_order(symbol, Side.SELL, "0.7", broker=Broker.BINANCE)
    await store.insert_orders([*orders, other_broker])

    await store.apply_fills([make_fill(buy_2, "2", "100"), make_fill(buy_1, "1", "130")])
    position = (await store.positions(Broker.PAPER))[0]
    assert (position.quantity, position.avg_price, position.realized_pnl) == (D("3"), D("110"), D("0"))

    await store.apply_fills([make_fill(sell_1_5, "1.5", "120")])  # reduce: +15 realised
    position = (await store.positions(Broker.PAPER))[0]
    assert (position.quantity, position.avg_price, position.realized_pnl) == (D("1.5"), D("110"), D("15"))

    await store.apply_fills(
        [
            make_fill(sell_2_5, "2.5", "100"),  # close 1.5 at -15, flip to short 1 @ 100
            make_fill(other_broker, "0.7", "3000"),
        ]
    )
    position = (await store.positions(Broker.PAPER))[0]
    assert (position.quantity, position.avg_price, position.realized_pnl) == (D("-1"), D("100"), D("0"))

    await store.apply_fills([make_fill(buy_back, "1", "90")])  # cover the short: +10
    (paper,) = await store.positions(Broker.PAPER)
    assert (paper.quantity, paper.avg_price, paper.realized_pnl) == (D("0"), D("0"), D("10"))
    assert paper.quantity == await signed_fill_sum(store, Broker.PAPER, symbol)

    (binance,) = await store.positions(Broker.BINANCE)
    assert (binance.quantity, binance.avg_price) == (D("-0.7"), D("3000"))
    assert binance.quantity == await signed_fill_sum(store, Broker.BINANCE, symbol)
    assert [p.broker for p in await store.positions()] == [Broker.BINANCE, Broker.PAPER]

    view = await store.pool.fetch("SELECT symbol, quantity, realized_pnl FROM paper_positions")
    assert [tuple(r) for r in view] == [(symbol, D("0"), D("10"))]


async def test_a_batch_of_1000_fills_is_applied_in_one_call(store: TimescaleStore) -> None:
    symbols = ["BTC-USDT", "ETH-USDT", "SOL-USDT", "XRP-USDT", "ADA-USDT"]
    orders = [make_order(symbols[i % 5], Side.BUY if i % 3 else Side.SELL, "1") for i in range(100)]
    await store.insert_orders(orders)
    fills = [
        make_fill(order, f"{step / 10:.1f}", str(100 + step + i), quantity="0.1")
        for step in range(1, 11)
        for i, order in enumerate(orders)
    ]
    applied = await store.apply_fills(fills)
    assert len(applied) == 1000
    assert all(f.quantity == D("0.1") for f in applied)
    assert await store.fill_count() == 1000
    assert await store.order_counts() == {(Broker.PAPER, OrderState.FILLED): 100}
    assert await store.apply_fills(fills) == []

    stored = await store.get_orders([o.client_order_id for o in orders])
    for i, order in enumerate(orders):
        assert stored[order.client_order_id].avg_fill_price == D(100 + i) + D("5.5")
    for position in await store.positions(Broker.PAPER):
        assert position.quantity == await signed_fill_sum(store, Broker.PAPER, position.symbol)
        assert position.quantity == sum(
            o.side.sign * o.quantity for o in orders if o.symbol == position.symbol
        )


async def test_concurrent_writers_apply_each_growth_exactly_once(store: TimescaleStore) -> None:
    orders = [make_order(["BTC-USDT", "ETH-USDT"][i % 2], Side.BUY, "1") for i in range(20)]
    await store.insert_orders(orders)

    def batch(writer: int) -> list[Fill]:
        # Each writer saw the same executions but under its own ids (re-emitted after a crash).
        return [
            make_fill(order, f"{step / 4:.2f}", "100", quantity="0.25", exec_id=f"w{writer}-{step}-{i}")
            for step in range(1, 5)
            for i, order in enumerate(orders)
        ]

    results = await asyncio.gather(*(store.apply_fills(batch(w)) for w in range(4)))
    assert sum(f.quantity for applied in results for f in applied) == D("20")
    assert await store.order_counts() == {(Broker.PAPER, OrderState.FILLED): 20}
    positions = {p.symbol: p.quantity for p in await store.positions()}
    assert positions == {"BTC-USDT": D("10"), "ETH-USDT": D("10")}


# ---- the read side (queries.py): what the demo, the bench and operators ask -------------------


def run_order(run: str, n: int, **kwargs: Any) -> Order:
    signal_id = f"{run}-{n:04d}"
    return make_order(**kwargs).model_copy(
        update={"signal_id": signal_id, "client_order_id": client_order_id_for(signal_id)})


async def test_run_scoped_queries_see_only_their_run(store: TimescaleStore) -> None:
    # "_" in the prefix must not act as a LIKE wildcard; orders 1 and 2 were routed for Binance
    mine = [run_order("q_run", n, quantity="2", broker=Broker.BINANCE if n in (1, 2) else Broker.PAPER)
            for n in range(4)]
    other = run_order("qxrun", 0)
    await store.insert_orders([*mine, other])
    rerouted = mine[1].rerouted(Broker.PAPER, f"binance unavailable placing {mine[1].client_order_id}")
    rerouted_too = mine[2].rerouted(Broker.PAPER, f"binance unavailable placing {mine[2].client_order_id}")
    await store.save_transitions([(rerouted, OrderEvent.of(rerouted, OrderState.PENDING)),
                                  (rerouted_too, OrderEvent.of(rerouted_too, OrderState.PENDING))])
    await save(store, mine[3], OrderState.REJECTED, reason="limit 5% away from mid 101.5")
    await store.apply_fills([make_fill(mine[0], "2", "100"), make_fill(rerouted, "1", "110"),
                             make_fill(other, "1", "5")])

    db, run = store.pool, "q_run-"
    assert await queries.state_counts(db, run) == {
        OrderState.FILLED: 1, OrderState.PARTIALLY_FILLED: 1, OrderState.PENDING: 1, OrderState.REJECTED: 1}
    assert sum((await queries.order_counts(db, run)).values()) == 4
    assert await queries.fill_count(db, run) == 2 and await queries.fill_count(db) == 3
    assert [(r.broker, r.routed_for, r.state, r.orders) for r in await queries.orders_by_route(db, run)] == [
        (Broker.PAPER, Broker.BINANCE, OrderState.PARTIALLY_FILLED, 1),
        (Broker.PAPER, Broker.BINANCE, OrderState.PENDING, 1),
        (Broker.PAPER, Broker.PAPER, OrderState.FILLED, 1),
        (Broker.PAPER, Broker.PAPER, OrderState.REJECTED, 1),
    ]
    assert await queries.reroute_reasons(db, run, [Broker.BINANCE]) == [
        queries.ReasonCount("binance", "binance unavailable placing <..>", 2)]
    assert await queries.reroute_reasons(db, run, [Broker.IBKR]) == []
    assert await queries.outcome_reasons(db, run) == [
        queries.ReasonCount("REJECTED", "limit 5% away from <..>", 1)]

    [summary] = await queries.fill_summary(db, run)
    assert (summary.broker, summary.fills, summary.quantity, summary.notional) == (Broker.PAPER, 2, D("3"), D("310"))
    assert 0 <= summary.p50_ms <= summary.p99_ms
    recorded = await store.recorded_fills()
    assert await queries.recorded_exec_ids(db, run) == {
        f.exec_id for f in recorded if f.client_order_id != other.client_order_id}
    [position] = await queries.positions(db, traded_by=run)
    assert (position.broker, position.quantity) == (Broker.PAPER, D("4"))  # account total: other run included
    assert await queries.positions(db, traded_by="nobody-") == []

    times = await queries.order_times(db, [mine[0].client_order_id, "unknown"])
    assert list(times) == [mine[0].client_order_id]
    assert (times[mine[0].client_order_id].routed_at, times[mine[0].client_order_id].created_at) == (
        mine[0].routed_at, mine[0].created_at)
