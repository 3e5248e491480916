"""Publishing to the pipeline from outside a worker (CLI, demo, tests, bench, replay)."""

from __future__ import annotations

from collections.abc import Iterable

from aiokafka import AIOKafkaProducer

from schemas import Signal
from streams.topics import SIGNALS


async def publish_signals(bootstrap: str, signals: Iterable[Signal], topic: str = SIGNALS) -> int:
    """Publish signals keyed by symbol (so one symbol's signals stay ordered); returns the count."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=2, acks="all")
    await producer.start()
    try:
        sent = 0
        for signal in signals:
            await producer.send(topic, key=signal.symbol.encode(), value=signal.to_bytes())
            sent += 1
        await producer.flush()
        return sent
    finally:
        await producer.stop()
