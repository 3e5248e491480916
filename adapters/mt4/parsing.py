"""The bridge's values into ours: tickets, the account, units <-> lots, and an order's cumulative
status over every ticket that carries (or closed with) its client id.

Pure functions over the bridge's JSON (decimal strings, so nothing passes through a float); no
I/O and no httpx here.

How an order's fills are counted (README, "MT4 bridge contract"):

* a ticket opened with our client id that is ``open`` or ``closed`` was executed: its volume
  filled at its ``open_price``. A partial close leaves the remainder on a new ticket that
  inherits the client id, and the closed ticket keeps only the closed part, so the sum over
  the tickets is still what was opened;
* a ticket closed *by* our order (``close_client_id``, the netting mode) counts for our order
  at its ``close_price``: closing a SELL is buying;
* ``pending`` is working, ``deleted`` is cancelled;
* commission is charged when a ticket opens (negative: a cost); ours is what our opened tickets
  were charged, reported as a positive cost in the account currency.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from execution.ports import BrokerError, OrderRejected, Quote, VenueOrderStatus
from schemas import OrderState, Side

TicketState = Literal["pending", "open", "closed", "deleted"]
_STATES: frozenset[str] = frozenset({"pending", "open", "closed", "deleted"})
#: states in which a ticket's volume was executed
EXECUTED: frozenset[str] = frozenset({"open", "closed"})
#: exit legs of a bracket as MT4 holds them: on the ticket itself
ExitLeg = Literal["sl", "tp"]


def dec(value: Any, what: str = "number") -> Decimal:
    """A bridge number (a decimal string) as an exact Decimal; refuses floats' surprises loudly."""
    if isinstance(value, bool) or value is None or value == "":
        raise BrokerError(f"MT4 bridge sent no {what}")
    try:
        return Decimal(str(value))
    except InvalidOperation:
        raise BrokerError(f"MT4 bridge sent {what} {value!r}, not a decimal") from None


def opt_dec(value: Any, what: str = "number") -> Decimal | None:
    return None if value is None or value == "" else dec(value, what)


def _time(value: Any) -> datetime | None:
    if not value:
        return None
    text = str(value)
    try:
        return datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class Ticket:
    """One MT4 order (a ticket), as the bridge returns it."""

    ticket: int
    symbol: str
    side: Side
    type: str
    state: TicketState
    volume: Decimal
    open_price: Decimal | None
    price: Decimal | None
    open_time: datetime | None
    close_price: Decimal | None
    close_time: datetime | None
    sl: Decimal | None
    tp: Decimal | None
    profit: Decimal
    commission: Decimal
    swap: Decimal
    magic: int
    comment: str
    client_id: str | None
    close_client_id: str | None
    from_ticket: int | None

    @property
    def executed(self) -> bool:
        return self.state in EXECUTED

    def closed_by(self) -> ExitLeg | None:
        """Whether MT4 closed this ticket at its stop-loss or take-profit.

        MT4 marks such a close in the comment (``[sl]``/``[tp]``) and a bridge may pass that on;
        otherwise the close price tells: SL and TP are triggered on the closing side of the quote
        (bid for a buy, ask for a sell), so a buy closed at or below its SL was stopped out and
        one closed at or above its TP took profit (mirrored for a sell). A close made by an
        order (``close_client_id``) is that order's, whatever the price."""
        if self.state != "closed" or self.close_client_id is not None:
            return None
        comment = self.comment.lower()
        if "[sl]" in comment:
            return "sl"
        if "[tp]" in comment:
            return "tp"
        price = self.close_price
        if price is None:
            return None
        buy = self.side is Side.BUY
        if self.sl is not None and (price <= self.sl if buy else price >= self.sl):
            return "sl"
        if self.tp is not None and (price >= self.tp if buy else price <= self.tp):
            return "tp"
        return None


