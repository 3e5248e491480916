"""Producers (issue 17) against the real broker: ``SignalProducer``, ``superintel signal send --file``,
a librdkafka producer (confluent-kafka) beside it, and ``superintel worker --roles/--brokers``.

The first tests run on the session's Tansu; the last one runs a whole pipeline (private Tansu, the
session database, Redis, real ``superintel worker`` processes started with the command-line flags) and
shows that a batch from ``SignalProducer`` and one from confluent-kafka both trade on paper.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from confluent_kafka import Producer as RdKafkaProducer

from devstack.stack import create_topics, spawn
from devstack.topics import read_topic
from devstack.worker_process import WorkerProcess, _superintel
from schemas import Signal
from streams.cli import worker_selection
from streams.producer import InvalidSignal, SignalProducer, publish_signals
from streams.topics import SIGNALS
from tests.fixtures.kafka import TopicFactory
from tests.fixtures.storage import REDIS_URL
from tests.pipeline.harness import Pipeline, eventually, pipeline

SUPERINTEL = str(Path(sys.executable).with_name("superintel"))


def signal_data(signal_id: str, symbol: str = "BTC-USDT", **fields: Any) -> dict[str, Any]:
    return {"signal_id": signal_id, "symbol": symbol, "side": "BUY", "quantity": "0.5", **fields}


async def record_at(bootstrap: str, topic: str, partition: int, offset: int) -> Any:
    """The one record at (topic, partition, offset)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=50)
    await consumer.start()
    try:
        tp = TopicPartition(topic, partition)
        consumer.assign([tp])
        consumer.seek(tp, offset)
        return await asyncio.wait_for(consumer.getone(tp), 20)
    finally:
        await consumer.stop()


# --- SignalProducer ---------------------------------------------------------------------------------


async def test_send_returns_the_partition_and_offset_of_a_record_keyed_by_symbol(
        kafka_bootstrap: str, new_topics: TopicFactory) -> None:
    [topic] = await new_topics("signals")
    run = uuid.uuid4().hex[:8]
    async with SignalProducer(kafka_bootstrap, topic=topic) as producer:
        # three spellings of one instrument, a model, a mapping and JSON text
        first = await producer.send(Signal.model_validate(signal_data(f"{run}-1", "BTC-USDT")))
        second = await producer.send(signal_data(f"{run}-2", " btc/usdt ", order_type="LIMIT", limit_price="64950.5"))
        third = await producer.send(json.dumps(signal_data(f"{run}-3", "BTCUSDT", ts="2026-11-25T14:30:00+01:00")))
    assert first.topic == topic
    assert first.partition == second.partition == third.partition  # one instrument, one partition, in order
    assert first.offset < second.offset < third.offset
    record = await record_at(kafka_bootstrap, topic, second.partition, second.offset)
    assert record.key == b"BTC-USDT"
    sent = Signal.model_validate_json(record.value)
    assert (sent.signal_id, sent.symbol, sent.limit_price) == (f"{run}-2", "BTC/USDT", Decimal("64950.5"))
    later = await record_at(kafka_bootstrap, topic, third.partition, third.offset)
    assert Signal.model_validate_json(later.value).ts == datetime(2026, 11, 25, 13, 30, tzinfo=UTC)  # same instant


@pytest.mark.parametrize(("data", "reason"), [
    (signal_data("bad-qty", quantity="-5"), "quantity: Input should be greater than 0"),
    (signal_data("bad-limit", order_type="LIMIT"), "LIMIT order needs limit_price"),
    (signal_data("bad-stop", order_type="STOP"), "STOP order needs stop_price"),
    (signal_data("bad-ts", ts="2026-11-25T14:30:00"), "ts: Value error, timestamp without a timezone"),
    (signal_data("bad-epoch", ts=1764081000), "epoch numbers are not accepted"),
    (signal_data("bad-extra", venue="binance"), "venue: Extra inputs are not permitted"),
    ('{"signal_id": "bad-json", ', "Invalid JSON"),
])
async def test_an_invalid_signal_is_refused_with_the_routers_reason_and_never_sent(
        kafka_bootstrap: str, new_topics: TopicFactory, data: Any, reason: str) -> None:
    [topic] = await new_topics("signals", partitions=1)
    async with SignalProducer(kafka_bootstrap, topic=topic) as producer:
        with pytest.raises(InvalidSignal) as info:
            await producer.send(data)
        assert reason in info.value.reason
        assert info.value.reason.startswith("invalid Signal: ")  # the dead letter's wording
        marker = await producer.send(signal_data("marker"))
    assert marker.offset == 0  # nothing went out before it


