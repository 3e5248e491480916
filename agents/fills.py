"""Fill fan-out: the ``fills`` topic feeds two independent agents.

``fills-db`` does steps 6-7 (fill row, order state, position) in one transaction per batch;
``fills-redis`` does step 8 (PUBLISH). They share nothing, so a slow database never delays the
real-time Redis feed, and both are idempotent, so redelivery is harmless.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

from faust.types import StreamT

from agents.batches import batches, process_batch
from agents.dead_letters import DeadLetters
from schemas import Fill

if TYPE_CHECKING:
    from streams.app import ExecutionApp

def register(app: ExecutionApp) -> None:
    settings = app.runtime.settings

    def fill_agent(name: str, sink: Callable[[Sequence[Fill]], Awaitable[Any]]) -> None:
        dead = DeadLetters(app.streams.dlq, name)

        @app.agent(app.streams.fills, name=name)
        async def consume(stream: StreamT[bytes]) -> None:
            async for events in batches(stream, settings):
                fills = await dead.parse(events, Fill)
                if fills:
                    await process_batch(name, events, partial(sink, fills), dead,
                                        app.runtime.transient_errors())

    async def to_db(fills: Sequence[Fill]) -> None:
        await (await app.runtime.store()).apply_fills(fills)

    async def to_redis(fills: Sequence[Fill]) -> None:
        await (await app.runtime.publisher()).publish_fills(fills)

    fill_agent("fills-db", to_db)
    fill_agent("fills-redis", to_redis)