def parse_ticket(raw: Mapping[str, Any]) -> Ticket:
    """A bridge order object -> ``Ticket``; a malformed one raises ``BrokerError`` naming the field."""
    try:
        state = str(raw["state"])
        side = str(raw["side"]).lower()
        number = int(raw["ticket"])
    except (KeyError, TypeError, ValueError) as exc:
        raise BrokerError(f"MT4 bridge sent a malformed order object ({exc!r}): {dict(raw)!r}") from None
    if state not in _STATES or side not in ("buy", "sell"):
        raise BrokerError(f"MT4 bridge sent ticket {number} with state {state!r} side {side!r}")
    from_ticket = raw.get("from_ticket")
    return Ticket(
        ticket=number,
        symbol=str(raw.get("symbol") or ""),
        side=Side.BUY if side == "buy" else Side.SELL,
        type=str(raw.get("type") or ""),
        state=state,  # type: ignore[arg-type]  # checked against _STATES above
        volume=dec(raw.get("volume"), "volume"),
        open_price=opt_dec(raw.get("open_price"), "open_price"),
        price=opt_dec(raw.get("price"), "price"),
        open_time=_time(raw.get("open_time")),
        close_price=opt_dec(raw.get("close_price"), "close_price"),
        close_time=_time(raw.get("close_time")),
        sl=opt_dec(raw.get("sl"), "sl"),
        tp=opt_dec(raw.get("tp"), "tp"),
        profit=opt_dec(raw.get("profit"), "profit") or Decimal(0),
        commission=opt_dec(raw.get("commission"), "commission") or Decimal(0),
        swap=opt_dec(raw.get("swap"), "swap") or Decimal(0),
        magic=int(raw.get("magic") or 0),
        comment=str(raw.get("comment") or ""),
        client_id=raw.get("client_id") or None,
        close_client_id=raw.get("close_client_id") or None,
        from_ticket=int(from_ticket) if from_ticket is not None else None,
    )


def parse_tickets(payload: Any) -> list[Ticket]:
    """``GET /orders`` -> its tickets, oldest first (as the bridge lists them)."""
    rows = payload.get("orders") if isinstance(payload, Mapping) else None
    if not isinstance(rows, list):
        raise BrokerError(f"MT4 bridge answered /orders without an orders list: {payload!r}")
    return [parse_ticket(row) for row in rows]


@dataclass(frozen=True, slots=True)
class Account:
    """``GET /account``: the adapter's health check and the account view."""

    login: int
    balance: Decimal
    equity: Decimal
    margin: Decimal
    free_margin: Decimal
    currency: str
    leverage: int


def parse_account(raw: Any) -> Account:
    if not isinstance(raw, Mapping):
        raise BrokerError(f"MT4 bridge answered /account with {raw!r}")
    try:
        return Account(
            login=int(raw.get("login") or 0),
            balance=dec(raw.get("balance"), "balance"),
            equity=dec(raw.get("equity"), "equity"),
            margin=dec(raw.get("margin"), "margin"),
            free_margin=dec(raw.get("free_margin"), "free_margin"),
            currency=str(raw.get("currency") or ""),
            leverage=int(raw.get("leverage") or 0),
        )
    except (TypeError, ValueError) as exc:
        raise BrokerError(f"MT4 bridge answered /account with {raw!r}: {exc}") from None


def parse_quote(symbol: str, raw: Any) -> Quote:
    if not isinstance(raw, Mapping):
        raise BrokerError(f"MT4 bridge answered /quote/{symbol} with {raw!r}")
    return Quote(symbol=symbol, bid=opt_dec(raw.get("bid"), "bid"), ask=opt_dec(raw.get("ask"), "ask"), last=None)


# -- units <-> lots ------------------------------------------------------------------------------


def to_lots(units: Decimal, *, contract_size: Decimal, lot_step: Decimal, context: str) -> Decimal:
    """Base-currency units -> lots, exactly, as a multiple of ``lot_step`` (EURUSD 10000 -> 0.10).

    A quantity that is not a whole number of lot steps is refused with the reason, never rounded:
    the order would otherwise be filled for something else than the strategy asked."""
    step_units = contract_size * lot_step
    steps = units / step_units
    if units <= 0 or steps != steps.to_integral_value():
        raise OrderRejected(
            f"{context}: quantity {_plain(units)} is not a multiple of {_plain(step_units)} units "
            f"({_plain(lot_step)} lot); not sent to MT4",
            code=131,
        )
    return (steps * lot_step).quantize(lot_step)


def to_units(lots: Decimal, contract_size: Decimal) -> Decimal:
    return _normal(lots * contract_size)


def wire(value: Decimal) -> str:
    """A Decimal as the bridge's decimal string (no exponent)."""
    return format(value, "f")


def _plain(value: Decimal) -> str:
    return format(_normal(value), "f")


def _normal(value: Decimal) -> Decimal:
    """Without trailing zeros, but never in exponent form (100000, not 1E+5)."""
    normal = value.normalize()
    return normal.quantize(Decimal(1)) if normal == normal.to_integral_value() else normal


# -- an order's cumulative status --------------------------------------------------------------


