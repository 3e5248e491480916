"""Read a topic from its start until N records arrived: the one loop tests, the bench and dev tools share.

Why one helper: every copy of this loop must get the same details right. It reads without committing
anything (no consumer group unless asked for one), from the earliest offset, with a short fetch wait so
a caller does not idle on the broker's long-poll, and it stops at N records or a deadline, never at the
"end offsets", which can lag behind the last batch on Tansu.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import TypeAlias

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import ConsumerRecord

#: one record as aiokafka delivers it (``key``/``value`` bytes, ``partition``, ``offset``, ``timestamp``)
Record: TypeAlias = ConsumerRecord[bytes, bytes]


async def read_topic(
    bootstrap: str,
    topics: str | Sequence[str],
    n: int,
    timeout: float = 60.0,
    *,
    where: Callable[[Record], bool] | None = None,
    group_id: str | None = None,
    settle: float = 0.0,
    fetch_max_wait_ms: int = 100,
) -> list[Record]:
    """The records of ``topics``, from the earliest offset, until ``n`` arrived or ``timeout`` passed.

    Returns what arrived, in the order received, even when that is fewer than ``n``: the caller's
    assertion then shows what did come. ``where`` keeps only matching records (and only those count
    towards ``n``). ``group_id`` reads as a member of that consumer group, so the group assigns the
    partitions (offsets are never committed). ``settle`` keeps reading that many seconds after the
    ``n``-th record, so duplicates beyond ``n`` show up instead of going unnoticed.
    """
    names = [topics] if isinstance(topics, str) else list(topics)
    group_options = {"session_timeout_ms": 6000, "heartbeat_interval_ms": 1000} if group_id else {}
    consumer = AIOKafkaConsumer(
        *names, bootstrap_servers=bootstrap, group_id=group_id, auto_offset_reset="earliest",
        enable_auto_commit=False, fetch_max_wait_ms=fetch_max_wait_ms, **group_options,
    )
    await consumer.start()
    received: list[Record] = []
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while len(received) < n and loop.time() < deadline:
            await _take(consumer, received, where, min(500, int((deadline - loop.time()) * 1000) + 1))
        if settle > 0 and len(received) >= n:
            settle_until = loop.time() + settle
            while loop.time() < settle_until:
                await _take(consumer, received, where, max(1, int((settle_until - loop.time()) * 1000)))
    finally:
        await consumer.stop()
    return received


async def _take(
    consumer: AIOKafkaConsumer, into: list[Record], where: Callable[[Record], bool] | None, timeout_ms: int
) -> None:
    batches = await consumer.getmany(timeout_ms=timeout_ms)
    for records in batches.values():
        into.extend(r for r in records if where is None or where(r))
