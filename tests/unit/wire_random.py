"""Seeded random wire data for property tests (hypothesis is not a dependency): values of every
kind the wire models hold, edge cases included, and whole messages of any WireModel built from
their fields' types. Validation judges each candidate; the tests count how many passed."""

from __future__ import annotations

import contextlib
import enum
import json
import random
import types
import typing
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from schemas import AssetClass, Signal

_ID_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:/-"
#: text a JSON encoder must escape or pass through: quotes, backslashes, control characters (no
#: NUL: the models refuse it), DEL, non-ASCII, the JS line separators, astral characters
_TEXT_POOL = ['"', "\\", "/", "\n", "\t", "\r", "\b", "\f", "\x01", "\x1f", "\x7f", "é", "ß", "中", "\u2028",
              "\u2029", "\U0001f600", " ", "<", ">", "&", "'"]
_DECIMAL_FORMS = ["0", "-0", "1", "0.1", "0.10", "1E+2", "1e-8", "0E-8", "12345678901234567890.123456789",
                  "-2.5", "65000.5", "1.000", "9" * 39, "0." + "0" * 60 + "1"]


def _zones() -> list[tzinfo]:
    zones: list[tzinfo] = [UTC, timezone(timedelta(0)), timezone(timedelta(hours=1)),
                           timezone(timedelta(hours=-5, minutes=-30)), timezone(timedelta(hours=14)),
                           timezone(timedelta(hours=5, minutes=45))]
    for name in ("America/New_York", "Asia/Kolkata"):
        with contextlib.suppress(ZoneInfoNotFoundError):  # no tz database on this machine
            zones.append(ZoneInfo(name))
    return zones


ZONES = _zones()


def decimal(rng: random.Random) -> Decimal:
    if rng.random() < 0.3:
        return Decimal(rng.choice(_DECIMAL_FORMS))
    digits = "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 20)))
    sign = "-" if rng.random() < 0.1 else ""
    return Decimal(f"{sign}{digits}E{rng.randint(-12, 12)}")


def timestamp(rng: random.Random) -> datetime:
    when = datetime(2000, 1, 1, tzinfo=UTC) + timedelta(seconds=rng.randint(0, 40 * 365 * 86400))
    if rng.random() < 0.6:
        when = when.replace(microsecond=rng.choice([0, 1, 500000, rng.randint(0, 999_999)]))
    return when.astimezone(rng.choice(ZONES))


def identifier(rng: random.Random, longest: int = 24) -> str:
    return "".join(rng.choice(_ID_CHARS) for _ in range(rng.randint(1, longest)))


def text(rng: random.Random) -> str:
    parts = [rng.choice(_TEXT_POOL) if rng.random() < 0.4 else identifier(rng, 6) for _ in range(rng.randint(0, 8))]
    return "".join(parts)


def _patterned(metadata: list[Any]) -> bool:
    """Whether a string's constraints include a pattern of its own (identifiers, symbols)."""
    for m in metadata:
        if getattr(m, "pattern", None):
            return True
        if isinstance(m, FieldInfo) and _patterned(m.metadata):
            return True
    return False


def value(rng: random.Random, annotation: Any, field: FieldInfo, metadata: list[Any] | None = None) -> Any:
    """A random value of ``annotation`` (an Optional may come out None)."""
    metadata = list(field.metadata) if metadata is None else metadata
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        base, *extra = typing.get_args(annotation)
        return value(rng, base, field, metadata + extra)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(options) < len(typing.get_args(annotation)) and rng.random() < 0.3:
            return None
        return value(rng, rng.choice(options), field, metadata)
    if annotation is Decimal:
        return decimal(rng)
    if annotation is datetime:
        return timestamp(rng)
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return rng.choice(list(annotation))
    if annotation is bool:
        return rng.random() < 0.5
    if annotation is int:
        return rng.choice([0, 1, -1, 2**31, 2**62, rng.randint(-(10**6), 10**6)])
    if annotation is float:
        return rng.choice([0.0, 0.1, 1e16, -2.5, 1 / 3, 123456.789, 5e-324])
    if annotation is str:
        return identifier(rng) if _patterned(metadata) else text(rng)
    raise TypeError(f"no random values for {annotation!r}: teach tests/unit/wire_random.py")


def message(rng: random.Random, model: type[BaseModel], tries: int = 50) -> BaseModel | None:
    """A valid random ``model`` built from its fields' types (None if ``tries`` candidates failed)."""
    for _ in range(tries):
        data = {name: value(rng, field.annotation, field) for name, field in model.model_fields.items()
                if field.is_required() or rng.random() < 0.8}
        try:
            return model.model_validate(data)
        except ValidationError:
            continue
    return None


# --- signals as producers write them ------------------------------------------------------------

SYMBOLS = ["BTC-USDT", "BTCUSDT", "btc/usdt", "ETH_BTC", "BNBFDUSD", "EURUSD", "EUR/USD", "gbp-jpy", "SPY",
           "GBTC", "brk.b", "AAPL  250117C00150000", "SPY250321P00400000", "/ESZ5", "CLF26", "XAUUSD",
           "  aapl ", "DOGEUSDT", "SOL-USD", "ZZZZZZZ", "12345", "A" * 60 + "USDT", "A" * 64, "A B", "X"]


def signal_json(rng: random.Random, i: int) -> bytes:
    """Signal JSON as a producer might write it: mostly valid, some of it not."""
    kind = rng.choice(["MARKET", "LIMIT", "STOP", "BRACKET", "LIMIT"])
    data: dict[str, Any] = {
        "signal_id": f"p-{i}-{identifier(rng, 8)}",
        "symbol": rng.choice(SYMBOLS),
        "side": rng.choice(["BUY", "SELL"]),
        "quantity": str(decimal(rng)),
        "order_type": kind,
    }
    price = Decimal(rng.randint(1, 100_000)) / rng.choice([1, 10, 100])
    if kind in ("LIMIT", "BRACKET") and rng.random() < 0.9:
        data["limit_price"] = str(price)
    if kind in ("STOP", "BRACKET") and rng.random() < 0.9:
        data["stop_price"] = str(price * Decimal(rng.choice(["0.9", "1.1"])))
    if kind == "BRACKET" and rng.random() < 0.9:
        data["take_profit_price"] = str(price * Decimal(rng.choice(["1.1", "0.9"])))
    if rng.random() < 0.5:
        data["reference_price"] = rng.choice([str(price), float(price), 0.1, 1e-5])
    if rng.random() < 0.4:
        data["asset_class"] = rng.choice(list(AssetClass)).value
    if rng.random() < 0.7:
        data["ts"] = timestamp(rng).isoformat().replace("+00:00", rng.choice(["Z", "+00:00"]))
    if rng.random() < 0.5:
        data["strategy"] = text(rng) or "s"
    if rng.random() < 0.3:
        data["time_in_force"] = rng.choice(["DAY", "GTC", "IOC", "FOK"])
    if rng.random() < 0.2:
        data["group_id"] = identifier(rng)
    return json.dumps(data, ensure_ascii=rng.random() < 0.5).encode()


def signals(seed: int, n: int) -> list[tuple[bytes, Signal | None]]:
    """``n`` producer messages and the Signal each validates to (None: refused)."""
    rng = random.Random(seed)
    out: list[tuple[bytes, Signal | None]] = []
    for i in range(n):
        raw = signal_json(rng, i)
        try:
            out.append((raw, Signal.model_validate_json(raw)))
        except ValidationError:
            out.append((raw, None))
    return out
