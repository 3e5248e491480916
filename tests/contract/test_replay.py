"""Topic replay for backtests (issue 17) against the real broker, PostgreSQL and Redis.

A past day is recorded on a topic with explicit record timestamps: signals spread over the day,
records before and after the range, a few malformed ones, and partitions whose timestamps are out
of order. The range is replayed twice (identical results), on the in-memory store and on
PostgreSQL (a schema of the run's own), and through the ``superintel replay`` command; the live
tables, Redis and the live topics never see any of it.
"""

from __future__ import annotations

import asyncio
import io
import json
import struct
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D
from html.parser import HTMLParser
from pathlib import Path

import asyncpg
import redis.asyncio as redis
from aiokafka import AIOKafkaProducer

from adapters.timescale import TimescaleStore
from devstack.stack import create_topics
from devstack.topics import read_topic
from replay.engine import schema_name
from replay.runner import ReplayOptions, ReplayRun, run_replay
from replay.source import AT_END, PAST_RANGE
from replay.window import ReplayRange
from schemas import Signal
from streams.settings import Settings
from streams.topics import ALL_TOPICS

SUPERINTEL = str(Path(sys.executable).with_name("superintel"))
DAY = datetime(2025, 11, 12, tzinfo=UTC)
WINDOW = ReplayRange(DAY.replace(hour=9), DAY.replace(hour=17))
PRICES = """ts,symbol,price
2025-11-12T08:00:00Z,BTC-USDT,61000
2025-11-12T10:00:00Z,BTC-USDT,60500
2025-11-12T11:30:00Z,BTC-USDT,59500
2025-11-12T13:00:00Z,BTC-USDT,62500
2025-11-12T16:30:00Z,BTC-USDT,63000
2025-11-12T08:00:00Z,ETHUSDT,3000
2025-11-12T12:00:00Z,ETH-USDT,3100
2025-11-12T17:00:00Z,BTC-USDT,1
"""


@dataclass(frozen=True)
class Recorded:
    partition: int
    ts: datetime
    value: bytes
    signal_id: str | None = None

    @property
    def client_order_id(self) -> str | None:
        return Signal(signal_id=self.signal_id, symbol="SPY", side="BUY", quantity=D(1)).client_order_id \
            if self.signal_id else None


def _signal(run: str, partition: int, ts: datetime, name: str, symbol: str, side: str, quantity: str,
            **extra: str) -> Recorded:
    signal_id = f"{run}-{name}"
    body = {"signal_id": signal_id, "strategy": "bt", "symbol": symbol, "side": side, "quantity": quantity,
            "ts": ts.isoformat(), **extra}
    return Recorded(partition, ts, json.dumps(body).encode(), signal_id)


