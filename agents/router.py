"""Router agent: ``signals`` -> ``orders.<broker>``, by the BrokerRouter's fixed rules.

Pure CPU per message (validate, map, route, produce), so it processes event by event: batching
would only add latency. Produces go straight to the app's producer (``agents.publish``) and are
not awaited for delivery one by one; Faust flushes the producer before it commits the consumed
offsets, which keeps at-least-once intact.
"""

from __future__ import annotations

import faust
from faust.types import StreamT
from pydantic import ValidationError

from agents.dead_letters import DeadLetters, describe
from agents.parts import AgentTopics
from agents.publish import Publisher
from execution.mapper import UnknownSymbol
from execution.router import BrokerRouter
from schemas import Signal


def register(app: faust.App, topics: AgentTopics, router: BrokerRouter) -> None:
    dead = DeadLetters(topics.dlq, "router")
    orders = {broker: Publisher(app, topic) for broker, topic in topics.orders.items()}

    @app.agent(topics.signals, name="router")
    async def route(stream: StreamT[bytes]) -> None:
        async for event in stream.events():
            try:
                request = router.route(Signal.model_validate_json(event.value))
            except (ValidationError, UnknownSymbol) as exc:
                await dead.send(event, describe(exc))
                continue
            await orders[request.broker].send(request.symbol.encode(), request.to_bytes())
