"""Constrained field types of the wire contract: a message that validates is one the database can store.

Why here and not only in the store: agents write in batches (agents/batches.py), so one value the
database refuses fails the INSERT for every message of its batch. Rejecting it at the edge sends
just that message to the dead-letter topic, with a reason naming the field.

What PostgreSQL refuses, and the bound kept here:

* ``TEXT`` cannot hold NUL (``\\u0000``, error 22021): every text field rejects it.
* Unconstrained ``NUMERIC`` (every price, quantity, commission and P&L column of
  ``schemas/sql/001_core.sql`` and ``schemas/sql/003_fill_fees.sql``) holds at most 131072 digits
  before the decimal point and 16383 after (``1e-200000`` and ``1e400000`` fail the INSERT). Decimals
  here are held far inside that: magnitude below ``10**DECIMAL_MAX_INTEGER_DIGITS``, at most
  ``DECIMAL_MAX_PLACES`` digits after the point, at most ``DECIMAL_MAX_DIGITS`` significant digits.
  ``DECIMAL_MAX_DIGITS`` must not be below the precision of the fill and position arithmetic
  (``DECIMAL_PRECISION`` in execution/fills.py): an average it computes is stored and validated
  again when read back, so it must pass (tests/unit/test_schemas.py checks this).
* ``TIMESTAMPTZ`` needs an instant: a timestamp without a timezone is ambiguous, and comparing it
  with the pipeline's clock (aware, execution/clock.py) raises. Timestamps must carry an offset.

The JSON Schema of these types (``superintel schema``, schemas/export.py) says the same, so a producer
in any language that validates against it is never dead-lettered for a reason the schema could
express (issue 17). Each type carries its schema here, built from the bounds above:

* decimals: a JSON number within the bounds, or a string in plain or exponent notation whose
  pattern encodes sign, digits, places and significant digits (the runtime also takes underscores,
  non-ASCII digits and surrounding blanks in strings, and a few extreme exponent forms the
  pattern cannot bound: there the schema is the stricter one);
* timestamps: an RFC 3339 date-time with an offset, on the wire *and* at runtime: a string is
  checked against ``RFC3339_DATE_TIME`` before pydantic's lenient parser sees it, so naive,
  date-only, space-separated and epoch-number timestamps are refused with a reason.
"""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Field, WithJsonSchema

#: significant digits a decimal may have (trailing zeros not counted)
DECIMAL_MAX_DIGITS = 50
#: digits after the decimal point, as written (``0.10`` has 2); NUMERIC itself allows 16383
DECIMAL_MAX_PLACES = 100
#: a decimal's magnitude stays below 10 ** this; NUMERIC itself allows 131072 integer digits
DECIMAL_MAX_INTEGER_DIGITS = 40


def storable_text(value: Any) -> Any:
    """Refuse NUL before any other string check, so the reason says what is wrong."""
    if isinstance(value, str) and "\x00" in value:
        raise ValueError("contains a NUL character (\\u0000), which a PostgreSQL text column cannot store")
    return value


def storable_decimal(value: Decimal) -> Decimal:
    """Refuse a finite decimal outside the bounds of this module (infinities and NaN are refused
    earlier, by ``allow_inf_nan=False``).

    It runs on every decimal of every message each agent parses, so the everyday decimal takes a
    shortcut (issue 16: 0.13 us instead of 0.57): written without an exponent, ``str`` shows every
    digit of the coefficient and every place after the point, so a string of at most
    ``DECIMAL_MAX_DIGITS`` characters has no more significant digits than that and fewer places
    than ``DECIMAL_MAX_PLACES``; the magnitude bound is checked directly. Anything else (exponent
    notation, a longer string) gets the exact checks and their reasons."""
    if not value.is_finite():
        return value
    if value.adjusted() < DECIMAL_MAX_INTEGER_DIGITS:
        text = str(value)
        if len(text) <= DECIMAL_MAX_DIGITS and "E" not in text:
            return value
    return exact_storable_decimal(value)