def order_status(
    client_order_id: str,
    tickets: Sequence[Ticket],
    *,
    quantity: Decimal,
    contract_size: Decimal,
    commission_asset: str | None,
    settled: bool = True,
) -> VenueOrderStatus | None:
    """The order's cumulative status from ``GET /orders?client_id=<id>``; None if no ticket names it.

    ``quantity`` is the order's (units). ``settled`` False means a trade request of this order may
    still be working its way through the bridge: an incomplete order with nothing working at MT4
    is then not yet called finished."""
    own = [t for t in tickets if t.client_id == client_order_id]
    closes = [t for t in tickets
              if t.close_client_id == client_order_id and t.client_id != client_order_id and t.state == "closed"]
    if not own and not closes:
        return None
    lots = Decimal(0)
    notional = Decimal(0)
    for ticket in own:
        if ticket.executed and ticket.open_price is not None:
            lots += ticket.volume
            notional += ticket.volume * contract_size * ticket.open_price
    for ticket in closes:
        if ticket.close_price is not None:
            lots += ticket.volume
            notional += ticket.volume * contract_size * ticket.close_price
    filled = to_units(lots, contract_size)
    cost = -sum((t.commission for t in own if t.executed), Decimal(0))
    working = any(t.state == "pending" for t in own)
    deleted = any(t.state == "deleted" for t in own)
    reason = ""
    if filled >= quantity:
        state = OrderState.FILLED
    elif working:
        state = OrderState.PARTIALLY_FILLED if filled > 0 else OrderState.SUBMITTED
    elif deleted:
        state = OrderState.CANCELLED
        reason = "pending order deleted at MT4"
    elif filled > 0 and settled:
        # nothing of it works at MT4 any more: a netting order whose closes went through and
        # whose excess was never opened (refused, or the process died in between)
        state = OrderState.CANCELLED
        reason = f"remainder of {_plain(quantity - filled)} units not working at MT4"
    elif filled > 0:
        state = OrderState.PARTIALLY_FILLED
    else:
        state = OrderState.SUBMITTED
    first = (own or closes)[0]
    return VenueOrderStatus(
        client_order_id=client_order_id,
        venue_order_id=str(first.ticket),
        state=state,
        filled_quantity=filled,
        avg_fill_price=_normal(notional / filled) if filled > 0 else None,
        commission=max(cost, Decimal(0)),
        commission_asset=commission_asset if cost > 0 else None,
        reason=reason,
        filled_notional=_normal(notional) if filled > 0 else None,
    )


def exit_status(
    client_order_id: str,
    entry_id: str,
    leg: ExitLeg,
    tickets: Sequence[Ticket],
    *,
    quantity: Decimal,
    contract_size: Decimal,
) -> VenueOrderStatus | None:
    """A bracket exit leg (``<entry>/sl`` or ``/tp``) as MT4 holds it: the SL or TP on the entry's
    tickets. It fills when MT4 closes them there (at the close price) and is over once no ticket
    of the entry is working (the other leg, a manual close or a deleted entry ended it)."""
    own = [t for t in tickets if t.client_id == entry_id]
    if not own:
        return None
    hit = [t for t in own if t.closed_by() == leg and t.close_price is not None]
    lots = sum((t.volume for t in hit), Decimal(0))
    notional = sum((t.volume * contract_size * t.close_price for t in hit if t.close_price is not None), Decimal(0))
    filled = to_units(lots, contract_size)
    working = any(t.state in ("pending", "open") for t in own)
    reason = ""
    if filled >= quantity:
        state = OrderState.FILLED
    elif working:
        state = OrderState.PARTIALLY_FILLED if filled > 0 else OrderState.SUBMITTED
    else:
        state = OrderState.CANCELLED
        other = "tp" if leg == "sl" else "sl"
        if any(t.closed_by() == other for t in own):
            reason = f"bracket {entry_id}: the {'take-profit' if other == 'tp' else 'stop-loss'} closed it at MT4"
        elif all(t.state == "deleted" for t in own):
            reason = f"bracket {entry_id}: the entry was deleted at MT4 before it opened"
        else:
            reason = f"bracket {entry_id}: its position was closed at MT4 without this exit"
    return VenueOrderStatus(
        client_order_id=client_order_id,
        venue_order_id=str(own[0].ticket),
        state=state,
        filled_quantity=filled,
        avg_fill_price=_normal(notional / filled) if filled > 0 else None,
        reason=reason,
        filled_notional=_normal(notional) if filled > 0 else None,
    )
