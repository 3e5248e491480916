"""FillTracker: owns the open orders of one executor and turns venue status into Fill messages.

Step 5 of the lifecycle must not block the partition, so placement hands each open order to the
tracker and returns. The tracker polls polling venues (Binance, MT4) on its own task; venues that
push (IBKR, ``PushUpdates`` in execution/ports.py) deliver statuses, executions and late fees to
it as an ``UpdateListener``, queued and applied on the same task. Both paths meet in
``observe``, which derives fills from the growth of the venue's *cumulative* totals: a fill is
"the venue now says 0.8 filled and we had emitted 0.5", and its ``cumulative_quantity`` (0.8)
lets every consumer recognise it again after a crash, whatever id it carries. A pushed execution
brings the venue's own execution id into the fill; its fee, when it comes later, is recorded
against that fill (``OrderStore.record_fees``), never as a second fill.

Durable before advancing: ``observe`` only *stages* the tracker's own state (an order's watermark,
its commission, whether it is still tracked) in the caller's ``BatchOutcome``; the state is
committed when that outcome's flush succeeded. A round whose flush fails leaves the tracker as it
was, so the next poll derives the same fill again (same exec id and cumulative watermark, so
nothing downstream counts it twice) and pushed updates are queued again, never lost.

An order the venue lost after part of it had filled is placed again for its remainder only
(``PriorFills``): that venue order's totals count from zero, and the tracker adds the fills from
before, so the order's fills add up to at most its quantity.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict, defaultdict
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal, localcontext
from functools import partial
from typing import cast

from execution.clock import SYSTEM_CLOCK, Clock
from execution.fills import (
    DECIMAL_PRECISION,
    average_after,
    commission_increment,
    cumulative_notional,
    fill_increment,
    fill_state,
)
from execution.outcome import BatchOutcome
from execution.ports import (
    BrokerError,
    BrokerPort,
    ExecutionEvents,
    FillFee,
    OpenOrdersListing,
    OrderStore,
    PushUpdates,
    VenueExecution,
    VenueFee,
    VenueOrderStatus,
)
from schemas import ALLOWED_TRANSITIONS, Broker, Fill, Order, OrderState

log = logging.getLogger(__name__)

#: from this many due orders of one symbol at one venue, a listing replaces individual queries
SWEEP_MIN_ORDERS = 3
#: pushed updates for an order not (yet) tracked here are held this long in updates, per order:
#: a venue may report an order before ``place`` returned it to us
PENDING_PUSH_LIMIT = 64
#: orders (not tracked here) whose pushed updates are held at most; the oldest go first
EARLY_ORDERS_LIMIT = 10_000
#: venue execution ids remembered (with their fill's broker) so a late fee finds its fill
RECENT_EXECUTIONS = 10_000
_FILL_STATES = frozenset({OrderState.PARTIALLY_FILLED, OrderState.FILLED})
#: after a failed round (database or topic down), the next one waits this long, doubling up to the cap
ROUND_RETRY_BASE = 0.1
ROUND_RETRY_CAP = 5.0


@dataclass(frozen=True, slots=True)
class PriorFills:
    """What an order had filled before its current venue order was placed.

    A venue that lost a partly filled order (paper after a restart) gets only the remainder
    again, and its totals for that new venue order count from zero. The tracker asks the venue
    about the remainder (``venue_order``) and reads its answers as totals of the whole order
    (``order_totals``), so fills, states and the cumulative watermark stay the order's."""

    quantity: Decimal
    avg_fill_price: Decimal | None

    def venue_order(self, order: Order) -> Order:
        """``order`` as the venue holds it: the remainder, nothing of it filled yet. Same client
        order id (the venue and the fills writer know the order by it)."""
        return order.model_copy(update={
            "quantity": order.quantity - self.quantity, "filled_quantity": Decimal(0), "avg_fill_price": None})

    def order_totals(self, status: VenueOrderStatus) -> VenueOrderStatus:
        """The venue's ``status`` of the remainder as the whole order's cumulative status."""
        filled = self.quantity + status.filled_quantity
        with localcontext(prec=DECIMAL_PRECISION):
            before = None if self.avg_fill_price is None else self.avg_fill_price * self.quantity
            if status.filled_quantity > 0:
                since = status.filled_notional
                if since is None and status.avg_fill_price is not None:
                    since = status.avg_fill_price * status.filled_quantity
                notional = None if before is None or since is None else before + since
            else:
                notional = before
            average = None if notional is None else notional / filled
        state, reason = status.state, status.reason
        if state in (OrderState.PENDING, OrderState.SUBMITTED):
            state = OrderState.PARTIALLY_FILLED  # the whole order is partly filled already
        elif state is OrderState.REJECTED:
            # the fills before stand, so the order cannot be REJECTED: its remainder is cancelled
            state, reason = OrderState.CANCELLED, f"remainder rejected by the venue: {reason or 'no reason given'}"
        return replace(status, filled_quantity=filled, avg_fill_price=average, filled_notional=notional,
                       state=state, reason=reason)


