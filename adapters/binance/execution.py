"""Binance spot execution through ccxt: the BrokerPort.

What it guarantees to the core:

* **No order placed twice.** The order's ``client_order_id`` goes out as Binance's
  ``newClientOrderId``. A submit is re-sent only when it certainly never reached Binance (a
  refused connection, a 429/418 throttle). Once it may have reached the venue (timeout, dropped
  connection, 5xx, -1006/-1007, "Duplicate order sent.") the adapter looks the order up once and,
  if Binance does not show it, raises ``OrderStateUnknown`` (a ``PlacementUnknown``): the core
  keeps the order at Binance, never on paper, and asks again with ``query``. Binance only refuses
  a reused client id while the first order is *open*, and a request may still execute until its
  ``recvWindow`` has passed, so "no such order" is trusted only after that (see *The safe delay*).
* **An accepted order is reported as accepted.** Once Binance answered with the order, a failed
  commission lookup (``myTrades``) does not fail the placement: the status goes out without the
  missing commission, which is fetched later (see *Commission*).
* **Nothing silently rounded.** A quantity or price off the market's step/tick is refused before
  sending, instead of being truncated by ccxt into an order that could never fill in full.
* **Every failure has one meaning** (``errors.py``), and every request goes through one client
  with one retry discipline (``session.py``).

The safe delay. After an uncertain submit the adapter notes, per client order id, the time on its
clock (the handed ``Clock``) before which Binance's "no such order" (-2013) proves nothing: the end
of the failed attempt (never earlier than the request's signed ``timestamp``) plus ``recv_window_ms``
plus ``ambiguous_submit_margin_ms``. Until then ``query`` answers such an order with
``OrderStateUnknown`` instead of None, so the core (``execution/service.py``) treats the venue
as unreachable for it and asks again later rather than placing it a second time; ``place`` of
that order raises the same without sending. After it, -2013 is final: ``query`` answers None and
the core may place the order again, once. The note lives in this process: another executor
that takes the order over (restart, scale-in) has no note, so the order's ownership claim must
outlive its owner's last submit by more than this delay.

Commission. Fills are not pushed: the generic fill tracker polls ``query()`` every
``poll_interval`` seconds and turns the growth of cumulative ``executedQty`` / average price /
commission into Fill messages. ``query()`` costs one ``GET /api/v3/order`` (weight 4) and, only
when the filled quantity grew, one ``GET /api/v3/myTrades`` (weight 20) for the commission, which
``/order`` does not report. When that lookup fails the status carries the commission known so
far; an open order gets the rest with a later poll (the tracker emits commission as the growth of
the cumulative total, so nothing is counted twice). A final order is not polled again, so its
missing fee is collected in the background and pushed to the subscribed tracker as a late
``VenueFee`` for the fill that lacked it (the tracker records it with ``OrderStore.record_fees``,
which sets, never adds).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from ccxt.base import errors as ccxt_errors

from adapters.binance.client import REDACTOR
from adapters.binance.config import BinanceConfig
from adapters.binance.errors import (
    DUPLICATE_MSG,
    TRANSIENT,
    ClockSkew,
    OrderStateUnknown,
    maybe_reached_venue,
    venue_message,
)
from adapters.binance.market_data import BinanceMarketData
from adapters.binance.parsing import CommissionMark, dec, parse_order, sum_commission
from execution.clock import SYSTEM_CLOCK, Clock
from execution.ports import (
    BrokerError,
    BrokerUnavailable,
    OrderRejected,
    UpdateListener,
    VenueFee,
    VenueOrderStatus,
)
from execution.tasks import stop_task
from schemas import Broker, Order, OrderType, Side, TimeInForce

log = logging.getLogger(__name__)

_TIF: dict[TimeInForce, str] = {
    # Binance spot has no DAY: crypto never closes, so a day order is good-till-cancelled.
    TimeInForce.DAY: "GTC",
    TimeInForce.GTC: "GTC",
    TimeInForce.IOC: "IOC",
    TimeInForce.FOK: "FOK",
}

#: the longest wait between two tries to collect a fee still owed
_FEE_RETRY_CAP = 60.0


class _MaybeSent(Exception):
    """A submit that may have reached Binance. Not a ccxt error, so ``session._call`` neither
    retries nor translates it: it must never be sent again blindly."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


