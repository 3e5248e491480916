"""Executor agents: one per broker topic, the same code for every broker.

Each batch of OrderRequests goes through ExecutionService (steps 1-4); the FillTracker polls
open orders on its own task so a resting order never blocks the partition. If the batch fails
for an infrastructure reason (database down), the agent retries the *same* batch with backoff
and does not ack it: nothing is lost, and the idempotent insert makes the retry safe.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from functools import partial

import faust
from faust.types import StreamT

from agents.batches import BatchLimits, batches, parse_items, process_batch
from agents.dead_letters import DeadLetters
from agents.parts import AgentTopics, ExecutorParts
from agents.publish import Publisher
from execution.retry import until_done
from execution.service import ExecutionService
from schemas import Broker, Fill, OrderEvent, OrderRequest

log = logging.getLogger(__name__)


class TopicEvents:
    """ExecutionEvents onto Kafka: fills keyed by symbol, order events by client order id."""

    def __init__(self, app: faust.App, topics: AgentTopics) -> None:
        self._fills = Publisher(app, topics.fills)
        self._order_events = Publisher(app, topics.order_events)

    async def fills(self, fills: Sequence[Fill]) -> None:
        for fill in fills:
            await self._fills.send(fill.symbol.encode(), fill.to_bytes())

    async def order_events(self, events: Sequence[OrderEvent]) -> None:
        for event in events:
            await self._order_events.send(event.client_order_id.encode(), event.to_bytes())


def register(app: faust.App, topics: AgentTopics, broker: Broker, parts: ExecutorParts, limits: BatchLimits) -> None:
    dead = DeadLetters(topics.dlq, f"executor-{broker}")
    sink = TopicEvents(app, topics)
    transient = parts.transient

    @app.agent(topics.orders[broker], name=f"executor-{broker}")
    async def execute(stream: StreamT[bytes]) -> None:
        # a database that is still starting must delay the executor, not kill it
        await until_done(f"executor-{broker} start", partial(parts.service, sink), transient=transient,
                         rng=parts.rng)
        service = await parts.service(sink)  # built above; now cached
        await until_done(f"executor-{broker} reconcile", service.reconcile, transient=transient, rng=parts.rng)
        log.info("executor-%s ready", broker)
        poller = asyncio.create_task(service.tracker.run(), name=f"fill-tracker-{broker}")
        resolver = asyncio.create_task(_retry_unresolved(service), name=f"resolver-{broker}")
        keeper = asyncio.create_task(_keep_claims(service, parts.sweep_interval), name=f"claims-{broker}")
        try:
            async for events in batches(stream, limits):
                requests = await parse_items(events, OrderRequest, dead)
                await process_batch(f"executor-{broker}", requests, service.handle, dead, transient)
        finally:
            for task in (poller, resolver, keeper):
                task.cancel()
            await _release(service)


async def _keep_claims(service: ExecutionService, sweep_every: float) -> None:
    """Renew the claims of what this executor works on (every third of the lease) and sweep for
    orders whose owner died (every ``sweep_every``): a dead or scaled-in executor's open orders
    are taken over within lease + sweep interval."""
    renew_every = service.lease_seconds / 3
    loop = asyncio.get_running_loop()
    next_sweep = loop.time() + sweep_every
    while True:
        await asyncio.sleep(min(renew_every, max(0.0, next_sweep - loop.time())))
        try:
            await service.renew()
            if loop.time() >= next_sweep:
                next_sweep = loop.time() + sweep_every
                await service.sweep()
        except Exception:
            log.exception("renewing claims / sweeping failed; will try again")


async def _release(service: ExecutionService) -> None:
    """Hand claims over on a graceful stop, bounded: a stop must not hang on a dead database."""
    try:
        await asyncio.wait_for(service.release(), timeout=2.0)
    except Exception as exc:
        log.warning("releasing claims on stop failed (%r); they expire after the lease", exc)


async def _retry_unresolved(service: ExecutionService, every: float = 10.0) -> None:
    """Orders whose venue could not be asked (down during a redelivery) are asked again here."""
    while True:
        await asyncio.sleep(every)
        try:
            await service.retry_unresolved()
        except Exception:
            log.exception("retrying unresolved orders failed; will try again")