@dataclass
class _Tracked:
    order: Order
    adapter: BrokerPort
    next_poll: float
    prior: PriorFills | None = None

    def venue_order(self) -> Order:
        """The order to ask the venue about (its remainder after a re-placement)."""
        return self.prior.venue_order(self.order) if self.prior is not None else self.order


@dataclass(slots=True)
class _Staged:
    """One order's tracker state as a batch leaves it; committed once the batch is durable."""

    order: Order
    adapter: BrokerPort
    #: cumulative commission carried by the fills emitted so far (None: unknown)
    commission: Decimal | None
    prior: PriorFills | None
    #: terminal: forget the order once durable
    done: bool
    #: what was tracked when the batch first touched the order (None: not tracked)
    source: _Tracked | None


def derive_fill(
    order: Order,
    status: VenueOrderStatus,
    known_commission: Decimal | None = None,
    *,
    venue_exec_id: str | None = None,
    at: datetime | None = None,
) -> Fill | None:
    """The Fill for the growth from ``order``'s known totals to ``status``'s, if any.

    Venues report commission cumulatively too: the fill carries the growth since
    ``known_commission``, or, when that is unknown (first sight after a restart), the share of
    the cumulative commission proportional to the fill's quantity. ``venue_exec_id`` is the
    venue's own execution id when it pushed one; ``at`` the fill's time on the pipeline's clock.

    The fill carries the venue's cumulative quantity *and* notional (its own notional when it
    reports one, else quantity x average), so a consumer prices the growth from its own
    watermark; ``quantity``/``price`` are the increment from ``order``'s totals, which after a
    restart may be behind what consumers already applied (execution/fills.py)."""
    notional = cumulative_notional(status.filled_quantity, avg_price=status.avg_fill_price,
                                   notional=status.filled_notional)
    if status.avg_fill_price is None or notional is None:
        return None
    increment = fill_increment(order.filled_quantity, order.avg_fill_price, status.filled_quantity,
                               avg_price=status.avg_fill_price, notional=notional)
    if increment is None:
        return None
    # Polled: our client order id and the watermark, not the venue's order id: venue ids are
    # unique only per symbol (Binance) or per session (a restarted simulator, a reset paper
    # account), and a colliding exec id would be dropped downstream as a duplicate. Pushed: the
    # venue's execution id (IB's execId is unique per account and stable across reconnects).
    exec_id = (f"{order.broker}-{venue_exec_id}" if venue_exec_id
               else f"{order.broker}-{order.client_order_id}-{status.filled_quantity.normalize():f}")
    extra = {"ts": at} if at is not None else {}
    return Fill(
        exec_id=exec_id,
        cumulative_quantity=status.filled_quantity,
        cumulative_notional=notional,
        client_order_id=order.client_order_id,
        venue_order_id=status.venue_order_id,
        broker=order.broker,
        symbol=order.symbol,
        asset_class=order.asset_class,
        strategy=order.strategy,
        side=order.side,
        quantity=increment.quantity,
        price=increment.price,
        commission=commission_increment(status.commission, known_commission, increment.quantity,
                                        status.filled_quantity),
        commission_asset=status.commission_asset,
        signal_ts=order.ts,
        **extra,
    )


class _Listener:
    """The UpdateListener one push venue is given: queues what it pushes, tagged with the venue."""

    def __init__(self, tracker: FillTracker, venue: BrokerPort) -> None:
        self._tracker = tracker
        self._venue = venue

    def on_status(self, status: VenueOrderStatus) -> None:
        self._tracker._push(self._venue, status)

    def on_execution(self, execution: VenueExecution) -> None:
        self._tracker._push(self._venue, execution)

    def on_fee(self, fee: VenueFee) -> None:
        self._tracker._push(self._venue, fee)


