"""Fill fan-out: the ``fills`` topic feeds two independent agents.

``fills-db`` does steps 6-7 (fill row, order state, position) in one transaction per batch;
``fills-redis`` does step 8 (PUBLISH). They share nothing, so a slow database never delays the
real-time Redis feed, and both are idempotent, so redelivery is harmless.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Any

import faust
from faust.types import EventT, StreamT

from agents.batches import BatchLimits, batches, parse_items, process_batch
from agents.dead_letters import DeadLetters
from agents.parts import AgentTopics, FillSinks
from agents.publish import DeliveryFailed
from execution.retry import until_done
from schemas import Fill


def register(app: faust.App, topics: AgentTopics, sinks: FillSinks, limits: BatchLimits) -> None:
    def fill_agent(name: str, sink: Callable[[Sequence[Fill]], Awaitable[Any]]) -> None:
        dead = DeadLetters(topics.dlq, name)

        async def consume_batch(events: Sequence[EventT[Any]]) -> None:
            fills = await parse_items(events, Fill, dead)
            await process_batch(name, fills, sink, dead, sinks.transient)

        @app.agent(topics.fills, name=name)
        async def consume(stream: StreamT[bytes]) -> None:
            async for events in batches(stream, limits):
                # a dead letter that could not be delivered holds the batch (unacked) and is
                # retried, instead of stopping the agent; the sinks are idempotent
                await until_done(f"{name} batch of {len(events)}", partial(consume_batch, events),
                                 transient=(*sinks.transient, DeliveryFailed), other_attempts=1)

    async def to_db(fills: Sequence[Fill]) -> None:
        await (await sinks.store()).apply_fills(fills)

    async def to_redis(fills: Sequence[Fill]) -> None:
        await (await sinks.publisher()).publish_fills(fills)

    fill_agent("fills-db", to_db)
    fill_agent("fills-redis", to_redis)
