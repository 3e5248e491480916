"""``Publisher.send_many`` hands a batch over as one record batch per partition (issue 16, item 2),
against a real Tansu through a real Faust app producer.

What must not change with it: every key lands on the partition ``producer.send`` puts it on (a
symbol's messages stay on one partition, in order), a batch larger than one ``BatchBuilder`` is
split and still arrives whole and in order, and a batch whose delivery fails raises
``DeliveryFailed`` (what holds the router's batch unacked, tests/contract/test_produce_delivery.py).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import faust
import pytest
import pytest_asyncio
from aiokafka import AIOKafkaProducer

from agents.publish import DeliveryFailed, Publisher
from devstack.stack import create_topics
from devstack.topics import read_topic
from tests.contract.test_produce_delivery import ProxiedBroker, broker  # noqa: F401  (the proxied broker fixture)
from tests.fixtures.kafka import TopicFactory

PARTITIONS = 4


async def started_app(bootstrap: str, **conf: object) -> faust.App:
    app = faust.App(f"t-batch-publish-{uuid.uuid4().hex[:6]}", broker=f"kafka://{bootstrap}", store="memory://",
                    producer_linger=0.0, web_enabled=False, autodiscover=False, **conf)  # type: ignore[arg-type]
    await app.maybe_start_producer()
    return app


@pytest_asyncio.fixture(loop_scope="session")
async def app(kafka_bootstrap: str, tmp_path: Path) -> AsyncIterator[faust.App]:
    app = await started_app(kafka_bootstrap, datadir=str(tmp_path / "data"))
    try:
        yield app
    finally:
        await app.producer.stop()


async def test_keys_land_on_the_partitions_producer_send_puts_them_on_in_order(
    app: faust.App, kafka_bootstrap: str, new_topics: TopicFactory
) -> None:
    batched, sent = await new_topics("batched", "sent", partitions=PARTITIONS)
    keys = [f"SYM{i}-USDT".encode() for i in range(40)]
    messages = [(keys[i % len(keys)], f"{i}".encode()) for i in range(400)]

    await Publisher(app, app.topic(batched)).send_all(messages)

    # the reference: aiokafka's own send (default partitioner) to a topic with as many partitions
    reference = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await reference.start()
    try:
        deliveries = [await reference.send(sent, key=key, value=b"x") for key in keys]
        expected = {key: (await d).partition for key, d in zip(keys, deliveries, strict=True)}
    finally:
        await reference.stop()
    assert len(set(expected.values())) == PARTITIONS  # the keys do spread over every partition

    records = await read_topic(kafka_bootstrap, batched, len(messages), 30)
    assert len(records) == len(messages)
    for record in records:
        assert record.key is not None
        assert record.partition == expected[record.key], record
    for key in keys:  # each key's messages in the order they were sent
        got = [r.value for r in sorted(records, key=lambda r: r.offset) if r.key == key]
        assert got == [v for k, v in messages if k == key]


async def test_a_batch_larger_than_one_record_batch_is_split_and_arrives_whole_in_order(
    app: faust.App, kafka_bootstrap: str, new_topics: TopicFactory
) -> None:
    (topic,) = await new_topics("big", partitions=PARTITIONS)
    batch_size = app.conf.producer_max_batch_size
    value_size = 1000
    n = 3 * batch_size // value_size + 5  # three record batches' worth and more, all on one key
    messages = [(b"ONE-KEY", f"{i:06d}".encode().ljust(value_size, b".")) for i in range(n)]

    publisher = Publisher(app, app.topic(topic))
    deliveries = await publisher.send_many(messages)
    assert 4 <= len(deliveries) < n  # split: one delivery per record batch handed over, not per message
    await asyncio.gather(*deliveries)

    records = await read_topic(kafka_bootstrap, topic, n, 30)
    assert [r.value for r in sorted(records, key=lambda r: r.offset)] == [v for _, v in messages]
    assert len({r.partition for r in records}) == 1


async def test_a_batch_that_is_not_delivered_raises_delivery_failed(broker: ProxiedBroker,  # noqa: F811
                                                                    tmp_path: Path) -> None:
    (topic,) = [f"t-undelivered-{uuid.uuid4().hex[:8]}"]
    await create_topics(broker.bootstrap, [topic], PARTITIONS)
    app = await started_app(broker.bootstrap, producer_request_timeout=2.0, datadir=str(tmp_path / "data"))
    client_id = app.producer.client_id
    publisher = Publisher(app, app.topic(topic))
    try:
        await publisher.send_all([(b"WARM", b"up")])  # connected, metadata known
        broker.proxy.drop_produce_from = client_id
        with pytest.raises(DeliveryFailed, match="not delivered"):
            await publisher.send_all([(f"K{i}".encode(), b"v") for i in range(50)])
        assert broker.proxy.dropped > 0
        broker.proxy.drop_produce_from = None
        await publisher.send_all([(b"AFTER", b"ok")])  # delivered again once the broker takes produces
    finally:
        broker.proxy.drop_produce_from = None
        await app.producer.stop()
