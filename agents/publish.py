"""Hot-path produce for agents: keyed bytes straight to the app's Kafka producer, delivery awaited
per batch before the batch that produced them is acked.

Faust's ``Topic.send`` wraps every message in a PendingMessage/FutureMessage, runs sensor hooks and
attaches a completion callback; for the agents here, which only ever send a key and an already
serialised value to a fixed topic, that bookkeeping cost more than the send itself (bench/run.py:
the router rate went from ~3.4k to ~5.1k msg/s together with the consumer drain change in
``streams.app``). ``Publisher.send`` hands the message to ``app.producer.send`` instead.

Guarantee (issue 12: no offset is committed past a produce that was not delivered). A consumed
message's offset is committed once its batch is acked, and a batch is acked when the agent's loop
body returns (``agents.batches.greedy_batches``). So whoever sends must have *seen every delivery
succeed* before its body returns: Faust's producer flush before a commit does not do it (aiokafka's
flush waits, but never raises, so a failed delivery is committed past), and crashing the app on a
failed delivery does not either (stopping commits the offsets already acked). Hence:

* ``Publisher.send`` hands one message to the producer's buffer and returns its *delivery*, a
  future resolved once the broker has acknowledged it; ``send_all`` sends a whole batch and waits
  for all of its deliveries together (one wait per batch, not a round trip per message).
* ``delivered`` waits for deliveries and turns any failure into ``DeliveryFailed``: a
  ``ConnectionError``, so every agent retries the batch like any infrastructure failure (the
  batch stays unacked meanwhile; a redelivered produce is harmless, every consumer is idempotent).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterable
from typing import TYPE_CHECKING, cast

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from aiokafka.producer.message_accumulator import BatchBuilder
from faust.exceptions import ProducerSendError
from faust.types import ProducerT, TopicT

if TYPE_CHECKING:
    import faust


class DeliveryFailed(ConnectionError):
    """A produced message was not acknowledged by the broker (or could not even be buffered).

    A ``ConnectionError`` on purpose: the agents' transient-error sets (``streams.bootstrap``'s
    ``infrastructure_errors``, the stores' ``TRANSIENT_ERRORS``) already hold the batch unacked and
    retry it for those, which is exactly what an undelivered produce needs."""


#: what the producer raises, at send time or through a delivery, when a message does not get out
PRODUCE_ERRORS = (KafkaError, ProducerSendError, asyncio.TimeoutError)


async def delivered(deliveries: Iterable[Awaitable[object]], what: str = "messages") -> None:
    """Wait for every delivery; raise ``DeliveryFailed`` (with the first failure as its cause)
    if any of them failed. Every delivery is waited for, failed or not, so none is left dangling."""
    pending = list(deliveries)
    if not pending:
        return
    results = await asyncio.gather(*pending, return_exceptions=True)
    failures = [r for r in results if isinstance(r, BaseException)]
    for failure in failures:
        if isinstance(failure, asyncio.CancelledError):
            raise failure
    if failures:
        first = failures[0]
        raise DeliveryFailed(f"{len(failures)} of {len(pending)} {what} not delivered: {first!r}") from first


class Publisher:
    def __init__(self, app: faust.App, topic: TopicT) -> None:
        self._app = app
        self._producer: ProducerT | None = None
        self.topic = topic.get_topic_name()

    async def _started(self) -> ProducerT:
        producer = self._producer
        if producer is None:
            producer = self._producer = await self._app.maybe_start_producer()
        return producer

    async def send(self, key: bytes | None, value: bytes) -> asyncio.Future[object]:
        """Hand one message to the producer; return its delivery (not awaited here). Raises
        ``DeliveryFailed`` if the producer refuses it outright (too large, metadata timeout)."""
        producer = await self._started()
        try:
            delivery = await producer.send(self.topic, key, value, None, None, None)
        except PRODUCE_ERRORS as exc:
            raise DeliveryFailed(f"producing to {self.topic} failed: {exc!r}") from exc
        return cast("asyncio.Future[object]", delivery)

    async def send_many(self, messages: Iterable[tuple[bytes | None, bytes]]) -> list[asyncio.Future[object]]:
        """Hand every message to the producer, one record batch per partition; return the
        deliveries (not awaited here; one per record batch, resolved once the broker has
        acknowledged all of it).

        Why (issue 16, item 2): ``send`` costs the producer a metadata wait, a partitioner call
        and an accumulator append per message; here the partition is computed once per key per
        call and each partition's messages go into one ``BatchBuilder`` handed over whole
        (``send_batch``): the router's produce cost per message fell to a fraction (bench/run.py).
        The partition of each key is the one ``send`` would choose: the producer's own
        ``_partition`` with its configured partitioner (Faust's: murmur2 of the key over all the
        topic's partitions), so a symbol keeps landing on the partition it always did, in order.
        A builder that is full (``append`` returns None) is handed over and a new one started; a
        fresh builder takes any single record, as ``send`` would (an oversized one fails at the
        broker, which is a failed delivery). Falls back to ``send`` per message when the app's
        producer is not aiokafka's (another transport)."""
        producer = await self._started()
        kafka = getattr(producer, "_producer", None)
        if not isinstance(kafka, AIOKafkaProducer):
            fallback: list[asyncio.Future[object]] = []
            try:
                for key, value in messages:
                    fallback.append(await self.send(key, value))
            except BaseException:
                abandon(fallback)
                raise
            return fallback
        pending = list(messages)
        if not pending:
            return []
        topic = self.topic
        deliveries: list[asyncio.Future[object]] = []
        builders: dict[int, BatchBuilder] = {}
        partitions: dict[bytes, int] = {}
        partition_of = kafka._partition
        try:
            await kafka.partitions_for(topic)  # the topic's metadata, as send waits for it
            for key, value in pending:
                partition = partitions.get(key) if key is not None else None
                if partition is None:
                    partition = partition_of(topic, None, key, value, key, value)
                    if key is not None:
                        partitions[key] = partition
                builder = builders.get(partition)
                if builder is None:
                    builder = builders[partition] = kafka.create_batch()
                if builder.append(key=key, value=value, timestamp=None) is None:
                    deliveries.append(await self._hand_over(kafka, builder, partition))
                    builder = builders[partition] = kafka.create_batch()
                    builder.append(key=key, value=value, timestamp=None)  # a fresh builder takes any record
            for partition, builder in builders.items():
                deliveries.append(await self._hand_over(kafka, builder, partition))
        except PRODUCE_ERRORS as exc:
            abandon(deliveries)
            raise DeliveryFailed(f"producing to {topic} failed: {exc!r}") from exc
        except BaseException:
            abandon(deliveries)
            raise
        return deliveries

    async def _hand_over(self, kafka: AIOKafkaProducer, builder: BatchBuilder,
                         partition: int) -> asyncio.Future[object]:
        return cast("asyncio.Future[object]", await kafka.send_batch(builder, self.topic, partition=partition))

    async def send_all(self, messages: Iterable[tuple[bytes | None, bytes]]) -> None:
        """Send every message (``send_many``), then wait until all of them were delivered
        (``DeliveryFailed`` otherwise): when this returns, the batch's output is on the broker."""
        await delivered(await self.send_many(messages), f"messages to {self.topic}")


def abandon(deliveries: Iterable[asyncio.Future[object]]) -> None:
    """Nobody will wait for these deliveries (the batch failed before it got there and will be
    sent again): retrieve their outcome when it comes, so a failure is not reported as unhandled."""
    for delivery in deliveries:
        delivery.add_done_callback(_retrieve)


def _retrieve(delivery: asyncio.Future[object]) -> None:
    if not delivery.cancelled():
        delivery.exception()
