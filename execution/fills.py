"""Fill and position arithmetic: pure functions of numbers and wire models, no I/O.

Why here, in the core: the fill tracker (venue totals -> Fill messages) and every fill store
(``adapters/timescale/store.py``, ``adapters/memory.py``) must agree to the last digit on what a
fill adds to an order and to a position. One module computes it, so a replay on the in-memory
store and production on PostgreSQL give the same numbers.

The model: venues report *cumulative* totals (filled quantity, average price or notional). A fill
is the growth of those totals, and its ``cumulative_quantity`` is a watermark: applying a fill
only adds what lies beyond what is already recorded, so a duplicate, a re-emitted copy under a new
id, or a stale fill that arrives late changes nothing. Positions use the average-cost method.

Pricing a gap (issue 12, "books drift"): a fill also carries its order's ``cumulative_notional``,
so whoever applies it prices the growth *from its own watermark*: ``(cumulative_notional -
known notional) / growth``. Its ``price`` is only the increment from the producer's baseline,
which is wrong for a consumer whose watermark differs (it missed a fill, or the producer
restarted from an older baseline): 0.5 @ 100 applied, then "1.0 filled, notional 101" must
leave the order at 101 and the growth at 102, never 100.5. A fill without the notional (an older
producer) is applied as before, its growth at its ``price``.

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


def cumulative_notional(
    cumulative_quantity: Decimal, *, avg_price: Decimal | None = None, notional: Decimal | None = None
) -> Decimal | None:
    """An order's filled notional from a venue's cumulative report: the venue's own notional
    when it gives a positive one (Binance's ``cummulativeQuoteQty``), else quantity x average
    price. ``None`` when nothing is filled or no price is known."""
    if cumulative_quantity <= 0:
        return None
    if notional is not None and notional > 0:
        return notional
    if avg_price is None or avg_price <= 0:
        return None
    with localcontext(prec=DECIMAL_PRECISION):
        return cumulative_quantity * avg_price


def _same_price(exact: Decimal, rounded: Decimal) -> bool:
    """``rounded`` is ``exact`` as ``fill_increment`` rounds a derived price."""
    with localcontext(prec=DECIMAL_PRECISION):
        return exact.quantize(PRICE_PLACES) == rounded


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
        ``increment`` says at which price."""
        step = self.increment(fill)
        return None if step is None else step.quantity

    def increment(self, fill: Fill) -> FillIncrement | None:
        """Advance the watermark to ``fill.cumulative_quantity``; return what was applied (the
        growth and its price from this watermark), or ``None`` when the fill brings no growth
        (duplicate, re-emitted or stale).

        With ``cumulative_notional`` the growth is priced from this watermark's notional and the
        order's average becomes the venue's (``cumulative_notional / cumulative_quantity``),
        whatever fills this store saw before; without it, the growth is priced at ``fill.price``.
        A live order moves to PARTIALLY_FILLED / FILLED; a terminal one (a late fill on a
        cancelled order) keeps its state but its totals still grow: the execution happened."""
        applied = fill.cumulative_quantity - self.filled
        if applied <= 0:
            return None
        if fill.cumulative_notional is not None:
            step = fill_increment(self.filled, self.avg_price, fill.cumulative_quantity,
                                  notional=fill.cumulative_notional)
            assert step is not None  # growth is positive and the notional is given
            if applied == fill.quantity and _same_price(fill.price, step.price):
                # the producer's baseline is ours: keep its price's digits past the rounding
                step = FillIncrement(applied, fill.price)
            with localcontext(prec=DECIMAL_PRECISION):
                self.avg_price = fill.cumulative_notional / fill.cumulative_quantity
        else:
            step = FillIncrement(applied, fill.price)
            self.avg_price = average_after(self.filled, self.avg_price, applied, fill.price)
        self.filled = fill.cumulative_quantity
        self.venue_order_id = self.venue_order_id or fill.venue_order_id
        if self.state is not None and not self.state.is_terminal and self.quantity is not None:
            self.state = fill_state(self.filled, self.quantity)
        self.changed = True
        return step


@dataclass(frozen=True, slots=True)
class AppliedFill:
    """A fill as applied (``quantity`` = its watermark growth, ``price`` = that growth's price
    from the store's watermark) with the quantity the fill reported."""

    fill: Fill
    reported_quantity: Decimal


def fill_event(
    order: OrderFillState, fill: Fill, applied: Decimal, previous: OrderState, ts: datetime,
    price: Decimal | None = None,
) -> OrderEvent:
    """The audit event of one fill applied to an order (``applied`` at ``price``, the fill's own
    price by default); a fill on a closed order says so."""
    reason = (f"fill {fill.exec_id}: {applied} @ {fill.price if price is None else price}, "
              f"cumulative {fill.cumulative_quantity}")
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
    place. Returns the fills that brought growth, as applied (quantity and price of the growth
    from the order's watermark, which positions then move by), and one audit event per fill
    applied to an existing order (stamped ``ts``)."""
    applied: list[AppliedFill] = []
    events: list[OrderEvent] = []
    for fill in fills:
        order = orders[fill.client_order_id]
        previous = order.state
        step = order.increment(fill)
        if step is None:
            continue
        applied.append(AppliedFill(fill.model_copy(update={"quantity": step.quantity, "price": step.price}),
                                   fill.quantity))
        if previous is not None:
            events.append(fill_event(order, fill, step.quantity, previous, ts, step.price))
    return applied, events


@dataclass(frozen=True, slots=True)
class Watermark:
    """How much of one order a consumer has passed on: its cumulative quantity and notional."""

    quantity: Decimal
    notional: Decimal


def advance_watermarks(
    fills: Iterable[Fill], known: Mapping[str, Watermark]
) -> tuple[list[Fill], dict[str, Watermark]]:
    """What a fill publisher passes on: each fill's growth beyond its order's watermark, in order.

    ``known`` holds the watermark of (some of) the fills' orders; an order missing from it has
    passed nothing on yet. Returns the fills to publish, each with ``quantity`` = its growth and
    ``price`` = that growth's price from the watermark (so what subscribers add up never exceeds
    the venue's cumulative quantity and is priced at its notional), and the new watermark of
    every order that grew. A duplicate, a re-emitted copy, a stale fill, or one a later fill
    already covered, brings no growth and is left out. The watermark rule is the stores'
    (``OrderFillState``), so the publishers and the books agree."""
    states: dict[str, OrderFillState] = {}
    notional: dict[str, Decimal] = {}
    published: list[Fill] = []
    for fill in fills:
        cid = fill.client_order_id
        state = states.get(cid)
        if state is None:
            mark = known.get(cid)
            state = states[cid] = (OrderFillState.orphan(cid, mark.quantity, mark.notional) if mark
                                   else OrderFillState(cid))
        step = state.increment(fill)
        if step is None:
            continue
        assert state.avg_price is not None  # set by any growth
        if fill.cumulative_notional is not None:
            notional[cid] = fill.cumulative_notional
        else:
            with localcontext(prec=DECIMAL_PRECISION):
                notional[cid] = state.filled * state.avg_price
        published.append(fill.model_copy(update={"quantity": step.quantity, "price": step.price}))
    marks = {cid: Watermark(states[cid].filled, total) for cid, total in notional.items()}
    return published, marks


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
