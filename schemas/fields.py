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
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field

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
    earlier, by ``allow_inf_nan=False``)."""
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


def aware_timestamp(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("timestamp without a timezone; send one, e.g. 2026-11-25T14:30:00Z or +01:00 "
                         "(a time without one is ambiguous)")
    return value


_NO_NUL = BeforeValidator(storable_text)
_STORABLE = AfterValidator(storable_decimal)

PositiveDecimal = Annotated[Decimal, Field(gt=0, allow_inf_nan=False), _STORABLE]
NonNegativeDecimal = Annotated[Decimal, Field(ge=0, allow_inf_nan=False), _STORABLE]
SignedDecimal = Annotated[Decimal, Field(allow_inf_nan=False), _STORABLE]
#: free text that is stored (strategy names, reasons, venue ids)
Text = Annotated[str, _NO_NUL]
Identifier = Annotated[str, _NO_NUL, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:/\-]+$")]
Symbol = Annotated[str, _NO_NUL, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:/\- ]+$")]
StrategyName = Annotated[str, _NO_NUL, Field(min_length=1, max_length=64)]
#: an instant: timezone required
Timestamp = Annotated[datetime, AfterValidator(aware_timestamp)]