async def test_send_batch_publishes_the_valid_reports_the_invalid_and_counts_progress(
        kafka_bootstrap: str, new_topics: TopicFactory) -> None:
    [topic] = await new_topics("signals")
    run = uuid.uuid4().hex[:8]
    batch: list[Any] = [signal_data(f"{run}-{i}", symbol, reference_price="100")
                        for i, symbol in enumerate(["SPY", "EURUSD", "ETH-USDT", "ESZ6", "AAPL"] * 4)]
    batch.insert(3, signal_data(f"{run}-neg", quantity="0"))
    batch.insert(7, "not json")
    batch.insert(11, signal_data(f"{run}-nolimit", order_type="LIMIT"))
    seen: list[tuple[int, int]] = []
    async with SignalProducer(kafka_bootstrap, topic=topic) as producer:
        result = await producer.send_batch(batch, progress=lambda done, total: seen.append((done, total)))
    assert not result.ok
    assert [(r.index, r.signal_id) for r in result.rejected] == [(3, f"{run}-neg"), (7, None), (11, f"{run}-nolimit")]
    assert "quantity: Input should be greater than 0" in result.rejected[0].reason
    assert "Invalid JSON" in result.rejected[1].reason
    assert "LIMIT order needs limit_price" in result.rejected[2].reason
    assert result.failed == []
    assert len(result.published) == 20
    assert [done for done, _ in seen] == list(range(1, 24)) and {total for _, total in seen} == {23}

    records = await read_topic(kafka_bootstrap, topic, 20, 30)
    by_place = {(r.partition, r.offset): r for r in records}
    assert len(by_place) == 20
    for item in result.published:  # each reported partition/offset holds that very signal
        record = by_place[(item.partition, item.offset)]
        assert Signal.model_validate_json(record.value).signal_id == item.signal.signal_id
        assert record.key == item.signal.symbol.encode()


async def test_publish_signals_keeps_its_all_or_nothing_contract(kafka_bootstrap: str,
                                                                 new_topics: TopicFactory) -> None:
    [topic] = await new_topics("signals", partitions=1)
    good = [Signal.model_validate(signal_data(f"p-{i}", "SPY")) for i in range(3)]
    assert await publish_signals(kafka_bootstrap, good, topic=topic) == 3
    with pytest.raises(InvalidSignal):
        await publish_signals(kafka_bootstrap, [*good, signal_data("p-bad", quantity="abc")], topic=topic)
    records = await read_topic(kafka_bootstrap, topic, 3, 20, settle=1.0)
    assert len(records) == 3  # the refused batch sent nothing


# --- superintel signal send --file -------------------------------------------------------------------


def run_cli(*args: str, env: dict[str, str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SUPERINTEL, *args], capture_output=True, text=True, timeout=90, input=stdin,
                          env={**os.environ, **env}, check=False)


async def test_signal_send_file_publishes_the_valid_lines_and_reports_each_rejection(
        kafka_bootstrap: str, tmp_path: Path) -> None:
    await create_topics(kafka_bootstrap, [SIGNALS], 4)
    run = f"file-{uuid.uuid4().hex[:8]}"
    lines = [json.dumps(signal_data(f"{run}-{i}", symbol)) for i, symbol in
             enumerate(["SPY", "BTC-USDT", "EURUSD", "ETH-USDT", "AAPL", "GBTC"])]
    lines.insert(2, json.dumps(signal_data(f"{run}-bad-qty", quantity="1,000")))
    lines.insert(4, "")  # blank lines are skipped, not rejected
    lines.insert(5, json.dumps(signal_data(f"{run}-no-stop", order_type="STOP")))
    lines.insert(7, json.dumps(signal_data(f"{run}-naive", ts="2026-11-25T14:30:00")))
    lines.insert(8, "{oops")
    source = tmp_path / "signals.jsonl"
    source.write_text("\n".join(lines) + "\n")

    result = await asyncio.to_thread(run_cli, "signal", "send", "--file", str(source),
                                     env={"KAFKA_BOOTSTRAP": kafka_bootstrap})
    assert result.returncode == 1, result.stderr  # some lines were refused
    summary = json.loads(result.stdout)
    assert (summary["read"], summary["published"], summary["rejected"], summary["failed"]) == (10, 6, 4, 0)
    assert sum(summary["partitions"].values()) == 6
    rejections = {r["line"]: r for r in summary["rejections"]}
    assert sorted(rejections) == [3, 6, 8, 9]
    assert rejections[3]["signal_id"] == f"{run}-bad-qty" and "quantity" in rejections[3]["reason"]
    assert "STOP order needs stop_price" in rejections[6]["reason"]
    assert "timestamp without a timezone" in rejections[8]["reason"]
    assert rejections[9]["signal_id"] is None and "Invalid JSON" in rejections[9]["reason"]
    assert "publishing signals.jsonl [" in result.stderr and "10/10 100%" in result.stderr

    found = await read_topic(kafka_bootstrap, SIGNALS, 6, 30, where=lambda r: run.encode() in (r.value or b""),
                             settle=1.0)
    assert sorted(Signal.model_validate_json(r.value).signal_id for r in found) == [f"{run}-{i}" for i in range(6)]


