"""ExecutionService: the 8-step order lifecycle for one executor, through ports only.

Steps 1-4 run here, per batch of OrderRequests from one broker topic; step 5 is the
FillTracker's; steps 6-8 are the fills consumers' (DB writer, Redis bridge). The rule that
makes at-least-once Kafka safe is step 2: an order whose ``client_order_id`` already exists is a
redelivery and is never placed again. It is *resumed*: the venue is asked what it knows.

Ownership: several executors of one broker run at once (scale-out, rebalances, restarts), and
process memory cannot see another process. So step 2 also takes a durable *claim* on each order
(``OrderStore.claim_orders``: owner + lease expiry on the row, in the same statement); only the
claim holder places, resumes or tracks an order. The owner renews its claims while it works on
them (``renew``), and a periodic ``sweep`` takes over only orders whose claim expired (their
owner died or was scaled in), including orders this executor's topic rerouted to paper. A worker
that cannot renew (database unreachable, process paused) stops placing before its lease runs out.

Durable before advancing: what a batch changes in memory (the tracker's watermarks, the set of
unresolved orders) advances only once the batch's outcome is flushed. A batch whose flush fails
raises and is retried (agents/batches.py ``process_batch``); the tracker has not taken its orders
on, so the retry asks the venue again and derives the same fills.

Re-placement: an order the venue lost after part of it had filled (paper after a restart) is
placed again for its remainder only, under the same client order id; the tracker adds the fills
from before (``PriorFills``). A placement the state machine cannot record (a partly filled order
cannot become REJECTED) costs that order, visibly, never the batch or the executor.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import OrderedDict, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from execution.clock import SYSTEM_CLOCK, Clock
from execution.fill_tracker import FillTracker, PriorFills
from execution.outcome import BatchOutcome
from execution.ports import (
    BrokerError,
    BrokerGateway,
    BrokerPort,
    ExecutionEvents,
    OrderRejected,
    OrderStore,
    PlacementDeferred,
    PlacementUnknown,
    VenueOrderStatus,
)
from execution.risk import PreTradeLimits
from schemas import (
    ALLOWED_TRANSITIONS,
    BRACKET_EXIT_LEGS,
    Broker,
    IllegalTransition,
    Order,
    OrderRequest,
    OrderState,
    OrderType,
    bracket_exit_id,
)

log = logging.getLogger(__name__)

#: remainder re-placements remembered (client order id -> fills before it) for a retried batch
REMEMBERED_REMAINDERS = 10_000
#: orders looked up (and placed when no venue saw them) per round of a sweep, flushed before the next
RECONCILE_CHUNK = 25

_UNREACHABLE = object()


def _explain(order: Order, reason: str) -> str:
    """A final reason that keeps the reroute that led there (why this order was on paper at all)."""
    return f"{reason} (after reroute from {order.rerouted_from}: {order.reason})" if order.rerouted_from else reason


def _end(outcome: BatchOutcome, order: Order, wanted: OrderState, reason: str, **changes: object) -> Order:
    """Move ``order`` to the terminal ``wanted`` if the state machine allows it. A partly filled
    order cannot be REJECTED (its fills stand): its remainder is CANCELLED with the reason.
    Where no terminal state is allowed, the reason goes to the audit topic as a note."""
    allowed = ALLOWED_TRANSITIONS[order.state]
    if wanted in allowed:
        return outcome.transition(order, wanted, reason, **changes)
    if OrderState.CANCELLED in allowed:
        return outcome.transition(order, OrderState.CANCELLED,
                                  f"remainder of {order.remaining} not placed: {reason}", **changes)
    outcome.note(order, f"{reason} (order stays {order.state})")
    return order


def _whole(placed: Order, order: Order) -> Order:
    """The order as placed (rerouted, perhaps), with ``order``'s full quantity and fills again
    after only its remainder went to the venue."""
    if placed.quantity == order.quantity and placed.filled_quantity == order.filled_quantity:
        return placed
    return placed.model_copy(update={"quantity": order.quantity, "filled_quantity": order.filled_quantity,
                                     "avg_fill_price": order.avg_fill_price})


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
        executor: Broker | None = None,
        owner: str | None = None,
        lease_seconds: float = 30.0,
        max_age_seconds: float | None = 300.0,
    ) -> None:
        self.broker = broker
        self.clock = clock
        #: the broker topic this executor consumes; its orders keep this name when rerouted
        self.executor = executor or broker.name
        #: this process's identity on the claims it holds (unique per process start)
        self.owner = owner or f"{self.executor}-{uuid.uuid4().hex[:12]}"
        self.lease_seconds = lease_seconds
        #: a signal older than this when its order would first be placed is EXPIRED, not placed
        self.max_age_seconds = max_age_seconds
        #: until when (monotonic) the last confirmed claim/renewal keeps our leases valid
        #: per order: until when (monotonic) the last statement that confirmed our claim on it
        #: (claim, sweep or renewal) keeps that claim valid; an order is placed only while its
        #: own claim is surely ours, never on the strength of another order's renewal
        self._leases: dict[str, float] = {}
        self.store = store
        self.sink = sink
        self.tracker = tracker
        self.limits = limits
        #: orders between insert and placement in this process: reconcile must not touch them
        self._inflight: set[str] = set()
        #: orders whose venue could not be asked (down) on redelivery/reconcile: retried later
        self.unresolved: set[str] = set()
        #: orders this process placed again for their remainder, with the fills from before: if
        #: that batch's flush fails, the retry reads the venue's answer as the remainder's too
        self._remainders: OrderedDict[str, PriorFills] = OrderedDict()

    async def handle(self, requests: Sequence[OrderRequest]) -> list[Order]:
        """Run steps 1-4 for a batch; returns each order as it stands after placement."""
        now = self.clock.now()
        orders = [Order.from_request(r, at=now) for r in requests]               # step 1
        unique = list({o.client_order_id: o for o in orders}.values())
        ids = {o.client_order_id for o in unique} - self._inflight
        unique = [o for o in unique if o.client_order_id in ids]
        self._inflight |= ids
        try:
            started = self.clock.monotonic()
            claim = await self.store.claim_orders(unique, owner=self.owner,        # step 2 + claim
                                                  lease_seconds=self.lease_seconds)
            self._confirm(claim.inserted | claim.claimed, started)
            fresh = [o for o in unique if o.client_order_id in claim.inserted]
            redelivered = [o.client_order_id for o in unique if o.client_order_id in claim.claimed]
            held = len(unique) - len(fresh) - len(redelivered)
            if held:
                log.info("%d redelivered order(s) terminal or claimed by a live executor; left alone", held)
            outcome = BatchOutcome(self.clock)
            to_place = fresh + await self._resume(redelivered, outcome)
            placed = await self._place_all(to_place, outcome)
            await outcome.flush(self.store, self.sink)
            return placed
        finally:
            self._inflight -= ids

    async def reconcile(self) -> ReconcileReport:
        """On start, on partition assignment and periodically (the sweep): take over every
        non-terminal order of this executor's topic whose claim is free or expired, and ask the
        venue about it. Orders another live executor holds are never touched."""
        started = self.clock.monotonic()
        orders = await self.store.claim_expired(self.executor, owner=self.owner, lease_seconds=self.lease_seconds)
        self._confirm((o.client_order_id for o in orders), started)
        return await self._reconcile(orders)

    sweep = reconcile

    def working_on(self) -> set[str]:
        """Every order whose claim this executor must keep: in flight, tracked or unresolved."""
        return self._inflight | self.tracker.tracked_ids() | self.unresolved

    async def renew(self) -> int:
        """Extend the leases of the orders this executor works on; an order whose claim was lost
        (this process was paused past its lease and another executor took it over) is dropped
        here at once, so two executors never work one order. Returns how many were lost."""
        ids = sorted(self.working_on())
        started = self.clock.monotonic()
        kept = await self.store.renew_claims(owner=self.owner, client_order_ids=ids,
                                             lease_seconds=self.lease_seconds) if ids else set()
        self._confirm(kept, started)
        for cid in set(self._leases) - kept:  # lost, or no longer worked on: not ours to place
            del self._leases[cid]
        lost = set(ids) - kept - self._inflight
        for cid in lost:
            log.warning("order %s: claim lost to another executor; no longer worked on here", cid)
            self.tracker.forget(cid)
            self.unresolved.discard(cid)
        return len(lost)

    async def release(self) -> None:
        """Graceful stop: hand every claim over at once instead of waiting for it to expire."""
        ids = sorted(self.working_on())
        self._leases.clear()
        if ids:
            await self.store.release_claims(owner=self.owner, client_order_ids=ids)

    def _confirm(self, client_order_ids: Iterable[str], started: float) -> None:
        """Claims confirmed by a statement sent at ``started`` are valid until started + lease."""
        until = started + self.lease_seconds
        for cid in client_order_ids:
            if self._leases.get(cid, float("-inf")) < until:
                self._leases[cid] = until

    def _may_place(self, order: Order) -> bool:
        """Place only while this order's claim is surely ours, with a third of the lease to spare
        for the placement itself: a worker that cannot renew (database unreachable, process
        paused, a long sweep) stops placing an order before another executor may take it over."""
        until = self._leases.get(order.client_order_id, float("-inf"))
        return self.clock.monotonic() < until - self.lease_seconds / 3

    async def retry_unresolved(self) -> ReconcileReport | None:
        """Ask again about orders whose venue was unreachable (or whose placement outcome was
        unknown) when they were last looked at.

        An order leaves ``unresolved`` only once it is settled and that is durable: a failed
        read or flush raises with every order still there, asked about again next round."""
        if not self.unresolved:
            return None
        asked = set(self.unresolved)
        orders = await self.store.get_orders(sorted(asked))
        report, settled = await self._reconcile_round(list(orders.values()))
        # settled, or gone from the database (nothing left to ask about)
        self.unresolved -= settled | (asked - orders.keys())
        return report

    async def _reconcile(self, orders: Sequence[Order]) -> ReconcileReport:
        """Rounds of ``RECONCILE_CHUNK`` orders, each looked up, placed if the venue never saw
        it, and flushed before the next: a large takeover places as it goes (while the claims
        keeper renews every order still waiting), instead of spending its leases on lookups."""
        checked = resumed = replaced = 0
        for start in range(0, len(orders), RECONCILE_CHUNK):
            report, _ = await self._reconcile_round(orders[start:start + RECONCILE_CHUNK])
            checked, resumed, replaced = (checked + report.checked, resumed + report.resumed,
                                          replaced + report.replaced)
        return ReconcileReport(checked, resumed, replaced)

    async def _reconcile_round(self, orders: Sequence[Order]) -> tuple[ReconcileReport, set[str]]:
        """Resume ``orders`` (those not in flight here) and place the ones no venue has seen;
        return the report and the ids settled (the venue answered, or they are terminal or
        tracked). If the flush fails, every order of the round is left to the resolver."""
        orders = [o for o in orders if o.client_order_id not in self._inflight]
        ids = {o.client_order_id for o in orders}
        self._inflight |= ids  # a redelivered copy arriving meanwhile must not work them too
        try:
            outcome = BatchOutcome(self.clock)
            replace = await self._resume([o.client_order_id for o in orders], outcome, known=orders)
            await self._place_all(replace, outcome)
            try:
                await outcome.flush(self.store, self.sink)
            except Exception:
                self.unresolved |= ids  # asked about again soon, claims renewed meanwhile
                raise
        finally:
            self._inflight -= ids
        report = ReconcileReport(len(orders), len(orders) - len(replace), len(replace))
        (log.info if report.checked else log.debug)("reconcile %s: %s", self.broker.name, report)

        return report, ids - outcome.unresolved

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
                outcome.unresolved.add(order.client_order_id)
                outcome.note(order, f"{order.broker} unreachable while resuming; not re-placed, will ask again")
            elif status is None:
                never_seen.append(order)
            else:
                assert isinstance(status, VenueOrderStatus)
                adapter = self.broker.adapter_for(order.broker)
                self.tracker.observe(order, status, adapter, outcome,
                                     prior_fills=self._remainders.get(order.client_order_id))
                legs = {bracket_exit_id(order.client_order_id, leg) for leg in BRACKET_EXIT_LEGS}
                if order.order_type is OrderType.BRACKET and not legs & existing.keys():
                    await self._take_exits(order, adapter, outcome)  # its legs are not in this round
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
            return [await self._place_contained(o, gateway, reason, outcome) for o in group]

        groups = await asyncio.gather(*(place_symbol(g) for g in by_symbol.values()))
        return [o for group in groups for o in group]

    def _remember_remainder(self, client_order_id: str, prior: PriorFills) -> None:
        self._remainders[client_order_id] = prior
        self._remainders.move_to_end(client_order_id)
        while len(self._remainders) > REMEMBERED_REMAINDERS:
            self._remainders.popitem(last=False)

    async def _place_contained(
        self, order: Order, gateway: BrokerPort, reason: str, outcome: BatchOutcome
    ) -> Order:
        """``_place_one``, where an order the state machine cannot record costs that order
        (visibly, with the reason), never the batch or the executor."""
        try:
            return await self._place_one(order, gateway, reason, outcome)
        except IllegalTransition as exc:
            log.error("order %s: %s; left as it is", order.client_order_id, exc)
            outcome.note(order, f"placement not recorded: {exc}")
            return order

    async def _place_one(
        self, order: Order, gateway: BrokerPort, reason: str, outcome: BatchOutcome
    ) -> Order:
        if order.bracket_parent is not None:
            # An exit leg exists only because its venue holds it with its entry (_take_exits):
            # a venue that never saw it must not get it as a lone stop or limit order.
            return _end(outcome, order, OrderState.CANCELLED,
                        f"exit of bracket {order.bracket_parent} unknown to {order.broker}; never placed on its own")
        violation = self.limits.violation(order)
        if violation is not None:
            return _end(outcome, order, OrderState.REJECTED, f"pre-trade limit: {violation}")
        if order.state is OrderState.PENDING and self.max_age_seconds is not None:
            age = (outcome.now() - order.ts).total_seconds()
            if age > self.max_age_seconds:
                return outcome.transition(order, OrderState.EXPIRED,
                                          f"signal is {age:.0f}s old (ORDER_MAX_AGE={self.max_age_seconds:.0f}s); "
                                          "not placed late")
        # A venue that lost a partly filled order gets only the remainder (same client order id).
        prior = PriorFills(order.filled_quantity, order.avg_fill_price) if order.filled_quantity > 0 else None
        if prior is not None and order.remaining <= 0:
            outcome.note(order, f"{order.broker} lost the order after it filled in full; nothing to place again")
            return order
        if not self._may_place(order):
            # Our claims are not confirmed fresh (database unreachable, or this process was
            # paused): placing now could race an executor taking them over. Leave it PENDING;
            # whoever holds its claim once leases are settled places it.
            outcome.unresolved.add(order.client_order_id)
            outcome.note(order, f"{self.executor}: claim not confirmed fresh; not placed now")
            return order
        to_venue = prior.venue_order(order) if prior is not None else order
        try:
            placement = await self.broker.place(to_venue, gateway, reason)       # step 4
        except OrderRejected as exc:
            rejected = _whole(exc.order or to_venue, order)  # the rerouted order, when paper refused it
            return _end(outcome, rejected, OrderState.REJECTED, _explain(rejected, f"{rejected.broker}: {exc}"))
        except PlacementDeferred as exc:
            # The venue is down and its policy holds the order (IBKR_DISCONNECTED_POLICY=hold):
            # PENDING with the reason, offered again by the resolver; ORDER_MAX_AGE still applies.
            self.unresolved.add(order.client_order_id)
            outcome.unresolved.add(order.client_order_id)
            held = order.model_copy(update={"reason": f"{order.broker}: held, not placed now ({exc})",
                                            "updated_at": outcome.now()})
            outcome.record(held, order.state, persist=True)  # the reason shows on the order itself
            return held
        except PlacementUnknown as exc:
            # It may be working at the venue: keep it there (PENDING), ask again until it can tell.
            self.unresolved.add(order.client_order_id)
            outcome.unresolved.add(order.client_order_id)
            outcome.note(order, f"{order.broker}: placement outcome unknown ({exc}); reconciling")
            return order
        except Exception as exc:
            # An adapter bug must cost one order (visibly), not the executor.
            log.exception("placing %s failed unexpectedly", order.client_order_id)
            return _end(outcome, order, OrderState.REJECTED, f"{order.broker} error: {exc!r}")
        placed, status = _whole(placement.order, order), placement.status
        if prior is not None:  # the venue holds the remainder now, whatever this batch's fate
            self._remember_remainder(order.client_order_id, prior)
        if status.state in (OrderState.REJECTED, OrderState.CANCELLED, OrderState.EXPIRED) \
                and status.filled_quantity == 0:
            return _end(outcome, placed, status.state, _explain(placed, status.reason or f"venue: {status.state}"),
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
            if prior is not None:
                outcome.note(submitted, f"{placement.adapter.name} had lost the order after {prior.quantity} "
                                        f"filled; placed again for the remaining {to_venue.quantity}")
        observed = self.tracker.observe(submitted, status, placement.adapter, outcome, prior_fills=prior)
        if placed.order_type is OrderType.BRACKET:
            await self._take_exits(observed, placement.adapter, outcome)
        return observed

    async def _take_exits(self, entry: Order, adapter: BrokerPort, outcome: BatchOutcome) -> None:
        """A bracket's exit legs (``Order.bracket_exits``), held by the venue since the entry
        was placed, become orders of their own: inserted and claimed here (idempotent), tracked
        like any working order, so their fills have rows and close the entry's position. Legs
        that already exist (a takeover, a redelivery) are resumed by asking the venue."""
        legs = entry.bracket_exits(at=outcome.now())
        started = self.clock.monotonic()
        claim = await self.store.claim_orders(legs, owner=self.owner, lease_seconds=self.lease_seconds)
        self._confirm(claim.inserted | claim.claimed, started)
        for leg in legs:
            if leg.client_order_id in claim.inserted:
                working = outcome.transition(leg, OrderState.SUBMITTED, leg.reason)
                self.tracker.observe(working, VenueOrderStatus(leg.client_order_id, None, OrderState.SUBMITTED),
                                     adapter, outcome)
        await self._resume([i for i in (leg.client_order_id for leg in legs) if i in claim.claimed], outcome)
