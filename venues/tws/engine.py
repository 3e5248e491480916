"""The simulated Interactive Brokers back end with no I/O: instruments, accounts, orders, fills.

``TwsEngine`` is what stands behind TWS's sockets (``server.py``): it keeps the orders of every
client id, moves each instrument's price along the shared ``PricePath`` and fills orders against
it, and tells its listeners what changed as ``EngineEvent``s, which the server turns into IB's
messages for the clients entitled to them. Rejections raise ``TwsError`` with IB's code.

What it does, as IB does:

* Market orders fill at once at the touch (ask for a buy, bid for a sell), in
  ``partial_fill_steps`` executions when that is above 1. Limit orders fill when the touch
  crosses their price: on arrival at the touch, resting at their limit, one slice per price step.
  Stop and stop-limit orders trigger when the last price reaches the stop and then work as
  market or limit orders. IOC keeps what fills on arrival; FOK fills whole or not at all.
* Brackets: an order sent with ``transmit=0`` is held, invisible, until an order of its group
  arrives with ``transmit=1`` (the last child); then the parent and its children are
  transmitted together. Children (``parentId``) stay ``PreSubmitted`` until their parent has
  filled completely, and are cancelled with it.
* OCA: a fill of one member reduces the other members of its group by the quantity filled
  (cancelling those left with nothing), which is IB's behaviour for a bracket's children and for
  OCA types 2 and 3; a group of type 1 ("cancel with block") cancels the others at the first fill.
  A bracket's children are one OCA group whether or not the client names one.
* Order ids are per client id: a new id must be above every id that client used before (103
  otherwise), which is what ``next_valid_id`` answers; ``perm_id`` is unique across clients;
  execution ids are unique per account. Positions, cash and commissions (a simple IB-like
  schedule) are kept per account. Money and quantities are ``Decimal``.
"""

from __future__ import annotations

import itertools
import random
import time
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal

from venues.common.prices import PriceBook, PricePath, floor_to
from venues.tws.contracts import DEFAULT_INSTRUMENTS, ContractQuery, Instrument, resolve
from venues.tws.orders import (
    CANCELLED,
    FILLED,
    HELD,
    ORDER_TYPES,
    PRE_SUBMITTED,
    SUBMITTED,
    TIFS,
    ZERO,
    Execution,
    Order,
    OrderRequest,
    Position,
)

DEFAULT_ACCOUNT = "DU1234567"
CENT = Decimal("0.0001")


