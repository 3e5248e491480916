"""A backlog refills the agent's queue right after it drains (issue 16, item 1).

When an agent's queue is nearly full, Faust drops the partition from the consumer's active set;
the records aiokafka already fetched for it wait in its buffer. Before, a ``getmany`` on the
remaining partitions waited out its whole timeout (a second) before it looked at the re-activated
partition again, and with every partition dropped Faust slept a second: each time the queue drained,
the agent idled. Now the queue draining wakes the fetch (or the drain loop) at once.

A real worker (tests/contract/backlog_worker.py) against the session's Tansu, with a ten-event
queue, so a backlog of thousands pauses and resumes its partitions hundreds of times, and both
waits made an hour long: the backlog is consumed before the deadline only if no refill ever
waits one out. No timing is asserted; the deadline only bounds a failing run.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from devstack.stack import spawn
from tests.fixtures.kafka import TopicFactory

pytestmark = pytest.mark.pipeline
BACKLOG = 3000


async def _preload(bootstrap: str, topic: str, n: int) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    try:
        for i in range(n):
            await producer.send(topic, b'{"n": %d}' % i, key=b"k%d" % (i % 16))
        await producer.flush()
    finally:
        await producer.stop()


@pytest.mark.parametrize("quiet_topic", [True, False], ids=["other-partitions-active", "all-partitions-paused"])
async def test_a_backlog_refills_the_agents_queue_right_after_it_drains(
    kafka_bootstrap: str, new_topics: TopicFactory, topic_prefix: str, tmp_path: Path, quiet_topic: bool
) -> None:
    busy, quiet = await new_topics("backlog", "quiet")
    await _preload(kafka_bootstrap, busy, BACKLOG)
    out = tmp_path / "result.json"
    argv = [sys.executable, "-m", "tests.contract.backlog_worker", "--topic", busy, "--count", str(BACKLOG),
            "--out", str(out), *(["--quiet", quiet] if quiet_topic else [])]
    env = {**os.environ, "KAFKA_BOOTSTRAP": kafka_bootstrap, "SUPERINTEL_APP_ID": f"{topic_prefix}app",
           "TOPIC_PARTITIONS": "4"}
    worker = spawn("backlog-worker", argv, tmp_path / "worker.log", env=env, cwd=Path(__file__).parents[2])
    try:
        deadline = time.monotonic() + 120  # bounds a failing run; a stalled one would take hours
        while not out.exists():
            assert worker.alive(), worker.log_tail()
            assert time.monotonic() < deadline, f"backlog not consumed:\n{worker.log_tail()}"
            await asyncio.sleep(0.2)
        await asyncio.sleep(0.1)
        result = json.loads(out.read_text())
    finally:
        await asyncio.to_thread(worker.stop, 20)
    assert result["events"] == BACKLOG
    assert result["resumes"] >= 10, result  # the queue filled, paused the partitions, and drained, many times
    if quiet_topic:
        # the fetch that waits on the quiet topic's partitions was woken each time, never timed out
        assert result["empty_fetches"] == 0, result
