"""Wire contract of SuperIntel Execution (pydantic v2 models, JSON on every topic)."""

from schemas.enums import TERMINAL_STATES, AssetClass, Broker, OrderState, OrderType, Side, TimeInForce
from schemas.models import (
    ALLOWED_TRANSITIONS,
    DeadLetter,
    Fill,
    IllegalTransition,
    NavQuote,
    Order,
    OrderEvent,
    OrderIntent,
    OrderRequest,
    Position,
    Signal,
    client_order_id_for,
    utcnow,
)

__all__ = [
    "ALLOWED_TRANSITIONS",
    "TERMINAL_STATES",
    "AssetClass",
    "Broker",
    "DeadLetter",
    "Fill",
    "IllegalTransition",
    "NavQuote",
    "Order",
    "OrderEvent",
    "OrderIntent",
    "OrderRequest",
    "OrderState",
    "OrderType",
    "Position",
    "Side",
    "Signal",
    "TimeInForce",
    "client_order_id_for",
    "utcnow",
]