#: the shortcut of ``storable_decimal`` needs a string of DECIMAL_MAX_DIGITS characters to hold
#: fewer places than DECIMAL_MAX_PLACES
assert DECIMAL_MAX_DIGITS <= DECIMAL_MAX_PLACES


def exact_storable_decimal(value: Decimal) -> Decimal:
    """``storable_decimal`` without its shortcut: every bound counted on the coefficient."""
    if not value.is_finite():
        return value
    _sign, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)  # finite
    significant = len(digits)
    while significant and digits[significant - 1] == 0:  # 1.000 has one significant digit
        significant -= 1
    if significant > DECIMAL_MAX_DIGITS:
        raise ValueError(f"has {significant} significant digits; at most {DECIMAL_MAX_DIGITS} are accepted")
    if -exponent > DECIMAL_MAX_PLACES:
        raise ValueError(f"has {-exponent} digits after the decimal point; at most {DECIMAL_MAX_PLACES} "
                         "are accepted")
    if value and value.adjusted() >= DECIMAL_MAX_INTEGER_DIGITS:
        raise ValueError(f"magnitude 1E+{value.adjusted()} is too large; it must stay below "
                         f"1E+{DECIMAL_MAX_INTEGER_DIGITS}")
    return value


_NAIVE = ("timestamp without a timezone; send one, e.g. 2026-11-25T14:30:00Z or +01:00 "
          "(a time without one is ambiguous)")

#: RFC 3339 (section 5.6) ``date-time``: a full date, ``T``, a full time with seconds and an optional
#: fraction, and ``Z`` or a ``±HH:MM`` offset (``T`` and ``Z`` in either case, as the RFC allows).
#: Calendar validity (February 30th, year 0) is left to the date parser, and to the ``date-time``
#: format checker in the JSON Schema. The runtime matches it with ``fullmatch``.
RFC3339_DATE_TIME = (r"^[0-9]{4}-(?:0[1-9]|1[0-2])-[0-9]{2}[Tt](?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]"
                     r"(?:\.[0-9]+)?(?:[Zz]|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])$")
_RFC3339 = re.compile(RFC3339_DATE_TIME)
_DATE_ONLY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_EPOCH = re.compile(r"\s*[+-]?[0-9]+(?:\.[0-9]*)?\s*")
_ENDS_WITH_OFFSET = re.compile(r"(?:[Zz]|[+-][0-9]{2}(?::?[0-9]{2})?)\s*$")


def rfc3339_timestamp(value: Any) -> Any:
    """Refuse any wire form of an instant but an RFC 3339 date-time with an offset, before pydantic's
    parser (which also takes epoch numbers, dates, a space for ``T``, ``+0100``...) sees it.

    Why: the JSON Schema says ``date-time`` (issue 17), and a producer validating against it must
    not be looser or stricter than the router; a date or an epoch number also hides whether the
    producer meant UTC. ``datetime`` objects (Python callers) go on to the timezone check."""
    if isinstance(value, bytes | bytearray):
        text = bytes(value).decode("utf-8", "replace")
    elif isinstance(value, str):
        text = value
    elif isinstance(value, int | float) and not isinstance(value, bool):
        raise ValueError("epoch numbers are not accepted; send an RFC 3339 date-time string with an offset, "
                         "e.g. 2026-11-25T14:30:00Z")
    else:
        return value
    if _RFC3339.fullmatch(text):
        return value
    if _EPOCH.fullmatch(text):
        raise ValueError("epoch numbers are not accepted; send an RFC 3339 date-time string with an offset, "
                         "e.g. 2026-11-25T14:30:00Z")
    if _DATE_ONLY.fullmatch(text.strip()):
        raise ValueError("a date without a time; send an RFC 3339 date-time with an offset, "
                         "e.g. 2026-11-25T14:30:00Z")
    if not _ENDS_WITH_OFFSET.search(text):
        raise ValueError(_NAIVE)
    raise ValueError("not an RFC 3339 date-time; send YYYY-MM-DDTHH:MM:SS[.fraction] then Z or ±HH:MM, "
                     "e.g. 2026-11-25T14:30:00Z or 2026-11-25T15:30:00+01:00")


