"""PaperAdapter: the fallback venue that simulates fills, so no order is ever dropped.

Fills at mid +/- slippage (default 0.1% against the trader). The mid comes from the
composition's market data for the order's asset class (execution/prices.py: any registered venue
that prices it), else from the signal's reference price, else the order is rejected with that
reason: a paper fill at an invented price would be worse than no fill. Market orders
fill at once; limits only when marketable, otherwise they rest (or expire if IOC/FOK) and are
re-checked when the tracker polls; stops trigger when the mid crosses them.

Venue order ids and therefore exec ids are derived from the client order id, so re-placing a
paper order after a restart reproduces the same fill, which the fills writer recognises.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass
from decimal import Decimal

from execution.ports import MarketDataPort, OrderRejected, Quote, VenueOrderStatus
from execution.prices import QuotesByAssetClass
from schemas import AssetClass, Broker, Order, OrderState, OrderType, Side, TimeInForce

PRICE_PLACES = Decimal("1e-10")
log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SlippageModel:
    """Price moved against the trader by ``rate`` of the mid (0.001 = 0.1%)."""

    rate: Decimal = Decimal("0.001")

    def __post_init__(self) -> None:
        if not Decimal(0) <= self.rate < Decimal(1):
            raise ValueError("slippage rate must be in [0, 1)")

    def fill_price(self, mid: Decimal, side: Side) -> Decimal:
        factor = 1 + self.rate if side is Side.BUY else 1 - self.rate
        return (mid * factor).quantize(PRICE_PLACES).normalize()


def marketable(order: Order, mid: Decimal, price: Decimal) -> bool:
    """Would ``order`` trade now, given the mid and the slipped execution price?"""
    buy = order.side is Side.BUY
    if order.order_type is OrderType.LIMIT:
        assert order.limit_price is not None
        return price <= order.limit_price if buy else price >= order.limit_price
    if order.order_type is OrderType.STOP:
        assert order.stop_price is not None
        return mid >= order.stop_price if buy else mid <= order.stop_price
    return True


class PaperAdapter:
    name = Broker.PAPER

    def __init__(
        self,
        slippage: SlippageModel | None = None,
        market_data: MarketDataPort | QuotesByAssetClass | None = None,
        *,
        market_data_classes: frozenset[AssetClass] | None = None,
        poll_interval: float = 1.0,
        remember: int = 100_000,
    ) -> None:
        self.slippage = slippage or SlippageModel()
        self._market_data = market_data
        #: asset classes the data venue lists (None = ask for every order): an equity must not
        #: cost a doomed round trip to a crypto exchange
        self._market_data_classes = market_data_classes
        #: resting orders are re-checked on each poll; without market data nothing can move them
        self.poll_interval: float | None = poll_interval if market_data else None
        self._orders: OrderedDict[str, VenueOrderStatus] = OrderedDict()
        self._remember = remember

    async def connect(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def health_check(self) -> bool:
        return True

    async def place(self, order: Order) -> VenueOrderStatus:
        if order.order_type is OrderType.BRACKET:
            raise OrderRejected("BRACKET orders are not simulated on paper; IBKR places them natively")
        status = await self._evaluate(order, first=True)
        self._remember_status(status)
        return status

    async def cancel(self, order: Order) -> VenueOrderStatus:
        status = self._orders.get(order.client_order_id)
        if status is None:
            raise OrderRejected(f"unknown order {order.client_order_id}")
        if not status.state.is_terminal:
            status = _status(order, OrderState.CANCELLED, reason="cancelled on request")
            self._remember_status(status)
        return status

    async def query(self, order: Order) -> VenueOrderStatus | None:
        status = self._orders.get(order.client_order_id)
        if status is None or status.state.is_terminal:
            return status
        status = await self._evaluate(order, first=False)
        self._remember_status(status)
        return status

    async def _evaluate(self, order: Order, *, first: bool) -> VenueOrderStatus:
        mid = await self._mid(order)
        if mid is None:
            if first:
                raise OrderRejected(
                    f"no reference_price and no market data for {order.symbol}; cannot price a fill"
                )
            return _status(order, OrderState.SUBMITTED)
        price = self.slippage.fill_price(mid, order.side)
        if marketable(order, mid, price):
            return _status(order, OrderState.FILLED, filled=order.quantity, avg=price)
        if order.time_in_force in (TimeInForce.IOC, TimeInForce.FOK):
            return _status(order, OrderState.EXPIRED,
                           reason=f"{order.time_in_force} {order.order_type} not marketable at mid {mid}")
        return _status(order, OrderState.SUBMITTED)

    async def _mid(self, order: Order) -> Decimal | None:
        """Live market data when there is some; the strategy's reference price otherwise."""
        quote: Quote | None = None
        if isinstance(self._market_data, QuotesByAssetClass):
            quote = await self._market_data.quote_for(order.symbol, order.asset_class)
        elif self._market_data is not None and (
                self._market_data_classes is None or order.asset_class in self._market_data_classes):
            try:
                quote = await self._market_data.quote(order.symbol)
            except Exception as exc:  # a symbol the data venue doesn't list, or it is down
                log.debug("no market data for %s (%r); using reference price", order.symbol, exc)
        if quote is not None and quote.mid is not None:
            return quote.mid
        return order.reference_price

    def _remember_status(self, status: VenueOrderStatus) -> None:
        self._orders[status.client_order_id] = status
        self._orders.move_to_end(status.client_order_id)
        while len(self._orders) > self._remember:
            self._orders.popitem(last=False)


def _status(
    order: Order,
    state: OrderState,
    *,
    filled: Decimal = Decimal(0),
    avg: Decimal | None = None,
    reason: str = "",
) -> VenueOrderStatus:
    return VenueOrderStatus(
        client_order_id=order.client_order_id,
        venue_order_id=f"P{order.client_order_id}",
        state=state,
        filled_quantity=filled,
        avg_fill_price=avg,
        reason=reason,
    )
