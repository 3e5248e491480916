"""Pre-trade limits: the last check before an order can reach any venue, paper included.

A fat-fingered quantity must be REJECTED with a reason a human can read, never placed. The
notional uses the best price the order carries (limit, stop, reference); a market order with no
price at all is checked on quantity only, and says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from schemas import OrderIntent, OrderType


@dataclass(frozen=True, slots=True)
class PreTradeLimits:
    max_quantity: Decimal
    max_notional: Decimal

    def violation(self, order: OrderIntent) -> str | None:
        """The reason ``order`` breaks a limit, or ``None`` if it may trade."""
        if order.quantity > self.max_quantity:
            return f"quantity {order.quantity} exceeds max_order_quantity {self.max_quantity}"
        if order.order_type is OrderType.BRACKET:
            # stop and take-profit are the exits, not the entry; without an entry price the
            # higher exit bounds it from above (BUY: take-profit, SELL: stop)
            exits = [p for p in (order.stop_price, order.take_profit_price) if p is not None]
            price = order.limit_price or order.reference_price or (max(exits) if exits else None)
        else:
            price = order.limit_price or order.stop_price or order.reference_price
        if price is not None:
            notional = order.quantity * price
            if notional > self.max_notional:
                return f"notional {notional} exceeds max_order_notional {self.max_notional}"
        return None
