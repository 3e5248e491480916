"""ExecutionService: the 8-step order lifecycle for one executor, through ports only.

Steps 1-4 run here, per batch of OrderRequests from one broker topic; step 5 is the
FillTracker's; steps 6-8 are the fills consumers' (DB writer, Redis bridge). The rule that
makes at-least-once Kafka safe is step 2: an order whose ``client_order_id`` already exists is a
redelivery and is never placed again. It is *resumed*: the venue is asked what it knows.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from execution.clock import SYSTEM_CLOCK, Clock
from execution.fill_tracker import FillTracker
from execution.outcome import BatchOutcome
from execution.ports import (
    BrokerError,
    BrokerGateway,
    BrokerPort,
    ExecutionEvents,
    OrderRejected,
    OrderStore,
    PlacementUnknown,
    VenueOrderStatus,
)
from execution.risk import PreTradeLimits
from schemas import Order, OrderRequest, OrderState

log = logging.getLogger(__name__)


_UNREACHABLE = object()


def _explain(order: Order, reason: str) -> str:
    """A final reason that keeps the reroute that led there (why this order was on paper at all)."""
    return f"{reason} (after reroute from {order.rerouted_from}: {order.reason})" if order.rerouted_from else reason


@dataclass(frozen=True, slots=True)
class ReconcileReport:
    checked: int
    resumed: int
    replaced: int


class ExecutionService:
    def __init__(
        self,
        *,
        broker: BrokerGateway,
        store: OrderStore,
        sink: ExecutionEvents,
        tracker: FillTracker,
        limits: PreTradeLimits,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.broker = broker
        self.clock = clock
        self.store = store
        self.sink = sink
        self.tracker = tracker
        self.limits = limits
        #: orders between insert and placement in this process: reconcile must not touch them
        self._inflight: set[str] = set()
        #: orders whose venue could not be asked (down) on redelivery/reconcile: retried later
        self.unresolved: set[str] = set()

    async def handle(self, requests: Sequence[OrderRequest]) -> list[Order]:
        """Run steps 1-4 for a batch; returns each order as it stands after placement."""
        now = self.clock.now()
        orders = [Order.from_request(r, at=now) for r in requests]               # step 1
        unique = list({o.client_order_id: o for o in orders}.values())
        ids = {o.client_order_id for o in unique} - self._inflight
        unique = [o for o in unique if o.client_order_id in ids]
        self._inflight |= ids
        try:
            inserted = await self.store.insert_orders(unique)                    # step 2
            fresh = [o for o in unique if o.client_order_id in inserted]
            redelivered = [o.client_order_id for o in unique if o.client_order_id not in inserted]
            outcome = BatchOutcome(self.clock)
            to_place = fresh + await self._resume(redelivered, outcome)
            placed = await self._place_all(to_place, outcome)
            await outcome.flush(self.store, self.sink)
            return placed
        finally:
            self._inflight -= ids

    async def reconcile(self) -> ReconcileReport:
        """On start: ask the venue about every order it may hold that is not terminal here."""
        orders = await self.store.open_orders(self.broker.name)
        return await self._reconcile(orders)

    async def retry_unresolved(self) -> ReconcileReport | None:
        """Ask again about orders whose venue was unreachable when they were last looked at."""
        if not self.unresolved:
            return None
        ids = sorted(self.unresolved)
        self.unresolved.clear()  # whatever is still unreachable is added back by _resume
        orders = await self.store.get_orders(ids)
        return await self._reconcile(list(orders.values()))

    async def _reconcile(self, orders: Sequence[Order]) -> ReconcileReport:
        orders = [o for o in orders if o.client_order_id not in self._inflight]
        outcome = BatchOutcome(self.clock)
        replace = await self._resume([o.client_order_id for o in orders], outcome, known=orders)
        await self._place_all(replace, outcome)
        await outcome.flush(self.store, self.sink)
        report = ReconcileReport(len(orders), len(orders) - len(replace), len(replace))
        log.info("reconcile %s: %s", self.broker.name, report)
        return report

    async def _resume(
        self, ids: Sequence[str], outcome: BatchOutcome, known: Sequence[Order] | None = None
    ) -> list[Order]:
        """Redelivered orders: skip terminal/tracked ones, re-attach live ones, and return the
        ones no venue has ever seen (crash between steps 2 and 4) so they get placed now."""
        if not ids:
            return []
        existing = {o.client_order_id: o for o in known} if known else await self.store.get_orders(ids)
        candidates = [o for o in existing.values()
                      if not o.state.is_terminal and not self.tracker.is_tracking(o.client_order_id)]
        statuses = await asyncio.gather(*(self._query(o) for o in candidates))
        never_seen: list[Order] = []
        for order, status in zip(candidates, statuses, strict=True):
            if status is _UNREACHABLE:
                # Placing now could duplicate an order the venue already holds: wait and ask again.
                self.unresolved.add(order.client_order_id)
                outcome.note(order, f"{order.broker} unreachable while resuming; not re-placed, will ask again")
            elif status is None:
                never_seen.append(order)
            else:
                assert isinstance(status, VenueOrderStatus)
                self.tracker.observe(order, status, self.broker.adapter_for(order.broker), outcome)
        if len(existing) != len(candidates):
            log.info("%d redelivered order(s) already terminal or tracked; not placed again",
                     len(existing) - len(candidates))
        return never_seen

    async def _query(self, order: Order) -> VenueOrderStatus | object | None:
        """The venue's status, None if it never saw the order, ``_UNREACHABLE`` if it can't tell."""
        try:
            return await self.broker.adapter_for(order.broker).query(order)
        except BrokerError as exc:
            log.warning("cannot query %s at %s: %s", order.client_order_id, order.broker, exc)
            return _UNREACHABLE

    async def _place_all(self, orders: Sequence[Order], outcome: BatchOutcome) -> list[Order]:
        """Steps 3-4. Orders of one symbol are placed in sequence (their order matters);
        different symbols go to the venue concurrently."""
        if not orders:
            return []
        gateway, reason = await self.broker.gateway()                            # step 3
        by_symbol: dict[str, list[Order]] = defaultdict(list)
        for order in orders:
            by_symbol[order.symbol].append(order)

        async def place_symbol(group: list[Order]) -> list[Order]:
            return [await self._place_one(o, gateway, reason, outcome) for o in group]

        groups = await asyncio.gather(*(place_symbol(g) for g in by_symbol.values()))
        return [o for group in groups for o in group]

    async def _place_one(
        self, order: Order, gateway: BrokerPort, reason: str, outcome: BatchOutcome
    ) -> Order:
        violation = self.limits.violation(order)
        if violation is not None:
            return outcome.transition(order, OrderState.REJECTED, f"pre-trade limit: {violation}")
        try:
            placement = await self.broker.place(order, gateway, reason)          # step 4
        except OrderRejected as exc:
            rejected = exc.order or order  # the rerouted order, when paper refused it
            return outcome.transition(rejected, OrderState.REJECTED, _explain(rejected, f"{rejected.broker}: {exc}"))
        except PlacementUnknown as exc:
            # It may be working at the venue: keep it there (PENDING), ask again until it can tell.
            self.unresolved.add(order.client_order_id)
            outcome.note(order, f"{order.broker}: placement outcome unknown ({exc}); reconciling")
            return order
        except Exception as exc:
            # An adapter bug must cost one order (visibly), not the executor.
            log.exception("placing %s failed unexpectedly", order.client_order_id)
            return outcome.transition(order, OrderState.REJECTED, f"{order.broker} error: {exc!r}")
        placed, status = placement.order, placement.status
        if status.state in (OrderState.REJECTED, OrderState.CANCELLED, OrderState.EXPIRED) \
                and status.filled_quantity == 0:
            return outcome.transition(placed, status.state, _explain(placed, status.reason or f"venue: {status.state}"),
                                      venue_order_id=status.venue_order_id)
        if placed.state is OrderState.PENDING:
            submitted = outcome.transition(placed, OrderState.SUBMITTED, placed.reason,
                                           venue_order_id=status.venue_order_id)
        else:
            # re-placed by reconcile after the venue lost it (paper after a restart): already
            # SUBMITTED here, so record the new placement without a (forbidden) self-transition
            submitted = placed.model_copy(update={
                "venue_order_id": status.venue_order_id or placed.venue_order_id, "updated_at": outcome.now()})
            outcome.record(submitted, placed.state, persist=True)
        return self.tracker.observe(submitted, status, placement.adapter, outcome)