_Pushed = VenueOrderStatus | VenueExecution | VenueFee


class FillTracker:
    def __init__(
        self,
        store: OrderStore,
        sink: ExecutionEvents,
        *,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._store = store
        self._sink = sink
        self._clock = clock
        self._open: dict[str, _Tracked] = {}
        #: cumulative commission already carried by emitted fills, per open order
        self._commission: dict[str, Decimal] = {}
        self._wake = asyncio.Event()
        #: pushed updates waiting to be applied, in arrival order
        self._pushed: list[tuple[BrokerPort, _Pushed]] = []
        #: pushed updates of orders not tracked (yet), per client order id
        self._early: OrderedDict[str, list[tuple[BrokerPort, _Pushed]]] = OrderedDict()
        #: venue execution id -> the fill's broker, for fees that come after their fill
        self._executions: OrderedDict[str, Broker] = OrderedDict()
        #: fees pushed before their execution was applied (IB may report both while the order
        #: is not tracked yet), by venue execution id
        self._early_fees: OrderedDict[str, VenueFee] = OrderedDict()

    def listen_to(self, venue: BrokerPort) -> None:
        """Subscribe to ``venue``'s pushed updates if it pushes any (``PushUpdates``)."""
        if isinstance(venue, PushUpdates):
            venue.subscribe(_Listener(self, venue))

    def _push(self, venue: BrokerPort, update: _Pushed) -> None:
        self._pushed.append((venue, update))
        self._wake.set()

    def is_tracking(self, client_order_id: str) -> bool:
        return client_order_id in self._open

    def tracked_ids(self) -> set[str]:
        return set(self._open)

    @property
    def open_count(self) -> int:
        return len(self._open)

    def observe(
        self,
        order: Order,
        status: VenueOrderStatus,
        adapter: BrokerPort,
        outcome: BatchOutcome,
        *,
        venue_exec_id: str | None = None,
        prior_fills: PriorFills | None = None,
    ) -> Order:
        """Apply one venue status to ``order``: record fills and transitions in ``outcome``, and
        stage there whether (and how far) the order is tracked. The tracker's state advances
        only when ``outcome.flush`` succeeded; observing again within the same outcome builds on
        what is staged. Returns the order as now known.

        ``prior_fills``: ``order`` was just placed again for its remainder (the venue had lost it
        after part of it filled); ``status`` and every later status of the new venue order
        count from zero and are added to these."""
        cid = order.client_order_id
        if venue_exec_id is None and cid not in self._open and self._staged(outcome, cid) is None \
                and (cid in self._early or self._queued_for(cid)):
            # A push venue's executions of this order arrived before the order was known here
            # (while ``place`` awaited the venue's answer, or re-pushed by ``query`` on a
            # takeover): apply them first, so each fill carries the venue's execution id; the
            # status then adds only what they do not cover.
            order = self._apply_early_executions(order, outcome)
        staged = self._staged(outcome, cid)
        known_commission: Decimal | None
        if prior_fills is not None:
            prior = prior_fills if prior_fills.quantity > 0 else None
            known_commission = Decimal(0)  # the new venue order's commission counts from zero
        elif staged is not None:
            prior, known_commission = staged.prior, staged.commission
        else:
            tracked = self._open.get(cid)
            prior, known_commission = (tracked.prior if tracked else None), self._commission.get(cid)
        if prior is not None:
            status = prior.order_totals(status)
        fill = derive_fill(order, status, known_commission, venue_exec_id=venue_exec_id, at=outcome.now())
        if fill is not None:
            known_commission = (known_commission or Decimal(0)) + fill.commission
            outcome.fills.append(fill)
            filled = order.filled_quantity + fill.quantity
            state = fill_state(filled, order.quantity)
            previous = order.state
            if state in _allowed(order):
                # Fill-driven state is persisted by the fills writer together with the fill;
                # here it only goes to the audit topic, so the two writers never race.
                average = average_after(order.filled_quantity, order.avg_fill_price, fill.quantity, fill.price)
                order = order.transition(state, filled_quantity=filled, avg_fill_price=average, at=outcome.now())
                outcome.record(order, previous, persist=False)
        order = self._apply_venue_state(order, status, outcome)
        venue_id = status.venue_order_id or order.venue_order_id
        if venue_id != order.venue_order_id:
            order = order.model_copy(update={"venue_order_id": venue_id})
        done = order.state.is_terminal or status.state.is_terminal
        if staged is None:
            staged = _Staged(order, adapter, known_commission, prior, done, self._open.get(cid))
            outcome.staged[(self, cid)] = staged
            outcome.after_flush(partial(self._commit, staged))
        else:
            staged.order, staged.adapter, staged.commission = order, adapter, known_commission
            staged.prior, staged.done = prior, done
        return order

    def _staged(self, outcome: BatchOutcome, client_order_id: str) -> _Staged | None:
        staged = outcome.staged.get((self, client_order_id))
        return staged if isinstance(staged, _Staged) else None

    def _current(self, client_order_id: str, outcome: BatchOutcome) -> Order | None:
        """The order as this round knows it: staged in ``outcome``, else tracked; None if not
        tracked (or finished in this round)."""
        staged = self._staged(outcome, client_order_id)
        if staged is not None:
            return None if staged.done else staged.order
        tracked = self._open.get(client_order_id)
        return tracked.order if tracked is not None else None

    def _commit(self, staged: _Staged) -> None:
        """The batch that staged this is durable: advance the tracker to it."""
        cid = staged.order.client_order_id
        if staged.source is not None and self._open.get(cid) is not staged.source:
            # forgotten meanwhile (its claim was lost while the batch was written): stay out
            log.info("order %s: no longer tracked here; its durable round changes nothing", cid)
            return
        if staged.done:
            self.forget(cid)
            self._early.pop(cid, None)  # nothing left to apply them to
            return
        self._track(staged.order, staged.adapter, staged.prior)
        if staged.commission is not None:
            self._commission[cid] = staged.commission
        early = self._early.pop(cid, None)
        if early:  # what the venue pushed before we knew the order: apply it next
            self._pushed[:0] = early
            self._wake.set()

    def _apply_venue_state(self, order: Order, status: VenueOrderStatus, outcome: BatchOutcome) -> Order:
        wanted = status.state
        if wanted in _FILL_STATES or wanted is OrderState.PENDING or wanted is order.state:
            return order
        if wanted not in _allowed(order):
            log.warning("order %s: venue reports %s while %s; ignored",
                        order.client_order_id, wanted, order.state)
            return order
        return outcome.transition(order, wanted, status.reason or f"venue reports {wanted}",
                                  venue_order_id=status.venue_order_id or order.venue_order_id)

    def _track(self, order: Order, adapter: BrokerPort, prior: PriorFills | None = None) -> None:
        existing = self._open.get(order.client_order_id)
        interval = adapter.poll_interval
        next_poll = existing.next_poll if existing else self._clock.monotonic() + (interval or 0.0)
        self._open[order.client_order_id] = _Tracked(order, adapter, next_poll, prior)
        self._wake.set()

    def forget(self, client_order_id: str) -> None:
        self._open.pop(client_order_id, None)
        self._commission.pop(client_order_id, None)

    async def apply_pushed(self) -> int:
        """Apply every queued push (statuses, executions, fees) in one outcome; return how many.

        An execution is one Fill with the venue's execution id, through the same cumulative
        watermark as a polled status, so a repeat (or one a status already covered) adds
        nothing. A fee for an execution applied in the same round rides on its fill; a fee that
        comes later is recorded against the fill already emitted.

        If the round's flush fails, its updates are queued again ahead of newer ones and the
        error is raised: the tracker has not advanced, so the next round applies them anew."""
        if not self._pushed:
            return 0
        pushed, self._pushed = self._pushed, []
        outcome = BatchOutcome(self._clock)
        in_round: dict[str, int] = {}  # venue exec id -> index of its fill in outcome.fills
        held: set[int] = set()  # positions in ``pushed`` of updates held for untracked orders
        for position, (venue, update) in enumerate(pushed):
            if isinstance(update, VenueFee):
                self._apply_fee(venue, update, outcome, in_round)
                continue
            order = self._current(update.client_order_id, outcome)
            if order is None:
                self._hold_early(venue, update)
                held.add(position)
                continue
            if isinstance(update, VenueExecution):
                self._observe_execution(order, venue, update, outcome, in_round)
            else:
                self.observe(order, update, venue, outcome)
        try:
            await outcome.flush(self._store, self._sink)
        except Exception:
            self._pushed[:0] = [item for position, item in enumerate(pushed) if position not in held]
            raise
        return len(pushed)

    def _apply_fee(self, venue: BrokerPort, fee: VenueFee, outcome: BatchOutcome, in_round: dict[str, int]) -> None:
        index = in_round.get(fee.exec_id)
        if index is not None:
            fill = outcome.fills[index]
            outcome.fills[index] = fill.model_copy(update={
                "commission": fee.commission, "commission_asset": fee.commission_asset or fill.commission_asset})
            staged = self._staged(outcome, fill.client_order_id)  # staged by the fill's own observe
            if staged is not None:
                staged.commission = (staged.commission or Decimal(0)) + fee.commission
            return
        if fee.exec_id not in self._executions:
            # its execution is not applied yet (held for an order not tracked yet): it takes the
            # fee when it is; recorded anyway, for a fill an earlier process already emitted
            self._early_fees[fee.exec_id] = fee
            while len(self._early_fees) > RECENT_EXECUTIONS:
                self._early_fees.popitem(last=False)
        broker = self._executions.get(fee.exec_id, venue.name)
        outcome.fees.append(FillFee(broker, f"{broker}-{fee.exec_id}", fee.commission, fee.commission_asset))

    def _observe_execution(self, order: Order, venue: BrokerPort, execution: VenueExecution,
                           outcome: BatchOutcome, in_round: dict[str, int]) -> Order:
        """One pushed execution as one fill with the venue's execution id (and its fee, if that
        came first)."""
        before = len(outcome.fills)
        order = self.observe(order, execution.as_status(), venue, outcome, venue_exec_id=execution.exec_id)
        if len(outcome.fills) > before:
            in_round[execution.exec_id] = before
        self._remember_execution(execution.exec_id, order.broker)
        fee = self._early_fees.pop(execution.exec_id, None)
        if fee is not None:
            self._apply_fee(venue, fee, outcome, in_round)
        return order

    def _queued_for(self, client_order_id: str) -> bool:
        return any(not isinstance(u, VenueFee) and u.client_order_id == client_order_id for _, u in self._pushed)

    def _apply_early_executions(self, order: Order, outcome: BatchOutcome) -> Order:
        cid = order.client_order_id
        # pushed while ``place`` awaited the venue and not yet seen by the tracker's task: they
        # join the held ones (in arrival order), so they are applied here, not after the answer
        queued = [item for item in self._pushed if not isinstance(item[1], VenueFee) and item[1].client_order_id == cid]
        if queued:
            self._pushed = [item for item in self._pushed if item not in queued]
            self._early.setdefault(cid, []).extend(queued)
        held = self._early.get(order.client_order_id, [])
        exec_ids = {u.exec_id for _, u in held if isinstance(u, VenueExecution)}
        fees = [item for item in self._pushed if isinstance(item[1], VenueFee) and item[1].exec_id in exec_ids]
        if fees:  # their fees, queued too, ride on the fills made here (never on a fill not yet written)
            self._pushed = [item for item in self._pushed if item not in fees]
            for _, fee in fees:
                assert isinstance(fee, VenueFee)
                self._early_fees[fee.exec_id] = fee
        executions = sorted(((venue, update) for venue, update in held if isinstance(update, VenueExecution)),
                            key=lambda item: item[1].cumulative_quantity if isinstance(item[1], VenueExecution) else 0)
        if not executions:
            return order
        self._early[order.client_order_id] = [item for item in held if not isinstance(item[1], VenueExecution)]
        in_round: dict[str, int] = {}
        for venue, execution in executions:
            assert isinstance(execution, VenueExecution)
            order = self._observe_execution(order, venue, execution, outcome, in_round)
        return order

    def _hold_early(self, venue: BrokerPort, update: VenueOrderStatus | VenueExecution) -> None:
        if update.client_order_id not in self._early and len(self._early) >= EARLY_ORDERS_LIMIT:
            # a venue shared by two executors pushes each one the other's orders too (IBKR as
            # FX's secondary route): what nobody here will ever track must not pile up
            self._early.popitem(last=False)
        held = self._early.setdefault(update.client_order_id, [])
        if len(held) < PENDING_PUSH_LIMIT:
            held.append((venue, update))
        else:
            log.warning("order %s: dropping a pushed update for an order this executor does not track",
                        update.client_order_id)

    def _remember_execution(self, exec_id: str, broker: Broker) -> None:
        self._executions[exec_id] = broker
        self._executions.move_to_end(exec_id)
        while len(self._executions) > RECENT_EXECUTIONS:
            self._executions.popitem(last=False)

    async def poll_due(self) -> int:
        """Poll every order whose interval elapsed; return how many were due.

        Where several orders of one symbol are due at a venue that can list its open orders,
        one listing shows which of them did not change, and only the others are queried one by
        one: a thousand resting limits cost a call per symbol, not a thousand calls. A failed
        flush raises and leaves every order as it was: the next poll derives the same fills."""
        now = self._clock.monotonic()
        due = [t for t in self._open.values()
               if t.adapter.poll_interval is not None and t.next_poll <= now]
        if not due:
            return 0
        for tracked in due:
            tracked.next_poll = now + (tracked.adapter.poll_interval or 0.0)
        unchanged = await self._unchanged(due)
        changed = [t for t in due if t.order.client_order_id not in unchanged]
        outcome = BatchOutcome(self._clock)
        results = await asyncio.gather(*(self._query(t) for t in changed))
        for tracked, status in zip(changed, results, strict=True):
            if status is not None:
                self.observe(tracked.order, status, tracked.adapter, outcome)
        await outcome.flush(self._store, self._sink)
        return len(due)

    async def _unchanged(self, due: list[_Tracked]) -> set[str]:
        """Client ids of due orders that a venue's open-orders listing shows exactly as known."""
        groups: dict[tuple[int, str], list[_Tracked]] = defaultdict(list)
        for tracked in due:
            if isinstance(tracked.adapter, OpenOrdersListing):
                groups[(id(tracked.adapter), tracked.order.symbol)].append(tracked)
        unchanged: set[str] = set()
        for group in groups.values():
            if len(group) < SWEEP_MIN_ORDERS:
                continue
            adapter = cast(OpenOrdersListing, group[0].adapter)
            try:
                listing = {s.client_order_id: s for s in await adapter.fetch_open_orders(group[0].order.symbol)}
            except BrokerError as exc:
                log.warning("open-orders listing of %s failed (%s); querying one by one", group[0].order.symbol, exc)
                continue
            for tracked in group:
                seen = listing.get(tracked.order.client_order_id)
                if seen is not None and tracked.prior is not None:
                    seen = tracked.prior.order_totals(seen)
                if seen is not None and seen.filled_quantity == tracked.order.filled_quantity:
                    unchanged.add(tracked.order.client_order_id)
        return unchanged

    async def _query(self, tracked: _Tracked) -> VenueOrderStatus | None:
        try:
            return await tracked.adapter.query(tracked.venue_order())
        except BrokerError as exc:
            log.warning("poll of %s at %s failed: %s", tracked.order.client_order_id,
                        tracked.adapter.name, exc)
            return None

    async def run(self, tick: float = 0.05) -> None:
        """The tracker's task for the executor's lifetime: applies pushed updates as they come
        and polls what is due; sleeps while nothing is pushed and nothing polls. A failed round
        (database or topic down) is retried with a growing pause, not in a busy loop."""
        failures = 0
        while True:
            polling = any(t.adapter.poll_interval is not None for t in self._open.values())
            if not self._pushed:
                self._wake.clear()
                if polling:
                    # asyncio.timeout, not wait_for: Python 3.11's wait_for drops a cancellation that
                    # arrives just as the event is set, and the tracker would outlive its executor
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(tick):
                            await self._wake.wait()
                else:
                    await self._wake.wait()
            try:
                await self.apply_pushed()
                await self.poll_due()
                failures = 0
            except Exception:
                failures += 1
                log.exception("fill tracker round failed; nothing advanced, retrying (%d)", failures)
                await asyncio.sleep(min(ROUND_RETRY_CAP, ROUND_RETRY_BASE * 2 ** min(failures - 1, 16)))


def _allowed(order: Order) -> frozenset[OrderState]:
    return ALLOWED_TRANSITIONS[order.state]
