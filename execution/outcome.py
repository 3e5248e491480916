"""BatchOutcome: the side effects of handling one batch, flushed in a safe order.

State changes are made durable first (the database is the source of truth for reconcile),
then fills and order events go to their topics. Collecting them lets one batch of orders cost
one database round trip and one produce call per topic, not one per order. Every timestamp it
puts on an order or event comes from the pipeline's clock (execution/clock.py).

In-memory state that depends on these writes (the FillTracker's watermarks: "fills up to 0.8
are emitted") must not run ahead of them: a watermark advanced before a failed flush would never
derive the lost fill again. So such state is *staged* here while the batch is worked out
(``staged``, readable within the batch) and committed by callbacks that ``flush`` runs only once
every write succeeded (``after_flush``). A failed flush raises and commits nothing: the next
round derives the same fills again, which every consumer recognises (exec id, cumulative watermark).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from datetime import datetime

from execution.clock import SYSTEM_CLOCK, Clock
from execution.ports import ExecutionEvents, FillFee, OrderStore
from schemas import Fill, Order, OrderEvent, OrderState


@dataclass
class BatchOutcome:
    clock: Clock = SYSTEM_CLOCK
    transitions: list[tuple[Order, OrderEvent]] = field(default_factory=list)
    fills: list[Fill] = field(default_factory=list)
    events: list[OrderEvent] = field(default_factory=list)
    fees: list[FillFee] = field(default_factory=list)
    #: orders this batch could not settle (venue unreachable, placement outcome unknown, claim
    #: not confirmed fresh): whoever resolves orders asks about them again
    unresolved: set[str] = field(default_factory=set)
    #: state worked out for this batch, not yet committed (key: owner's choice, e.g. (tracker, id))
    staged: dict[Hashable, object] = field(default_factory=dict)
    #: what commits ``staged`` state, run in order once the flush succeeded
    commits: list[Callable[[], None]] = field(default_factory=list)

    def now(self) -> datetime:
        return self.clock.now()

    def transition(self, order: Order, new_state: OrderState, reason: str = "", **changes: object) -> Order:
        """Move ``order`` to ``new_state`` and record it for persistence and the audit topic."""
        moved = order.transition(new_state, reason, at=self.now(), **changes)
        self.record(moved, order.state, persist=True)
        return moved

    def record(self, order: Order, previous: OrderState | None, *, persist: bool) -> None:
        event = OrderEvent.of(order, previous)
        self.events.append(event)
        if persist:
            self.transitions.append((order, event))

    def note(self, order: Order, reason: str) -> None:
        """An audit event without a state change (e.g. "venue unreachable, will ask again")."""
        noted = order.model_copy(update={"reason": reason, "updated_at": self.now()})
        self.events.append(OrderEvent.of(noted, order.state))

    def after_flush(self, commit: Callable[[], None]) -> None:
        """Run ``commit`` once everything recorded here is durable; never if the flush fails."""
        self.commits.append(commit)

    async def flush(self, store: OrderStore, sink: ExecutionEvents) -> None:
        """Write everything recorded, then commit the staged state. Raises (committing nothing,
        keeping everything recorded) if any write fails."""
        if self.transitions:
            await store.save_transitions(self.transitions)
        if self.fees:
            await store.record_fees(self.fees)
        if self.fills:
            await sink.fills(self.fills)
        if self.events:
            await sink.order_events(self.events)
        commits = self.commits
        self.transitions, self.fills, self.events, self.fees = [], [], [], []
        self.staged, self.commits = {}, []
        for commit in commits:
            commit()
