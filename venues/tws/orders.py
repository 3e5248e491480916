"""Orders, executions and positions of the simulated TWS, as the engine keeps them.

IB names an order by the placing client's id and the order id that client chose; ``perm_id`` is
TWS's own id, unique across clients and stable for the order's life. Statuses are IB's
(``PreSubmitted``, ``Submitted``, ``Filled``, ``Cancelled``, ``Inactive``); an order held by the
simulator because its bracket has not been transmitted yet is ``held`` and visible to no one.
Quantities and prices are ``Decimal``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from venues.tws.contracts import Instrument

ZERO = Decimal(0)

PRE_SUBMITTED = "PreSubmitted"
SUBMITTED = "Submitted"
FILLED = "Filled"
CANCELLED = "Cancelled"
INACTIVE = "Inactive"
#: not an IB status: a transmit=0 order waiting for the rest of its bracket
HELD = "held"

DONE_STATUSES = frozenset({FILLED, CANCELLED, INACTIVE})

ORDER_TYPES = frozenset({"MKT", "LMT", "STP", "STP LMT"})
TIFS = frozenset({"DAY", "GTC", "IOC", "FOK", "GTD", "OPG"})


@dataclass(slots=True)
class OrderRequest:
    """What a placeOrder message asks for (the fields the simulator acts on)."""

    order_id: int
    action: str
    total_quantity: Decimal
    order_type: str
    lmt_price: Decimal | None = None
    aux_price: Decimal | None = None
    tif: str = "DAY"
    oca_group: str = ""
    oca_type: int = 0
    account: str = ""
    order_ref: str = ""
    transmit: bool = True
    parent_id: int = 0
    outside_rth: bool = False
    #: the exchange the order's contract named (SMART, ARCA, CME ...)
    exchange: str = ""


@dataclass(slots=True)
class Execution:
    """One fill, as execDetails and commissionReport carry it."""

    exec_id: str
    order_id: int
    client_id: int
    perm_id: int
    account: str
    instrument: Instrument
    contract_exchange: str
    side: str  # BOT / SLD
    shares: Decimal
    price: Decimal
    cum_qty: Decimal
    avg_price: Decimal
    order_ref: str
    time: float
    #: 1 added liquidity (a resting order), 2 removed it
    liquidity: int
    commission: Decimal
    commission_currency: str
    realized_pnl: Decimal | None

    @property
    def action(self) -> str:
        return "BUY" if self.side == "BOT" else "SELL"


@dataclass(slots=True)
class Order:
    client_id: int
    order_id: int
    perm_id: int
    account: str
    instrument: Instrument
    request: OrderRequest
    created: float
    status: str = HELD
    filled: Decimal = ZERO
    avg_fill_price: Decimal = ZERO
    last_fill_price: Decimal = ZERO
    #: a stop order whose stop price was reached (it now works as market or limit)
    triggered: bool = False
    #: the placement's acknowledgement was lost (fault injection): the client heard nothing of it
    ack_lost: bool = False
    completed_time: float | None = None
    completed_status: str = ""
    commission_charged: Decimal = ZERO
    executions: list[Execution] = field(default_factory=list)

    @property
    def key(self) -> tuple[int, int]:
        return self.client_id, self.order_id

    @property
    def total_quantity(self) -> Decimal:
        return self.request.total_quantity

    @property
    def remaining(self) -> Decimal:
        return self.request.total_quantity - self.filled

    @property
    def is_done(self) -> bool:
        return self.status in DONE_STATUSES

    @property
    def is_working(self) -> bool:
        """Transmitted and neither done nor waiting for its parent to fill."""
        return self.status == SUBMITTED

    @property
    def is_open(self) -> bool:
        """What reqOpenOrders lists: transmitted and not done."""
        return self.status in (PRE_SUBMITTED, SUBMITTED)

    @property
    def why_held(self) -> str:
        return "child" if self.status == PRE_SUBMITTED and self.request.parent_id else ""

    @property
    def side(self) -> str:
        return "BOT" if self.request.action == "BUY" else "SLD"

    @property
    def signed(self) -> Decimal:
        return Decimal(1) if self.request.action == "BUY" else Decimal(-1)


@dataclass(slots=True)
class Position:
    """One account's holding of one instrument; ``avg_cost`` per unit including the multiplier, as IB reports it."""

    account: str
    instrument: Instrument
    quantity: Decimal = ZERO
    avg_cost: Decimal = ZERO
    realized_pnl: Decimal = ZERO

    def apply(self, signed_qty: Decimal, price: Decimal) -> Decimal:
        """Book a fill of ``signed_qty`` at ``price``; returns the realized P&L of the part that closed."""
        cost = price * self.instrument.multiplier_value
        realized = ZERO
        if self.quantity == 0 or (self.quantity > 0) == (signed_qty > 0):
            total = self.quantity + signed_qty
            self.avg_cost = (self.avg_cost * abs(self.quantity) + cost * abs(signed_qty)) / abs(total)
            self.quantity = total
            return realized
        closing = min(abs(signed_qty), abs(self.quantity))
        direction = Decimal(1) if self.quantity > 0 else Decimal(-1)
        realized = (cost - self.avg_cost) * closing * direction
        self.realized_pnl += realized
        rest = abs(signed_qty) - closing
        self.quantity += signed_qty
        if self.quantity == 0:
            self.avg_cost = ZERO
        elif rest > 0:  # flipped through zero: the rest opens at this price
            self.avg_cost = cost
        return realized