def aware_timestamp(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(_NAIVE)
    return value


# --- JSON Schema of the decimals -------------------------------------------------------------------

#: the smallest magnitude of a JSON *number* the schema accepts. The router reads a JSON number with a
#: fraction or exponent through a float and its shortest repr (at most 17 significant digits), so
#: every float from 1E-(places - 16) up has at most DECIMAL_MAX_PLACES places; below it some do and
#: some don't, and the schema cannot tell which: it refuses them all (send a string for those).
JSON_NUMBER_FLOOR = float(f"1e-{DECIMAL_MAX_PLACES - 16}")


def _mantissa(integer_digits: int, places: int) -> str:
    """Digits with an optional point: at most ``integer_digits`` before it once leading zeros are
    dropped (0: only zeros), at most ``places`` after it, at least one digit in all."""
    whole = rf"0*[0-9]{{1,{integer_digits}}}" if integer_digits else "0+"
    if not places:
        return rf"{whole}\.?"
    return rf"(?:{whole}(?:\.[0-9]{{0,{places}}})?|\.[0-9]{{1,{places}}})"


def _scientific() -> list[str]:
    """Exponent notation (``1E-8``, ``1.5e+3``: what ``str(Decimal)`` and Java's ``BigDecimal``
    write) as alternatives, one per decade of exponents, each bounding the mantissa so that every
    value it admits has at most DECIMAL_MAX_PLACES places and a magnitude below
    10**DECIMAL_MAX_INTEGER_DIGITS. A decade's bound is that of its tightest exponent, so a few
    storable values written in extreme notation (a hundred fraction digits and an exponent) are
    refused: the schema errs on the strict side, never the loose one."""
    top, places = DECIMAL_MAX_INTEGER_DIGITS, DECIMAL_MAX_PLACES
    branches = [_mantissa(top, places) + "[eE][+-]?0+"]  # an exponent of zero
    for low in range(0, top, 10):  # positive exponents low..high: fewer integer digits
        high = min(low + 9, top - 1)
        digits = "[1-9]" if low == 0 else rf"{low // 10}[0-9]"
        branches.append(_mantissa(top - high, places) + rf"[eE]\+?0*{digits}")
    for low in range(0, places + 1, 10):  # negative exponents -low..-high: fewer places
        high = min(low + 9, places)
        digits = "[1-9]" if low == 0 else rf"{low // 10}[0-9]" if low < 100 else str(low)
        branches.append(_mantissa(top, places - high) + rf"[eE]-0*{digits}")
    return branches


def _decimal_pattern(sign: Literal["positive", "non-negative", "signed"]) -> str:
    """A decimal string ``storable_decimal`` accepts, as an ECMA-262 / Python regex: an optional
    sign, then plain notation with at most DECIMAL_MAX_INTEGER_DIGITS digits before the point
    (leading zeros aside) and DECIMAL_MAX_PLACES after it, or exponent notation within the same
    bounds (``_scientific``); at most DECIMAL_MAX_DIGITS significant digits (from the first to the
    last non-zero digit of the mantissa), and a non-zero digit for a positive one."""
    body = "(?:" + "|".join([_mantissa(DECIMAL_MAX_INTEGER_DIGITS, DECIMAL_MAX_PLACES), *_scientific()]) + ")"
    # more than DECIMAL_MAX_DIGITS significant digits: a non-zero digit, at least MAX - 1 more
    # digits (the point may sit between any two), then another non-zero digit
    too_precise = rf"(?![0-9.]*[1-9](?:\.?[0-9]){{{DECIMAL_MAX_DIGITS - 1},}}\.?[1-9])"
    if sign == "positive":
        return rf"^\+?(?=[0-9.]*[1-9]){too_precise}{body}$"
    if sign == "non-negative":  # a negative zero is zero
        return rf"^(?:\+?{too_precise}{body}|-{_mantissa(0, DECIMAL_MAX_PLACES).replace('[0-9]', '0')})$"
    return rf"^[+-]?{too_precise}{body}$"


def _decimal_json_schema(sign: Literal["positive", "non-negative", "signed"]) -> dict[str, Any]:
    """A decimal on the wire: a JSON number within the bounds, or a plain-notation string."""
    below = 10 ** DECIMAL_MAX_INTEGER_DIGITS  # an int, so the bound is exact in every language
    # "not below the floor" rather than "minimum": the same for every number, and it also refuses a
    # NaN, which Python's json reads and writes and which compares false with everything
    positive: dict[str, Any] = {"not": {"exclusiveMaximum": JSON_NUMBER_FLOOR}, "exclusiveMaximum": below}
    negative: dict[str, Any] = {"not": {"exclusiveMinimum": -JSON_NUMBER_FLOOR}, "exclusiveMinimum": -below}
    number: dict[str, Any]
    if sign == "positive":
        number = {"type": "number", **positive}
    elif sign == "non-negative":
        number = {"type": "number", "anyOf": [{"const": 0}, positive]}
    else:
        number = {"type": "number", "anyOf": [{"const": 0}, positive, negative]}
    return {"anyOf": [number, {"type": "string", "pattern": _decimal_pattern(sign)}]}


_NO_NUL = BeforeValidator(storable_text)
_STORABLE = AfterValidator(storable_decimal)
#: JSON Schema of a text without NUL (a before-validator has no schema of its own)
_NO_NUL_SCHEMA = {"pattern": "^[^\\u0000]*$"}

PositiveDecimal = Annotated[Decimal, Field(gt=0, allow_inf_nan=False), _STORABLE,
                            WithJsonSchema(_decimal_json_schema("positive"))]
NonNegativeDecimal = Annotated[Decimal, Field(ge=0, allow_inf_nan=False), _STORABLE,
                               WithJsonSchema(_decimal_json_schema("non-negative"))]
SignedDecimal = Annotated[Decimal, Field(allow_inf_nan=False), _STORABLE,
                          WithJsonSchema(_decimal_json_schema("signed"))]

# The NUL check comes last in each Annotated so that it wraps the string constraints (a
# before-validator runs first whatever its place): the constraints then sit on the string itself,
# where the JSON Schema sees them (placed after it, pydantic checked the pattern in a separate step
# that the schema left out). Validation is the same either way.

#: free text that is stored (strategy names, reasons, venue ids)
Text = Annotated[str, Field(json_schema_extra=_NO_NUL_SCHEMA), _NO_NUL]
Identifier = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:/\-]+$"), _NO_NUL]
#: the characters of a symbol (a space only inside it, see ``SymbolInput``)
SYMBOL_CHARACTERS = r"A-Za-z0-9._:/\-"
SYMBOL_MAX_LENGTH = 64
Symbol = Annotated[str, Field(min_length=1, max_length=SYMBOL_MAX_LENGTH, pattern=rf"^[{SYMBOL_CHARACTERS} ]+$"),
                   _NO_NUL]
#: what a producer may write for a symbol that the model strips and upper-cases before validating it
#: (``OrderIntent.symbol``): ``Symbol`` with blanks around it. The JSON Schema of that field; the
#: outer blanks are the ASCII ones (the runtime strips any Unicode blank: the schema is stricter).
SymbolInput = Annotated[str, Field(pattern=(
    rf"^[ \t\n\r\f\v]*[{SYMBOL_CHARACTERS}](?:[{SYMBOL_CHARACTERS} ]{{0,{SYMBOL_MAX_LENGTH - 2}}}"
    rf"[{SYMBOL_CHARACTERS}])?[ \t\n\r\f\v]*$"))]
StrategyName = Annotated[str, Field(min_length=1, max_length=64, json_schema_extra=_NO_NUL_SCHEMA), _NO_NUL]
#: an instant: an RFC 3339 date-time with an offset on the wire, an aware datetime in Python
Timestamp = Annotated[datetime, BeforeValidator(rfc3339_timestamp), AfterValidator(aware_timestamp),
                      WithJsonSchema({"type": "string", "format": "date-time", "pattern": RFC3339_DATE_TIME})]
