"""No offset is committed past a produce that was not delivered (issue 12).

A real ``superintel worker`` (router role) against a real Tansu broker, reached through a proxy
(tests/contract/kafka_proxy.py) that can stop forwarding the worker's Produce requests while its
fetches and offset commits still go through, as when the partitions it produces to lose their
leader. The router consumes a signal, produces its OrderRequest, and that delivery fails.

Before: the router acked the signal at once (the produce was not awaited), aiokafka's flush before
the commit never raised, and the crash the failed delivery scheduled stopped the app, which
committed the acked offset: the signal was gone, with no order and no dead letter. Now the batch
is acked only once everything it produced was delivered: the offset stays where it was, the
router retries, and when the broker takes produces again the OrderRequest arrives and only then
is the signal committed.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest
import pytest_asyncio
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import TopicPartition

from devstack.stack import ManagedProcess, create_topics, free_port, kafka_metadata_error, spawn, tansu_bin
from devstack.topics import read_topic
from devstack.worker_process import WorkerProcess
from schemas import Broker, OrderRequest, Signal
from streams.settings import Settings, WorkerRole
from streams.topics import ALL_TOPICS, ORDER_TOPICS, SIGNALS
from tests.contract.kafka_proxy import KafkaProxy

pytestmark = pytest.mark.pipeline
PARTITIONS = 2


@dataclass
class ProxiedBroker:
    tansu: ManagedProcess
    proxy: KafkaProxy

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.proxy.port}"


@pytest_asyncio.fixture(loop_scope="session")
async def broker(tmp_path: Path) -> AsyncIterator[ProxiedBroker]:
    """A private Tansu that advertises the proxy's address, so every connection goes through it."""
    proxy = KafkaProxy("127.0.0.1", free_port())
    proxy_port = await proxy.start()
    target_port = proxy._target[1]
    url, advertised = f"tcp://127.0.0.1:{target_port}", f"tcp://127.0.0.1:{proxy_port}"
    tansu = spawn("kafka", [str(tansu_bin()), "broker", "--listener-url", url, "--advertised-listener-url",
                            advertised, "--storage-engine", "memory://tansu/"], tmp_path / "tansu.log")
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 20
        while (error := await kafka_metadata_error(f"127.0.0.1:{proxy_port}")) is not None:
            assert tansu.alive() and loop.time() < deadline, f"tansu not ready: {error}\n{tansu.log_tail()}"
            await asyncio.sleep(0.1)
        yield ProxiedBroker(tansu, proxy)
    finally:
        await proxy.stop()
        tansu.stop()


async def committed(bootstrap: str, group: str, tp: TopicPartition) -> int | None:
    """The group's committed offset of ``tp`` (the next offset it would consume), None if none."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group, partitions=[tp])
    finally:
        await admin.close()
    meta = offsets.get(tp)
    return None if meta is None or meta.offset < 0 else meta.offset


def signal(tag: str) -> Signal:
    return Signal.model_validate({"signal_id": f"{tag}-{uuid.uuid4().hex[:8]}", "strategy": "delivery",
                                  "symbol": "BTC-USDT", "side": "BUY", "quantity": Decimal("0.01"),
                                  "reference_price": Decimal("100")})


async def test_a_signal_whose_order_request_was_not_delivered_is_not_committed_past(
    broker: ProxiedBroker, tmp_path: Path, database_url: str
) -> None:
    bootstrap = broker.bootstrap
    await create_topics(bootstrap, list(ALL_TOPICS), PARTITIONS)
    app_id = f"si-delivery-{uuid.uuid4().hex[:6]}"
    env = {"KAFKA_BOOTSTRAP": bootstrap, "SUPERINTEL_APP_ID": app_id, "WORKER_ROLES": '["router"]',
           "TOPIC_PARTITIONS": str(PARTITIONS), "DATABASE_URL": database_url,
           "KAFKA_PRODUCER_REQUEST_TIMEOUT": "2", "SUPERINTEL_EVENT_LOOP": "asyncio"}
    group = Settings(SUPERINTEL_APP_ID=app_id, WORKER_ROLES=[WorkerRole.ROUTER]).consumer_group()
    orders = ORDER_TOPICS[Broker.PAPER]  # no venue enabled: crypto goes to paper, with the reason
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, client_id="test-signals")
    await producer.start()
    worker = WorkerProcess(env, tmp_path / "router.log")
    try:
        worker.start()
        await asyncio.to_thread(worker.wait_ready, 90)

        async def publish(sig: Signal) -> tuple[TopicPartition, int]:
            meta = await (await producer.send(SIGNALS, key=sig.symbol.encode(), value=sig.to_bytes()))
            return TopicPartition(SIGNALS, meta.partition), meta.offset

        async def routed(sig: Signal, timeout: float) -> bool:
            records = await read_topic(bootstrap, orders, 1, timeout,
                                       where=lambda r: OrderRequest.model_validate_json(r.value).signal_id
                                       == sig.signal_id)
            return bool(records)

        # warm-up: the route works and the worker's producer is connected
        warm = signal("warm")
        await publish(warm)
        assert await routed(warm, 60), worker.tail()

        # the broker stops acknowledging the worker's produces; our own still go through
        broker.proxy.drop_produce_from = "faust"
        lost = signal("undelivered")
        tp, offset = await publish(lost)

        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        while "not delivered" not in worker.tail(400):  # the delivery failed (after its 2 s timeout)
            assert loop.time() < deadline, f"no delivery failure seen:\n{worker.tail()}"
            await asyncio.sleep(0.2)
        # While it cannot be delivered, the signal's offset is not committed past, however long
        # we look (commits run every second), and the worker keeps running and retrying.
        watch_until = loop.time() + 4
        while loop.time() < watch_until:
            position = await committed(bootstrap, group, tp)
            assert position is None or position <= offset, (
                f"committed {position} past the undelivered signal at {offset}:\n{worker.tail()}")
            assert worker.alive(), f"the worker stopped:\n{worker.tail()}"
            await asyncio.sleep(0.5)
        assert broker.proxy.dropped > 0

        # the broker takes produces again: the retried OrderRequest arrives, then the commit
        broker.proxy.drop_produce_from = None
        assert await routed(lost, 60), f"the undelivered order request never arrived:\n{worker.tail()}"
        deadline = loop.time() + 30
        while (position := await committed(bootstrap, group, tp)) is None or position <= offset:
            assert loop.time() < deadline, f"offset {offset} never committed (at {position}):\n{worker.tail()}"
            await asyncio.sleep(0.5)
    finally:
        await producer.stop()
        await asyncio.to_thread(worker.stop, 15)
