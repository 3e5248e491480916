"""End to end through real parts: Tansu, PostgreSQL, Redis and ``superintel worker`` processes.

Signals go in with aiokafka exactly as a strategy would publish them; the assertions read what a
user would check: the orders table, fills, positions, the Redis feed and the dead-letter topic.
"""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict
from decimal import Decimal
from pathlib import Path

import pytest

from devstack.signal_mix import MALFORMED, SignalMix
from schemas import Signal
from tests.pipeline.harness import FillSubscriber, Pipeline, eventually, pipeline, signed

pytestmark = pytest.mark.pipeline
TERMINAL = ("FILLED", "CANCELLED", "REJECTED", "EXPIRED")


async def wait_all_terminal(pipe: Pipeline, signals: list[Signal], timeout: float = 150.0) -> None:
    ids = [s.client_order_id for s in signals]

    async def done() -> bool:
        rows = await pipe.sql("SELECT count(*) AS n FROM orders WHERE client_order_id = ANY($1::text[]) "
                              "AND state = ANY($2::text[])", ids, list(TERMINAL))
        return int(rows[0]["n"]) == len(set(ids))

    async def detail() -> str:
        rows = await pipe.sql("SELECT broker, state, count(*) AS n FROM orders GROUP BY 1, 2")
        logs = "\n".join(w.tail(25) for w in pipe.workers)
        return f"orders: {[dict(r) for r in rows]}\n{logs}"

    await eventually(done, timeout, f"{len(set(ids))} terminal orders", detail)


async def wait_fills_settled(pipe: Pipeline, subscriber: FillSubscriber, timeout: float = 60.0) -> None:
    async def settled() -> bool:
        rows = await pipe.sql("SELECT count(*) AS n FROM fills")
        return len({f.exec_id for f in subscriber.fills}) >= int(rows[0]["n"]) > 0

    await eventually(settled, timeout, "every recorded fill to reach Redis")


async def assert_books_balance(pipe: Pipeline) -> None:
    """Positions equal the signed sum of fills; FILLED orders' fills sum to their quantity."""
    fills = await pipe.sql("SELECT broker, symbol, side, quantity FROM fills")
    expected: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    for f in fills:
        expected[(f["broker"], f["symbol"])] += signed(f["side"], f["quantity"])
    positions = {(p["broker"], p["symbol"]): p["quantity"] for p in await pipe.sql("SELECT * FROM positions")}
    assert {k: v for k, v in positions.items() if v != 0} == {k: v for k, v in expected.items() if v != 0}
    mismatched = await pipe.sql(
        "SELECT o.client_order_id, o.quantity, o.filled_quantity, coalesce(sum(f.quantity), 0) AS fq "
        "FROM orders o LEFT JOIN fills f USING (client_order_id) GROUP BY 1, 2, 3 "
        "HAVING o.filled_quantity <> coalesce(sum(f.quantity), 0) "
        "OR (o.state = 'FILLED' AND o.quantity <> coalesce(sum(f.quantity), 0))")
    assert mismatched == [], mismatched


