"""Router agent: ``signals`` -> ``orders.<broker>``, by the BrokerRouter's fixed rules.

Pure CPU per message (validate, map, route, produce). It takes the signals in greedy batches
(``agents.batches``: a batch closes as soon as nothing more is queued, so a lone signal waits for
nothing) for one reason: a signal may be acked only once the OrderRequest it produced is on the
broker (issue 12: no offset is committed past a produce that was not delivered). Awaiting each
delivery before the next signal would cost a broker round trip per message; instead every
OrderRequest and dead letter of a batch is handed to the producer at once and their deliveries
are awaited together, before the batch is acked. A delivery that fails holds the batch unacked
and routes it again (``DeliveryFailed`` is transient) until it gets through: re-producing an
OrderRequest is harmless, its client order id makes the executor's step 2 idempotent.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from functools import partial
from typing import Any

import faust
from faust.types import EventT, StreamT
from pydantic import ValidationError

from agents.batches import BatchLimits, batches
from agents.dead_letters import DeadLetters, describe
from agents.parts import AgentTopics
from agents.publish import DeliveryFailed, Publisher, abandon, delivered
from execution.mapper import UnknownSymbol
from execution.retry import until_done
from execution.router import BrokerRouter
from schemas import Broker, Signal

log = logging.getLogger(__name__)


def register(app: faust.App, topics: AgentTopics, router: BrokerRouter, limits: BatchLimits) -> None:
    dead = DeadLetters(topics.dlq, "router")
    orders = {broker: Publisher(app, topic) for broker, topic in topics.orders.items()}

    # pydantic's core validator, called directly: the same rules as Signal.model_validate_json
    # without its per-call wrapper (issue 16, item 3)
    validate_signal = Signal.__pydantic_validator__.validate_json

    async def route_batch(events: Sequence[EventT[Any]]) -> None:
        requests: dict[Broker, list[tuple[bytes, bytes]]] = {}
        refused: list[tuple[EventT[Any], str]] = []
        for event in events:
            try:
                request = router.route(validate_signal(event.value))
            except (ValidationError, UnknownSymbol) as exc:
                refused.append((event, describe(exc)))
                continue
            requests.setdefault(request.broker, []).append((request.symbol.encode(), request.to_bytes()))
        # every OrderRequest of the batch handed over at once, one record batch per partition
        # (Publisher.send_many), then the dead letters; all their deliveries awaited together
        deliveries: list[asyncio.Future[object]] = []
        try:
            for broker, messages in requests.items():
                deliveries.extend(await orders[broker].send_many(messages))
            await dead.send_all(refused)
        except BaseException:
            abandon(deliveries)
            raise
        await delivered(deliveries, "order requests")

    @app.agent(topics.signals, name="router")
    async def route(stream: StreamT[bytes]) -> None:
        async for events in batches(stream, limits):
            # returns only once everything the batch produced was delivered; then it is acked
            await until_done(f"router batch of {len(events)}", partial(route_batch, events),
                             transient=(DeliveryFailed,), other_attempts=1)