async def test_signal_send_file_from_stdin_and_dry_run(kafka_bootstrap: str) -> None:
    run = f"dry-{uuid.uuid4().hex[:8]}"
    text = json.dumps(signal_data(f"{run}-1")) + "\n" + json.dumps(signal_data(f"{run}-2", quantity="NaN")) + "\n"
    result = await asyncio.to_thread(run_cli, "signal", "send", "--file", "-", "--dry-run", stdin=text,
                                     env={"KAFKA_BOOTSTRAP": "127.0.0.1:1"})  # no broker needed
    assert result.returncode == 1, result.stderr
    summary = json.loads(result.stdout)
    assert (summary["read"], summary["valid"], summary["rejected"]) == (2, 1, 1)
    assert summary["rejections"][0]["line"] == 2 and "finite number" in summary["rejections"][0]["reason"]


async def test_signal_send_one_reports_where_it_went_and_refuses_an_invalid_one_cleanly(
        kafka_bootstrap: str) -> None:
    await create_topics(kafka_bootstrap, [SIGNALS], 4)
    signal_id = f"one-{uuid.uuid4().hex[:8]}"
    good = await asyncio.to_thread(run_cli, "signal", "send", "btcusdt", "buy", "0.00000001", "--ref", "65000",
                                   "--id", signal_id, env={"KAFKA_BOOTSTRAP": kafka_bootstrap})
    assert good.returncode == 0, good.stderr
    printed = json.loads(good.stdout)
    record = await record_at(kafka_bootstrap, SIGNALS, printed["partition"], printed["offset"])
    assert record.key == b"BTC-USDT"
    assert Signal.model_validate_json(record.value).signal_id == signal_id
    bad = run_cli("signal", "send", "SPY", "buy", "10", "--type", "limit", env={"KAFKA_BOOTSTRAP": "127.0.0.1:1"})
    assert bad.returncode == 1
    assert "LIMIT order needs limit_price" in bad.stderr and "Traceback" not in bad.stderr
    both = run_cli("signal", "send", "SPY", "buy", "10", "--file", "x.jsonl", env={})
    assert both.returncode == 2 and "--file" in both.stderr


# --- superintel worker --roles / --brokers -----------------------------------------------------------


def test_worker_flags_become_the_settings_variables() -> None:
    environ: dict[str, str] = {"WORKER_ROLES": '["executors"]'}
    rest = worker_selection(["-l", "info", "--roles", "router,fills", "--brokers=binance", "--without-web"], environ)
    assert rest == ["-l", "info", "--without-web"]
    assert json.loads(environ["WORKER_ROLES"]) == ["router", "fills"]  # the flag wins over the variable
    assert json.loads(environ["WORKER_BROKERS"]) == ["binance"]
    worker_selection(["--brokers", ""], environ)
    assert environ["WORKER_BROKERS"] == "[]"  # every broker


@pytest.mark.parametrize(("args", "message"), [
    (["--roles", "router,trader"], "--roles: unknown 'trader'; choose from router, executors, fills"),
    (["--brokers", "nyse"], "--brokers: unknown 'nyse'; choose from ibkr, mt4, binance, paper"),
    (["--roles"], "--roles needs a value"),
    (["--roles", ""], "--roles needs at least one"),
])
def test_worker_flags_refuse_what_settings_would_not_read(args: list[str], message: str) -> None:
    result = run_cli("worker", *args, env={})
    assert result.returncode == 2
    assert message in result.stderr


# --- both producers trade: a whole pipeline ----------------------------------------------------------


class FlagWorker(WorkerProcess):
    """``superintel worker`` started with ``--roles`` / ``--brokers`` instead of the variables."""

    def __init__(self, env: dict[str, str], log_path: Path, flags: list[str]) -> None:
        super().__init__({k: v for k, v in env.items() if k not in ("WORKER_ROLES", "WORKER_BROKERS")}, log_path)
        self._flags = flags

    def start(self) -> FlagWorker:
        argv = [*_superintel(), "worker", *self._flags, "-l", "info", "--without-web"]
        self._process = spawn("worker", argv, self.log_path, stop_signal=signal.SIGTERM, env=self._env)
        return self


