"""The bridge's wire conventions shared by the engine and the HTTP layer: the error answer with
MT4's ``GetLastError`` codes, number and time formatting, and request parsing.

Every number on the wire is a JSON string holding a decimal (prices, volumes, money), so nothing
passes through binary floating point; a request that sends a JSON number where a decimal string
belongs is refused (retcode 3), which catches a client that would lose precision.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

JsonObj = dict[str, Any]

ZERO = Decimal(0)
CENT = Decimal("0.01")
DECIMAL_RE = re.compile(r"^-?[0-9]{1,20}(\.[0-9]{1,20})?$")

# MT4 GetLastError codes the bridge answers with
INVALID_TRADE_PARAMETERS = 3
INVALID_STOPS = 130
INVALID_VOLUME = 131
MARKET_CLOSED = 132
TRADE_DISABLED = 133
NOT_ENOUGH_MONEY = 134
OFF_QUOTES = 136
REQUOTE = 138
TRADE_CONTEXT_BUSY = 146
UNKNOWN_SYMBOL = 4106
INVALID_TICKET = 4108
#: not MT4 codes: the bridge's own answers for a missing token and an unknown endpoint
UNAUTHORIZED = 401
NOT_FOUND = 404

#: retcode -> (HTTP status, MT4's text)
ERRORS: dict[int, tuple[int, str]] = {
    INVALID_TRADE_PARAMETERS: (400, "invalid trade parameters"),
    INVALID_STOPS: (400, "invalid stops"),
    INVALID_VOLUME: (400, "invalid trade volume"),
    MARKET_CLOSED: (400, "market is closed"),
    TRADE_DISABLED: (400, "trade is disabled"),
    NOT_ENOUGH_MONEY: (400, "not enough money"),
    OFF_QUOTES: (409, "off quotes"),
    REQUOTE: (409, "requote"),
    TRADE_CONTEXT_BUSY: (409, "trade context busy"),
    UNKNOWN_SYMBOL: (400, "unknown symbol"),
    INVALID_TICKET: (404, "invalid ticket"),
    UNAUTHORIZED: (401, "unauthorized"),
    NOT_FOUND: (404, "not found"),
}

SIDES = ("buy", "sell")
TYPES = ("market", "limit", "stop")
STATES = ("pending", "open", "closed", "deleted")


class Mt4Error(Exception):
    """A bridge error answer: ``{"retcode": <code>, "error": <MT4's text>}`` with its HTTP status.

    ``detail`` says what exactly was wrong (which stop, which limit); it travels as an extra
    ``"detail"`` field so a rejection reason can name it, and is never needed to classify the error.
    """

    def __init__(self, code: int, detail: str = "", *, status: int | None = None) -> None:
        default_status, text = ERRORS[code]
        super().__init__(f"{code} {text}" + (f": {detail}" if detail else ""))
        self.code = code
        self.text = text
        self.detail = detail
        self.status = status if status is not None else default_status

    def body(self) -> JsonObj:
        body: JsonObj = {"retcode": self.code, "error": self.text}
        if self.detail:
            body["detail"] = self.detail
        return body


# -- formatting --------------------------------------------------------------------------------------


def fmt_price(value: Decimal | None, digits: int) -> str | None:
    """A price with the symbol's digits (``"1.08523"``, ``"150.125"``)."""
    return None if value is None else f"{value.quantize(Decimal(1).scaleb(-digits)):f}"


def fmt_lots(value: Decimal) -> str:
    return f"{value.quantize(CENT):f}"


def money(value: Decimal) -> Decimal:
    """Money is kept in cents, rounded half up as MT4 rounds account values."""
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def fmt_money(value: Decimal) -> str:
    return f"{money(value):f}"


def fmt_time(value: datetime | None) -> str | None:
    """ISO-8601 UTC with ``Z`` and milliseconds."""
    if value is None:
        return None
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


# -- requests ----------------------------------------------------------------------------------------


def _bad(detail: str) -> Mt4Error:
    return Mt4Error(INVALID_TRADE_PARAMETERS, detail)


def text_field(body: Mapping[str, Any], name: str, *, required: bool = False) -> str | None:
    value = body.get(name)
    if value is None:
        if required:
            raise _bad(f"{name} is required")
        return None
    if not isinstance(value, str):
        raise _bad(f"{name} must be a string, got {value!r}")
    if required and not value:
        raise _bad(f"{name} is required")
    return value


def int_field(body: Mapping[str, Any], name: str, *, required: bool = False) -> int | None:
    value = body.get(name)
    if value is None:
        if required:
            raise _bad(f"{name} is required")
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad(f"{name} must be an integer, got {value!r}")
    return value


def decimal_field(body: Mapping[str, Any], name: str, *, required: bool = False) -> Decimal | None:
    """A decimal sent as a JSON string; a JSON number is refused (it went through a float)."""
    value = body.get(name)
    if value is None:
        if required:
            raise _bad(f"{name} is required")
        return None
    if not isinstance(value, str) or not DECIMAL_RE.match(value):
        raise _bad(f"{name} must be a decimal in a JSON string (e.g. \"1.08500\"), got {value!r}")
    return Decimal(value)


def choice_field(body: Mapping[str, Any], name: str, choices: tuple[str, ...]) -> str:
    value = text_field(body, name, required=True)
    if value not in choices:
        raise _bad(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return value


def stop_field(body: Mapping[str, Any], name: str) -> Decimal | None:
    """An SL/TP as sent: absent -> ``None`` (unchanged); ``null`` or ``"0"`` -> ``ZERO`` (none, MT4's
    0); else the price, which must be positive."""
    if name not in body:
        return None
    if body[name] is None:
        return ZERO
    value = decimal_field(body, name)
    assert value is not None
    if value < 0:
        raise _bad(f"{name} must be >= 0, got {body[name]!r}")
    return value


@dataclass(frozen=True, slots=True)
class PlaceRequest:
    """``POST /order/place``; ``sl``/``tp`` ``None`` = none."""

    symbol: str
    side: str
    type: str
    volume: Decimal
    price: Decimal | None = None
    sl: Decimal | None = None
    tp: Decimal | None = None
    client_id: str | None = None
    comment: str = ""
    magic: int = 0

    @classmethod
    def parse(cls, body: Mapping[str, Any]) -> PlaceRequest:
        symbol = text_field(body, "symbol", required=True)
        assert symbol is not None
        side = choice_field(body, "side", SIDES)
        order_type = choice_field(body, "type", TYPES)
        volume = decimal_field(body, "volume", required=True)
        assert volume is not None
        price = decimal_field(body, "price", required=order_type != "market")
        if order_type == "market":
            price = None  # a market order executes at the market; a sent price is ignored
        elif price is not None and price <= 0:
            raise _bad(f"price must be positive, got {body['price']!r}")
        sl, tp = stop_field(body, "sl"), stop_field(body, "tp")
        return cls(
            symbol=symbol,
            side=side,
            type=order_type,
            volume=volume,
            price=price,
            sl=sl or None,
            tp=tp or None,
            client_id=text_field(body, "client_id") or None,
            comment=text_field(body, "comment") or "",
            magic=int_field(body, "magic") or 0,
        )


@dataclass(frozen=True, slots=True)
class ModifyRequest:
    """``POST /order/modify``; ``None`` = unchanged, ``ZERO`` = remove (MT4's 0)."""

    ticket: int
    sl: Decimal | None = None
    tp: Decimal | None = None
    price: Decimal | None = None

    @classmethod
    def parse(cls, body: Mapping[str, Any]) -> ModifyRequest:
        ticket = int_field(body, "ticket", required=True)
        assert ticket is not None
        price = decimal_field(body, "price")
        if price is not None and price <= 0:
            raise _bad(f"price must be positive, got {body['price']!r}")
        return cls(ticket=ticket, sl=stop_field(body, "sl"), tp=stop_field(body, "tp"), price=price)


@dataclass(frozen=True, slots=True)
class CloseRequest:
    """``POST /order/close``; ``volume`` ``None`` = all of it."""

    ticket: int
    volume: Decimal | None = None
    client_id: str | None = None

    @classmethod
    def parse(cls, body: Mapping[str, Any]) -> CloseRequest:
        ticket = int_field(body, "ticket", required=True)
        assert ticket is not None
        return cls(ticket=ticket, volume=decimal_field(body, "volume"),
                   client_id=text_field(body, "client_id") or None)
