"""The replay composition without Kafka (issue 17, topic replay): records handed in as they
would come off the topic, through the real router, ExecutionService, FillTracker, paper venue
and in-memory store, on recorded time."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal as D
from pathlib import Path

import pytest

from execution.clock import ManualClock
from replay.engine import ReplayOutcome, memory_store, replay_records, schema_name, with_search_path
from replay.prices import RecordedPrices
from replay.source import Record
from replay.window import ReplayRange
from schemas import Order, OrderState, Signal
from streams.settings import Settings

DAY = datetime(2025, 6, 2, tzinfo=UTC)
WINDOW = ReplayRange(DAY.replace(hour=9), DAY.replace(hour=17))


def at(hour: int, minute: int = 0, second: int = 0) -> datetime:
    return DAY.replace(hour=hour, minute=minute, second=second)


def signal_record(offset: int, ts: datetime, signal_id: str, symbol: str, side: str, quantity: str,
                  *, partition: int = 0, with_ts: bool = True, signal_ts: datetime | None = None,
                  **extra: str) -> Record:
    """A record stamped ``ts`` whose signal says it was made at ``signal_ts`` (default: ``ts``)."""
    body: dict[str, object] = {"signal_id": signal_id, "strategy": "bt", "symbol": symbol, "side": side,
                               "quantity": quantity, **extra}
    if with_ts:
        body["ts"] = (signal_ts or ts).isoformat()
    return Record(ts, partition, offset, symbol.encode(), json.dumps(body).encode())


PRICES_CSV = """ts,symbol,price
2025-06-02T09:00:00Z,BTCUSDT,61000
2025-06-02T10:30:00Z,BTC-USDT,60500
2025-06-02T11:00:00Z,BTC-USDT,59000
2025-06-02T12:00:00Z,BTC-USDT,62000
2025-06-02T16:00:00Z,BTC-USDT,63000
2025-06-02T18:00:00Z,BTC-USDT,10
"""


def records() -> list[Record]:
    return [
        signal_record(0, at(9, 30), "m-1", "BTC-USDT", "BUY", "0.5"),          # market, priced by the file
        signal_record(1, at(10), "l-1", "BTC-USDT", "BUY", "1", order_type="LIMIT", limit_price="60000",
                      time_in_force="GTC"),                                    # rests until 11:00
        signal_record(2, at(10, 15), "a-1", "AAPL", "BUY", "10", reference_price="200"),  # reference price
        signal_record(3, at(10, 20), "x-1", "MSFT", "BUY", "5"),               # no price at all: REJECTED
        Record(at(10, 25), 0, 4, b"k", b"{not json"),                          # malformed
        signal_record(5, at(10, 26), "u-1", "ZZZZZZZZ", "BUY", "1"),            # unknown symbol: malformed
        signal_record(6, at(13), "m-2", "BTC-USDT", "SELL", "0.5"),
        signal_record(7, at(13, 5), "m-1", "BTC-USDT", "BUY", "0.5"),          # duplicate signal id: one order
        # made 10 minutes before it was recorded: older than ORDER_MAX_AGE (300 s), EXPIRED
        signal_record(8, at(14), "old-1", "AAPL", "SELL", "1", reference_price="201",
                      signal_ts=at(13, 50)),
        signal_record(9, at(15), "n-1", "AAPL", "SELL", "4", with_ts=False, reference_price="210"),
        Record(at(15, 30), 1, 0, None, None),                                  # tombstone: malformed
        # recorded before the tombstone's time, after it in its partition; never marketable
        signal_record(1, at(10, 5), "l-2", "BTC-USDT", "BUY", "1", partition=1, order_type="LIMIT",
                      limit_price="50000", reference_price="61000", time_in_force="GTC"),
    ]


async def _replay(tmp_path: Path, prices_csv: str | None = PRICES_CSV) -> tuple[ReplayOutcome, RecordedPrices | None]:
    clock = ManualClock(WINDOW.start)
    prices = None
    if prices_csv is not None:
        path = tmp_path / "prices.csv"
        path.write_text(prices_csv)
        prices = RecordedPrices.from_csv(path, clock)
    ordered = sorted(records(), key=lambda r: (r.ts, r.partition, r.offset))
    outcome = await replay_records(ordered, settings=Settings(), start=WINDOW.start, end=WINDOW.end,
                                   prices=prices, clock=clock, store=memory_store(clock))
    return outcome, prices


def _order(outcome: ReplayOutcome, signal_id: str) -> Order:
    cid = Signal(signal_id=signal_id, symbol="SPY", side="BUY", quantity=D(1)).client_order_id
    [order] = [o for o in outcome.orders if o.client_order_id == cid]
    return order


async def test_recorded_time_drives_routing_prices_fills_and_ages(tmp_path: Path) -> None:
    outcome, _ = await _replay(tmp_path)
    assert (outcome.read, outcome.valid, len(outcome.malformed)) == (12, 9, 3)
    assert [(m.offset, m.partition) for m in outcome.malformed] == [(4, 0), (5, 0), (0, 1)]
    assert "Invalid JSON" in outcome.malformed[0].reason
    assert "cannot infer asset class" in outcome.malformed[1].reason
    assert "without a value" in outcome.malformed[2].reason

    market = _order(outcome, "m-1")
    assert market.state is OrderState.FILLED and market.broker.value == "paper"
    assert "no live adapter configured for CRYPTO" in market.reason or market.rerouted_from is not None
    fills = {f.client_order_id: f for f in outcome.fills}
    # the file's last price at or before 09:30 (09:00, written BTCUSDT: canonical BTC-USDT) + 0.1% slippage
    assert fills[market.client_order_id].price == D("61061") and fills[market.client_order_id].ts == at(9, 30)

    limit = _order(outcome, "l-1")
    assert limit.state is OrderState.FILLED
    # rested at 61000 and 60500; filled when the recorded price reached 59000 at 11:00 (the poll there)
    assert fills[limit.client_order_id].ts == at(11) and fills[limit.client_order_id].price == D("59059")

    assert fills[_order(outcome, "a-1").client_order_id].price == D("200.2")  # reference price + slippage
    rejected = _order(outcome, "x-1")
    assert rejected.state is OrderState.REJECTED
    assert "no reference_price and no market data for MSFT" in rejected.reason

    expired = _order(outcome, "old-1")
    assert expired.state is OrderState.EXPIRED and "600s old" in expired.reason
    # no ts on the signal: its age counts from its record's time, so it is placed
    late = _order(outcome, "n-1")
    assert late.state is OrderState.FILLED and fills[late.client_order_id].ts == at(15)
    assert _order(outcome, "l-2").state is OrderState.SUBMITTED  # still resting at the range end
    assert len(outcome.orders) == 8  # m-1 twice is one order


async def test_positions_are_the_signed_sum_of_the_fills(tmp_path: Path) -> None:
    outcome, _ = await _replay(tmp_path)
    sums: dict[str, D] = {}
    for fill in outcome.fills:
        sums[fill.symbol] = sums.get(fill.symbol, D(0)) + fill.signed_quantity
    assert {p.symbol: p.quantity for p in outcome.positions} == sums
    assert sums == {"BTC-USDT": D("1"), "AAPL": D("6")}


async def test_the_same_records_replay_to_the_same_results(tmp_path: Path) -> None:
    first, _ = await _replay(tmp_path)
    second, _ = await _replay(tmp_path)
    assert [f.to_bytes() for f in first.fills] == [f.to_bytes() for f in second.fills]
    assert [o.to_bytes() for o in first.orders] == [o.to_bytes() for o in second.orders]
    assert [p.model_dump(exclude={"updated_at"}) for p in first.positions] == \
        [p.model_dump(exclude={"updated_at"}) for p in second.positions]


async def test_without_a_price_file_reference_prices_price_paper_and_nothing_else(tmp_path: Path) -> None:
    outcome, _ = await _replay(tmp_path, prices_csv=None)
    for unpriced in ("m-1", "l-1", "m-2"):
        order = _order(outcome, unpriced)
        assert order.state is OrderState.REJECTED and "no reference_price and no market data" in order.reason
    assert _order(outcome, "l-2").state is OrderState.SUBMITTED  # priced, not marketable, and nothing moves
    assert _order(outcome, "a-1").state is OrderState.FILLED


async def test_the_clock_must_not_start_after_the_range() -> None:
    clock = ManualClock(WINDOW.end)
    with pytest.raises(ValueError, match="never goes back"):
        await replay_records([], settings=Settings(), start=WINDOW.start, end=WINDOW.end, prices=None,
                             clock=clock, store=memory_store(clock))


def test_a_postgres_replay_gets_a_schema_of_its_own() -> None:
    assert schema_name("3FA1-c0de.9b") == "replay_3fa1_c0de_9b"
    dsn = with_search_path("postgresql://postgres@127.0.0.1:5432/test?sslmode=disable&search_path=public",
                           "replay_x")
    assert dsn == "postgresql://postgres@127.0.0.1:5432/test?sslmode=disable&search_path=replay_x"
