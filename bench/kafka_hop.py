"""One raw aiokafka produce -> consume hop, by consumer ``fetch_max_wait_ms``.

Why: on Tansu the hop latency follows the consumer's fetch long-poll rather than the broker, which
is why ``KAFKA_FETCH_MAX_WAIT_MS`` is a setting. This measures that effect on the
broker at hand: ``KAFKA_BOOTSTRAP`` if set, else a private Tansu started for the run.

    python -m bench.kafka_hop [--count 500] [--rate 200] [--waits 500,10,5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from devstack.stack import create_topics, start_tansu

PARTITIONS = 4

#: builds message ``i`` (key, value) at the moment it is sent, so it can carry its send time
Payload = Callable[[int], tuple[bytes | None, bytes]]


def percentile(values: Sequence[float], pct: int) -> float:
    """The ``pct``-th percentile (inclusive method), e.g. 50 or 99."""
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[pct - 1]


def _stamp(i: int) -> tuple[bytes | None, bytes]:
    return f"k{i % 16}".encode(), json.dumps({"i": i, "sent": time.perf_counter()}).encode()


@dataclass(frozen=True)
class HopResult:
    fetch_max_wait_ms: int
    latencies_ms: list[float]

    @property
    def p50(self) -> float:
        return percentile(self.latencies_ms, 50)

    @property
    def p99(self) -> float:
        return percentile(self.latencies_ms, 99)


async def _joined_consumer(bootstrap: str, topic: str, fetch_max_wait_ms: int) -> AIOKafkaConsumer:
    """A group consumer that already owns its partitions, so the join is not measured as latency."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=f"{topic}-group", auto_offset_reset="earliest",
        fetch_max_wait_ms=fetch_max_wait_ms, session_timeout_ms=6000, heartbeat_interval_ms=1000,
    )
    await consumer.start()
    while not consumer.assignment():
        await consumer.getmany(timeout_ms=100)
    return consumer


async def _produce_paced(bootstrap: str, topic: str, count: int, rate: float,
                         payload: Payload = _stamp) -> float:
    """Send ``count`` messages at ``rate``/s, each built (and stamped) by ``payload`` right before
    it is sent; returns the achieved send rate (messages/s over the sending span)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
    await producer.start()
    try:
        start = last = time.perf_counter()
        for i in range(count):
            await asyncio.sleep(max(0.0, start + i / rate - time.perf_counter()))
            key, value = payload(i)
            await producer.send(topic, value, key=key)
            last = time.perf_counter()
        await producer.flush()
    finally:
        await producer.stop()
    return (count - 1) / (last - start) if count > 1 and last > start else float("nan")


async def _collect(consumer: AIOKafkaConsumer, count: int) -> list[float]:
    latencies: list[float] = []
    while len(latencies) < count:
        record = await consumer.getone()
        latencies.append((time.perf_counter() - json.loads(record.value)["sent"]) * 1000)
    return latencies


async def measure_hop(bootstrap: str, fetch_max_wait_ms: int, count: int, rate: float) -> HopResult:
    topic = f"bench-hop-{fetch_max_wait_ms}-{uuid.uuid4().hex[:8]}"
    await create_topics(bootstrap, [topic], PARTITIONS)
    consumer = await _joined_consumer(bootstrap, topic, fetch_max_wait_ms)
    try:
        collecting = asyncio.create_task(_collect(consumer, count))
        await _produce_paced(bootstrap, topic, count, rate)
        latencies = await asyncio.wait_for(collecting, timeout=60)
    finally:
        await consumer.stop()
    return HopResult(fetch_max_wait_ms, latencies)


def _table(results: list[HopResult], broker: str, count: int, rate: float) -> str:
    lines = [
        f"raw aiokafka hop on {broker}: {count} msgs at ~{rate:.0f}/s, {PARTITIONS} partitions",
        f"{'fetch_max_wait_ms':>18} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}",
    ]
    for r in results:
        lines.append(f"{r.fetch_max_wait_ms:>18} {r.p50:>8.1f} {r.p99:>8.1f} {max(r.latencies_ms):>8.1f}")
    return "\n".join(lines)


async def run(count: int, rate: float, waits: list[int]) -> str:
    """Measure each wait on one broker; a private Tansu unless KAFKA_BOOTSTRAP is set."""
    external = os.environ.get("KAFKA_BOOTSTRAP", "").strip()
    broker = None if external else await start_tansu(Path(tempfile.mkdtemp(prefix="bench-hop-")))
    bootstrap = external or (broker.url if broker else "")
    try:
        results = [await measure_hop(bootstrap, wait, count, rate) for wait in waits]
    finally:
        if broker is not None:
            broker.stop()
    return _table(results, external or "Tansu (embedded)", count, rate)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--count", type=int, default=500)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--waits", default="500,10,5", help="comma-separated fetch_max_wait_ms values")
    args = parser.parse_args()
    print(asyncio.run(run(args.count, args.rate, [int(w) for w in args.waits.split(",")])))


if __name__ == "__main__":
    main()