@dataclass(frozen=True, slots=True)
class _OwedFee:
    """A final order reported without (all of) its commission: what to ask Binance and whom to tell.

    ``reported`` is the commission the status carried, so the fee of the fill that reached
    ``filled`` is the order's total minus it."""

    symbol: str
    order_id: str
    filled: Decimal
    reported: Decimal


class BinanceAdapter(BinanceMarketData):
    """BrokerPort for Binance spot over ccxt, on top of its market data: one object, one client,
    one ``connect()`` serve both ports (``plugin.py`` hands it out as each).

    It also offers ``subscribe`` (``PushUpdates`` in execution/ports.py) for one thing only: fees
    of final orders that could not be looked up when the order was reported (module docstring)."""

    name = Broker.BINANCE

    def __init__(
        self,
        config: BinanceConfig,
        *,
        client: Any | None = None,
        shared: bool = True,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        super().__init__(config, client=client, shared=shared, clock=clock)
        self.poll_interval: float | None = config.poll_interval
        self._auth_checked_at = 0.0
        self._commission: dict[str, CommissionMark] = {}
        #: client order id -> time (adapter clock) before which Binance's -2013 proves nothing
        self._unsettled: dict[str, float] = {}
        #: client order id -> fee of a final order still to be fetched and pushed
        self._owed: dict[str, _OwedFee] = {}
        self._listeners: list[UpdateListener] = []
        self._fee_task: asyncio.Task[None] | None = None

    @property
    def settle_delay(self) -> float:
        """Seconds after an uncertain submit before Binance's "no such order" is believed."""
        return (self.config.recv_window_ms + self.config.ambiguous_submit_margin_ms) / 1000

    # -- lifecycle -----------------------------------------------------------------------------

    async def connect(self) -> None:
        """Open the client, load markets, sync the clock and verify the credentials (once).

        A network failure raises ``BrokerUnavailable``. Bad credentials do not raise here (market
        data still works); they make ``health_check`` False and every ``place`` a clear rejection.
        """
        await super().connect()
        if self.config.has_credentials:
            await self._verify_credentials()
        else:
            self._auth_error = "Binance API key/secret not configured (BINANCE_API_KEY, BINANCE_API_SECRET)"
            log.warning("binance: %s; market data only", self._auth_error)
        log.info("binance connected to %s (%d markets)", self.endpoint, len(self.client.markets or {}))

    async def close(self) -> None:
        if self._owed:
            log.warning("binance closing with fees still owed for %s: their fills keep the commission reported",
                        ", ".join(sorted(self._owed)))
        task, self._fee_task = self._fee_task, None
        await stop_task(task)  # bounded even if a cancellation is swallowed (execution/tasks.py)
        await super().close()

    def subscribe(self, listener: UpdateListener) -> None:
        """Late fees of final orders go to ``listener`` (the FillTracker); nothing else is pushed."""
        self._listeners.append(listener)

    async def health_check(self) -> bool:
        """Reachable (``GET /api/v3/time``, weight 1) and credentials not known bad. The check
        goes through the session's retry discipline: one stray 503 is retried, not read as an
        outage that would send a whole batch to paper (the chaos drill saw 197 of 600)."""
        if self._client is None:
            return False
        client = self._client
        try:
            await self._call("health check", lambda: client.fetch_time())
        except Exception as exc:  # any failure means unhealthy; the reason is logged, not raised
            log.warning("binance health check failed: %s", REDACTOR.redact(f"{type(exc).__name__}: {exc}"))
            return False
        recheck_due = self._clock.monotonic() - self._auth_checked_at >= self.config.auth_recheck_interval
        if self._auth_error is not None and self.config.has_credentials and recheck_due:
            try:
                await self._verify_credentials()
            except BrokerError:
                return False
        return self._auth_error is None

    async def _verify_credentials(self) -> None:
        """One signed call (``GET /api/v3/account``) to learn whether key and secret work."""
        client = self.client
        self._auth_checked_at = self._clock.monotonic()
        try:
            await self._call("verify credentials", lambda: client.fetch_balance())
        except OrderRejected as exc:
            log.error("binance rejected the API credentials: %s", exc)
            return
        self._auth_error = None

    # -- execution -----------------------------------------------------------------------------

    async def place(self, order: Order) -> VenueOrderStatus:
        """Send ``order`` at most once per safe delay; return Binance's first answer as cumulative status.

        Raises ``OrderStateUnknown`` when the submit may have reached Binance but Binance does
        not show the order (yet), ``BrokerUnavailable`` when it certainly did not reach it."""
        client = self.client
        cid = order.client_order_id
        symbol = self._market(order.symbol, cid)
        amount = self._check_precision(symbol, order.quantity, "quantity", cid)
        side = "buy" if order.side is Side.BUY else "sell"
        params: dict[str, Any] = {"newClientOrderId": cid}
        create: Callable[[], Awaitable[Any]]
        kind = order.order_type
        if kind is OrderType.MARKET:
            create = lambda: client.create_market_order(symbol, side, amount, None, params)  # noqa: E731
        elif kind is OrderType.LIMIT:
            assert order.limit_price is not None
            price = self._check_precision(symbol, order.limit_price, "limit price", cid)
            params["timeInForce"] = _TIF[order.time_in_force]
            create = lambda: client.create_limit_order(symbol, side, amount, price, params)  # noqa: E731
        elif kind is OrderType.STOP:
            create = self._stop_order(order, symbol, side, amount, params)
        else:
            raise OrderRejected(
                f"BRACKET not supported on Binance spot: order {cid} needs an entry with "
                "linked stop-loss and take-profit (OTOCO), which this adapter does not emulate; send the "
                "entry and protective orders as separate signals"
            )

        if cid in self._unsettled:  # an earlier submit of ours may still execute: never send blindly
            earlier = await self._settled_lookup(symbol, cid)
            if earlier is not None:
                return await self._status(symbol, earlier, cid)

        log.info("binance place %s %s %s %s qty=%s", cid, kind.value, side, symbol, amount)

        async def attempt() -> Any:
            try:
                return await self._invoke("place order", create)
            except ccxt_errors.BaseError as exc:
                if venue_message(exc) == DUPLICATE_MSG or (isinstance(exc, TRANSIENT) and maybe_reached_venue(exc)):
                    raise _MaybeSent(exc) from exc
                raise

        try:
            # retried only for what never reached Binance (throttled, connection refused)
            result = await self._call("place order", attempt, client_order_id=cid)
        except _MaybeSent as sent:
            result = await self._after_uncertain_submit(symbol, cid, sent.cause)
        info: Mapping[str, Any] = result.get("info", result) if isinstance(result, dict) else {}
        fills = info.get("fills")
        if isinstance(fills, list):  # a FULL answer carries its fills: no trade lookup needed
            commission, asset = sum_commission(fills)
            self._commission[cid] = CommissionMark(dec(info.get("executedQty")), commission, asset)
        status = await self._status(symbol, info, cid)
        log.info("binance %s -> %s filled=%s avg=%s", cid, status.state.value,
                 status.filled_quantity, status.avg_fill_price)
        return status

    async def _after_uncertain_submit(self, symbol: str, client_order_id: str, cause: BaseException) -> Any:
        """The submit may have reached Binance: note the safe delay, look once, never re-send.

        The delay runs from now, the end of the attempt: ccxt signed the request's ``timestamp``
        before sending it, so Binance refuses it after ``timestamp + recvWindow`` at the latest
        (plus the margin for a timestamp ahead of its clock)."""
        not_before = self._clock.monotonic() + self.settle_delay
        self._unsettled[client_order_id] = max(not_before, self._unsettled.get(client_order_id, not_before))
        why = REDACTOR.redact(f"{type(cause).__name__}: {venue_message(cause)}")
        try:
            found = await self._fetch_raw(symbol, client_order_id)
        except (ccxt_errors.BaseError, ClockSkew) as exc:
            raise OrderStateUnknown(
                f"binance place order {client_order_id}: {why}; it may have reached Binance and the "
                f"lookup failed ({type(exc).__name__}); not sent again, reconcile with query()",
                code="state-unknown",
            ) from None
        if found is None:
            raise OrderStateUnknown(
                f"binance place order {client_order_id}: {why}; Binance does not show it yet, but it may "
                f"still execute: not sent again before Binance, asked after {self.settle_delay:.1f}s, "
                "says it does not exist",
                code="state-unknown",
            )
        log.info("binance %s found at venue after an uncertain submit (%s)", client_order_id, why)
        self._unsettled.pop(client_order_id, None)
        return found

    async def _settled_lookup(self, symbol: str, client_order_id: str) -> Mapping[str, Any] | None:
        """Binance's order after an uncertain submit, or None once its -2013 is final.

        Raises ``OrderStateUnknown`` while "no such order" proves nothing yet, or when Binance
        cannot be asked (never ``BrokerUnavailable``: that would send the order to paper)."""
        try:
            info = await self._fetch_order_info(symbol, client_order_id)
        except BrokerUnavailable as exc:
            raise OrderStateUnknown(
                f"{exc}; order {client_order_id} may exist at Binance, reconcile with query()", code="state-unknown"
            ) from exc
        if info is not None:
            self._unsettled.pop(client_order_id, None)
            return info
        self._check_settled(client_order_id)
        return None

    def _check_settled(self, client_order_id: str) -> None:
        """Raise ``OrderStateUnknown`` if an uncertain submit of the order may still execute;
        otherwise forget it: from here on Binance's "no such order" is the truth."""
        not_before = self._unsettled.get(client_order_id)
        if not_before is None:
            return
        remaining = not_before - self._clock.monotonic()
        if remaining > 0:
            raise OrderStateUnknown(
                f"order {client_order_id}: Binance does not show it, but a submit that may have reached "
                f"it can still execute for {remaining:.1f}s; ask again later",
                code="state-unknown",
            )
        del self._unsettled[client_order_id]

    def _stop_order(
        self, order: Order, symbol: str, side: str, amount: str, params: dict[str, Any]
    ) -> Callable[[], Awaitable[Any]]:
        """STOP -> Binance STOP_LOSS (market once triggered) or, with a limit price, STOP_LOSS_LIMIT."""
        client = self.client
        assert order.stop_price is not None
        binance_type = "STOP_LOSS_LIMIT" if order.limit_price is not None else "STOP_LOSS"
        allowed = client.markets[symbol]["info"].get("orderTypes", [])
        if binance_type not in allowed:
            raise OrderRejected(
                f"STOP order {order.client_order_id}: {symbol} does not offer {binance_type} on Binance spot "
                f"(order types: {', '.join(allowed)})"
            )
        stop = self._check_precision(symbol, order.stop_price, "stop price", order.client_order_id)
        stop_params = {**params, "triggerPrice": stop}
        if order.limit_price is None:
            return lambda: client.create_order(symbol, "market", side, amount, None, stop_params)
        price = self._check_precision(symbol, order.limit_price, "limit price", order.client_order_id)
        stop_params["timeInForce"] = _TIF[order.time_in_force]
        return lambda: client.create_order(symbol, "limit", side, amount, price, stop_params)

    async def cancel(self, order: Order) -> VenueOrderStatus:
        """Cancel by client order id. An order that is no longer open answers with its final state
        (e.g. FILLED); one Binance never saw raises ``OrderRejected`` (code -2011)."""
        client = self.client
        symbol = self._market(order.symbol, order.client_order_id)
        coid = order.client_order_id
        result = await self._call(
            "cancel order",
            lambda: client.cancel_order(None, symbol, {"origClientOrderId": coid}),
            client_order_id=coid,
            not_found_ok=True,
        )
        if result is None:
            current = await self.query(order)
            if current is None:
                raise OrderRejected(f"cannot cancel {coid}: Binance has no such order", code=-2011)
            return current
        return await self._status(symbol, result.get("info", result), coid)

    async def query(self, order: Order) -> VenueOrderStatus | None:
        """Binance's view of ``order`` by client order id (``origClientOrderId``), or None if the
        venue never saw it (-2013). Used by the fill tracker's polls and by reconcile.

        For an order whose submit was uncertain less than ``settle_delay`` ago, -2013 raises
        ``OrderStateUnknown`` instead of answering None (module docstring, *The safe delay*)."""
        symbol = self._market(order.symbol, order.client_order_id)
        info = await self._fetch_order_info(symbol, order.client_order_id)
        if info is None:
            self._check_settled(order.client_order_id)
            return None
        self._unsettled.pop(order.client_order_id, None)
        return await self._status(symbol, info, order.client_order_id)

    async def fetch_open_orders(self, symbol: str | None = None) -> list[VenueOrderStatus]:
        """Open orders (of one market, or all: weight 80 instead of 6) without commission lookups."""
        client = self.client
        market = self._market(symbol, "open orders") if symbol else None
        rows = await self._call("fetch open orders", lambda: client.fetch_open_orders(market))
        return [parse_order(row["info"]) for row in rows]

    async def _fetch_raw(self, symbol: str, client_order_id: str) -> Any | None:
        """One lookup attempt by client order id: the ccxt order, or None on -2013."""
        client = self.client
        try:
            return await self._invoke(
                "look up order",
                lambda: client.fetch_order(None, symbol, {"origClientOrderId": client_order_id}),
            )
        except ccxt_errors.OrderNotFound:
            return None

    async def _fetch_order_info(self, symbol: str, client_order_id: str) -> Mapping[str, Any] | None:
        client = self.client
        result = await self._call(
            "fetch order",
            lambda: client.fetch_order(None, symbol, {"origClientOrderId": client_order_id}),
            client_order_id=client_order_id,
            not_found_ok=True,
        )
        if result is None:
            return None
        info: Mapping[str, Any] = result.get("info", result)
        return info

    # -- commission ----------------------------------------------------------------------------

    async def _status(self, symbol: str, info: Mapping[str, Any], client_order_id: str) -> VenueOrderStatus:
        """Parse with the order's cumulative commission; forget the cache once the order is final.

        A final order whose commission could not be fetched is owed its fee (``_owe``)."""
        mark, complete = await self._commission_for(symbol, info, client_order_id)
        status = parse_order(info, client_order_id=client_order_id, commission=mark)
        if status.state.is_terminal:
            self._commission.pop(client_order_id, None)
            if not complete:
                self._owe(client_order_id, _OwedFee(symbol, str(info.get("orderId")), status.filled_quantity,
                                                    status.commission))
        return status

    async def _commission_for(
        self, symbol: str, info: Mapping[str, Any], client_order_id: str
    ) -> tuple[CommissionMark | None, bool]:
        """Cumulative commission of an order, asking ``myTrades`` only when its fills grew, and
        whether it is complete.

        ``GET /order`` has no commission field; trades do. The mark is cached per client order id,
        so a poll of an unchanged order costs nothing extra and the value never goes backwards.
        A failed lookup answers the last mark (incomplete) instead of failing the status: the
        order's state matters more than its fee, which a later lookup brings."""
        filled = dec(info.get("executedQty"))
        mark = self._commission.get(client_order_id)
        if filled <= 0 or (mark is not None and mark.filled >= filled):
            return mark, True
        try:
            commission, asset = await self._fetch_commission(symbol, str(info.get("orderId")), client_order_id)
        except BrokerError as exc:
            log.warning("binance %s: commission lookup failed (%s); reported without it, fetched later",
                        client_order_id, exc)
            return mark, False
        if mark is not None and commission < mark.commission:
            commission = mark.commission
        new_mark = CommissionMark(filled, commission, asset or (mark.asset if mark else None))
        self._commission[client_order_id] = new_mark
        return new_mark, True

    async def _fetch_commission(self, symbol: str, order_id: str, client_order_id: str) -> tuple[Decimal, str | None]:
        """The order's total commission from its trades (``GET /api/v3/myTrades``, weight 20);
        settles a fee still owed for it."""
        client = self.client
        trades = await self._call(
            "fetch order trades",
            lambda: client.fetch_order_trades(order_id, symbol),
            client_order_id=client_order_id,
        )
        commission, asset = sum_commission([t.get("info", t) for t in trades])
        owed = self._owed.pop(client_order_id, None)
        if owed is not None:
            self._push_fee(client_order_id, owed, commission, asset)
        return commission, asset

    def _owe(self, client_order_id: str, owed: _OwedFee) -> None:
        """Remember a final order's missing fee and make sure someone goes to fetch it."""
        self._owed[client_order_id] = owed
        if self._fee_task is None or self._fee_task.done():
            self._fee_task = asyncio.get_running_loop().create_task(
                self._collect_owed_fees(), name="binance-owed-fees")

    async def _collect_owed_fees(self) -> None:
        """Fetch every owed fee, first after one poll interval, then backing off, until none is left."""
        wait = max(self.config.poll_interval, 0.01)
        while self._owed:
            await asyncio.sleep(wait)
            for client_order_id, owed in list(self._owed.items()):
                try:
                    await self._fetch_commission(owed.symbol, owed.order_id, client_order_id)
                except BrokerError as exc:
                    log.warning("binance %s: owed commission still unavailable (%s)", client_order_id, exc)
            wait = min(wait * 2, _FEE_RETRY_CAP)

    def _push_fee(self, client_order_id: str, owed: _OwedFee, commission: Decimal, asset: str | None) -> None:
        """Tell the listeners the fee of the fill that took the order to ``owed.filled``.

        The fill's id is the tracker's for a polled fill (``derive_fill`` in
        execution/fill_tracker.py: broker, client order id, cumulative quantity); the tracker
        prefixes the broker. Its fee is what the order's total has beyond what was reported."""
        fee = VenueFee(
            exec_id=f"{client_order_id}-{owed.filled.normalize():f}",
            commission=max(Decimal(0), commission - owed.reported),
            commission_asset=asset,
        )
        log.info("binance %s: late commission %s %s", client_order_id, fee.commission, asset or "")
        for listener in self._listeners:
            listener.on_fee(fee)

    def _check_precision(self, symbol: str, value: Decimal, what: str, context: str) -> str:
        """Refuse a value ccxt would silently round to the market's step/tick.

        ccxt truncates quantities to LOT_SIZE.stepSize and rounds prices to the tick before
        sending; an order for 0.123456 would become 0.12345 and could then never be FILLED in full.
        """
        client = self.client
        try:
            if what == "quantity":
                sent = client.amount_to_precision(symbol, format(value, "f"))
            else:
                sent = client.price_to_precision(symbol, format(value, "f"))
        except ccxt_errors.BaseError as exc:
            raise OrderRejected(
                f"{context}: {what} {value} invalid for {symbol}: {venue_message(exc)}"
            ) from None
        if Decimal(sent) != value:
            step = client.markets[symbol]["precision"]["amount" if what == "quantity" else "price"]
            raise OrderRejected(
                f"{context}: {what} {value} is not a multiple of {symbol}'s "
                f"{'LOT_SIZE stepSize' if what == 'quantity' else 'PRICE_FILTER tickSize'} "
                f"{dec(step).normalize()} (Binance would get {sent})",
                code=-1013,
            )
        return str(sent)
