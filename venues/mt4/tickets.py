"""One MT4 ticket: a pending order, an open position, or their closed/deleted record.

MT4 keeps one number per order for its whole life: a pending order that triggers keeps its
ticket and becomes an open position; closing it (fully, or this ticket's part of a partial
close) leaves it "closed"; a pending order removed is "deleted". A partial close puts the
remainder on a NEW ticket whose ``from_ticket`` names the original.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from venues.mt4.wire import ZERO


@dataclass(slots=True)
class Ticket:
    ticket: int
    symbol: str
    side: str
    #: as placed: "market", "limit" or "stop" (a triggered pending order keeps its type; ``state`` says it is open)
    type: str
    state: str
    volume: Decimal
    #: a pending order's trigger price (kept after it triggers); ``None`` for a market order
    price: Decimal | None
    placed_time: datetime
    open_price: Decimal | None = None
    open_time: datetime | None = None
    close_price: Decimal | None = None
    close_time: datetime | None = None
    sl: Decimal | None = None
    tp: Decimal | None = None
    #: realised profit in the account currency once closed (an open ticket's is computed from the quote)
    profit: Decimal = ZERO
    commission: Decimal = ZERO
    swap: Decimal = ZERO
    #: margin held while open, in the account currency, fixed at the open price
    margin: Decimal = ZERO
    magic: int = 0
    comment: str = ""
    client_id: str | None = None
    close_client_id: str | None = None
    from_ticket: int | None = None

    @property
    def is_buy(self) -> bool:
        return self.side == "buy"

    @property
    def is_open(self) -> bool:
        return self.state == "open"

    @property
    def is_pending(self) -> bool:
        return self.state == "pending"
