"""FillTracker: owns the open orders of one executor and turns venue status into Fill messages.

Step 5 of the lifecycle must not block the partition, so placement hands each open order to the
tracker and returns; the tracker polls polling venues (Binance, MT4) on its own task and accepts
pushed updates from event-driven ones (IBKR) through ``observe``. Both paths meet in
``observe``, which derives fills from the growth of the venue's *cumulative* totals: a fill is
"the venue now says 0.8 filled and we had emitted 0.5", and its ``cumulative_quantity`` (0.8)
lets every consumer recognise it again after a crash, whatever id it carries.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import cast

from execution.outcome import BatchOutcome
from execution.ports import (
    BrokerError,
    BrokerPort,
    ExecutionEvents,
    OpenOrdersListing,
    OrderStore,
    VenueOrderStatus,
)
from schemas import ALLOWED_TRANSITIONS, Fill, Order, OrderState

log = logging.getLogger(__name__)

PRICE_PLACES = Decimal("1e-12")
#: from this many due orders of one symbol at one venue, a listing replaces individual queries
SWEEP_MIN_ORDERS = 3
_FILL_STATES = frozenset({OrderState.PARTIALLY_FILLED, OrderState.FILLED})


@dataclass
class _Tracked:
    order: Order
    adapter: BrokerPort
    next_poll: float


def derive_fill(order: Order, status: VenueOrderStatus, known_commission: Decimal | None = None) -> Fill | None:
    """The Fill for the growth from ``order``'s known totals to ``status``'s, if any.

    Venues report commission cumulatively too: the fill carries the growth since
    ``known_commission``, or, when that is unknown (first sight after a restart), the share of
    the cumulative commission proportional to the fill's quantity."""
    known_qty, known_avg = order.filled_quantity, order.avg_fill_price or Decimal(0)
    delta = status.filled_quantity - known_qty
    if delta <= 0 or status.avg_fill_price is None:
        return None
    cost_delta = status.avg_fill_price * status.filled_quantity - known_avg * known_qty
    price = (cost_delta / delta).quantize(PRICE_PLACES).normalize()
    if price <= 0:
        price = status.avg_fill_price
    return Fill(
        # Our client order id, not the venue's order id: venue ids are unique only per symbol
        # (Binance) or per session (a restarted simulator, a reset paper account), and a
        # colliding exec id would be dropped downstream as a duplicate.
        exec_id=f"{order.broker}-{order.client_order_id}-{status.filled_quantity.normalize():f}",
        cumulative_quantity=status.filled_quantity,
        client_order_id=order.client_order_id,
        venue_order_id=status.venue_order_id,
        broker=order.broker,
        symbol=order.symbol,
        asset_class=order.asset_class,
        strategy=order.strategy,
        side=order.side,
        quantity=delta,
        price=price,
        commission=_commission_delta(status, delta, known_commission),
        commission_asset=status.commission_asset,
        signal_ts=order.ts,
    )


def _commission_delta(status: VenueOrderStatus, delta: Decimal, known: Decimal | None) -> Decimal:
    if known is not None:
        return max(Decimal(0), status.commission - known)
    if status.filled_quantity <= 0:
        return Decimal(0)
    return max(Decimal(0), (status.commission * delta / status.filled_quantity).quantize(PRICE_PLACES))


class FillTracker:
    def __init__(
        self,
        store: OrderStore,
        sink: ExecutionEvents,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._sink = sink
        self._clock = clock
        self._open: dict[str, _Tracked] = {}
        #: cumulative commission already carried by emitted fills, per open order
        self._commission: dict[str, Decimal] = {}
        self._wake = asyncio.Event()

    def is_tracking(self, client_order_id: str) -> bool:
        return client_order_id in self._open

    @property
    def open_count(self) -> int:
        return len(self._open)

    def observe(
        self, order: Order, status: VenueOrderStatus, adapter: BrokerPort, outcome: BatchOutcome
    ) -> Order:
        """Apply one venue status to ``order``: record fills and transitions in ``outcome``,
        keep tracking while open. Returns the order as now known."""
        cid = order.client_order_id
        fill = derive_fill(order, status, self._commission.get(cid))
        if fill is not None:
            self._commission[cid] = self._commission.get(cid, Decimal(0)) + fill.commission
            outcome.fills.append(fill)
            filled = order.filled_quantity + fill.quantity
            cost = order.filled_quantity * (order.avg_fill_price or 0) + fill.quantity * fill.price
            fill_state = OrderState.FILLED if filled >= order.quantity else OrderState.PARTIALLY_FILLED
            previous = order.state
            if fill_state in _allowed(order):
                # Fill-driven state is persisted by the fills writer together with the fill;
                # here it only goes to the audit topic, so the two writers never race.
                order = order.transition(fill_state, filled_quantity=filled, avg_fill_price=cost / filled)
                outcome.record(order, previous, persist=False)
        order = self._apply_venue_state(order, status, outcome)
        venue_id = status.venue_order_id or order.venue_order_id
        if venue_id != order.venue_order_id:
            order = order.model_copy(update={"venue_order_id": venue_id})
        if order.state.is_terminal or status.state.is_terminal:
            self.forget(cid)
        else:
            self._track(order, adapter)
        return order

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

    def _track(self, order: Order, adapter: BrokerPort) -> None:
        existing = self._open.get(order.client_order_id)
        interval = adapter.poll_interval
        next_poll = existing.next_poll if existing else self._clock() + (interval or 0.0)
        self._open[order.client_order_id] = _Tracked(order, adapter, next_poll)
        self._wake.set()

    def forget(self, client_order_id: str) -> None:
        self._open.pop(client_order_id, None)
        self._commission.pop(client_order_id, None)

    async def poll_due(self) -> int:
        """Poll every order whose interval elapsed; return how many were due.

        Where several orders of one symbol are due at a venue that can list its open orders,
        one listing shows which of them did not change, and only the others are queried one by
        one: a thousand resting limits cost a call per symbol, not a thousand calls."""
        now = self._clock()
        due = [t for t in self._open.values()
               if t.adapter.poll_interval is not None and t.next_poll <= now]
        if not due:
            return 0
        for tracked in due:
            tracked.next_poll = now + (tracked.adapter.poll_interval or 0.0)
        unchanged = await self._unchanged(due)
        changed = [t for t in due if t.order.client_order_id not in unchanged]
        outcome = BatchOutcome()
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
                if seen is not None and seen.filled_quantity == tracked.order.filled_quantity:
                    unchanged.add(tracked.order.client_order_id)
        return unchanged

    async def _query(self, tracked: _Tracked) -> VenueOrderStatus | None:
        try:
            return await tracked.adapter.query(tracked.order)
        except BrokerError as exc:
            log.warning("poll of %s at %s failed: %s", tracked.order.client_order_id,
                        tracked.adapter.name, exc)
            return None

    async def run(self, tick: float = 0.05) -> None:
        """Poll loop for the executor's lifetime; sleeps while nothing polls."""
        while True:
            if not any(t.adapter.poll_interval is not None for t in self._open.values()):
                self._wake.clear()
                await self._wake.wait()
            try:
                await self.poll_due()
            except Exception:
                log.exception("fill tracker poll failed; continuing")
            await asyncio.sleep(tick)


def _allowed(order: Order) -> frozenset[OrderState]:
    return ALLOWED_TRANSITIONS[order.state]