def rdkafka_publish(bootstrap: str, signals: list[dict[str, Any]]) -> list[tuple[int, int]]:
    """Publish as a non-Python producer would: librdkafka, acks=all, key = symbol, value = JSON."""
    producer = RdKafkaProducer({
        "bootstrap.servers": bootstrap,
        "acks": "all",
        "enable.idempotence": False,  # the embedded broker refuses idempotent producers
        "linger.ms": 5,
        "compression.type": "none",
        "client.id": "rdkafka-test",
    })
    delivered: list[tuple[int, int]] = []
    errors: list[str] = []

    def on_delivery(err: Any, msg: Any) -> None:
        if err is not None:
            errors.append(str(err))
        else:
            delivered.append((msg.partition(), msg.offset()))

    for data in signals:
        producer.produce(SIGNALS, key=data["symbol"].encode(), value=json.dumps(data).encode(), on_delivery=on_delivery)
        producer.poll(0)
    remaining = producer.flush(30)
    assert remaining == 0 and errors == [], (remaining, errors)
    return delivered


@pytest.mark.pipeline
async def test_a_signal_producer_batch_and_a_librdkafka_batch_both_trade(database_url: str, tmp_path: Path) -> None:
    run = uuid.uuid4().hex[:6]
    symbols = ["SPY", "BTC-USDT", "EURUSD", "ETH-USDT", "AAPL", "GBTC"]
    python_batch = [signal_data(f"py-{run}-{i}", sym, reference_price="100", strategy="py")
                    for i, sym in enumerate(symbols * 2)]
    rd_batch = [signal_data(f"rd-{run}-{i}", sym, reference_price="100", strategy="rd",
                            ts=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
                for i, sym in enumerate(symbols * 2)]
    rd_batch.append(signal_data(f"rd-{run}-bad", "SPY", quantity="-5"))  # dead-lettered, with the reason
    async with pipeline(database_url, REDIS_URL, tmp_path, FORCE_PAPER_TRADING="true") as pipe:
        # the production layout, by flags: a core worker and a paper executor
        core = FlagWorker(pipe.env, tmp_path / "core.log", ["--roles", "router,fills"])
        paper = FlagWorker(pipe.env, tmp_path / "paper.log", ["--roles=executors", "--brokers", "paper"])
        pipe.workers.extend([core.start(), paper.start()])
        for worker in (core, paper):
            await asyncio.to_thread(worker.wait_ready, 90)

        async with SignalProducer(pipe.bootstrap) as producer:
            result = await producer.send_batch(python_batch)
        assert result.ok and len(result.published) == len(python_batch)
        delivered = await asyncio.to_thread(rdkafka_publish, pipe.bootstrap, rd_batch)
        assert len(delivered) == len(rd_batch)

        await wait_filled(pipe, [*python_batch, *rd_batch[:-1]])
        letters = await pipe.dead_letters(1)
        assert [json.loads(letter.raw)["signal_id"] for letter in letters] == [f"rd-{run}-bad"]
        assert "quantity: Input should be greater than 0" in letters[0].reason

        orders = await pipe.sql("SELECT client_order_id, broker, strategy, state FROM orders")
        assert {o["broker"] for o in orders} == {"paper"}
        by_strategy = {s: sorted(o["state"] for o in orders if o["strategy"] == s) for s in ("py", "rd")}
        assert by_strategy == {"py": ["FILLED"] * 12, "rd": ["FILLED"] * 12}
        fills = await pipe.sql("SELECT strategy, count(*) AS n, sum(quantity) AS q FROM fills GROUP BY 1 ORDER BY 1")
        assert [(f["strategy"], f["n"], f["q"]) for f in fills] == [("py", 12, Decimal("6.0")),
                                                                   ("rd", 12, Decimal("6.0"))]


async def wait_filled(pipe: Pipeline, signals: list[dict[str, Any]], timeout: float = 120.0) -> None:
    ids = [Signal.model_validate(s).client_order_id for s in signals]

    async def done() -> bool:
        rows = await pipe.sql("SELECT count(*) AS n FROM orders WHERE client_order_id = ANY($1::text[]) "
                              "AND state = 'FILLED'", ids)
        return int(rows[0]["n"]) == len(ids)

    async def detail() -> str:
        rows = await pipe.sql("SELECT broker, state, reason, count(*) AS n FROM orders GROUP BY 1, 2, 3")
        return f"orders: {[dict(r) for r in rows]}\n" + "\n".join(w.tail(30) for w in pipe.workers)

    await eventually(done, timeout, f"{len(ids)} FILLED orders", detail)
