"""``storable_decimal``'s shortcut (issue 16) accepts and refuses exactly what the exact checks do.

The shortcut reads the bounds off ``str(value)``; the exact checks count the coefficient. Both are
run on decimals at and around every bound (significant digits, places, magnitude, trailing zeros,
exponent notation, zero with an exponent) and on random ones, and must agree on every verdict and
every reason."""

from __future__ import annotations

import random
from decimal import Decimal

import pytest

from schemas.fields import (
    DECIMAL_MAX_DIGITS,
    DECIMAL_MAX_INTEGER_DIGITS,
    DECIMAL_MAX_PLACES,
    exact_storable_decimal,
    storable_decimal,
)


def verdict(check: object, value: Decimal) -> str:
    try:
        assert callable(check)
        check(value)
    except ValueError as exc:
        return f"refused: {exc}"
    return "accepted"


def edge_cases() -> list[Decimal]:
    cases: list[str] = []
    for n in (DECIMAL_MAX_DIGITS - 1, DECIMAL_MAX_DIGITS, DECIMAL_MAX_DIGITS + 1):
        cases += ["9" * n, "0." + "1" * n, "1" * (n - 10) + "." + "2" * 10, "-" + "7" * n, "1" + "0" * n,
                  "1." + "0" * n, "0." + "0" * n + "1"]
    for places in (DECIMAL_MAX_PLACES - 1, DECIMAL_MAX_PLACES, DECIMAL_MAX_PLACES + 1):
        cases += [f"1E-{places}", "0." + "0" * (places - 1) + "5", f"0E-{places}"]
    for adjusted in (DECIMAL_MAX_INTEGER_DIGITS - 1, DECIMAL_MAX_INTEGER_DIGITS, DECIMAL_MAX_INTEGER_DIGITS + 1):
        cases += [f"1E+{adjusted}", "1" + "0" * adjusted, f"9.5E+{adjusted}", f"0E+{adjusted}", f"-1E+{adjusted}"]
    cases += ["0", "-0", "0.000", "74.22", "50", "1E+2", "12E-3", "0.0000001", "1.000000000000000000000"]
    return [Decimal(c) for c in cases]


@pytest.mark.parametrize("value", edge_cases(), ids=str)
def test_the_shortcut_agrees_with_the_exact_checks_at_the_bounds(value: Decimal) -> None:
    assert verdict(storable_decimal, value) == verdict(exact_storable_decimal, value)


def test_the_shortcut_agrees_with_the_exact_checks_on_random_decimals() -> None:
    rng = random.Random(16)
    refused = accepted = 0
    for _ in range(20_000):
        digits = "".join(rng.choice("0123456789") for _ in range(rng.randint(1, DECIMAL_MAX_DIGITS + 8)))
        exponent = rng.randint(-DECIMAL_MAX_PLACES - 8, DECIMAL_MAX_INTEGER_DIGITS + 8)
        value = Decimal(f"{rng.choice(['', '-'])}{digits}E{exponent}")
        if rng.random() < 0.5:
            value = Decimal(format(value, "f"))  # the same number written without an exponent
        expected = verdict(exact_storable_decimal, value)
        assert verdict(storable_decimal, value) == expected, value
        refused += expected != "accepted"
        accepted += expected == "accepted"
    assert refused > 1000 and accepted > 1000  # both sides of every bound were reached
