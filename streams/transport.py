"""A Faust Kafka transport whose consumer long-poll is a setting, not a constant.

Faust's aiokafka driver hard-codes ``fetch_max_wait_ms=1500``. On a small, latency-sensitive
flow a fetch then waits for data that is not coming, and each agent hop costs hundreds of
milliseconds (DESIGN.md section 8). This subclass injects the configured wait into the
consumer before it starts; everything else is Faust's own code path.
"""

from __future__ import annotations

from typing import Any, ClassVar

import aiokafka
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import ConsumerT

#: set by ``streams.app.build_app`` from Settings.fetch_max_wait_ms before the worker starts
FETCH_MAX_WAIT_MS = 10


class TunedConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> aiokafka.AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        # aiokafka copies this attribute into its Fetcher in start(), which runs after us.
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS
        return consumer


class TunedConsumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> TunedConsumerThread:
        return TunedConsumerThread(self, loop=self.loop, beacon=self.beacon)


class TunedTransport(faust_aiokafka.Transport):
    Consumer: ClassVar[type[ConsumerT]] = TunedConsumer
