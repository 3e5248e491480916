"""Fill and position arithmetic: pure functions of numbers and wire models, no I/O.

Why here, in the core: the fill tracker (venue totals -> Fill messages) and every fill store
(``adapters/timescale/store.py``, ``adapters/memory.py``) must agree to the last digit on what a
fill adds to an order and to a position. One module computes it, so a replay on the in-memory
store and production on PostgreSQL give the same numbers.

The model: venues report *cumulative* totals (filled quantity, average price or notional). A fill
is the growth of those totals, and its ``cumulative_quantity`` is a watermark: applying a fill
only adds what lies beyond what is already recorded, so a duplicate, a re-emitted copy under a new
id, or a stale fill that arrives late changes nothing. Positions use the average-cost method.

Money is ``Decimal`` throughout; sums and products run in a ``DECIMAL_PRECISION``-digit context so
they stay exact and only divisions (averages) ever round.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal, localcontext

from schemas import Broker, Fill, Order, OrderEvent, OrderState

#: Significant digits of the fill/position arithmetic; generous so only divisions ever round.
DECIMAL_PRECISION = 50
#: Places a derived fill price is rounded to (a division of two notionals rarely terminates).
PRICE_PLACES = Decimal("1e-12")

_ZERO = Decimal(0)

PositionKey = tuple[Broker, str]
"""A position is kept per ``(broker, symbol)``."""


# ---- one order's fills ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FillIncrement:
    """The growth between two cumulative reports of one order: what one Fill carries."""

    quantity: Decimal
    price: Decimal


def fill_increment(
    known_quantity: Decimal,
    known_avg_price: Decimal | None,
    cumulative_quantity: Decimal,
    *,
    avg_price: Decimal | None = None,
    notional: Decimal | None = None,
) -> FillIncrement | None:
    """The fill between what is known of an order and a venue's new cumulative report.

    ``known_quantity`` / ``known_avg_price`` are the totals already turned into fills;
    ``cumulative_quantity`` with either its ``avg_price`` or its ``notional`` (quantity x price,
    Binance's ``cummulativeQuoteQty``) is what the venue reports now. Returns ``None`` when the
    report brings no growth or carries no price. The increment's price is what makes the two
    notionals add up, rounded to ``PRICE_PLACES``; if rounding or a venue's own rounding of its
    average would make it non-positive, the cumulative average is used instead.
    """
    quantity = cumulative_quantity - known_quantity
    if quantity <= 0:
        return None
    with localcontext(prec=DECIMAL_PRECISION):
        if notional is None:
            if avg_price is None:
                return None
            notional = avg_price * cumulative_quantity
        known_notional = (known_avg_price or _ZERO) * known_quantity
        price = ((notional - known_notional) / quantity).quantize(PRICE_PLACES).normalize()
        if price <= 0:
            price = avg_price if avg_price is not None else notional / cumulative_quantity
    return FillIncrement(quantity, price)


def average_after(filled: Decimal, avg_price: Decimal | None, quantity: Decimal, price: Decimal) -> Decimal:
    """The order's average fill price once ``quantity`` more is filled at ``price``.

    An unknown prior average (nothing filled yet) counts at the new price."""
    prior = avg_price if avg_price is not None else price
    with localcontext(prec=DECIMAL_PRECISION):
        return (prior * filled + price * quantity) / (filled + quantity)


def fill_state(filled: Decimal, order_quantity: Decimal) -> OrderState:
    """The state fills alone put an order in: FILLED once the whole quantity is done."""
    return OrderState.FILLED if filled >= order_quantity else OrderState.PARTIALLY_FILLED


def commission_increment(
    cumulative_commission: Decimal,
    known_commission: Decimal | None,
    increment_quantity: Decimal,
    cumulative_quantity: Decimal,
) -> Decimal:
    """The commission one fill carries, from a venue's cumulative commission.

    With the commission already carried by earlier fills known, the fill carries the growth;
    when that is unknown (first sight of the order after a restart), its share proportional to
    its quantity. Never negative."""
    if known_commission is not None:
        return max(_ZERO, cumulative_commission - known_commission)
    if cumulative_quantity <= 0:
        return _ZERO
    with localcontext(prec=DECIMAL_PRECISION):
        share = cumulative_commission * increment_quantity / cumulative_quantity
        return max(_ZERO, share.quantize(PRICE_PLACES))


@dataclass(slots=True)
class OrderFillState:
    """One order's cumulative fill watermark while a batch of fills is applied to it.

    A store builds one per order touched by a batch (``of`` for an order it holds, ``orphan``
    for a fill whose order it does not hold), lets ``absorb`` walk the batch's fills in order,
    then writes back the states whose ``changed`` is set. ``absorb`` is the whole idempotency
    rule of fill application: only growth of ``cumulative_quantity`` beyond ``filled`` counts.

    ``state`` is ``None`` for an orphan: it has no state to advance, and its watermark is what
    the store already recorded for that client order id.
    """

    client_order_id: str
    filled: Decimal = _ZERO
    avg_price: Decimal | None = None
    #: the order's quantity; None for an orphan
    quantity: Decimal | None = None
    state: OrderState | None = None
    broker: Broker | None = None
    symbol: str | None = None
    venue_order_id: str | None = None
    changed: bool = False

    @classmethod
    def of(cls, order: Order) -> OrderFillState:
        return cls(
            client_order_id=order.client_order_id,
            filled=order.filled_quantity,
            avg_price=order.avg_fill_price,
            quantity=order.quantity,
            state=order.state,
            broker=order.broker,
            symbol=order.symbol,
            venue_order_id=order.venue_order_id,
        )

    @classmethod
    def orphan(cls, client_order_id: str, filled: Decimal, notional: Decimal) -> OrderFillState:
        """An order the store does not hold, whose recorded fills total ``filled`` for ``notional``."""
        if filled <= 0:
            return cls(client_order_id)
        with localcontext(prec=DECIMAL_PRECISION):
            return cls(client_order_id, filled=filled, avg_price=notional / filled)

    @property
    def exists(self) -> bool:
        return self.state is not None

    def absorb(self, fill: Fill) -> Decimal | None:
        """Advance the watermark to ``fill.cumulative_quantity``; return the quantity applied,
        or ``None`` when the fill brings no growth (duplicate, re-emitted or stale).

        A live order moves to PARTIALLY_FILLED / FILLED; a terminal one (a late fill on a
        cancelled order) keeps its state but its totals still grow: the execution happened."""
        applied = fill.cumulative_quantity - self.filled
        if applied <= 0:
            return None
        self.avg_price = average_after(self.filled, self.avg_price, applied, fill.price)
        self.filled = fill.cumulative_quantity
        self.venue_order_id = self.venue_order_id or fill.venue_order_id
        if self.state is not None and not self.state.is_terminal and self.quantity is not None:
            self.state = fill_state(self.filled, self.quantity)
        self.changed = True
        return applied


@dataclass(frozen=True, slots=True)
class AppliedFill:
    """A fill as applied (``quantity`` = its watermark growth) with the quantity the venue reported."""

    fill: Fill
    reported_quantity: Decimal


def fill_event(
    order: OrderFillState, fill: Fill, applied: Decimal, previous: OrderState, ts: datetime
) -> OrderEvent:
    """The audit event of one fill applied to an order; a fill on a closed order says so."""
    reason = f"fill {fill.exec_id}: {applied} @ {fill.price}, cumulative {fill.cumulative_quantity}"
    if previous.is_terminal:
        reason = f"late {reason} on {previous.value} order"
    return OrderEvent(
        client_order_id=order.client_order_id,
        broker=order.broker or fill.broker,
        symbol=order.symbol or fill.symbol,
        state=order.state or previous,
        previous_state=previous,
        reason=reason,
        ts=ts,
    )


def first_of_each(fills: Iterable[Fill]) -> list[Fill]:
    """Drop repeats of the same ``(broker, exec_id)`` inside one batch, keeping batch order."""
    seen: set[tuple[Broker, str]] = set()
    unique: list[Fill] = []
    for fill in fills:
        key = (fill.broker, fill.exec_id)
        if key not in seen:
            seen.add(key)
            unique.append(fill)
    return unique


def apply_to_orders(
    orders: Mapping[str, OrderFillState], fills: Sequence[Fill], ts: datetime
) -> tuple[list[AppliedFill], list[OrderEvent]]:
    """Walk a batch of new fills, in order, against the watermarks of their orders.

    ``orders`` must hold a state for every fill's client order id; the states are advanced in
    place. Returns the fills that brought growth, as applied, and one audit event per fill
    applied to an existing order (stamped ``ts``)."""
    applied: list[AppliedFill] = []
    events: list[OrderEvent] = []
    for fill in fills:
        order = orders[fill.client_order_id]
        previous = order.state
        quantity = order.absorb(fill)
        if quantity is None:
            continue
        applied.append(AppliedFill(fill.model_copy(update={"quantity": quantity}), fill.quantity))
        if previous is not None:
            events.append(fill_event(order, fill, quantity, previous, ts))
    return applied, events


# ---- positions ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PositionState:
    """A net position under the average-cost method.

    Adding to a position (or opening one) moves ``avg_price`` to the weighted average; reducing
    it realises ``(price - avg) * closed * direction`` and keeps the average; going flat resets the
    average to 0; flipping through zero opens the remainder at the fill price.
    """

    quantity: Decimal = _ZERO
    avg_price: Decimal = _ZERO
    realized_pnl: Decimal = _ZERO

    def apply(self, signed_quantity: Decimal, price: Decimal) -> PositionState:
        with localcontext(prec=DECIMAL_PRECISION):
            return self._apply(signed_quantity, price)

    def _apply(self, signed_quantity: Decimal, price: Decimal) -> PositionState:
        held = self.quantity
        after = held + signed_quantity
        if held == 0 or (held > 0) == (signed_quantity > 0):
            average = (abs(held) * self.avg_price + abs(signed_quantity) * price) / abs(after)
            return replace(self, quantity=after, avg_price=average)
        closed = min(abs(signed_quantity), abs(held))
        direction = 1 if held > 0 else -1
        realized = self.realized_pnl + (price - self.avg_price) * closed * direction
        if after == 0:
            average = _ZERO
        elif (after > 0) != (held > 0):
            average = price
        else:
            average = self.avg_price
        return PositionState(quantity=after, avg_price=average, realized_pnl=realized)


def move_positions(
    positions: Mapping[PositionKey, PositionState], applied: Iterable[AppliedFill]
) -> dict[PositionKey, PositionState]:
    """The positions touched by ``applied``, after it, in key order; untouched ones are left out.

    A key missing from ``positions`` starts flat."""
    moved: dict[PositionKey, PositionState] = {}
    for item in applied:
        key = (item.fill.broker, item.fill.symbol)
        current = moved.get(key) or positions.get(key) or PositionState()
        moved[key] = current.apply(item.fill.signed_quantity, item.fill.price)
    return dict(sorted(moved.items()))
