"""Binance's wire conventions shared by the engine and the HTTP layer: the error answer, number
formatting, and request-parameter parsing with Binance's own error codes and messages."""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

JsonObj = dict[str, Any]

ZERO = Decimal(0)
EIGHT_DP = Decimal("0.00000001")
CLIENT_ORDER_ID_RE = re.compile(r"^[a-zA-Z0-9\-_]{1,36}$")
NUMBER_RE = re.compile(r"^([0-9]{1,20})(\.[0-9]{1,20})?$")


class BinanceApiError(Exception):
    """A Binance error answer: HTTP status plus the ``{"code", "msg"}`` body."""

    def __init__(self, status: int, code: int, msg: str) -> None:
        super().__init__(f"{code}: {msg}")
        self.status = status
        self.code = code
        self.msg = msg

    def body(self) -> JsonObj:
        return {"code": self.code, "msg": self.msg}


def fmt(value: Decimal) -> str:
    """Binance renders every price/quantity as a string with 8 decimals."""
    return f"{value.quantize(EIGHT_DP):f}"


def mandatory(params: Mapping[str, str], name: str) -> str:
    value = params.get(name)
    if value is None or value == "":
        raise BinanceApiError(
            400, -1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed."
        )
    return value


def decimal_param(params: Mapping[str, str], name: str, *, required: bool = True) -> Decimal | None:
    raw = params.get(name)
    if raw is None or raw == "":
        if required:
            mandatory(params, name)
        return None
    if not NUMBER_RE.match(raw):
        raise BinanceApiError(
            400,
            -1100,
            f"Illegal characters found in parameter '{name}'; "
            "legal range is '^([0-9]{1,20})(\\.[0-9]{1,20})?$'.",
        )
    value = Decimal(raw)
    exponent = value.normalize().as_tuple().exponent
    if isinstance(exponent, int) and exponent < -8:
        raise BinanceApiError(400, -1111, f"Parameter '{name}' has too much precision.")
    return value


def int_param(params: Mapping[str, str], name: str, default: int | None = None) -> int | None:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise BinanceApiError(
            400, -1100, f"Illegal characters found in parameter '{name}'; legal range is '^[0-9]{{1,20}}$'."
        ) from None


