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

from aiokafka.errors import KafkaError
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

    async def send(self, key: bytes | None, value: bytes) -> asyncio.Future[object]:
        """Hand one message to the producer; return its delivery (not awaited here). Raises
        ``DeliveryFailed`` if the producer refuses it outright (too large, metadata timeout)."""
        producer = self._producer
        if producer is None:
            producer = self._producer = await self._app.maybe_start_producer()
        try:
            delivery = await producer.send(self.topic, key, value, None, None, None)
        except PRODUCE_ERRORS as exc:
            raise DeliveryFailed(f"producing to {self.topic} failed: {exc!r}") from exc
        return cast("asyncio.Future[object]", delivery)

    async def send_all(self, messages: Iterable[tuple[bytes | None, bytes]]) -> None:
        """Send every message, then wait until all of them were delivered (``DeliveryFailed``
        otherwise): when this returns, the batch's output is on the broker."""
        deliveries: list[asyncio.Future[object]] = []
        try:
            for key, value in messages:
                deliveries.append(await self.send(key, value))
        except BaseException:
            abandon(deliveries)
            raise
        await delivered(deliveries, f"messages to {self.topic}")


def abandon(deliveries: Iterable[asyncio.Future[object]]) -> None:
    """Nobody will wait for these deliveries (the batch failed before it got there and will be
    sent again): retrieve their outcome when it comes, so a failure is not reported as unhandled."""
    for delivery in deliveries:
        delivery.add_done_callback(_retrieve)


def _retrieve(delivery: asyncio.Future[object]) -> None:
    if not delivery.cancelled():
        delivery.exception()
