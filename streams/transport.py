"""A Faust Kafka transport tuned for latency: two departures from Faust 0.15.3, each measured.

1. Faust's aiokafka driver hard-codes ``fetch_max_wait_ms=1500``. On a small, latency-sensitive
   flow a fetch then waits for data that is not coming, and each agent hop costs hundreds of
   milliseconds (measured by bench/kafka_hop.py). The consumer thread injects the configured wait instead.
2. Faust hands each fetched message to the agents through a task race (see ``TunedConsumer``).

Everything else is Faust's own code path (faust-streaming is pinned, since this overrides internals).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any, ClassVar, cast

import aiokafka
from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP, ConsumerT
from mode import Service

#: set by ``streams.app.build_app`` from Settings.fetch_max_wait_ms before the worker starts
FETCH_MAX_WAIT_MS = 10
#: set by ``streams.app.build_app`` from Settings.shutdown_grace: the whole stop's budget
SHUTDOWN_GRACE = 8.0

log = logging.getLogger(__name__)


class TunedConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> aiokafka.AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        # aiokafka copies this attribute into its Fetcher in start(), which runs after us.
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS
        return consumer


class TunedConsumer(faust_aiokafka.Consumer):
    """Faust's consumer, delivering each fetched message to the agents without a task race.

    Faust's ``Consumer._drain_messages`` hands every message over with
    ``wait_first(callback(message), suspend_flow.wait())``: four tasks and an ``asyncio.wait`` per
    message, so each delivery takes at least two event-loop iterations. With seven agents on one
    loop an iteration is often milliseconds long, which capped delivery at a few hundred messages
    per second for the whole worker: at 500 signals/s (about 1,500 consumed messages/s) the
    backlog grew in the consumer while every agent queue stayed empty (bench/run.py, p50 ~100 ms
    -> ~50 ms with this change). The callback (the conductor putting the event on the agents'
    queues) normally completes without suspending, so it is awaited directly; only while a
    rebalance has suspended the flow is Faust's abortable race kept. A delivery blocked on a full
    agent queue is still ended by the rebalance: the fetcher is stopped (cancelled) and the queues
    cleared, and the unacked message is fetched again from the committed offset.

    The rest is Faust 0.15.3's loop as is (faust-streaming is pinned).
    """

    async def _drain_messages(self, fetcher: Any) -> None:  # pragma: no cover - needs a broker
        callback = self.callback
        getmany = self.getmany
        consumer_should_stop = cast(Service, self)._stopped.is_set
        fetcher_should_stop = cast(Service, fetcher)._stopped.is_set
        flow_suspended = self.suspend_flow.is_set
        get_read_offset = self._read_offset.__getitem__
        set_read_offset = self._read_offset.__setitem__
        set_flag = self.diag.set_flag
        unset_flag = self.diag.unset_flag
        commit_every = self._commit_every
        acks_enabled_for = self.app.topics.acks_enabled_for
        yield_every = 100
        num_since_yield = 0
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                set_flag(CONSUMER_FETCHING)
                ait = getmany(timeout=1.0)
                await self.sleep(0)  # getmany may return at once, again and again: let others run
                if not self.should_stop:
                    async for tp, message in ait:
                        num_since_yield += 1
                        if num_since_yield > yield_every:
                            await asyncio.sleep(0)
                            num_since_yield = 0
                        offset = message.offset
                        r_offset = get_read_offset(tp)
                        if r_offset is None or offset >= r_offset:
                            gap = offset - (r_offset or 0)
                            if gap > 1 and r_offset and acks_enabled_for(message.topic):
                                await self._add_gap(tp, r_offset + 1, offset)
                            if commit_every is not None and self._n_acked >= commit_every:
                                self._n_acked = 0
                                await self.commit()
                            if flow_suspended():
                                await self.wait_first(callback(message), self.suspend_flow.wait())
                            else:
                                await callback(message)
                            set_read_offset(tp, offset)
                    unset_flag(CONSUMER_FETCHING)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                self.log.info("Broker stopped consumer, shutting down...")
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                self.log.info("Consumer shutting down for user cancel.")
                return
            raise
        except Exception as exc:
            self.log.exception("Drain messages raised: %r", exc)
            raise
        finally:
            unset_flag(CONSUMER_FETCHING)

    def _new_consumer_thread(self) -> TunedConsumerThread:
        thread = TunedConsumerThread(self, loop=self.loop, beacon=self.beacon)
        # mode waits up to 60 s for the consumer thread's own shutdown (aiokafka leaving the
        # group, closing its fetcher), which never completes while the broker is unreachable
        thread.shutdown_timeout = SHUTDOWN_GRACE / 4
        return thread

    # -- a stop never hangs on the broker or on an agent that cannot finish ---------------------
    #
    # Faust's stop first waits for every message handed to an agent to be acked (``wait_empty``),
    # committing meanwhile, then commits once more. An agent holding a batch while the database
    # is down retries it until it passes (agents.batches), so that wait never ends; and with the
    # broker gone, aiokafka's commit looks for the group coordinator forever. While the app is
    # stopping, both are bounded: what is not finished by then is not acked, so not committed,
    # and is processed again after the restart (every step is idempotent).

    async def wait_empty(self) -> None:
        if not self.app.should_stop:
            await super().wait_empty()  # a rebalance: Faust's own wait
            return
        try:
            await asyncio.wait_for(super().wait_empty(), timeout=SHUTDOWN_GRACE / 3)
        except TimeoutError:
            log.warning("stopping with %d message(s) still in progress; their offsets are not committed, "
                        "they are processed again after the restart", len(self._unacked_messages))

    async def _commit(self, offsets: Mapping[TP, int]) -> bool:
        if not self.app.should_stop:
            return await super()._commit(offsets)
        try:
            return await asyncio.wait_for(super()._commit(offsets), timeout=min(2.0, SHUTDOWN_GRACE / 4))
        except TimeoutError:
            log.warning("stopping: committing offsets timed out (broker unreachable?); not committed, "
                        "processed again after the restart")
            return False


class TunedTransport(faust_aiokafka.Transport):
    Consumer: ClassVar[type[ConsumerT]] = TunedConsumer
