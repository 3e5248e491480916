"""BatchOutcome: the side effects of handling one batch, flushed in a safe order.

State changes are made durable first (the database is the source of truth for reconcile),
then fills and order events go to their topics. Collecting them lets one batch of orders cost
one database round trip and one produce call per topic, not one per order.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from execution.ports import ExecutionEvents, OrderStore
from schemas import Fill, Order, OrderEvent, OrderState, utcnow


@dataclass
class BatchOutcome:
    transitions: list[tuple[Order, OrderEvent]] = field(default_factory=list)
    fills: list[Fill] = field(default_factory=list)
    events: list[OrderEvent] = field(default_factory=list)

    def transition(self, order: Order, new_state: OrderState, reason: str = "", **changes: object) -> Order:
        """Move ``order`` to ``new_state`` and record it for persistence and the audit topic."""
        moved = order.transition(new_state, reason, **changes)
        self.record(moved, order.state, persist=True)
        return moved

    def record(self, order: Order, previous: OrderState | None, *, persist: bool) -> None:
        event = OrderEvent.of(order, previous)
        self.events.append(event)
        if persist:
            self.transitions.append((order, event))

    def note(self, order: Order, reason: str) -> None:
        """An audit event without a state change (e.g. "venue unreachable, will ask again")."""
        noted = order.model_copy(update={"reason": reason, "updated_at": utcnow()})
        self.events.append(OrderEvent.of(noted, order.state))

    async def flush(self, store: OrderStore, sink: ExecutionEvents) -> None:
        if self.transitions:
            await store.save_transitions(self.transitions)
        if self.fills:
            await sink.fills(self.fills)
        if self.events:
            await sink.order_events(self.events)
        self.transitions, self.fills, self.events = [], [], []
