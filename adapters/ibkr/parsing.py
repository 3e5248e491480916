"""IB's values into ours and ours into IB's: order statuses, error codes, order tickets.

Error codes (IB's "message codes" page). IB reports far more through ``error`` than errors, and
ib_async marks a trade Cancelled on any code it does not list as a warning, so the adapter
decides from the code itself what happened to an order:

* ``REJECTION_CODES``: the order is refused (REJECTED with IB's code and words).
* 202 (and 10148/161 for a cancel of an order that is already done): CANCELLED.
* ``INFORMATIONAL_CODES`` (market-data farm status 2104/2106/2158..., 399 order message,
  10349 "TIF set to DAY by preset", 2100-2199 warnings): change nothing; the order stays live.
* ``CONNECTION_CODES``: 1100 connectivity lost, 1101 restored with data lost, 1102 restored.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from schemas import Order, OrderState, OrderType, Side, TimeInForce, bracket_exit_id

#: IB order status -> ours. PendingSubmit/ApiPending: sent, not yet acknowledged by IB.
STATUS: dict[str, OrderState] = {
    "ApiPending": OrderState.PENDING,
    "PendingSubmit": OrderState.PENDING,
    "PreSubmitted": OrderState.SUBMITTED,
    "Submitted": OrderState.SUBMITTED,
    "ApiUpdate": OrderState.SUBMITTED,
    "PendingCancel": OrderState.SUBMITTED,
    "Filled": OrderState.FILLED,
    "Cancelled": OrderState.CANCELLED,
    "ApiCancelled": OrderState.CANCELLED,
    "Inactive": OrderState.REJECTED,
}

REJECTION_CODES = frozenset({
    103,    # duplicate order id
    104,    # can't modify a filled order
    110,    # price does not conform to the minimum price variation (on a new order)
    200,    # no security definition found
    201,    # order rejected - reason
    203,    # security not available/allowed for this account
    321,    # error validating request (on a new order)
    382, 383,  # size exceeds the order size limits
    387,    # unsupported order type for this exchange and security type
    388,    # order size is smaller than the minimum
    434,    # the order size cannot be zero
    10147,  # OrderId that needs to be cancelled is not found (on a placement: refused)
    10268,  # the 'EtradeOnly' order attribute is not supported
})
CANCEL_CODES = frozenset({202})
INFORMATIONAL_CODES = frozenset({399, 404, 2100, 2103, 2104, 2105, 2106, 2107, 2108, 2119, 2137, 2157, 2158,
                                 10167, 10349})
CONNECTION_LOST = 1100
CONNECTION_RESTORED_DATA_LOST = 1101
CONNECTION_RESTORED = 1102
CONNECTION_CODES = frozenset({CONNECTION_LOST, CONNECTION_RESTORED_DATA_LOST, CONNECTION_RESTORED})
#: "Max rate of messages per second has been exceeded": the message was refused unprocessed
PACING_VIOLATION = 100
#: a second connection with a client id that is already connected
CLIENT_ID_IN_USE = 326


def is_informational(code: int) -> bool:
    """Codes that change nothing about an order (IB keeps working it)."""
    return code in INFORMATIONAL_CODES or 2100 <= code < 2200 or code in CONNECTION_CODES


@dataclass(frozen=True, slots=True)
class OrderVerdict:
    """What IB's error code (if any) on a Cancelled/Inactive trade means for the order."""

    state: OrderState | None
    reason: str


def verdict(status: str, code: int, message: str) -> OrderVerdict:
    """The state a trade's IB ``status`` means, given the error code IB last logged on it.

    ``state`` None: ignore this update (an informational code made ib_async show the order
    as Cancelled while IB keeps working it)."""
    if status in ("Cancelled", "ApiCancelled", "Inactive") and code:
        if is_informational(code):
            return OrderVerdict(None, f"IB {code}: {message}")
        if code in CANCEL_CODES:
            return OrderVerdict(OrderState.CANCELLED, f"IB {code}: {message}")
        return OrderVerdict(OrderState.REJECTED, f"IB {code}: {message}")
    state = STATUS.get(status)
    if state is OrderState.REJECTED:
        return OrderVerdict(state, "IB: order inactive" + (f" ({message})" if message else ""))
    return OrderVerdict(state, f"IB: {status}" if state in (OrderState.CANCELLED,) else "")


