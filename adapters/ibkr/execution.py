"""Interactive Brokers execution on ib_async: the BrokerPort, pushing fills to the FillTracker.

What it guarantees to the core:

* **Fills by push.** ``orderStatusEvent`` drives states and each ``execDetailsEvent`` is one
  ``VenueExecution`` with IB's ``execId`` and the order's cumulative totals after it; the
  ``commissionReport`` that IB sends afterwards is a ``VenueFee`` for that execId. The tracker's
  cumulative watermark makes repeats harmless. A status never runs ahead of the executions: the
  filled quantity a status reports is the one IB's executions account for, and FILLED is only
  reported once they cover the order, so no fill is ever derived without its execId.
* **No order placed twice.** The order's ``client_order_id`` is the IB ``orderRef``; order ids
  come from IB's ``nextValidId`` (IB never hands one out twice for a client id). A placement
  whose first answer does not come (the connection drops, or ``IBKR_ACK_TIMEOUT`` passes) is a
  ``PlacementUnknown``: the core asks again later (``query``: IB's open and completed orders
  and executions by orderRef, which are authoritative once asked on a live connection), and
  only an order IB does not know is placed again.
* **The nightly restart.** The connection layer reconnects with backoff; after each connect
  the adapter pushes, for every order it watches, the executions made while it was away
  (``reqExecutions``, in cumulative order, fees attached) and the current status. While
  disconnected, a new order follows ``IBKR_DISCONNECTED_POLICY`` per asset class
  (``when_unavailable``: paper, hold or reject), applied by the core's fallback policy.
* **Takeovers.** An order placed by another executor (another client id) that this one takes
  over is found by orderRef. A master-client connection receives its updates by push; any
  other connection refreshes such orders every ``IBKR_FOREIGN_REFRESH_INTERVAL`` and pushes
  what changed, so the core sees one push venue either way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from adapters.ibkr.config import DisconnectedPolicy, IbkrConfig
from adapters.ibkr.connection import IbkrConnection
from adapters.ibkr.contracts import ContractCache, UnsupportedContract, spec_for
from adapters.ibkr.parsing import PACING_VIOLATION, dec, last_error, tickets, undo_informational_cancel, verdict
from execution.clock import SYSTEM_CLOCK, Clock
from execution.mapper import ExchangeMapper, UnknownSymbol
from execution.ports import (
    BrokerUnavailable,
    OrderRejected,
    PlacementUnknown,
    Quote,
    UpdateListener,
    VenueExecution,
    VenueFee,
    VenueOrderStatus,
)
from execution.tasks import stop_task
from schemas import AssetClass, Broker, Order, OrderState

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Watched:
    """An order this adapter reports on: placed here, or asked about (taken over)."""

    client_order_id: str
    quantity: Decimal
    #: placed through this connection's client id (pushed to us without the master id)
    ours: bool


class IbkrAdapter:
    """BrokerPort + PushUpdates + MarketDataPort for IB (TWS or IB Gateway)."""

    name = Broker.IBKR
    #: push venue: the tracker never polls it (taken-over orders are refreshed here)
    poll_interval: float | None = None

    def __init__(self, config: IbkrConfig, *, clock: Clock = SYSTEM_CLOCK, ib: Any | None = None) -> None:
        self.config = config
        self._clock = clock
        self.connection = IbkrConnection(config, clock=clock, ib=ib)
        self.ib = self.connection.ib
        self._contracts = ContractCache()
        self._mapper = ExchangeMapper()
        self._listeners: list[UpdateListener] = []
        self._watched: dict[str, _Watched] = {}
        #: orders whose submit may have reached IB without an answer: asked about before any resend
        self._ambiguous: set[str] = set()
        self._refresher: asyncio.Task[None] | None = None
        self._closing = False
        #: recently terminal orders (their late commission reports still count), bounded
        self._reported: OrderedDict[str, None] = OrderedDict()
        #: set on every order update or error from IB: placement and cancel wait on it
        self._updated = asyncio.Event()
        #: ib_async keys currentTime, openOrders and completedOrders requests by name: a second
        #: one in flight replaces the first's future, which then never resolves (a timeout). One
        #: lookup at a time, so concurrent queries (a resolver asking about many orders) all answer
        self._lookups = asyncio.Lock()
        self.connection.on_connected(self._resync)
        self.ib.errorEvent += self._on_any
        self.ib.openOrderEvent += self._on_any
        self.ib.orderStatusEvent += self._on_status
        self.ib.execDetailsEvent += self._on_execution
        self.ib.commissionReportEvent += self._on_commission

    # -- lifecycle --------------------------------------------------------------------------------

    async def connect(self) -> None:
        self._closing = False
        await self.connection.start()
        if self._refresher is None:
            self._refresher = asyncio.create_task(self._refresh_foreign(), name="ibkr-foreign-refresh")

    async def close(self) -> None:
        self._closing = True  # the refresh loop's own stop flag (execution/tasks.py says why)
        await stop_task(self._refresher)
        self._refresher = None
        await self.connection.close()

    async def health_check(self) -> bool:
        return self.connection.usable

    def subscribe(self, listener: UpdateListener) -> None:
        self._listeners.append(listener)

    def when_unavailable(self, order: Order) -> DisconnectedPolicy:
        """What a new order does while IB is unreachable (``IBKR_DISCONNECTED_POLICY``)."""
        return self.config.policy_for(order.asset_class)

    @property
    def unavailable_reason(self) -> str:
        return f"IBKR {self.connection.state}: {self.connection.reason}"

    # -- orders -----------------------------------------------------------------------------------

    async def place(self, order: Order) -> VenueOrderStatus:
        cid = order.client_order_id
        if cid in self._ambiguous:
            # an earlier submit of this order may have reached IB: ask before anything is sent
            if not self.connection.usable:
                raise PlacementUnknown(f"{self.unavailable_reason}; an earlier submit of {cid} is unresolved")
            trade = await self._find(cid)
            if trade is not None:
                self._ambiguous.discard(cid)
                return self._status(cid, trade)
            self._ambiguous.discard(cid)  # IB, asked on a live connection, never got it
        if not self.connection.usable:
            raise BrokerUnavailable(self.unavailable_reason)
        contract = await self._qualified(order.symbol, order.asset_class)
        account = self.config.account.get_secret_value()
        legs = tickets(order, account=account, oca_group=f"oca-{order.client_order_id}")
        self._watch(order, ours=True)
        if len(legs) > 1:
            # a bracket: the children name their parent's order id, so it is taken before sending
            legs[0].orderId = self.ib.client.getReqId()
            for leg in legs[1:]:  # its exits are orders of their own (Order.bracket_exits)
                leg.parentId = legs[0].orderId
                self._watched[leg.orderRef] = _Watched(leg.orderRef, order.quantity, True)
        trades: list[Any] = []
        try:
            for ticket in legs:
                trades.append(self.ib.placeOrder(contract, ticket))
        except ConnectionError as exc:
            if not trades:  # nothing went out: IB never saw it
                raise BrokerUnavailable(f"IBKR connection lost before placing: {exc}") from exc
            self._ambiguous.add(cid)
            raise PlacementUnknown(f"IBKR connection lost while placing a bracket: {exc}") from exc
        entry = trades[0]
        acknowledged = await self._wait(lambda: all(_answered(t) for t in trades))
        code, message = last_error(entry.log)
        if code == PACING_VIOLATION:  # refused unprocessed: IB does not hold it
            raise BrokerUnavailable(f"IB {code}: {message}")
        if not acknowledged:
            self._ambiguous.add(cid)
            raise PlacementUnknown(
                f"no answer from IB within {self.config.ack_timeout}s for order id {entry.order.orderId} "
                f"({self.connection.state}); asking IB by orderRef before anything is sent again")
        status = self._status(order.client_order_id, entry)
        if status.state is OrderState.REJECTED:
            code, message = last_error(entry.log)
            raise OrderRejected(status.reason or f"IB {code}: {message}", code=code or None)
        return status

    async def _wait(self, done: Callable[[], bool]) -> bool:
        """Wait until ``done()`` (re-checked on every order update or error IB sends), the
        connection drops, or ``IBKR_ACK_TIMEOUT`` passes; returns ``done()``."""
        deadline = self._clock.monotonic() + self.config.ack_timeout
        while not done():
            left = deadline - self._clock.monotonic()
            if left <= 0 or not self.ib.isConnected():
                return False
            self._updated.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._updated.wait(), min(left, 0.25))
        return True

    async def cancel(self, order: Order) -> VenueOrderStatus:
        if not self.connection.usable:
            raise BrokerUnavailable(self.unavailable_reason)
        trade = await self._find(order.client_order_id)
        if trade is None:
            raise OrderRejected(f"IBKR has no order with orderRef {order.client_order_id}")
        if not trade.isDone():
            self.ib.cancelOrder(trade.order)
            await self._wait(trade.isDone)
        return self._status(order.client_order_id, trade)

    async def query(self, order: Order) -> VenueOrderStatus | None:
        """Status by orderRef; None only when IB, asked on a live connection, does not know it."""
        if not await self.connection.reconnect_now(self.config.request_timeout):
            raise BrokerUnavailable(self.unavailable_reason)
        trade = await self._find(order.client_order_id)
        if trade is None:
            if order.venue_order_id and not self.connection.is_master:
                # IB acknowledged this order once (its permId is on the row), so another client
                # id placed it, and IB shows a client only its own completed orders and
                # executions unless it is the master: "not found" proves nothing here.
                raise BrokerUnavailable(
                    f"IB acknowledged {order.client_order_id} (permId {order.venue_order_id}) but client "
                    f"{self.connection.client_id} cannot see it; IBKR_MASTER_CLIENT_ID lets a takeover see "
                    "every client's orders")
            return None
        self._watch(order, ours=trade.order.clientId == self.connection.client_id)
        # a takeover or a restart: the executions come again by push, each with its execId,
        # ahead of the totals answered here (the tracker applies them first, see FillTracker.observe)
        for fill in self._executions(order.client_order_id):
            self._push_execution(fill)
        return self._status(order.client_order_id, trade)

    async def _find(self, client_order_id: str) -> Any | None:
        async with self._lookups:
            return await self._lookup(client_order_id)

    async def _lookup(self, client_order_id: str) -> Any | None:
        """The entry trade with this orderRef: known to this session, else asked from IB (all
        clients' open orders, completed orders, then executions). A trade only this session
        knows (placed, never acknowledged: a lost answer) is not IB's word: IB is asked, and
        if it lists nothing the answer is None."""
        try:
            # one round trip first: whatever IB sent before its answer has been read, so the
            # session's view of the order is as current as IB's (a lookup is authoritative)
            await asyncio.wait_for(self.ib.reqCurrentTimeAsync(), self.config.request_timeout)
            trade = self._local(client_order_id)
            if trade is not None and _answered(trade):
                return trade
            await asyncio.wait_for(self.ib.reqAllOpenOrdersAsync(), self.config.request_timeout)
            trade = self._local(client_order_id)
            if trade is None or not _answered(trade):
                await asyncio.wait_for(self.ib.reqCompletedOrdersAsync(False), self.config.request_timeout)
                trade = self._local(client_order_id)
            await asyncio.wait_for(self.ib.reqExecutionsAsync(), self.config.request_timeout)
        except (TimeoutError, ConnectionError) as exc:
            raise BrokerUnavailable(f"IBKR lookup of {client_order_id} failed: {exc!r}") from exc
        trade = self._local(client_order_id)
        return trade if trade is not None and _answered(trade) else None

    def _local(self, client_order_id: str) -> Any | None:
        found = [t for t in self.ib.trades() if t.order.orderRef == client_order_id]
        if not found:
            return None
        # a reconnect may list one order twice (open, then completed): the most advanced wins,
        # and anything IB answered before a copy it never acknowledged
        return max(found, key=lambda t: (_answered(t), t.isDone(), t.orderStatus.filled))

    def _executions(self, client_order_id: str, trade: Any | None = None) -> list[Any]:
        """IB's executions of the order (ib_async keeps them per session), in cumulative order."""
        # the session's fills, and the trade's own (a dropped connection resets the session's)
        fills = {f.execution.execId: f for f in self.ib.fills() if f.execution.orderRef == client_order_id}
        trades = [t for t in self.ib.trades() if t.order.orderRef == client_order_id]
        for known in [*trades, *([trade] if trade is not None else [])]:
            fills.update((f.execution.execId, f) for f in known.fills)
        return sorted(fills.values(), key=lambda f: (f.execution.cumQty, f.execution.time))

    def _status(self, client_order_id: str, trade: Any) -> VenueOrderStatus:
        """The order's cumulative status, with fills as IB's executions account for them."""
        ib_status = trade.orderStatus.status
        code, message = last_error(trade.log)
        decided = verdict(ib_status, code, message)
        state = decided.state
        if state is None:  # an informational code: the order is still working
            state = OrderState.SUBMITTED
        executions = self._executions(client_order_id, trade)
        if executions:
            last = executions[-1].execution
            filled, avg = dec(last.cumQty), dec(last.avgPrice)
            commission = sum((dec(f.commissionReport.commission) for f in executions), Decimal(0))
            currency = next((f.commissionReport.currency for f in executions if f.commissionReport.currency), None)
        else:
            filled, avg, commission, currency = Decimal(0), None, Decimal(0), None
            if trade.orderStatus.filled and not self.connection.is_master and trade.order.clientId != \
                    self.connection.client_id:
                # another client's order without its executions: IB's cumulative totals
                filled, avg = dec(trade.orderStatus.filled), dec(trade.orderStatus.avgFillPrice)
        quantity = dec(trade.order.totalQuantity)
        if filled >= quantity > 0 and state in (OrderState.SUBMITTED, OrderState.PARTIALLY_FILLED):
            state = OrderState.FILLED  # the executions cover it; IB's Filled status is on its way
        elif state is OrderState.FILLED and filled < quantity:
            state = OrderState.PARTIALLY_FILLED if filled else OrderState.SUBMITTED
        elif state is OrderState.SUBMITTED and filled:
            state = OrderState.PARTIALLY_FILLED
        return VenueOrderStatus(
            client_order_id=client_order_id,
            venue_order_id=str(trade.order.permId or trade.orderStatus.permId or trade.order.orderId),
            state=state,
            filled_quantity=filled,
            avg_fill_price=avg if filled else None,
            commission=commission,
            commission_asset=currency,
            reason=decided.reason,
        )

    # -- pushed updates ---------------------------------------------------------------------------

    def _watch(self, order: Order, *, ours: bool) -> None:
        self._watched[order.client_order_id] = _Watched(order.client_order_id, order.quantity, ours)

    def _on_any(self, *_args: Any) -> None:
        self._updated.set()

    def _on_status(self, trade: Any) -> None:
        self._updated.set()
        undo_informational_cancel(trade)  # IB keeps working an order a notice was about
        watched = self._watched.get(trade.order.orderRef)
        if watched is None:
            return
        status = self._status(watched.client_order_id, trade)
        if status.state is OrderState.PENDING:
            return
        for listener in self._listeners:
            listener.on_status(status)
        if status.state.is_terminal:
            self._watched.pop(watched.client_order_id, None)
            self._reported[watched.client_order_id] = None
            while len(self._reported) > 10_000:
                self._reported.popitem(last=False)

    def _on_execution(self, trade: Any, fill: Any) -> None:
        if fill.execution.orderRef in self._watched:
            self._push_execution(fill)

    def _push_execution(self, fill: Any) -> None:
        execution = fill.execution
        report = fill.commissionReport
        commission = dec(report.commission) if report is not None and report.execId else None
        pushed = VenueExecution(
            client_order_id=execution.orderRef,
            exec_id=execution.execId,
            venue_order_id=str(execution.permId or execution.orderId),
            cumulative_quantity=dec(execution.cumQty),
            avg_fill_price=dec(execution.avgPrice),
            commission=commission,
            commission_asset=(report.currency or None) if commission is not None else None,
            ts=_utc(execution.time),
        )
        for listener in self._listeners:
            listener.on_execution(pushed)

    def _on_commission(self, trade: Any, fill: Any, report: Any) -> None:
        # a fee for an order that went terminal here a moment ago still belongs to us: IB sends
        # the commission report after the execution, and the status may have come in between
        if fill.execution.orderRef not in self._watched and fill.execution.orderRef not in self._reported:
            return
        fee = VenueFee(exec_id=report.execId, commission=dec(report.commission),
                       commission_asset=report.currency or None)
        for listener in self._listeners:
            listener.on_fee(fee)

    async def _resync(self) -> None:
        """After a (re)connect: push what happened to watched orders while we were away."""
        await self._push_current(list(self._watched))

    async def _push_current(self, ids: Iterable[str]) -> None:
        for cid in ids:
            for fill in self._executions(cid):
                self._push_execution(fill)
            trade = self._local(cid)
            if trade is not None:
                self._on_status(trade)

    async def _refresh_foreign(self) -> None:
        """Orders placed by another client id do not reach a non-master connection by push."""
        while not self._closing:
            await asyncio.sleep(self.config.foreign_refresh_interval)
            foreign = [w.client_order_id for w in self._watched.values() if not w.ours]
            if not foreign or not self.connection.usable or self.connection.is_master:
                continue
            try:
                async with self._lookups:
                    await asyncio.wait_for(self.ib.reqAllOpenOrdersAsync(), self.config.request_timeout)
                    await asyncio.wait_for(self.ib.reqCompletedOrdersAsync(False), self.config.request_timeout)
                    await asyncio.wait_for(self.ib.reqExecutionsAsync(), self.config.request_timeout)
                await self._push_current(foreign)
            except Exception as exc:
                log.warning("IBKR refresh of %d taken-over order(s) failed: %r", len(foreign), exc)

    # -- contracts and market data ----------------------------------------------------------------

    async def _qualified(self, symbol: str, asset_class: AssetClass) -> Any:
        try:
            spec = spec_for(symbol, asset_class, today=self._clock.now().date())
        except UnsupportedContract as exc:
            raise OrderRejected(str(exc)) from exc
        cached = self._contracts.get(spec)
        if cached is not None:
            return cached
        from ib_async import RequestError

        try:
            details = await asyncio.wait_for(self.ib.reqContractDetailsAsync(spec.to_ib()),
                                             self.config.request_timeout)
        except RequestError as exc:
            raise OrderRejected(f"IB {exc.code}: {exc.message}", code=exc.code) from exc
        except (TimeoutError, ConnectionError) as exc:
            raise BrokerUnavailable(f"IBKR contract lookup for {symbol} failed: {exc!r}") from exc
        if not details:
            raise OrderRejected(f"IB 200: No security definition has been found for {symbol}", code=200)
        contract = details[0].contract
        self._contracts.put(spec, contract)
        return contract

    async def quote(self, symbol: str) -> Quote | None:
        """A snapshot quote (bid/ask/last) for paper pricing; None when IB cannot give one."""
        if not self.connection.usable:
            return None
        try:
            asset_class = self._mapper.asset_class(symbol)
            contract = await self._qualified(symbol, asset_class)
            tickers = await asyncio.wait_for(self.ib.reqTickersAsync(contract), self.config.request_timeout)
        except (UnknownSymbol, OrderRejected, BrokerUnavailable, TimeoutError, ConnectionError) as exc:
            log.info("IBKR quote for %s unavailable: %s", symbol, exc)
            return None
        if not tickers:
            return None
        ticker = tickers[0]
        bid, ask, last = (_price(ticker.bid), _price(ticker.ask), _price(ticker.last))
        if bid is None and ask is None and last is None:
            return None
        return Quote(symbol=symbol, bid=bid, ask=ask, last=last)


def _answered(trade: Any) -> bool:
    """IB acknowledged the order: a status past PendingSubmit, an error, or an execution."""
    return (trade.orderStatus.status in _ACKNOWLEDGED
            or bool(last_error(trade.log)[0]) or bool(trade.fills))


#: statuses only IB itself gives an order (ib_async sets PendingSubmit locally, and may mark an
#: order otherwise when the connection drops)
_ACKNOWLEDGED = frozenset({"PreSubmitted", "Submitted", "Filled", "Cancelled", "ApiCancelled", "Inactive"})


def _price(value: float | None) -> Decimal | None:
    if value is None or value != value or value <= 0:  # NaN: no tick yet
        return None
    return dec(value)


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
