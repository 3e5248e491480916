"""Reading a time range of a topic: every partition from the broker's hint to the range's end.

Why it reads this way (DESIGN.md section 8): record timestamps are not strictly ordered within a
partition (a producer's clock, retries, several producers), and the embedded broker answers
``offsets_for_times`` with offset 0 and lets ``end_offsets`` lag the last batch. So:

* each partition starts at the ``offsets_for_times`` answer for the range start (on Kafka the
  first offset whose timestamp is at or after it: nothing before it can be in the range; on Tansu
  offset 0, the whole partition), and a partition Kafka says has no such record is finished;
* every record is judged by its own timestamp: before the range (skipped), in ``[from, to)``
  (kept), after it (skipped); a partition finishes at the first record more than ``slack`` past
  the range end, since later records of a well-behaved producer are later still;
* or at its end: the consumer's position has reached the end offset *and* nothing new arrived for
  a ``quiet`` period. Never from end offsets alone: Tansu's may still lag what it will deliver.

The consumer joins no group (``group_id=None``, partitions assigned by hand): a replay commits
nothing anywhere, so no live consumer group's offsets can move because of it.

Records of different partitions interleave by fetch timing, so the kept records are returned
sorted by ``(timestamp, partition, offset)``: the one order that is the same on every run.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from replay.window import ReplayRange, from_millis

log = logging.getLogger(__name__)

#: how each partition's reading ended (reported in the summary's meta)
PAST_RANGE = "past the range end"
AT_END = "end of partition"
NO_HINT = "no record at or after the range start"


class SourceError(RuntimeError):
    """The topic cannot be read (missing, broker unreachable)."""


@dataclass(frozen=True, slots=True)
class Record:
    """One record of the range: its Kafka timestamp, where it is, and its raw bytes."""

    ts: datetime
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


@dataclass(slots=True)
class RangeRead:
    """What reading a range found."""

    records: list[Record]
    #: records read before the range start (from the hint on) and after its end (within the
    #: slack, plus the one that ended each partition)
    before: int = 0
    after: int = 0
    #: partition -> how its reading ended
    partitions: dict[int, str] = field(default_factory=dict)


#: called with (records kept so far, the latest recorded time reached in the range)
ReadProgress = Callable[[int, datetime | None], None]


@dataclass(slots=True)
class _Partition:
    #: loop time of the last fetch that brought this partition records (or of its start)
    last_activity: float


async def read_range(
    bootstrap: str,
    topic: str,
    window: ReplayRange,
    *,
    slack: float = 60.0,
    quiet: float = 1.0,
    poll_ms: int = 100,
    progress: ReadProgress | None = None,
    consumer_options: dict[str, Any] | None = None,
) -> RangeRead:
    """The records of ``topic`` whose timestamp is in ``window``, sorted (see the module doc)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,  # no group: nothing committed, no live group disturbed
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        client_id="superintel-replay",
        **(consumer_options or {}),
    )
    try:
        await consumer.start()
    except Exception as exc:
        raise SourceError(f"cannot reach the Kafka broker at {bootstrap}: {exc!r}") from exc
    try:
        return await _read(consumer, topic, window, slack, quiet, poll_ms, progress)
    finally:
        await consumer.stop()


async def _read(
    consumer: AIOKafkaConsumer,
    topic: str,
    window: ReplayRange,
    slack: float,
    quiet: float,
    poll_ms: int,
    progress: ReadProgress | None,
) -> RangeRead:
    await consumer.topics()  # fresh metadata
    numbers = consumer.partitions_for_topic(topic)
    if not numbers:
        raise SourceError(f"topic {topic!r} does not exist")
    tps = [TopicPartition(topic, n) for n in sorted(numbers)]
    consumer.assign(tps)
    result = RangeRead(records=[])
    hints = await consumer.offsets_for_times({tp: window.start_ms for tp in tps})
    loop = asyncio.get_running_loop()
    active: dict[TopicPartition, _Partition] = {}
    for tp in tps:
        hint = hints.get(tp)
        if hint is None:
            result.partitions[tp.partition] = NO_HINT
            consumer.pause(tp)
            continue
        consumer.seek(tp, hint.offset)
        active[tp] = _Partition(loop.time())
    slack_ms = round(slack * 1000)
    reached: datetime | None = None

    def finish(tp: TopicPartition, how: str) -> None:
        del active[tp]
        consumer.pause(tp)
        result.partitions[tp.partition] = how
        log.debug("partition %d of %s: %s", tp.partition, topic, how)

    while active:
        batch = await consumer.getmany(*active, timeout_ms=poll_ms, max_records=5000)
        now = loop.time()
        for tp, messages in batch.items():
            if tp not in active:
                continue
            active[tp].last_activity = now
            for message in messages:
                where = window.position(message.timestamp, slack_ms)
                if where < 0:
                    result.before += 1
                elif where == 0:
                    ts = from_millis(message.timestamp)
                    result.records.append(Record(ts, tp.partition, message.offset, message.key, message.value))
                    reached = ts if reached is None else max(reached, ts)
                else:
                    result.after += 1
                    if where == 2:
                        finish(tp, PAST_RANGE)
                        break
        for tp, state in list(active.items()):
            if now - state.last_activity < quiet:
                continue
            end = (await consumer.end_offsets([tp]))[tp]
            position = await consumer.position(tp)
            if position >= end:
                finish(tp, AT_END)
            else:  # the broker has more for this partition: keep fetching
                state.last_activity = now
        if progress is not None:
            progress(len(result.records), reached)
    result.records.sort(key=lambda r: (r.ts, r.partition, r.offset))
    return result