def dec(value: float | int | str | None) -> Decimal:
    """An IB double as a Decimal, through its shortest repr (0.1 stays 0.1, not 0.1000000000000000055)."""
    if value is None or value == "":
        return Decimal(0)
    return Decimal(repr(value)) if isinstance(value, float) else Decimal(value)


_TIF = {TimeInForce.DAY: "DAY", TimeInForce.GTC: "GTC", TimeInForce.IOC: "IOC", TimeInForce.FOK: "FOK"}


def action(side: Side) -> str:
    return "BUY" if side is Side.BUY else "SELL"


def opposite(side: Side) -> str:
    return "SELL" if side is Side.BUY else "BUY"


def child_ref(client_order_id: str, leg: str) -> str:
    """orderRef of a bracket's exit leg: the exit order's own client order id
    (``Order.bracket_exits``), so the core tracks each leg as an order of its own."""
    return bracket_exit_id(client_order_id, leg)


def tickets(order: Order, *, account: str, oca_group: str) -> list[Any]:
    """The IB orders for ``order``: one, or three for a BRACKET (entry with transmit=0, then the
    stop-loss and the take-profit as children in one OCA group; the last one transmits all).

    Quantities and prices go out as IB's doubles; the order's ``client_order_id`` is the
    entry's ``orderRef`` so a restarted adapter finds it by that alone."""
    from ib_async import LimitOrder, MarketOrder, StopOrder

    qty = float(order.quantity)
    tif = _TIF[order.time_in_force]
    common: dict[str, Any] = {"tif": tif, "orderRef": order.client_order_id, "account": account}
    kind = order.order_type
    if kind is OrderType.MARKET:
        return [MarketOrder(action(order.side), qty, **common)]
    if kind is OrderType.LIMIT:
        assert order.limit_price is not None
        return [LimitOrder(action(order.side), qty, float(order.limit_price), **common)]
    if kind is OrderType.STOP:
        assert order.stop_price is not None
        return [StopOrder(action(order.side), qty, float(order.stop_price), **common)]
    assert order.stop_price is not None and order.take_profit_price is not None
    entry: Any = (LimitOrder(action(order.side), qty, float(order.limit_price), **common)
                  if order.limit_price is not None else MarketOrder(action(order.side), qty, **common))
    entry.transmit = False
    exits: dict[str, Any] = {"tif": "GTC", "account": account, "ocaGroup": oca_group, "ocaType": 1}
    stop = StopOrder(opposite(order.side), qty, float(order.stop_price),
                     orderRef=child_ref(order.client_order_id, "sl"), transmit=False, **exits)
    profit = LimitOrder(opposite(order.side), qty, float(order.take_profit_price),
                        orderRef=child_ref(order.client_order_id, "tp"), transmit=True, **exits)
    return [entry, stop, profit]


def last_error(log: Sequence[Any]) -> tuple[int, str]:
    """The error code that explains a trade's current status, with its message (0, "" if none).

    The last code ib_async logged, except an informational one (``is_informational``) that IB
    has reported the order since: a 2104 or 10349 followed by IB's own ``Cancelled`` status
    (a real cancel) must not make that cancel look like a notice."""
    reported_since = False
    for entry in reversed(log):
        code = int(getattr(entry, "errorCode", 0) or 0)
        if not code:
            reported_since = True
        elif not (reported_since and is_informational(code)):
            return code, str(entry.message)
    return 0, ""


def undo_informational_cancel(trade: Any) -> bool:
    """Put back the status of a trade ib_async marked ``Cancelled`` on an informational code.

    ib_async cancels a trade locally on every error code it does not list as a warning, 10349
    ("TIF set to DAY by preset") among them, while IB keeps working the order. Left so, the
    trade looks done: a cancel would not be sent for it, and IB's real ``Cancelled`` later would
    change nothing ib_async reports. Returns True if the status was put back."""
    log = trade.log
    if trade.orderStatus.status != "Cancelled" or not log:
        return False
    code = int(getattr(log[-1], "errorCode", 0) or 0)
    if not code or not is_informational(code) or log[-1].status != "Cancelled":
        return False
    trade.orderStatus.status = log[-2].status if len(log) > 1 else "PendingSubmit"
    return True