def recorded_day(run: str) -> tuple[list[Recorded], set[str], set[str]]:
    """(records in produce order, in-range signal ids, signal ids that must not trade)."""
    h = lambda hour, minute=0, second=0, ms=0: DAY.replace(hour=hour, minute=minute, second=second,  # noqa: E731
                                                           microsecond=ms * 1000)
    records: list[Recorded] = []
    # partition 0: in range, then past the end by more than the slack: reading stops there
    for i in range(12):
        symbol, extra = [("BTC-USDT", {}), ("ETH-USDT", {}), ("AAPL", {"reference_price": "230"}),
                         ("EURUSD", {"reference_price": "1.08"})][i % 4]
        records.append(_signal(run, 0, h(9 + (i * 35) // 60, (i * 35) % 60), f"p0-{i}", symbol,
                               "BUY" if i % 3 else "SELL", "2" if symbol in ("AAPL",) else "0.1", **extra))
    records.append(_signal(run, 0, h(17, 5), "p0-late", "AAPL", "BUY", "1", reference_price="231"))
    records.append(_signal(run, 0, h(16), "p0-straggler", "AAPL", "BUY", "1", reference_price="231"))
    # partition 1: out of order around the end; the first record past the slack ends it
    records.append(_signal(run, 1, h(8, 59, 59, 999), "p1-before", "BTC-USDT", "BUY", "1"))
    records.append(_signal(run, 1, h(9), "p1-first", "BTC-USDT", "BUY", "0.2"))  # the range start: in
    records.append(_signal(run, 1, h(10, 15), "p1-limit", "BTC-USDT", "BUY", "0.3", order_type="LIMIT",
                           limit_price="60000", time_in_force="GTC"))  # rests; fills at 11:30 (59500)
    records.append(_signal(run, 1, h(10, 20), "p1-deep", "BTC-USDT", "BUY", "0.3", order_type="LIMIT",
                           limit_price="50000", time_in_force="GTC"))  # never reached: still resting
    records.append(_signal(run, 1, h(17), "p1-at-end", "BTC-USDT", "SELL", "0.1"))  # the range end: out
    records.append(_signal(run, 1, h(17, 0, 30), "p1-in-slack", "BTC-USDT", "SELL", "0.1"))
    records.append(_signal(run, 1, h(16, 59, 59, 999), "p1-last", "ETH-USDT", "SELL", "0.05"))  # in
    records.append(_signal(run, 1, h(17, 1, 30), "p1-past", "ETH-USDT", "SELL", "1"))
    # partition 2: the day before, malformed records, a signal nothing can price
    records.append(_signal(run, 2, DAY - timedelta(hours=3), "p2-yesterday", "AAPL", "BUY", "1",
                           reference_price="229"))
    records.append(Recorded(2, h(8), b"{broken before the range"))
    records.append(Recorded(2, h(11), b"{not json"))
    records.append(Recorded(2, h(11, 1), json.dumps({"signal_id": f"{run}-bad-qty", "symbol": "AAPL",
                                                     "side": "BUY", "quantity": "-5"}).encode()))
    records.append(Recorded(2, h(11, 2), json.dumps({"signal_id": f"{run}-no-side", "symbol": "AAPL",
                                                     "quantity": "5"}).encode()))
    records.append(_signal(run, 2, h(12), "p2-unpriced", "MSFT", "BUY", "3"))
    records.append(_signal(run, 2, h(14), "p2-eth", "ETH-USDT", "BUY", "0.4"))
    records.append(_signal(run, 2, h(18), "p2-evening", "ETH-USDT", "BUY", "9"))
    # partition 3: in range only, so it ends at its end (end offset reached, then quiet)
    for i in range(6):
        records.append(_signal(run, 3, h(11 + i, 10), f"p3-{i}", "AAPL", "SELL" if i % 2 else "BUY", "1",
                               reference_price=str(230 + i)))
    in_range = {r.signal_id for r in records
                if r.signal_id and WINDOW.start <= r.ts < WINDOW.end and not r.signal_id.endswith("straggler")}
    never = {r.signal_id for r in records if r.signal_id} - in_range
    return records, in_range, never


async def produce(bootstrap: str, topic: str, records: list[Recorded]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for r in records:
            await producer.send_and_wait(topic, r.value, key=b"k", partition=r.partition,
                                         timestamp_ms=int(r.ts.timestamp() * 1000))
    finally:
        await producer.stop()


class Tables(HTMLParser):
    """The report's tables: caption (the h2 before each) -> (header cells, body rows)."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, tuple[list[str], list[list[str]]]] = {}
        self.images: list[str] = []
        self._heading = ""
        self._in: str | None = None
        self._cell: list[str] | None = None
        self._row: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "h2":
            self._in, self._heading = "h2", ""
        elif tag == "table":
            self.tables[self._heading] = ([], [])
        elif tag == "tr":
            self._row = []
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "img":
            self.images.append(dict(attrs).get("src") or "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "h2":
            self._in = None
        elif tag in ("td", "th") and self._cell is not None:
            self._row.append("".join(self._cell))
            self._cell = None
        elif tag == "tr":
            headers, rows = self.tables[self._heading]
            if headers:
                rows.append(self._row)
            else:
                headers.extend(self._row)

    def handle_data(self, data: str) -> None:
        if self._in == "h2":
            self._heading += data
        elif self._cell is not None:
            self._cell.append(data)


def outside_meta(path: Path) -> dict[str, object]:
    summary = json.loads(path.read_text())
    summary.pop("meta")
    return summary


def assert_report(done: ReplayRun, in_range: set[str], never: set[str]) -> dict[str, object]:
    summary = json.loads(done.files.summary.read_text())
    in_ids = {Signal(signal_id=s, symbol="SPY", side="BUY", quantity=D(1)).client_order_id for s in in_range}
    never_ids = {Signal(signal_id=s, symbol="SPY", side="BUY", quantity=D(1)).client_order_id for s in never}
    assert summary["signals"] == {"read": len(in_range) + 3, "valid": len(in_range), "invalid": 3}
    assert [m["reason"].split(":")[0] for m in summary["malformed"]] == ["invalid Signal"] * 3
    assert {o.client_order_id for o in done.outcome.orders} == in_ids  # every in-range signal, nothing else
    lines = done.files.fills.read_text().splitlines()
    assert lines[0] == "ts,client_order_id,symbol,side,quantity,price,commission"
    rows = [dict(zip(lines[0].split(","), line.split(","), strict=True)) for line in lines[1:]]
    assert rows == sorted(rows, key=lambda r: (r["ts"], r["client_order_id"]))
    assert {r["client_order_id"] for r in rows} <= in_ids and not {r["client_order_id"] for r in rows} & never_ids
    assert all(WINDOW.start <= datetime.fromisoformat(r["ts"]) < WINDOW.end for r in rows)
    assert summary["fills"] == len(rows)
    # positions are the signed sum of the replayed fills
    signed: dict[str, D] = {}
    for r in rows:
        signed[r["symbol"]] = signed.get(r["symbol"], D(0)) + D(r["quantity"]) * (1 if r["side"] == "BUY" else -1)
    assert {s: D(p["quantity"]) for s, p in summary["positions"].items()} == signed
    assert summary["orders"]["REJECTED"] == 1 and summary["orders"]["SUBMITTED"] == 1
    [reason] = summary["order_reasons"]["REJECTED"]
    assert "no reference_price and no market data for MSFT" in reason
    limit = next(r for r in rows if r["client_order_id"] == Signal(
        signal_id=next(s for s in in_range if s.endswith("p1-limit")), symbol="SPY", side="BUY",
        quantity=D(1)).client_order_id)
    assert (limit["ts"], limit["price"]) == ("2025-11-12T11:30:00Z", "59559.5")  # when the path crossed it
    assert D(summary["pnl"]["fees"]) == 0 and summary["pnl"]["realized"] and summary["pnl"]["unrealized"]
    assert summary["meta"]["records"]["partitions"] == {"0": PAST_RANGE, "1": PAST_RANGE, "2": PAST_RANGE,
                                                        "3": AT_END}
    # the chart is a PNG, and the HTML opens with its tables and the chart
    png = done.files.chart
    assert png is not None
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    assert width > 100 and height > 100
    parser = Tables()
    parser.feed(done.files.html.read_text())
    positions = parser.tables["Positions"]
    assert positions[0] == ["symbol", "quantity", "avg_price", "realized_pnl", "mark"]
    assert {row[0]: D(row[1]) for row in positions[1]} == signed
    assert len(parser.tables["Fills"][1]) == len(rows)
    assert {"Overview", "Orders by state", "Malformed records", "Run"} <= parser.tables.keys()
    assert parser.images and parser.images[0].startswith("data:image/png;base64,")
    return summary


async def test_a_recorded_day_replays_twice_to_identical_results(
        kafka_bootstrap: str, new_topics, topic_prefix: str, tmp_path: Path) -> None:
    [topic] = await new_topics("signals")
    await create_topics(kafka_bootstrap, ALL_TOPICS, 4)  # the live topics, watched below
    records, in_range, never = recorded_day(topic_prefix)
    await produce(kafka_bootstrap, topic, records)
    prices = tmp_path / "prices.csv"
    prices.write_text(PRICES)
    settings = Settings()

    async def replay(report: str) -> ReplayRun:
        return await run_replay(ReplayOptions(WINDOW, topic=topic, prices=prices, report=tmp_path / report),
                                settings, bootstrap=kafka_bootstrap, progress_stream=io.StringIO())

    first = await replay("first")
    second = await replay("second")
    assert first.run_id == second.run_id
    summary = assert_report(first, in_range, never)
    assert_report(second, in_range, never)
    assert outside_meta(first.files.summary) == outside_meta(second.files.summary)
    assert first.files.fills.read_bytes() == second.files.fills.read_bytes()
    assert summary["meta"]["store"] == "memory"
    # nothing reached a live topic
    ids = [s.encode() for s in in_range]
    leaked = await read_topic(kafka_bootstrap, [t for t in ALL_TOPICS if t != "signals"], 1, timeout=2.0,
                              where=lambda r: any(i in (r.value or b"") for i in ids))
    assert leaked == []


async def test_a_postgres_replay_writes_its_own_schema_and_leaves_live_data_alone(
        kafka_bootstrap: str, new_topics, topic_prefix: str, tmp_path: Path, database_url: str,
        store: TimescaleStore, redis_client: redis.Redis) -> None:
    [topic] = await new_topics("signals")
    records, in_range, never = recorded_day(topic_prefix)
    await produce(kafka_bootstrap, topic, records)
    prices = tmp_path / "prices.csv"
    prices.write_text(PRICES)
    live = {t: await store.pool.fetchval(f"SELECT count(*) FROM public.{t}") for t in ("orders", "fills", "positions")}
    await redis_client.set("live-marker", "1")
    pubsub = redis_client.pubsub()
    await pubsub.psubscribe("fills*")
    settings = Settings(DATABASE_URL=database_url)  # type: ignore[call-arg]

    async def replay(report: str) -> ReplayRun:
        return await run_replay(ReplayOptions(WINDOW, topic=topic, prices=prices, report=tmp_path / report,
                                              store="postgres"),
                                settings, bootstrap=kafka_bootstrap, progress_stream=io.StringIO())

    try:
        first = await replay("pg-first")
        second = await replay("pg-second")  # a rerun replaces its own schema
        summary = assert_report(first, in_range, never)
        assert outside_meta(first.files.summary) == outside_meta(second.files.summary)
        assert first.files.fills.read_bytes() == second.files.fills.read_bytes()
        schema = schema_name(first.run_id)
        assert summary["meta"]["store"] == f"postgres schema {schema}"
        conn = await asyncpg.connect(database_url)
        try:
            replayed = await conn.fetchval(f'SELECT count(*) FROM "{schema}".orders')
            replayed_fills = await conn.fetchval(f'SELECT count(*) FROM "{schema}".fills')
            after = {t: await conn.fetchval(f"SELECT count(*) FROM public.{t}") for t in live}
        finally:
            await conn.close()
        assert replayed == len(in_range) and replayed_fills == summary["fills"]
        assert after == live == {"orders": 0, "fills": 0, "positions": 0}
        # Redis: no fill published, no watermark written, the database untouched
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.5)
        ours = {Signal(signal_id=s, symbol="SPY", side="BUY", quantity=D(1)).client_order_id for s in in_range}
        while message is not None:
            assert not any(cid.encode() in message["data"] for cid in ours)
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.2)
        assert await redis_client.keys("*") == [b"live-marker"]
        # the in-memory and the PostgreSQL replays agree
        memory = await run_replay(ReplayOptions(WINDOW, topic=topic, prices=prices, report=tmp_path / "mem"),
                                  settings, bootstrap=kafka_bootstrap, progress_stream=io.StringIO())
        assert outside_meta(memory.files.summary) == outside_meta(first.files.summary)
        assert memory.files.fills.read_bytes() == first.files.fills.read_bytes()
    finally:
        await pubsub.aclose()
        conn = await asyncpg.connect(database_url)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema_name(first.run_id)}" CASCADE')
        finally:
            await conn.close()


async def test_the_command_replays_a_range_and_says_where_the_report_is(
        kafka_bootstrap: str, new_topics, topic_prefix: str, tmp_path: Path) -> None:
    [topic] = await new_topics("signals")
    records, in_range, _ = recorded_day(topic_prefix)
    await produce(kafka_bootstrap, topic, records)
    args = [SUPERINTEL, "replay", "--from", "2025-11-12T10:00:00+01:00", "--to", "2025-11-12T17:00:00Z",
            "--topic", topic, "--bootstrap", kafka_bootstrap, "--speed", "max"]
    result = await asyncio.to_thread(subprocess.run, args, capture_output=True, text=True, timeout=120,
                                     cwd=tmp_path, check=False)
    assert result.returncode == 0, result.stderr
    [line, where] = result.stdout.strip().splitlines()
    assert f"{len(in_range) + 3} records in range" in line and "3 malformed" in line
    report = tmp_path / where.removeprefix("report: ")
    assert report.parent.parent == tmp_path / ".superintel" / "replay" and report.name == "report.html"
    summary = json.loads((report.parent / "summary.json").read_text())
    assert summary["meta"]["range"] == {"from": "2025-11-12T09:00:00Z", "to": "2025-11-12T17:00:00Z"}
    assert summary["meta"]["run_id"] == report.parent.name
    # without --prices only reference prices price paper: the crypto signals are rejected with the reason
    assert summary["order_reasons"]["REJECTED"]
    assert "replay replaying" in result.stderr or "replay read" in result.stderr  # the progress line

    bad = await asyncio.to_thread(subprocess.run, [*args[:3], "2025-11-12T10:00:00", *args[4:]],
                                  capture_output=True, text=True, timeout=60, cwd=tmp_path, check=False)
    assert bad.returncode == 2 and "no timezone" in bad.stderr
    missing = await asyncio.to_thread(subprocess.run, [*args[:7], f"{topic_prefix}nothing", *args[8:]],
                                      capture_output=True, text=True, timeout=60, cwd=tmp_path, check=False)
    assert missing.returncode == 2 and "does not exist" in missing.stderr


async def test_a_paced_replay_gives_the_results_of_a_full_speed_one(
        kafka_bootstrap: str, new_topics, topic_prefix: str, tmp_path: Path) -> None:
    """``--speed realtime`` keeps the recorded gaps on the wall clock; the pipeline's clock is
    recorded time either way, so the results are the same."""
    [topic] = await new_topics("signals")
    start = DAY.replace(hour=10)
    records = [_signal(topic_prefix, i % 2, start + timedelta(milliseconds=150 * i), f"paced-{i}", "AAPL",
                       "BUY" if i % 2 else "SELL", "1", reference_price=str(230 + i)) for i in range(4)]
    await produce(kafka_bootstrap, topic, records)
    window = ReplayRange(start, start + timedelta(seconds=1))
    runs = [await run_replay(ReplayOptions(window, topic=topic, speed=speed, report=tmp_path / name),
                             Settings(), bootstrap=kafka_bootstrap, progress_stream=io.StringIO())
            for name, speed in (("max", None), ("realtime", 1.0))]
    assert [json.loads(r.files.summary.read_text())["meta"]["speed"] for r in runs] == ["max", "1x"]
    assert outside_meta(runs[0].files.summary) == outside_meta(runs[1].files.summary)
    assert runs[0].files.fills.read_bytes() == runs[1].files.fills.read_bytes()
    assert json.loads(runs[1].files.summary.read_text())["fills"] == 4