async def test_mixed_stream_with_malformed_messages(database_url: str, tmp_path: Path) -> None:
    signals = SignalMix(seed=11, prefix="e2e").take(1000)
    async with pipeline(database_url, "redis://127.0.0.1:6379/6", tmp_path) as pipe:
        subscriber = FillSubscriber(pipe.redis_url, {s.client_order_id for s in signals})
        await subscriber.start()
        try:
            await pipe.ready_worker()
            await pipe.publish(signals[:500])
            await pipe.publish_raw((m.key, m.value) for m in MALFORMED)
            await pipe.publish(signals[500:])
            await wait_all_terminal(pipe, signals)
            await wait_fills_settled(pipe, subscriber)
        finally:
            await subscriber.stop()

        orders = await pipe.sql("SELECT * FROM orders")
        assert len(orders) == len(signals)  # exactly one order per valid signal
        by_id = {o["client_order_id"]: o for o in orders}
        assert set(by_id) == {s.client_order_id for s in signals}
        for s in signals:  # no live adapter yet: every class goes to paper, reason on the order
            o = by_id[s.client_order_id]
            assert o["broker"] == "paper"
            assert o["rerouted_from"] in {"ibkr", "mt4", "binance"}
            assert "no live adapter configured" in o["reason"] or o["state"] != "FILLED"
        states = Counter(o["state"] for o in orders)
        ioc_far = [s for s in signals if s.time_in_force == "IOC"]
        assert states["EXPIRED"] == len(ioc_far) > 0
        assert states["FILLED"] == len(signals) - len(ioc_far)

        fills = await pipe.sql("SELECT * FROM fills")
        assert len(fills) == states["FILLED"]  # one fill per filled paper order, none twice
        for f in fills:  # 0.1% slippage against the trader on the reference price
            s = next(x for x in signals if x.client_order_id == f["client_order_id"])
            assert s.reference_price is not None
            factor = Decimal("1.001") if s.side == "BUY" else Decimal("0.999")
            assert f["price"] == (s.reference_price * factor).quantize(Decimal("1e-10")).normalize()
        await assert_books_balance(pipe)

        redis_ids = [f.exec_id for f in subscriber.fills]
        assert sorted(redis_ids) == sorted(f["exec_id"] for f in fills)  # each fill once on Redis

        letters = await pipe.dead_letters(len(MALFORMED))
        assert len(letters) == len(MALFORMED)
        raw = {letter.raw for letter in letters}
        for m in MALFORMED:
            text = m.value.decode(errors="strict") if m.why != "not UTF-8" else None
            assert text is None or text in raw, m.why
        assert all(letter.reason and letter.source_topic == "signals" and letter.offset is not None
                   for letter in letters)
        reasons = " | ".join(letter.reason for letter in letters)
        for needle in ("Invalid JSON", "side", "quantity", "finite number", "symbol", "cannot infer asset class"):
            assert needle in reasons, (needle, reasons)


async def test_duplicate_signal_yields_one_order_one_fill(database_url: str, tmp_path: Path) -> None:
    signal = SignalMix(seed=3, prefix="dup").take(1)[0]
    async with pipeline(database_url, "redis://127.0.0.1:6379/6", tmp_path) as pipe:
        await pipe.ready_worker()
        await pipe.publish([signal, signal])
        await wait_all_terminal(pipe, [signal])
        marker = SignalMix(seed=4, prefix="dup-marker").take(1)  # published after: proves both were read
        await pipe.publish([signal, *marker])
        await wait_all_terminal(pipe, marker)
        orders = await pipe.sql("SELECT state FROM orders WHERE client_order_id = $1", signal.client_order_id)
        fills = await pipe.sql("SELECT exec_id FROM fills WHERE client_order_id = $1", signal.client_order_id)
        assert len(orders) == 1
        assert len(fills) == (1 if orders[0]["state"] == "FILLED" else 0)


async def test_worker_killed_mid_stream_loses_and_duplicates_nothing(database_url: str, tmp_path: Path) -> None:
    signals = SignalMix(seed=5, prefix="crash").take(1200)
    async with pipeline(database_url, "redis://127.0.0.1:6379/6", tmp_path) as pipe:
        subscriber = FillSubscriber(pipe.redis_url, {s.client_order_id for s in signals})
        await subscriber.start()
        try:
            first = await pipe.ready_worker()
            await pipe.publish(signals)

            async def some_processed() -> bool:
                rows = await pipe.sql("SELECT count(*) AS n FROM orders")
                return int(rows[0]["n"]) >= 100

            await eventually(some_processed, 60, "the first worker to process some orders")
            first.kill()  # SIGKILL: no graceful commit, no flush
            processed_before = int((await pipe.sql("SELECT count(*) AS n FROM orders"))[0]["n"])
            assert processed_before < len(signals), "kill came too late to test anything"
            await pipe.ready_worker()
            await wait_all_terminal(pipe, signals)
            await wait_fills_settled(pipe, subscriber)
        finally:
            await subscriber.stop()

        orders = await pipe.sql("SELECT client_order_id, state FROM orders")
        assert sorted(o["client_order_id"] for o in orders) == sorted(s.client_order_id for s in signals)
        fills = await pipe.sql("SELECT client_order_id, count(*) AS n FROM fills GROUP BY 1")
        assert all(f["n"] == 1 for f in fills)
        filled = {o["client_order_id"] for o in orders if o["state"] == "FILLED"}
        assert {f["client_order_id"] for f in fills} == filled
        await assert_books_balance(pipe)
        # Redis may have seen a fill twice only if dedupe failed: it must not have
        assert len(subscriber.fills) == len({f.exec_id for f in subscriber.fills}) == len(filled)


