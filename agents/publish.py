"""Hot-path produce for agents: keyed bytes straight to the app's Kafka producer.

Faust's ``Topic.send`` wraps every message in a PendingMessage/FutureMessage, runs sensor hooks and
attaches a completion callback; for the agents here, which only ever send a key and an already
serialised value to a fixed topic, that bookkeeping cost more than the send itself (bench/run.py:
the router rate went from ~3.4k to ~5.1k msg/s together with the consumer drain change in
``streams.app``). ``Publisher.send`` hands the message to ``app.producer.send`` instead.

Guarantees: the message goes into the same aiokafka producer, which Faust flushes before it
commits any consumed offset (at-least-once). The send is not awaited for delivery one by one, so
a delivery that still fails after the producer's own retries crashes the worker (Faust's
``Topic.send`` would only log it): the offsets of the messages that produced it are then not
committed, and a restarted worker processes them again, which the idempotent steps make safe.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, cast

from faust.types import ProducerT, TopicT

if TYPE_CHECKING:
    import faust

log = logging.getLogger(__name__)


class Publisher:
    def __init__(self, app: faust.App, topic: TopicT) -> None:
        self._app = app
        self._producer: ProducerT | None = None
        self._crash: asyncio.Future[None] | None = None
        self.topic = topic.get_topic_name()

    async def send(self, key: bytes | None, value: bytes) -> None:
        producer = self._producer
        if producer is None:
            producer = self._producer = await self._app.maybe_start_producer()
        delivery = await producer.send(self.topic, key, value, None, None, None)
        cast("asyncio.Future[object]", delivery).add_done_callback(self._delivered)

    def _delivered(self, delivery: asyncio.Future[object]) -> None:
        if delivery.cancelled():
            return
        exc = delivery.exception()
        if exc is not None:
            log.critical("producing to %s failed: %r; stopping the worker so nothing is committed past it",
                         self.topic, exc)
            self._crash = asyncio.ensure_future(self._app.crash(exc))
