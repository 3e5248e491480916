"""Executor agents: one per broker topic, the same code for every broker.

Each batch of OrderRequests goes through ExecutionService (steps 1-4); the FillTracker polls
open orders on its own task so a resting order never blocks the partition. If the batch fails
for an infrastructure reason (database down, a produce not delivered), the agent retries the
*same* batch with backoff and does not ack it: nothing is lost, and the idempotent insert makes
the retry safe.

What the batch produces (order events, fills, dead letters) is delivered before the batch is
acked: ``TopicEvents`` returns only once the broker acknowledged every message it was handed
(``agents.publish``), so no offset is committed past an event that never reached Kafka.

Trust nothing on the orders topics: an OrderRequest whose ``broker`` is not this executor's is
dead-lettered with the reason, never executed. A message dead-lettered after step 2 may have
inserted its order row: that row, if still PENDING, is marked REJECTED with the dead letter's
reason, so no later sweep places it, however old.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import faust
from faust.types import EventT, StreamT

from agents.batches import BatchLimits, batches, parse_items, process_batch
from agents.dead_letters import DeadLetters
from agents.parts import AgentTopics, ExecutorParts
from agents.publish import Publisher
from execution.ports import BrokerError, ExecutionEvents
from execution.retry import until_done
from execution.service import ExecutionService
from schemas import Broker, Fill, OrderEvent, OrderRequest, OrderState

log = logging.getLogger(__name__)


class TopicEvents:
    """ExecutionEvents onto Kafka: fills keyed by symbol, order events by client order id."""

    def __init__(self, app: faust.App, topics: AgentTopics) -> None:
        self._fills = Publisher(app, topics.fills)
        self._order_events = Publisher(app, topics.order_events)

    async def fills(self, fills: Sequence[Fill]) -> None:
        """Returns once every fill is on the broker (``DeliveryFailed`` otherwise)."""
        await self._fills.send_all((fill.symbol.encode(), fill.to_bytes()) for fill in fills)

    async def order_events(self, events: Sequence[OrderEvent]) -> None:
        """Returns once every event is on the broker (``DeliveryFailed`` otherwise)."""
        await self._order_events.send_all((event.client_order_id.encode(), event.to_bytes()) for event in events)


def register(app: faust.App, topics: AgentTopics, broker: Broker, parts: ExecutorParts, limits: BatchLimits) -> None:
    name = f"executor-{broker}"
    dead = DeadLetters(topics.dlq, name)
    sink = TopicEvents(app, topics)
    transient = parts.transient
    for_this_executor = topic_guard(broker, topics.orders[broker].get_topic_name())

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

        async def reject(request: OrderRequest, reason: str) -> None:
            await reject_dead_lettered(service, sink, request, reason, transient)

        async def execute_batch(events: Sequence[EventT[Any]]) -> None:
            requests = await parse_items(events, OrderRequest, dead, check=for_this_executor)
            await process_batch(name, requests, service.handle, dead, transient, on_dead=reject)

        try:
            async for events in batches(stream, limits):
                # Transient failures of the batch's own work are retried inside process_batch;
                # this retries what surrounds it (a dead letter not delivered). Returns only once
                # everything the batch produced is on the broker: then it is acked.
                await until_done(f"{name} batch of {len(events)}", partial(execute_batch, events),
                                 transient=transient, other_attempts=1, rng=parts.rng)
        finally:
            for task in (poller, resolver, keeper):
                task.cancel()
            await _release(service)


def topic_guard(broker: Broker, topic: str) -> Callable[[OrderRequest], str | None]:
    """The check each OrderRequest on ``topic`` passes before it is executed: its ``broker`` must
    be this executor's. Anyone can write to an orders topic (a misrouted producer, a replay into
    the wrong topic); executing an IBKR order on Binance's executor would send it to the wrong
    venue, or to paper under the wrong name. Returns the reason to refuse it, or None."""

    def check(request: OrderRequest) -> str | None:
        if request.broker == broker:
            return None
        return (f"OrderRequest for broker {request.broker} arrived on {topic}, whose executor places "
                f"{broker} orders only; not executed")

    return check


async def reject_dead_lettered(
    service: ExecutionService,
    sink: ExecutionEvents,
    request: OrderRequest,
    reason: str,
    transient: tuple[type[BaseException], ...],
) -> bool:
    """A dead-lettered OrderRequest may have reached step 2 (its row inserted, PENDING, ours):
    mark it REJECTED with the dead letter's reason, so no sweep or redelivery places it later,
    however old. Returns whether it was rejected.

    Left alone: an order this executor is still working on (placement outcome unknown, tracked),
    a row that is not PENDING, and one the venue already holds (the batch may have failed after
    placing it, e.g. while persisting the outcome; the sweep settles it by asking the venue), or
    about which the venue cannot answer now (a later sweep asks again, and ORDER_MAX_AGE keeps it
    from being placed late). The store rejects only a PENDING row whose claim is ours, free or
    expired. A database that is down is waited out; any other failure is logged (the dead letter
    is already out, with the reason) and costs nothing else."""
    cid = request.client_order_id
    if cid in service.working_on():
        log.warning("order %s dead-lettered while its outcome is still being settled; left to the resolver", cid)
        return False
    text = reason.replace("\x00", "\\u0000")
    rejected: list[OrderEvent] = []

    async def reject() -> None:
        order = (await service.store.get_orders([cid])).get(cid)
        if order is None or order.state is not OrderState.PENDING:
            return  # never inserted (failed before step 2), or already placed / settled
        try:
            status = await service.broker.adapter_for(order.broker).query(order)
        except BrokerError as exc:
            log.warning("order %s dead-lettered; %s cannot tell whether it holds it (%s): left PENDING",
                        cid, order.broker, exc)
            return
        if status is not None:
            log.warning("order %s dead-lettered, but %s holds it (%s): left to the sweep",
                        cid, order.broker, status.state)
            return
        events = await service.store.reject_orders([(cid, text)], owner=service.owner, at=service.clock.now())
        if events:
            await sink.order_events(events)
        rejected[:] = events

    try:
        await until_done(f"rejecting dead-lettered order {cid}", reject, transient=transient, other_attempts=1)
    except Exception:
        log.exception("order %s dead-lettered; marking its row REJECTED failed", cid)
        return False
    if rejected:
        log.warning("order %s REJECTED: %s", cid, text)
    return bool(rejected)


async def _keep_claims(service: ExecutionService, sweep_every: float) -> None:
    """Renew the claims of what this executor works on (every quarter of the lease, so a claim
    never gets near the third of its lease below which it may not be placed) and, on a task of
    its own, sweep for orders whose owner died (every ``sweep_every``): a dead or scaled-in
    executor's open orders are taken over within lease + sweep interval. The two never wait
    for each other: a long sweep (hundreds of orders to ask the venue about) must not stop the
    renewals, or its own orders' claims would lapse under it and another executor would place
    them too."""
    sweeper = asyncio.create_task(_sweep_forever(service, sweep_every), name=f"sweep-{service.executor}")
    try:
        while True:
            await asyncio.sleep(service.lease_seconds / 4)
            try:
                await service.renew()
            except Exception:
                log.exception("renewing claims failed; will try again")
    finally:
        sweeper.cancel()


async def _sweep_forever(service: ExecutionService, every: float) -> None:
    while True:
        await asyncio.sleep(every)
        try:
            await service.sweep()
        except Exception:
            log.exception("sweeping for orders to take over failed; will try again")


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
