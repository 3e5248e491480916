"""A whole pipeline for one test: a private Tansu, the session's database, Redis, and real
``superintel worker`` processes; plus the probes tests assert with (SQL, Redis, the DLQ topic)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import redis.asyncio as redis
from aiokafka import AIOKafkaProducer

from devstack.stack import EmbeddedStack, create_topics
from devstack.topics import read_topic
from devstack.worker_process import WorkerProcess
from schemas import DeadLetter, Fill, Signal
from streams.topics import ALL_TOPICS, DLQ, SIGNALS

PARTITIONS = 4


@dataclass
class FillSubscriber:
    """Collects the fills of ``orders`` PUBLISHed on the ``fills`` channel while it runs.

    Pub/sub is server-wide (db numbers don't apply), so anything else publishing on this Redis
    is filtered out by client order id."""

    url: str
    orders: set[str]
    fills: list[Fill] = field(default_factory=list)
    _task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        client = redis.from_url(self.url)
        pubsub = client.pubsub()
        await pubsub.subscribe("fills")
        ready = asyncio.Event()

        async def pump() -> None:
            try:
                ready.set()
                async for message in pubsub.listen():
                    if message["type"] == "message":
                        fill = Fill.model_validate_json(message["data"])
                        if fill.client_order_id in self.orders:
                            self.fills.append(fill)
            finally:
                await pubsub.aclose()
                await client.aclose()

        self._task = asyncio.create_task(pump())
        await ready.wait()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


class Pipeline:
    def __init__(self, stack: EmbeddedStack, database_url: str, redis_url: str, run_dir: Path,
                 extra_env: Mapping[str, str]) -> None:
        self.stack = stack
        self.database_url = database_url
        self.redis_url = redis_url
        self.run_dir = run_dir
        self.app_id = f"si-test-{uuid.uuid4().hex[:8]}"
        self.env = {
            **stack.env(),
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "SUPERINTEL_APP_ID": self.app_id,
            "TOPIC_PARTITIONS": str(PARTITIONS),
            # a killed worker's claims lapse in seconds, not the production 30 s, so takeover
            # tests stay short (the bound is lease + sweep interval); placement stops with a
            # third of the lease left (3 s), and the lease still outlives Binance's
            # ambiguous-submit safe delay (recvWindow 5 s + 1.5 s margin)
            "ORDER_LEASE_SECONDS": "9",
            "ORDER_SWEEP_INTERVAL": "1",
            **extra_env,
        }
        self.workers: list[WorkerProcess] = []
        self._producer: AIOKafkaProducer | None = None

    @property
    def bootstrap(self) -> str:
        return self.stack.kafka_bootstrap

    def start_worker(self, **env: str) -> WorkerProcess:
        worker = WorkerProcess({**self.env, **env}, self.run_dir / f"worker-{len(self.workers)}.log")
        worker.start()
        self.workers.append(worker)
        return worker

    async def ready_worker(self, **env: str) -> WorkerProcess:
        worker = self.start_worker(**env)
        await asyncio.to_thread(worker.wait_ready, 90)
        return worker

    async def producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            self._producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, linger_ms=5)
            await self._producer.start()
        return self._producer

    async def publish(self, signals: Iterable[Signal]) -> None:
        producer = await self.producer()
        for signal in signals:
            await producer.send(SIGNALS, key=signal.symbol.encode(), value=signal.to_bytes())
        await producer.flush()

    async def publish_raw(self, messages: Iterable[tuple[bytes | None, bytes]]) -> None:
        producer = await self.producer()
        for key, value in messages:
            await producer.send(SIGNALS, key=key, value=value)
        await producer.flush()

    async def sql(self, query: str, *args: Any) -> list[asyncpg.Record]:
        conn = await asyncpg.connect(self.database_url)
        try:
            return list(await conn.fetch(query, *args))
        finally:
            await conn.close()

    async def dead_letters(self, expected: int, timeout: float = 60.0) -> list[DeadLetter]:
        """Read ``signals.dlq`` from the start until ``expected`` letters arrived (or timeout)."""
        records = await read_topic(self.bootstrap, DLQ, expected, timeout, where=lambda r: bool(r.value))
        return [DeadLetter.model_validate_json(r.value) for r in records]

    async def close(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
        for worker in self.workers:
            worker.stop()


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float, what: str,
                     detail: Callable[[], Awaitable[str]] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.25)
    extra = await detail() if detail else ""
    raise AssertionError(f"timed out after {timeout}s waiting for {what}. {extra}")


@contextlib.asynccontextmanager
async def pipeline(database_url: str, redis_url: str, run_dir: Path,
                   **extra_env: str) -> AsyncIterator[Pipeline]:
    """A private Tansu (so topics are fresh) against the session database, emptied first."""
    stack = EmbeddedStack(run_dir, environ={"DATABASE_URL": database_url, "REDIS_URL": redis_url})
    await stack.astart()
    pipe = Pipeline(stack, database_url, redis_url, run_dir, extra_env)
    try:
        await create_topics(stack.kafka_bootstrap, list(ALL_TOPICS), PARTITIONS)
        conn = await asyncpg.connect(database_url)
        try:
            tables = await conn.fetch(
                "SELECT tablename FROM pg_tables WHERE schemaname='public' AND tablename <> 'schema_migrations'")
            if tables:
                await conn.execute("TRUNCATE " + ", ".join(r["tablename"] for r in tables))
        finally:
            await conn.close()
        client = redis.from_url(redis_url)
        await client.flushdb()  # dedupe keys of an earlier run would hide this run's fills
        await client.aclose()
        yield pipe
    finally:
        await pipe.close()
        await stack.astop()


def signed(side: str, qty: Decimal) -> Decimal:
    return qty if side == "BUY" else -qty


def jdump(obj: Any) -> bytes:
    return json.dumps(obj).encode()
