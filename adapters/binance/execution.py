"""Binance spot execution through ccxt: the BrokerPort.

What it guarantees to the core:

* **No order placed twice.** The order's ``client_order_id`` goes out as Binance's
  ``newClientOrderId``. If a placement may have reached the venue (timeout, dropped connection,
  5xx, "Duplicate order sent.") the adapter asks Binance about that client order id before it
  tries again, because Binance only refuses a reused id while the first order is still *open*:
  a filled market order would otherwise be bought twice. If Binance cannot be asked, the order's
  fate is ``OrderStateUnknown``: kept at Binance and reconciled, never placed elsewhere.
* **Nothing silently rounded.** A quantity or price off the market's step/tick is refused before
  sending, instead of being truncated by ccxt into an order that could never fill in full.
* **Every failure has one meaning** (``errors.py``), and every request goes through one client
  with one retry discipline (``session.py``).

Fills are not pushed: the generic fill tracker polls ``query()`` every ``poll_interval`` seconds
and turns the growth of cumulative ``executedQty`` / average price / commission into Fill messages.
``query()`` costs one ``GET /api/v3/order`` (weight 4) and, only when the filled quantity grew,
one ``GET /api/v3/myTrades`` (weight 20) for the commission, which ``/order`` does not report.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from decimal import Decimal
from typing import Any

from ccxt.base import errors as ccxt_errors

from adapters.binance.client import REDACTOR
from adapters.binance.config import BinanceConfig
from adapters.binance.errors import (
    DUPLICATE_MSG,
    TRANSIENT,
    OrderStateUnknown,
    maybe_reached_venue,
    venue_message,
)
from adapters.binance.market_data import BinanceMarketData
from adapters.binance.parsing import CommissionMark, dec, parse_order, sum_commission
from execution.clock import SYSTEM_CLOCK, Clock
from execution.ports import BrokerError, BrokerUnavailable, OrderRejected, VenueOrderStatus
from schemas import Broker, Order, OrderType, Side, TimeInForce

log = logging.getLogger(__name__)

_TIF: dict[TimeInForce, str] = {
    # Binance spot has no DAY: crypto never closes, so a day order is good-till-cancelled.
    TimeInForce.DAY: "GTC",
    TimeInForce.GTC: "GTC",
    TimeInForce.IOC: "IOC",
    TimeInForce.FOK: "FOK",
}


class BinanceAdapter(BinanceMarketData):
    """BrokerPort for Binance spot over ccxt, on top of its market data: one object, one client,
    one ``connect()`` serve both ports (``plugin.py`` hands it out as each)."""

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

    async def health_check(self) -> bool:
        """Reachable (``GET /api/v3/time``, weight 1, one attempt) and credentials not known bad."""
        if self._client is None:
            return False
        client = self._client
        try:
            await self._invoke("health check", lambda: client.fetch_time())
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
        """Send ``order`` once, idempotently; return Binance's first answer as cumulative status."""
        client = self.client
        symbol = self._market(order.symbol, order.client_order_id)
        amount = self._check_precision(symbol, order.quantity, "quantity", order.client_order_id)
        side = "buy" if order.side is Side.BUY else "sell"
        params: dict[str, Any] = {"newClientOrderId": order.client_order_id}
        create: Callable[[], Awaitable[Any]]
        kind = order.order_type
        if kind is OrderType.MARKET:
            create = lambda: client.create_market_order(symbol, side, amount, None, params)  # noqa: E731
        elif kind is OrderType.LIMIT:
            assert order.limit_price is not None
            price = self._check_precision(symbol, order.limit_price, "limit price", order.client_order_id)
            params["timeInForce"] = _TIF[order.time_in_force]
            create = lambda: client.create_limit_order(symbol, side, amount, price, params)  # noqa: E731
        elif kind is OrderType.STOP:
            create = self._stop_order(order, symbol, side, amount, params)
        else:
            raise OrderRejected(
                f"BRACKET not supported on Binance spot: order {order.client_order_id} needs an entry with "
                "linked stop-loss and take-profit (OTOCO), which this adapter does not emulate; send the "
                "entry and protective orders as separate signals"
            )

        log.info("binance place %s %s %s %s qty=%s", order.client_order_id, kind.value, side, symbol, amount)
        maybe_sent = False

        async def attempt() -> Any:
            nonlocal maybe_sent
            if maybe_sent:
                # A previous attempt may have executed: Binance would accept the same client id
                # again once that order is filled, so look before placing a second time.
                found = await self._fetch_raw(symbol, order.client_order_id)
                if found is not None:
                    log.info("binance %s found at venue after an uncertain attempt", order.client_order_id)
                    return found
            try:
                return await self._invoke("place order", create)
            except ccxt_errors.InvalidOrder as exc:
                if venue_message(exc) != DUPLICATE_MSG:
                    raise
                maybe_sent = True
                found = await self._fetch_raw(symbol, order.client_order_id)
                if found is None:
                    raise
                return found
            except TRANSIENT as exc:
                maybe_sent = maybe_sent or maybe_reached_venue(exc)
                raise

        try:
            result = await self._call("place order", attempt, client_order_id=order.client_order_id)
        except BrokerUnavailable as exc:
            if maybe_sent:
                raise OrderStateUnknown(
                    f"{exc}; order {order.client_order_id} may exist at Binance, reconcile with query()",
                    code="state-unknown",
                ) from exc
            raise
        info: Mapping[str, Any] = result.get("info", result) if isinstance(result, dict) else {}
        fills = info.get("fills")
        if isinstance(fills, list):  # a FULL answer carries its fills: no trade lookup needed
            commission, asset = sum_commission(fills)
            self._commission[order.client_order_id] = CommissionMark(
                dec(info.get("executedQty")), commission, asset
            )
        status = await self._status(symbol, info, order.client_order_id)
        log.info("binance %s -> %s filled=%s avg=%s", order.client_order_id, status.state.value,
                 status.filled_quantity, status.avg_fill_price)
        return status

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
        venue never saw it (-2013). Used by the fill tracker's polls and by reconcile on start."""
        symbol = self._market(order.symbol, order.client_order_id)
        info = await self._fetch_order_info(symbol, order.client_order_id)
        if info is None:
            return None
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

    async def _status(self, symbol: str, info: Mapping[str, Any], client_order_id: str) -> VenueOrderStatus:
        """Parse with the order's cumulative commission; forget the cache once the order is final."""
        mark = await self._commission_for(symbol, info, client_order_id)
        status = parse_order(info, client_order_id=client_order_id, commission=mark)
        if status.state.is_terminal:
            self._commission.pop(client_order_id, None)
        return status

    async def _commission_for(
        self, symbol: str, info: Mapping[str, Any], client_order_id: str
    ) -> CommissionMark | None:
        """Cumulative commission of an order, asking ``myTrades`` only when its fills grew.

        ``GET /order`` has no commission field; trades do. The mark is cached per client order id,
        so a poll of an unchanged order costs nothing extra and the value never goes backwards.
        """
        filled = dec(info.get("executedQty"))
        mark = self._commission.get(client_order_id)
        if filled <= 0 or (mark is not None and mark.filled >= filled):
            return mark
        client = self.client
        order_id = str(info.get("orderId"))
        trades = await self._call(
            "fetch order trades",
            lambda: client.fetch_order_trades(order_id, symbol),
            client_order_id=client_order_id,
        )
        commission, asset = sum_commission([t.get("info", t) for t in trades])
        if mark is not None and commission < mark.commission:
            commission = mark.commission
        new_mark = CommissionMark(filled, commission, asset or (mark.asset if mark else None))
        self._commission[client_order_id] = new_mark
        return new_mark

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
