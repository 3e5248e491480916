"""MT4 execution over the REST bridge: the BrokerPort, plus the MT4 operations the core does not
call yet (modify SL/TP, close full or partial, the account view, a ticket listing).

What it guarantees to the core:

* **No order placed twice.** The bridge's ``POST /order/place`` is not idempotent (MT4's
  OrderSend is not), so the order's ``client_order_id`` goes out as the bridge's ``client_id``
  (and the comment), and ``GET /orders?client_id=`` finds every ticket it made. A placement is
  sent again only when it certainly never executed: refused before sending (connection
  refused) or answered 136 off quotes / 138 requote / 146 trade context busy, and then only
  while the signal is younger than ``MT4_REQUOTE_WINDOW``. One that may have executed (timeout,
  dropped connection, 5xx) is looked up at once; if the bridge does not show it, the adapter
  raises ``OutcomeUnknown`` (a ``PlacementUnknown``) and remembers, per client id, the time
  before which the bridge's "none" proves nothing (``MT4_SETTLE_DELAY``: the terminal works
  through trade requests one at a time and may still execute it). Until then ``query`` raises
  the same instead of answering None, and ``place`` of that order looks instead of sending.
  The note lives in this process; the order's ownership lease (30 s) outlives it.
* **Cumulative fills over tickets** (``parsing.order_status``): units = lots x contract size,
  average price over the executed tickets' open prices (and, in netting mode, the close prices
  of the tickets the order closed), the commission the order's tickets were charged.
* **Units exact.** A quantity that is not a whole number of lot steps is refused with the reason
  before anything is sent (``parsing.to_lots``).
* **Every failure has one meaning** (``errors.py``), and every request goes through one pooled
  client with one retry discipline (``session.py``).

Order types: MARKET -> ``market``; LIMIT -> ``limit`` at ``limit_price``; STOP -> ``stop`` at
``stop_price`` (MT4 has no stop-limit: a STOP with a limit price is refused); BRACKET -> one
order (market, or limit at ``limit_price``) with ``sl = stop_price`` and ``tp = take_profit_price``:
MT4 carries both on the ticket. The core tracks the bracket's exit legs (``<id>/sl``, ``<id>/tp``)
as orders of their own; ``query`` answers them from the entry's tickets (``parsing.exit_status``).
MT4 pending orders are good till cancelled (DAY is taken as GTC, as MT4 has no session expiry
here); IOC/FOK make no sense for a resting MT4 order and are refused on LIMIT/STOP/limit BRACKET.

The account model (``MT4_CLOSE_OPPOSITE``): false, MT4's own hedging: every order opens its own
ticket. True, netting: a MARKET order first closes open opposite tickets of its symbol, oldest
first (partially for the last one as needed), each ``POST /order/close`` carrying the order's
client id (``close_client_id`` on the closed ticket), and only the excess opens a new ticket. An
opposite ticket closed by another order between the listing and our close (MT4's 4108; executors
taking over a partition place orders of one symbol side by side) is passed over and the open
tickets listed again, unless MT4 shows tickets of this same order that this placement did not make
(it is being placed elsewhere too): then ``OutcomeUnknown``, never a second execution. A
BRACKET opens its own ticket in both modes (its SL/TP protect exactly it); a LIMIT or STOP opens
its own ticket when MT4 triggers it (the adapter is not there at that moment).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from adapters.mt4.config import Mt4Config
from adapters.mt4.errors import INVALID_TICKET, OutcomeUnknown
from adapters.mt4.market_data import Mt4MarketData
from adapters.mt4.parsing import (
    ExitLeg,
    Ticket,
    exit_status,
    order_status,
    parse_ticket,
    parse_tickets,
    to_lots,
    to_units,
    wire,
)
from adapters.mt4.session import MaybeExecuted
from execution.clock import SYSTEM_CLOCK, Clock
from execution.ports import BrokerError, OrderRejected, VenueOrderStatus
from schemas import Broker, Order, OrderState, OrderType, Side, TimeInForce

log = logging.getLogger(__name__)

_STATE_UNKNOWN = "state-unknown"
#: how often one netting order lists the open tickets again after one it meant to close was closed
#: by someone else first (each time a different ticket; the bound only stops a pathological loop)
_MAX_RELISTS = 10


@dataclass(frozen=True, slots=True)
class _Entry:
    """What one order asks of MT4."""

    type: str
    lots: Decimal
    price: Decimal | None
    sl: Decimal | None
    tp: Decimal | None

    @property
    def pending(self) -> bool:
        return self.type != "market"


@dataclass(frozen=True, slots=True)
class CloseResult:
    """``POST /order/close``: the closed (or deleted) ticket and, after a partial close, the
    remainder MT4 left on a new ticket."""

    closed: Ticket
    remainder: Ticket | None


class Mt4Adapter(Mt4MarketData):
    """BrokerPort (polled: ``poll_interval``) + MarketDataPort for MT4 through the REST bridge."""

    name = Broker.MT4

    def __init__(self, config: Mt4Config, *, clock: Clock = SYSTEM_CLOCK, transport: Any | None = None) -> None:
        super().__init__(config, clock=clock, transport=transport)
        self.poll_interval: float | None = config.poll_interval
        #: client order id -> time (adapter clock) before which the bridge's "none" proves nothing
        self._unsettled: dict[str, float] = {}

    # -- BrokerPort ---------------------------------------------------------------------------------

    async def place(self, order: Order) -> VenueOrderStatus:
        """Send ``order`` at most once (see the module docstring); MT4's first answer as cumulative
        status. Raises ``OrderRejected`` (MT4 said no, with its retcode), ``BrokerUnavailable`` (it
        certainly did not execute) or ``OutcomeUnknown`` (it may have; ask with ``query``)."""
        cid = order.client_order_id
        entry = self._entry(order)
        if cid in self._unsettled:  # an earlier request of ours may still execute: look, never resend blindly
            earlier = await self._look_before_resending(order)
            if earlier is not None:
                return earlier
        body: dict[str, Any] = {
            "symbol": order.symbol, "side": "buy" if order.side is Side.BUY else "sell", "type": entry.type,
            "volume": wire(entry.lots), "client_id": cid, "comment": cid, "magic": self.config.magic}
        for key, value in (("price", entry.price), ("sl", entry.sl), ("tp", entry.tp)):
            if value is not None:
                body[key] = wire(value)
        log.info("mt4 place %s %s %s %s %s lots%s", cid, entry.type, body["side"], order.symbol, body["volume"],
                 "".join(f" {k}={body[k]}" for k in ("price", "sl", "tp") if k in body))
        if self.config.close_opposite and order.order_type is OrderType.MARKET:
            status = await self._place_netting(order, entry, body)
        else:
            status = self._placed(order, [await self._open(order, body)])
        log.info("mt4 %s -> %s filled=%s avg=%s ticket=%s", cid, status.state.value, status.filled_quantity,
                 status.avg_fill_price, status.venue_order_id)
        return status

    async def query(self, order: Order) -> VenueOrderStatus | None:
        """MT4's view of ``order`` by client id (``GET /orders?client_id=``), or None if no ticket
        names it. A bracket exit leg is answered from its entry's tickets. Within the settle delay
        of an unanswered trade request, "none" raises ``OutcomeUnknown`` instead."""
        cid = order.client_order_id
        parent = order.bracket_parent
        if parent is not None:
            leg: ExitLeg = "sl" if cid.endswith("/sl") else "tp"
            return exit_status(cid, parent, leg, await self.tickets(parent), quantity=order.quantity,
                               contract_size=self.config.contract_size)
        tickets = await self.tickets(cid)
        status = self._status(order, tickets)
        if status is None:
            self._check_settled(cid)
            return None
        if any(t.client_id == cid for t in tickets):
            self._unsettled.pop(cid, None)
        return status

    async def cancel(self, order: Order) -> VenueOrderStatus:
        """Delete the order's pending tickets (``POST /order/close`` of a pending ticket). An order
        with nothing pending answers its current status (FILLED, say); one MT4 never saw raises
        ``OrderRejected`` (4108)."""
        cid = order.client_order_id
        if order.bracket_parent is not None:
            raise OrderRejected(
                f"cannot cancel {cid} on its own: MT4 holds a bracket's exits as the SL/TP of its entry ticket; "
                "modify the entry's SL/TP instead", code=INVALID_TICKET)
        tickets = await self.tickets(cid)
        if not any(t.client_id == cid for t in tickets):
            self._check_settled(cid)
            raise OrderRejected(f"cannot cancel {cid}: MT4 has no such order", code=INVALID_TICKET)
        for ticket in [t for t in tickets if t.client_id == cid and t.state == "pending"]:
            try:
                result = await self.close_ticket(ticket.ticket)
            except OrderRejected as exc:
                if exc.code != INVALID_TICKET:
                    raise
                continue  # triggered or deleted meanwhile: the lookup below tells
            tickets = _merge(tickets, [result.closed])
        if any(t.state == "pending" for t in tickets if t.client_id == cid):
            tickets = await self.tickets(cid)
        return self._placed(order, tickets)

    async def fetch_tickets(self, state: str) -> list[Ticket]:
        """``GET /orders?state=open|pending``: every open position or pending order on the account."""
        return parse_tickets(await self.read(f"list {state} orders", "/orders", params={"state": state}))

    async def tickets(self, client_order_id: str) -> list[Ticket]:
        """Every ticket made with ``client_order_id`` (remainders of partial closes included) and
        every ticket it closed, oldest first: ``GET /orders?client_id=``."""
        payload = await self.read("look up order", "/orders", params={"client_id": client_order_id})
        return parse_tickets(payload)

    # -- MT4 operations (not called by the core yet: the commands topic comes later) ----------------

    async def ticket(self, number: int) -> Ticket | None:
        """``GET /order/{ticket}``; None for a ticket MT4 does not know (4108)."""
        raw = await self.read("get order", f"/order/{number}", not_found_ok=True)
        return parse_ticket(raw) if raw is not None else None

    async def modify_ticket(
        self, number: int, *, sl: Decimal | None = None, tp: Decimal | None = None, price: Decimal | None = None
    ) -> Ticket:
        """``POST /order/modify``: a ticket's SL/TP, and a pending ticket's price. Values left out
        stay as they are. Setting absolute values twice changes nothing, so an unanswered modify
        is asked about and sent again if it did not take."""
        body: dict[str, Any] = {"ticket": number}
        for key, value in (("sl", sl), ("tp", tp), ("price", price)):
            if value is not None:
                body[key] = wire(value)
        for _ in range(2):
            try:
                return parse_ticket(await self.trade("modify order", "/order/modify", body))
            except MaybeExecuted as sent:
                current = await self.ticket(number)
                if current is not None and all(getattr(current, k) == v for k, v in
                                               (("sl", sl), ("tp", tp), ("price", price)) if v is not None):
                    return current
                log.warning("mt4 modify of ticket %s unanswered (%s) and not applied; sending it again",
                            number, sent)
        raise OutcomeUnknown(f"MT4 modify of ticket {number}: no answer twice; its SL/TP are as MT4 shows them",
                             code=_STATE_UNKNOWN)

    async def modify(
        self, order: Order, *, sl: Decimal | None = None, tp: Decimal | None = None, price: Decimal | None = None
    ) -> list[Ticket]:
        """Set SL/TP (and, on a pending ticket, the price) on every working ticket of ``order``."""
        working = [t for t in await self.tickets(order.client_order_id)
                   if t.client_id == order.client_order_id and t.state in ("open", "pending")]
        if not working:
            raise OrderRejected(f"cannot modify {order.client_order_id}: no open or pending ticket at MT4",
                                code=INVALID_TICKET)
        return [await self.modify_ticket(t.ticket, sl=sl, tp=tp, price=price if t.state == "pending" else None)
                for t in working]

    async def close_ticket(
        self, number: int, lots: Decimal | None = None, *, client_id: str | None = None
    ) -> CloseResult:
        """``POST /order/close``: close ``lots`` of an open ticket (all when None) at the current
        bid/ask, or delete a pending one. ``client_id`` is recorded on the closed ticket as its
        ``close_client_id``. A close is not idempotent (closing 0.05 twice closes 0.10), so an
        unanswered one is looked up and never sent again blindly."""
        body: dict[str, Any] = {"ticket": number}
        if lots is not None:
            body["volume"] = wire(lots)
        if client_id is not None:
            body["client_id"] = client_id
        try:
            payload = await self.trade("close order", "/order/close", body, client_order_id=client_id)
        except MaybeExecuted as sent:
            return await self._after_uncertain_close(number, lots, sent)
        if not isinstance(payload, dict) or not isinstance(payload.get("closed"), dict):
            raise BrokerError(f"MT4 bridge answered /order/close with {payload!r}")
        remainder = payload.get("remainder")
        return CloseResult(parse_ticket(payload["closed"]),
                           parse_ticket(remainder) if isinstance(remainder, dict) else None)

    async def close_position(
        self, order: Order, quantity: Decimal | None = None, *, client_id: str | None = None
    ) -> list[CloseResult]:
        """Close ``quantity`` units (all when None) of ``order``'s open tickets, oldest first."""
        open_tickets = [t for t in await self.tickets(order.client_order_id)
                        if t.client_id == order.client_order_id and t.state == "open"]
        held = sum((t.volume for t in open_tickets), Decimal(0))
        lots = held if quantity is None else to_lots(
            quantity, contract_size=self.config.contract_size, lot_step=self.config.lot_step,
            context=f"close of {order.client_order_id}")
        if lots > held:
            raise OrderRejected(
                f"cannot close {to_units(lots, self.config.contract_size)} units of {order.client_order_id}: "
                f"{to_units(held, self.config.contract_size)} open at MT4", code=131)
        results: list[CloseResult] = []
        for ticket in open_tickets:
            if lots <= 0:
                break
            take = min(ticket.volume, lots)
            results.append(await self.close_ticket(ticket.ticket, None if take == ticket.volume else take,
                                                   client_id=client_id))
            lots -= take
        return results

    # -- placement ----------------------------------------------------------------------------------

    def _entry(self, order: Order) -> _Entry:
        """The order as MT4 takes it, or ``OrderRejected`` with the reason before anything is sent."""
        cid = order.client_order_id
        if order.bracket_parent is not None:
            raise OrderRejected(f"{cid} is an exit of bracket {order.bracket_parent}: MT4 holds it as the entry's "
                                "SL/TP, never as an order of its own")
        lots = to_lots(order.quantity, contract_size=self.config.contract_size, lot_step=self.config.lot_step,
                       context=f"MT4 order {cid}")
        kind = order.order_type
        if kind is OrderType.MARKET:
            entry = _Entry("market", lots, None, None, None)
        elif kind is OrderType.LIMIT:
            entry = _Entry("limit", lots, order.limit_price, None, None)
        elif kind is OrderType.STOP:
            if order.limit_price is not None:
                raise OrderRejected(f"MT4 order {cid}: MT4 has no stop-limit orders; send a STOP without "
                                    "limit_price (it executes at market once triggered)")
            entry = _Entry("stop", lots, order.stop_price, None, None)
        else:  # BRACKET: one ticket carrying its stop-loss and take-profit
            entry = _Entry("limit" if order.limit_price is not None else "market", lots, order.limit_price,
                           order.stop_price, order.take_profit_price)
        if entry.pending and order.time_in_force in (TimeInForce.IOC, TimeInForce.FOK):
            raise OrderRejected(f"MT4 order {cid}: a {entry.type} order rests at MT4 until triggered; "
                                f"time in force {order.time_in_force} is not supported")
        return entry

    def _fresh_until(self, order: Order) -> datetime:
        return order.ts + timedelta(seconds=self.config.requote_window)

    async def _open(self, order: Order, body: dict[str, Any]) -> Ticket:
        """``POST /order/place`` once; an unanswered one is looked up (``_after_uncertain``)."""
        try:
            raw = await self.trade("place order", "/order/place", body, client_order_id=order.client_order_id,
                                   fresh_until=self._fresh_until(order))
        except MaybeExecuted as sent:
            tickets = await self._after_uncertain(order, sent)
            own = [t for t in tickets if t.client_id == order.client_order_id]
            return own[-1]
        ticket = parse_ticket(raw)
        # the ticket our request opened is ours, whether or not the bridge echoes the client id
        return ticket if ticket.client_id else replace(ticket, client_id=order.client_order_id)

    async def _after_uncertain(self, order: Order, sent: MaybeExecuted) -> list[Ticket]:
        """The request may have executed: note the settle delay, look once, never resend.

        Returns the order's tickets when the bridge shows one it opened; raises ``OutcomeUnknown``
        otherwise."""
        cid = order.client_order_id
        not_before = self._clock.monotonic() + self.config.settle_delay
        self._unsettled[cid] = max(not_before, self._unsettled.get(cid, not_before))
        why = str(sent.cause)
        try:
            tickets = await self.tickets(cid)
        except BrokerError as exc:
            raise OutcomeUnknown(
                f"mt4 place order {cid}: {why}; it may have reached MT4 and the lookup failed ({exc}); "
                "not sent again, reconcile with query()", code=_STATE_UNKNOWN) from None
        if not any(t.client_id == cid for t in tickets):
            raise OutcomeUnknown(
                f"mt4 place order {cid}: {why}; MT4 does not show it yet, but the terminal may still execute it: "
                f"not sent again before MT4, asked after {self.config.settle_delay:g}s, says it does not exist",
                code=_STATE_UNKNOWN)
        log.info("mt4 %s found at MT4 after an unanswered placement (%s)", cid, why)
        self._unsettled.pop(cid, None)
        return tickets

    async def _look_before_resending(self, order: Order) -> VenueOrderStatus | None:
        """An earlier request of this order went unanswered: MT4's status if it shows the order,
        None once its "none" is final; ``OutcomeUnknown`` until then or while it cannot be asked."""
        cid = order.client_order_id
        try:
            tickets = await self.tickets(cid)
        except BrokerError as exc:
            raise OutcomeUnknown(f"{exc}; order {cid} may exist at MT4, reconcile with query()",
                                 code=_STATE_UNKNOWN) from None
        status = self._status(order, tickets)
        if status is not None:
            self._unsettled.pop(cid, None)
            return status
        self._check_settled(cid)
        return None

    def _check_settled(self, client_order_id: str) -> None:
        """Raise ``OutcomeUnknown`` if an unanswered request of the order may still execute;
        otherwise forget it: from here on the bridge's "none" is the truth."""
        not_before = self._unsettled.get(client_order_id)
        if not_before is None:
            return
        remaining = not_before - self._clock.monotonic()
        if remaining > 0:
            raise OutcomeUnknown(
                f"order {client_order_id}: MT4 does not show it, but a request that may have reached the bridge "
                f"can still execute for {remaining:.1f}s; ask again later", code=_STATE_UNKNOWN)
        del self._unsettled[client_order_id]

    def _settled(self, client_order_id: str) -> bool:
        not_before = self._unsettled.get(client_order_id)
        return not_before is None or not_before <= self._clock.monotonic()

    def _status(self, order: Order, tickets: Sequence[Ticket]) -> VenueOrderStatus | None:
        return order_status(order.client_order_id, tickets, quantity=order.quantity,
                            contract_size=self.config.contract_size, commission_asset=self.currency,
                            settled=self._settled(order.client_order_id))

    def _placed(self, order: Order, tickets: Sequence[Ticket]) -> VenueOrderStatus:
        status = self._status(order, tickets)
        if status is None:
            raise BrokerError(f"MT4 bridge answered for {order.client_order_id} with tickets that do not name it: "
                              f"{[t.ticket for t in tickets]}")
        return status

    # -- netting (MT4_CLOSE_OPPOSITE=true) ------------------------------------------------------------

    async def _place_netting(self, order: Order, entry: _Entry, body: dict[str, Any]) -> VenueOrderStatus:
        """Close open opposite tickets of the symbol, oldest first, then open only the excess.

        Once part of the order executed, a later step that fails cannot make the order "not
        placed" (paper would trade it again): the status then reports what executed, and the
        remainder as not working with the reason (CANCELLED) or as unknown (``OutcomeUnknown``)."""
        cid = order.client_order_id
        candidates = await self._opposite_tickets(order)
        done: list[Ticket] = []
        tried: set[int] = set()
        relisted = 0
        remaining = entry.lots
        stopped = ""
        while remaining > 0:
            ticket = next((t for t in candidates if t.ticket not in tried), None)
            if ticket is None:
                break
            tried.add(ticket.ticket)
            take = min(ticket.volume, remaining)
            try:
                closed = await self._close_for(order, ticket, take)
            except OutcomeUnknown:
                raise  # the core asks again; what executed is found by client id
            except OrderRejected as exc:
                if exc.code != INVALID_TICKET or relisted >= _MAX_RELISTS:
                    if not done:
                        raise  # nothing executed: an ordinary refusal of the whole order
                    stopped = f"closing ticket {ticket.ticket} failed: {exc}"
                    break
                # Closed (or cut by a partial close) since it was listed: by another order of the
                # symbol (an executor taking over a partition, a re-placement after an unknown
                # outcome) or by its SL/TP. This request changed nothing; net against the open
                # tickets as they are now, unless this very order is executing elsewhere too.
                relisted += 1
                log.info("mt4 %s: opposite ticket %s was closed meanwhile (%s); listing the open tickets again",
                         cid, ticket.ticket, exc)
                try:
                    await self._alone(order, done)
                    candidates = await self._opposite_tickets(order)
                except OutcomeUnknown:
                    raise
                except BrokerError as relist:
                    if not done:
                        raise
                    stopped = f"listing the open tickets again failed: {relist}"
                    break
                continue
            except BrokerError as exc:
                if not done:
                    raise  # nothing executed: an ordinary refusal or outage of the whole order
                stopped = f"closing ticket {ticket.ticket} failed: {exc}"
                break
            done.append(closed)
            remaining -= take
            log.info("mt4 %s closed %s lots of opposite ticket %s at %s", cid, wire(take), ticket.ticket,
                     closed.close_price)
        if remaining > 0 and not stopped:
            try:
                done.append(await self._open(order, {**body, "volume": wire(remaining)}))
            except OutcomeUnknown:
                raise
            except BrokerError as exc:
                if not done:
                    raise
                stopped = f"opening the remaining {wire(remaining)} lots failed: {exc}"
        status = self._placed(order, done)
        if stopped and not status.state.is_terminal:
            status = replace(status, state=OrderState.CANCELLED,
                             reason=f"netting: {to_units(entry.lots - remaining, self.config.contract_size)} units "
                                    f"closed against opposite tickets; {stopped}")
        return status

    async def _alone(self, order: Order, done: Sequence[Ticket]) -> None:
        """Raise ``OutcomeUnknown`` if MT4 shows tickets of ``order`` that this placement did not
        make: another placement of the same order is executing (or did), and going on could
        execute it twice. The core then asks ``query``, which counts every ticket of the order."""
        cid = order.client_order_id
        ours = {t.ticket for t in done}
        others = [t.ticket for t in await self.tickets(cid)
                  if t.ticket not in ours and (t.client_id == cid or t.close_client_id == cid)]
        if others:
            raise OutcomeUnknown(f"mt4 {cid}: MT4 shows tickets {others} of this order that this placement did not "
                                 "make; not going on, reconcile with query()", code=_STATE_UNKNOWN)

    async def _opposite_tickets(self, order: Order) -> list[Ticket]:
        """The open tickets of ``order``'s symbol on the other side, oldest first (FIFO netting)."""
        opposite = "sell" if order.side is Side.BUY else "buy"
        return sorted((t for t in await self.fetch_tickets("open")
                       if t.symbol == order.symbol and t.side.value.lower() == opposite),
                      key=lambda t: (t.open_time is None, t.open_time, t.ticket))

    async def _close_for(self, order: Order, ticket: Ticket, lots: Decimal) -> Ticket:
        """Close ``lots`` of an opposite ``ticket`` on behalf of ``order`` (its client id recorded
        as the close's). An unanswered close is looked up by the order's client id."""
        cid = order.client_order_id
        body: dict[str, Any] = {"ticket": ticket.ticket, "client_id": cid}
        if lots < ticket.volume:
            body["volume"] = wire(lots)
        try:
            payload = await self.trade("close opposite ticket", "/order/close", body, client_order_id=cid,
                                       fresh_until=self._fresh_until(order))
        except MaybeExecuted as sent:
            self._unsettled[cid] = self._clock.monotonic() + self.config.settle_delay
            try:
                tickets = await self.tickets(cid)
            except BrokerError as exc:
                raise OutcomeUnknown(f"mt4 {cid}: closing ticket {ticket.ticket}: {sent}; lookup failed ({exc})",
                                     code=_STATE_UNKNOWN) from None
            found = [t for t in tickets if t.ticket == ticket.ticket and t.close_client_id == cid]
            if not found:
                raise OutcomeUnknown(f"mt4 {cid}: closing ticket {ticket.ticket}: {sent}; MT4 does not show the "
                                     "close yet; not sent again", code=_STATE_UNKNOWN) from None
            return found[0]
        if not isinstance(payload, dict) or not isinstance(payload.get("closed"), dict):
            raise BrokerError(f"MT4 bridge answered /order/close with {payload!r}")
        return parse_ticket(payload["closed"])

    async def _after_uncertain_close(self, number: int, lots: Decimal | None, sent: MaybeExecuted) -> CloseResult:
        """An unanswered close: done if MT4 shows the ticket no longer open at its old volume."""
        before = sent.cause
        current = await self.ticket(number)
        if current is None:
            raise OrderRejected(f"MT4 has no ticket {number}", code=INVALID_TICKET)
        if current.state in ("closed", "deleted"):
            remainder = None
            if lots is not None:
                remainder = next((t for t in await self.fetch_tickets("open") if t.from_ticket == number), None)
            return CloseResult(current, remainder)
        raise OutcomeUnknown(f"MT4 close of ticket {number}: {before}; MT4 still shows it {current.state} with "
                             f"{wire(current.volume)} lots; not sent again, check before closing it again",
                             code=_STATE_UNKNOWN)


def _merge(tickets: Sequence[Ticket], updates: Sequence[Ticket]) -> list[Ticket]:
    """``tickets`` with the newer versions of the same tickets (and any new ones) from ``updates``."""
    newer = {t.ticket: t for t in updates}
    merged = [newer.pop(t.ticket, t) for t in tickets]
    return merged + list(newer.values())