class TwsError(Exception):
    """A request TWS refuses, with IB's error code and message."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


# -- what the engine tells its listeners -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OrderOpened:
    """The order is new to its clients or changed in what openOrder carries (transmitted,
    modified, reduced by OCA, filled completely): openOrder then orderStatus."""

    order: Order


@dataclass(frozen=True, slots=True)
class StatusChanged:
    """Only the status or the filled quantity moved: orderStatus."""

    order: Order


@dataclass(frozen=True, slots=True)
class Executed:
    """One fill: execDetails then commissionReport (then the order's own update follows)."""

    order: Order
    execution: Execution


@dataclass(frozen=True, slots=True)
class OrderNotice:
    """An error message about an order, for the client that placed it (202 on a cancel)."""

    order: Order
    code: int
    message: str


@dataclass(frozen=True, slots=True)
class QuoteMoved:
    """An instrument's price changed (streaming market data)."""

    instrument: Instrument


EngineEvent = OrderOpened | StatusChanged | Executed | OrderNotice | QuoteMoved
Listener = Callable[[EngineEvent], None]


@dataclass(frozen=True, slots=True)
class ExecFilter:
    """reqExecutions' filter; empty fields (and client id 0) match everything."""

    client_id: int = 0
    account: str = ""
    time: str = ""
    symbol: str = ""
    sec_type: str = ""
    exchange: str = ""
    side: str = ""


def commission_for(instrument: Instrument, quantity: Decimal, value: Decimal) -> Decimal:
    """An order's commission for ``quantity`` filled worth ``value`` (IB-like fixed rates, per order)."""
    qty = abs(quantity)
    if instrument.sec_type == "STK":
        fee = max(Decimal("1.00"), qty * Decimal("0.005"))
        fee = min(fee, abs(value) * Decimal("0.01")) if value else fee
    elif instrument.sec_type == "OPT":
        fee = max(Decimal("1.00"), qty * Decimal("0.65"))
    elif instrument.sec_type == "FUT":
        fee = qty * Decimal("0.85")
    elif instrument.sec_type == "CASH":
        fee = max(Decimal("2.00"), abs(value) * Decimal("0.00002"))
    else:
        fee = max(Decimal("1.00"), qty * Decimal("0.01"))
    return fee.quantize(CENT, rounding=ROUND_HALF_EVEN)


class TwsEngine:
    """The simulated back end. Drive it with ``place``/``cancel`` and ``tick``/``set_price``."""

    def __init__(
        self,
        *,
        instruments: Sequence[Instrument] = DEFAULT_INSTRUMENTS,
        accounts: Sequence[str] = (DEFAULT_ACCOUNT,),
        price_path: PricePath | None = None,
        partial_fill_steps: int = 1,
        spread_ticks: int = 1,
        starting_cash: Decimal = Decimal(1_000_000),
        first_order_id: int = 1,
        first_perm_id: int | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if partial_fill_steps < 1:
            raise ValueError("partial_fill_steps must be >= 1")
        if spread_ticks < 0:
            raise ValueError("spread_ticks must be >= 0")
        if not accounts:
            raise ValueError("at least one account")
        self.instruments: dict[str, Instrument] = {inst.key: inst for inst in instruments}
        if len({inst.con_id for inst in instruments}) != len(instruments):
            raise ValueError("instrument conIds must be unique")
        self.accounts: tuple[str, ...] = tuple(accounts)
        self.partial_fill_steps = partial_fill_steps
        self.spread_ticks = spread_ticks
        self.first_order_id = first_order_id
        self._clock = clock
        self.prices = PriceBook(
            price_path or PricePath(),
            {inst.key: inst.min_tick for inst in instruments},
            now_ms=lambda: int(self._clock() * 1000),
            default_start={inst.key: inst.start_price for inst in instruments},
        )
        self.cash: dict[str, Decimal] = dict.fromkeys(self.accounts, Decimal(starting_cash))
        self.positions: dict[tuple[str, int], Position] = {}
        self.orders: dict[tuple[int, int], Order] = {}
        self.executions: list[Execution] = []
        self._max_order_id: dict[int, int] = {}
        # permIds and execIds differ between simulator instances (a test database outlives one
        # simulator); ``first_perm_id`` makes them reproducible
        rng = random.Random(first_perm_id) if first_perm_id is not None else random.SystemRandom()
        start = first_perm_id if first_perm_id is not None else rng.randrange(100_000_000, 1_900_000_000)
        self._perm_ids = itertools.count(start)
        self._exec_seq: dict[str, itertools.count[int]] = {}
        self._stamp = rng.getrandbits(32)
        self._listeners: list[Listener] = []

    # -- plumbing --------------------------------------------------------------------------------

    def subscribe(self, listener: Listener, *, first: bool = False) -> None:
        """``first``: hear each event before the listeners already there (a test that cuts the
        network the moment something happens, before the server reports it)."""
        if first:
            self._listeners.insert(0, listener)
        else:
            self._listeners.append(listener)

    def _emit(self, event: EngineEvent) -> None:
        for listener in list(self._listeners):
            listener(event)

    def now(self) -> float:
        return self._clock()

    # -- instruments and prices --------------------------------------------------------------------

    def resolve(self, query: ContractQuery) -> list[Instrument]:
        return resolve(self.instruments.values(), query)

    def instrument(self, query: ContractQuery) -> Instrument:
        """The one instrument the query names; 200 when it names none or several."""
        found = self.resolve(query)
        if len(found) != 1:
            raise TwsError(200, "No security definition has been found for the request"
                           if not found else "The contract description specified is ambiguous")
        return found[0]

    def _instrument_of(self, contract: ContractQuery | Instrument) -> Instrument:
        return contract if isinstance(contract, Instrument) else self.instrument(contract)

    def by_con_id(self, con_id: int) -> Instrument | None:
        return next((i for i in self.instruments.values() if i.con_id == con_id), None)

    def last(self, instrument: Instrument) -> Decimal:
        return self.prices.price(instrument.key)

    def quote(self, instrument: Instrument) -> tuple[Decimal, Decimal, Decimal]:
        """(bid, ask, last): the price path's value is the last trade, the touch ``spread_ticks`` either side."""
        last = self.prices.price(instrument.key)
        half = instrument.min_tick * self.spread_ticks
        return max(instrument.min_tick, last - half), last + half, last

    def tick(self) -> None:
        """One step of every un-held price along the path, then match the working orders."""
        self.prices.step()
        for inst in self.instruments.values():
            self._emit(QuoteMoved(inst))
            self._match(inst)

    def set_price(self, key: str, price: Decimal, *, hold: bool = True) -> Decimal:
        """Move ``key`` to ``price`` now (floored onto its tick) and match its orders; with ``hold``
        the walk leaves it there until ``release``."""
        inst = self.instruments[key]
        value = self.prices.set(key, Decimal(price), hold=hold)
        self._emit(QuoteMoved(inst))
        self._match(inst)
        return value

    def release(self, key: str) -> None:
        self.prices.release(key)

    # -- order ids ---------------------------------------------------------------------------------

    def next_valid_id(self, client_id: int) -> int:
        """Above every order id ``client_id`` ever used, across its connections."""
        return max(self.first_order_id, self._max_order_id.get(client_id, 0) + 1)

    # -- placing, modifying, cancelling ------------------------------------------------------------------

    def place(
        self, client_id: int, contract: ContractQuery | Instrument, request: OrderRequest, *, ack: bool = True
    ) -> Order:
        """placeOrder: a new order, or a change to an open one with the same id.

        The order id is used up even when the order is then rejected. ``ack=False`` processes it
        without telling anyone it arrived (its acknowledgement was lost); later events of the
        order are reported as usual.
        """
        existing = self.orders.get((client_id, request.order_id))
        if existing is not None:
            return self._modify(existing, self._instrument_of(contract), request)
        if request.order_id < self.next_valid_id(client_id) or request.order_id <= 0:
            raise TwsError(103, "Duplicate order id")
        self._max_order_id[client_id] = request.order_id
        instrument = self._instrument_of(contract)
        self._validate(instrument, request)
        account = request.account or self.accounts[0]
        self._check_funds(account, instrument, request)
        parent: Order | None = None
        if request.parent_id:
            parent = self.orders.get((client_id, request.parent_id))
            if parent is None or parent.is_done:
                raise TwsError(201, "Order rejected - reason:The parent order is not found or no longer working")
            if parent.instrument != instrument:
                raise TwsError(201, "Order rejected - reason:A child order must trade its parent's contract")
        order = Order(
            client_id=client_id,
            order_id=request.order_id,
            perm_id=next(self._perm_ids),
            account=account,
            instrument=instrument,
            request=request,
            created=self.now(),
            ack_lost=not ack,
        )
        self.orders[order.key] = order
        if request.transmit:
            self._transmit(order, parent)
        return order

    def _validate(self, inst: Instrument, req: OrderRequest) -> None:
        if req.action not in ("BUY", "SELL"):
            raise TwsError(201, f"Order rejected - reason:Invalid action {req.action!r}")
        if req.total_quantity <= 0:
            raise TwsError(201, "Order rejected - reason:The order quantity must be positive")
        if req.total_quantity % inst.size_increment != 0:
            raise TwsError(201, f"Order rejected - reason:The order size must be a multiple of {inst.size_increment}")
        if req.order_type not in ORDER_TYPES:
            raise TwsError(201, f"Order rejected - reason:Unsupported order type {req.order_type!r}")
        if req.tif not in TIFS:
            raise TwsError(201, f"Order rejected - reason:Invalid time in force {req.tif!r}")
        if req.account and req.account not in self.accounts:
            raise TwsError(201, f"Order rejected - reason:Invalid account {req.account!r}")
        if req.order_type in ("LMT", "STP LMT") and (req.lmt_price is None or req.lmt_price <= 0):
            raise TwsError(201, "Order rejected - reason:A limit order needs a positive limit price")
        if req.order_type in ("STP", "STP LMT") and (req.aux_price is None or req.aux_price <= 0):
            raise TwsError(201, "Order rejected - reason:A stop order needs a positive stop price")
        for price in (req.lmt_price, req.aux_price):
            if price is not None and req.order_type != "MKT" and price % inst.min_tick != 0:
                raise TwsError(110, "The price does not conform to the minimum price variation for this contract.")

    def _check_funds(self, account: str, inst: Instrument, req: OrderRequest) -> None:
        """A cash account's initial-margin check on stocks and options, in IB's words: a BUY
        must not cost more than the account's cash (at its limit price, else the current ask)."""
        if req.action != "BUY" or req.parent_id or inst.sec_type not in ("STK", "OPT"):
            return  # sells, a bracket's exits (closing what the entry bought), margined futures/FX
        price = req.lmt_price if req.order_type in ("LMT", "STP LMT") and req.lmt_price else self.quote(inst)[1]
        cost = req.total_quantity * price * inst.multiplier_value
        cash = self.cash.get(account, ZERO)
        if cost > cash:
            raise TwsError(201, "Order rejected - reason:YOUR ORDER IS NOT ACCEPTED. IN ORDER TO OBTAIN THE "
                                f"DESIRED POSITION YOUR EQUITY WITH LOAN VALUE [{cash:.2f} USD] MUST EXCEED THE "
                                f"INITIAL MARGIN [{cost:.2f} USD]")

    def _modify(self, order: Order, instrument: Instrument, request: OrderRequest) -> Order:
        if order.is_done:
            raise TwsError(103, "Duplicate order id")
        if instrument != order.instrument:
            raise TwsError(201, "Order rejected - reason:The contract of an order cannot be changed")
        self._validate(instrument, request)
        if request.total_quantity < order.filled:
            raise TwsError(201, "Order rejected - reason:The quantity is below the quantity filled")
        old = order.request
        request.parent_id, request.account = old.parent_id, old.account
        order.request = request
        if order.status == HELD:
            if request.transmit:
                self._transmit(order, self._parent(order))
            return order
        self._emit(OrderOpened(order))
        if order.remaining == 0:
            self._finish(order, FILLED)
            self._emit(OrderOpened(order))
            return order
        self._work(order, arriving=True)
        return order

    def _transmit(self, order: Order, parent: Order | None) -> None:
        """Send the order with the held rest of its bracket: the parent first, then its children."""
        root = parent if parent is not None else order
        group = [o for o in self.orders.values()
                 if o.status == HELD and o.client_id == root.client_id
                 and (o is root or o.request.parent_id == root.order_id)]
        group.sort(key=lambda o: (o is not root, o.order_id))
        for member in group:
            parent_of = self._parent(member)
            member.status = PRE_SUBMITTED if parent_of is not None and parent_of.status != FILLED else SUBMITTED
            if not member.ack_lost:
                self._emit(OrderOpened(member))
        for member in group:
            self._work(member, arriving=True)

    def cancel(self, client_id: int, order_id: int) -> Order:
        """cancelOrder from ``client_id`` (a client cancels only its own orders, as in IB)."""
        order = self.orders.get((client_id, order_id))
        if order is None:
            raise TwsError(10147, f"OrderId {order_id} that needs to be cancelled is not found.")
        if order.is_done:
            raise TwsError(10148, f"OrderId {order_id} that needs to be cancelled cannot be cancelled, "
                                  f"state: {order.status}.")
        self._cancel(order, "")
        return order

    def global_cancel(self) -> list[Order]:
        """reqGlobalCancel: every open or held order of every client."""
        cancelled = [o for o in self.orders.values() if not o.is_done]
        for order in cancelled:
            if not order.is_done:
                self._cancel(order, "Global Cancel")
        return cancelled

    def _cancel(self, order: Order, reason: str) -> None:
        self._finish(order, CANCELLED, reason or "Cancelled by Trader")
        self._emit(StatusChanged(order))
        self._emit(OrderNotice(order, 202, f"Order Canceled - reason:{reason}"))
        for child in self._children(order):
            if not child.is_done:
                self._cancel(child, "Parent Cancelled")

    def _finish(self, order: Order, status: str, text: str = "") -> None:
        order.status = status
        order.completed_time = self.now()
        order.completed_status = text or (f"Filled Size: {order.filled}" if status == FILLED else status)

    def _parent(self, order: Order) -> Order | None:
        return self.orders.get((order.client_id, order.request.parent_id)) if order.request.parent_id else None

    def _children(self, order: Order) -> list[Order]:
        return [o for o in self.orders.values()
                if o.client_id == order.client_id and o.request.parent_id == order.order_id]

    # -- matching ----------------------------------------------------------------------------------

    def _match(self, inst: Instrument) -> None:
        for order in [o for o in self.orders.values() if o.instrument is inst and o.is_working]:
            if order.is_working:
                self._work(order, arriving=False)

    @staticmethod
    def _stop_reached(order: Order, last: Decimal) -> bool:
        stop = order.request.aux_price
        assert stop is not None
        return last >= stop if order.request.action == "BUY" else last <= stop

    def _work(self, order: Order, *, arriving: bool) -> None:
        """Fill what the current prices allow; on arrival also apply IOC/FOK."""
        if not order.is_working:
            return
        req = order.request
        bid, ask, last = self.quote(order.instrument)
        buy = req.action == "BUY"
        if req.order_type in ("STP", "STP LMT") and not order.triggered:
            if not self._stop_reached(order, last):
                self._expire_unfilled(order, arriving)
                return
            order.triggered = True
            arriving = True  # a triggered stop arrives at the market now
        touch = ask if buy else bid
        if req.order_type in ("MKT", "STP"):
            if req.tif == "FOK" or self.partial_fill_steps == 1:
                self._execute(order, order.remaining, touch, liquidity=2)
            else:
                while order.is_working and order.remaining > 0:
                    self._execute(order, self._slice(order), touch, liquidity=2)
            return
        limit = req.lmt_price
        assert limit is not None
        crosses = touch <= limit if buy else touch >= limit
        if crosses:
            if req.tif == "FOK":
                self._execute(order, order.remaining, touch, liquidity=2)
            elif arriving:
                self._execute(order, self._slice(order), touch, liquidity=2)
            else:
                self._execute(order, self._slice(order), limit, liquidity=1)
        self._expire_unfilled(order, arriving)

    def _expire_unfilled(self, order: Order, arriving: bool) -> None:
        if arriving and order.is_working and order.request.tif in ("IOC", "FOK") and order.remaining > 0:
            self._finish(order, CANCELLED, "Cancelled: IOC/FOK remainder")
            self._emit(StatusChanged(order))
            for child in self._children(order):
                if not child.is_done:
                    self._cancel(child, "Parent Cancelled")

    def _slice(self, order: Order) -> Decimal:
        """The next of ``partial_fill_steps`` executions: slice k brings the filled quantity to k/N
        of the order (on its size increment), the last one takes the rest."""
        steps, done = self.partial_fill_steps, len(order.executions)
        if done >= steps - 1:
            return order.remaining
        step = order.instrument.size_increment
        target = floor_to(order.total_quantity * (done + 1) / steps, step)
        return min(order.remaining, max(step, target - order.filled))

    def _execute(self, order: Order, qty: Decimal, price: Decimal, *, liquidity: int) -> None:
        """Book one fill of ``order`` and everything that follows from it."""
        inst = order.instrument
        previous_value = order.avg_fill_price * order.filled
        order.filled += qty
        order.avg_fill_price = (previous_value + qty * price) / order.filled
        order.last_fill_price = price
        mult = inst.multiplier_value
        total_fee = commission_for(inst, order.filled, order.avg_fill_price * order.filled * mult)
        fee = total_fee - order.commission_charged
        order.commission_charged = total_fee
        position = self.positions.setdefault((order.account, inst.con_id), Position(order.account, inst))
        signed = qty * order.signed
        held_before = position.quantity
        realized = position.apply(signed, price)
        closed_part = held_before != 0 and (held_before > 0) != (signed > 0)
        self.cash[order.account] = self.cash.get(order.account, ZERO) - signed * price * mult - fee
        execution = Execution(
            exec_id=self._exec_id(order.account),
            order_id=order.order_id,
            client_id=order.client_id,
            perm_id=order.perm_id,
            account=order.account,
            instrument=inst,
            contract_exchange=order.request.exchange or inst.listing_exchange,
            side=order.side,
            shares=qty,
            price=price,
            cum_qty=order.filled,
            avg_price=order.avg_fill_price,
            order_ref=order.request.order_ref,
            time=self.now(),
            liquidity=liquidity,
            commission=fee,
            commission_currency=inst.currency,
            realized_pnl=(realized - fee) if closed_part else None,
        )
        order.executions.append(execution)
        self.executions.append(execution)
        if order.remaining == 0:
            self._finish(order, FILLED)
        self._emit(Executed(order, execution))
        self._emit(OrderOpened(order) if order.status == FILLED else StatusChanged(order))
        self._after_fill(order, qty)

    def _exec_id(self, account: str) -> str:
        seq = self._exec_seq.setdefault(account, itertools.count(1))
        return f"{zlib.crc32(account.encode()):08x}.{self._stamp:08x}.{next(seq):06x}.01"

    def _after_fill(self, order: Order, qty: Decimal) -> None:
        """OCA members lose what was filled; a filled parent releases its children."""
        for other in self._oca_members(order):
            if other.is_done:
                continue
            bracket_sibling = bool(order.request.parent_id) and other.request.parent_id == order.request.parent_id
            if not bracket_sibling and order.request.oca_type == 1:
                self._cancel(other, "OCA group")
                continue
            other.request.total_quantity = max(other.filled, other.request.total_quantity - qty)
            if other.remaining <= 0:
                self._cancel(other, "OCA group")
            else:
                self._emit(OrderOpened(other))
        if order.status == FILLED:
            for child in self._children(order):
                if child.status == PRE_SUBMITTED:
                    child.status = SUBMITTED
                    self._emit(StatusChanged(child))
            for child in self._children(order):
                self._work(child, arriving=True)

    def _oca_members(self, order: Order) -> list[Order]:
        req = order.request
        members: list[Order] = []
        for other in self.orders.values():
            if other is order or other.status == HELD:
                continue
            sibling = bool(req.parent_id) and other.client_id == order.client_id \
                and other.request.parent_id == req.parent_id
            same_group = bool(req.oca_group) and other.request.oca_group == req.oca_group \
                and other.account == order.account
            if sibling or same_group:
                members.append(other)
        return members

    # -- what clients may ask -----------------------------------------------------------------------

    def _visible(self, orders: Iterable[Order], client_id: int | None) -> list[Order]:
        return [o for o in orders if o.status != HELD and (client_id is None or o.client_id == client_id)]

    def open_orders(self, client_id: int | None = None) -> list[Order]:
        """Transmitted orders that are not done, of ``client_id`` (None: every client)."""
        return [o for o in self._visible(self.orders.values(), client_id) if o.is_open]

    def completed_orders(self, client_id: int | None = None) -> list[Order]:
        """Filled and cancelled orders, oldest completion first."""
        done = [o for o in self._visible(self.orders.values(), client_id) if o.is_done]
        return sorted(done, key=lambda o: o.completed_time or 0.0)

    def executions_for(self, flt: ExecFilter, client_id: int | None = None) -> list[Execution]:
        """Executions of ``client_id`` (None: all) that pass reqExecutions' filter."""
        since = _filter_time(flt.time)
        rows = []
        for ex in self.executions:
            if client_id is not None and ex.client_id != client_id:
                continue
            if flt.client_id and ex.client_id != flt.client_id:
                continue
            if flt.account and ex.account != flt.account:
                continue
            if since is not None and ex.time < since:
                continue
            if flt.symbol and ex.instrument.symbol != flt.symbol.upper():
                continue
            if flt.sec_type and ex.instrument.sec_type != flt.sec_type.upper():
                continue
            if flt.exchange and flt.exchange.upper() not in (ex.contract_exchange, ex.instrument.primary_exchange):
                continue
            if flt.side and ex.action != flt.side.upper() and ex.side != flt.side.upper():
                continue
            rows.append(ex)
        return rows

    def orders_by_ref(self, order_ref: str) -> list[Order]:
        """Every order ever placed with ``order_ref`` (tests assert "placed once")."""
        return [o for o in self.orders.values() if o.request.order_ref == order_ref]

    def account_positions(self, account: str | None = None) -> list[Position]:
        return [p for p in self.positions.values() if account is None or p.account == account]

    def account_values(self, account: str) -> list[tuple[str, str, str]]:
        """(tag, value, currency) rows of updateAccountValue for ``account``."""
        cash = self.cash.get(account, ZERO)
        gross = ZERO
        unrealized = ZERO
        realized = ZERO
        for pos in self.account_positions(account):
            mark = self.last(pos.instrument) * pos.instrument.multiplier_value
            gross += abs(pos.quantity * mark)
            unrealized += pos.quantity * mark - pos.quantity * pos.avg_cost
            realized += pos.realized_pnl
        net = cash + sum((p.quantity * self.last(p.instrument) * p.instrument.multiplier_value
                          for p in self.account_positions(account)), ZERO)
        money = [
            ("NetLiquidation", net), ("TotalCashValue", cash), ("CashBalance", cash),
            ("EquityWithLoanValue", net), ("GrossPositionValue", gross), ("AvailableFunds", net),
            ("ExcessLiquidity", net), ("BuyingPower", net * 4), ("UnrealizedPnL", unrealized),
            ("RealizedPnL", realized),
        ]
        rows = [("AccountCode", account, ""), ("AccountType", "INDIVIDUAL", ""), ("Currency", "USD", "USD")]
        rows += [(tag, _money(value), "USD") for tag, value in money]
        rows.append(("CashBalance", _money(cash), "BASE"))
        return rows


def _money(value: Decimal) -> str:
    return format(value.quantize(Decimal("0.01")), "f")


def _filter_time(text: str) -> float | None:
    """reqExecutions' ``yyyymmdd hh:mm:ss`` (or ``yyyymmdd-hh:mm:ss``), read as UTC; None when unset."""
    raw = text.strip()
    if not raw:
        return None
    digits = raw.replace("-", " ").split()
    try:
        stamp = datetime.strptime(" ".join(digits[:2]), "%Y%m%d %H:%M:%S").replace(tzinfo=UTC)
    except (ValueError, IndexError):
        return None
    return stamp.timestamp()