async def test_force_paper_trading_routes_live_class_to_paper(database_url: str, tmp_path: Path) -> None:
    signals = [s for s in SignalMix(seed=9, prefix="force").take(40) if s.time_in_force != "IOC"]
    async with pipeline(database_url, "redis://127.0.0.1:6379/6", tmp_path,
                        FORCE_PAPER_TRADING="true") as pipe:
        await pipe.ready_worker()
        await pipe.publish(signals)
        await wait_all_terminal(pipe, signals)
        orders = await pipe.sql("SELECT broker, rerouted_from, reason, state FROM orders")
        assert len(orders) == len(signals)
        assert {o["broker"] for o in orders} == {"paper"}
        assert all(o["reason"] == "FORCE_PAPER_TRADING=true" for o in orders)
        assert {o["rerouted_from"] for o in orders} == {"ibkr", "mt4", "binance"}
        assert {o["state"] for o in orders} == {"FILLED"}


async def test_per_broker_scaling_core_and_two_paper_executors(database_url: str, tmp_path: Path) -> None:
    """The production layout: one core worker (router + fills) and N executor workers per broker,
    each shape in its own consumer group; the executors split the broker topic's partitions."""
    signals = [s for s in SignalMix(seed=21, prefix="scale").take(400)]
    async with pipeline(database_url, "redis://127.0.0.1:6379/6", tmp_path) as pipe:
        executors = {"WORKER_ROLES": '["executors"]', "WORKER_BROKERS": '["paper","ibkr","mt4","binance"]'}
        first = pipe.start_worker(**executors)
        second = pipe.start_worker(**executors)
        await pipe.ready_worker(WORKER_ROLES='["router","fills"]')
        for worker in (first, second):
            await asyncio.to_thread(worker.wait_ready, 90)
        await pipe.publish(signals)
        await wait_all_terminal(pipe, signals)

        orders = await pipe.sql("SELECT client_order_id FROM orders")
        assert sorted(o["client_order_id"] for o in orders) == sorted(s.client_order_id for s in signals)
        fills = await pipe.sql("SELECT client_order_id, count(*) AS n FROM fills GROUP BY 1")
        assert all(f["n"] == 1 for f in fills)
        await assert_books_balance(pipe)
        owned = [assigned_partitions(worker.tail(2000), "orders.paper") for worker in (first, second)]
        assert owned[0] and owned[1] and not owned[0] & owned[1], owned  # split, no overlap
        assert owned[0] | owned[1] == set(range(4))


def assigned_partitions(log: str, topic: str) -> set[int]:
    """The partitions of ``topic`` in the worker's last Faust assignment table (``{0, 2}``, ``{0-3}``)."""
    rows = [line for line in log.splitlines() if f"| {topic} " in line and "{" in line]
    if not rows:
        return set()
    spec = rows[-1].split("{", 1)[1].split("}", 1)[0]
    parts: set[int] = set()
    for item in spec.split(","):
        low, _, high = item.strip().partition("-")
        parts.update(range(int(low), int(high or low) + 1))
    return parts
