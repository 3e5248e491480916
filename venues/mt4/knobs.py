"""MT4's own refusals a test or drill turns on: requote (138), off quotes (136), trade context busy
(146), market closed (132) and trade disabled (133).

These are the terminal's answers, not the network's (those are ``venues/common/faults.py``): the
bridge answers them in MT4's words and nothing happens, so a client may retry. Two sources, like
the common faults:

* one-shot counters (``requote_next``, ``off_quotes_next``, ``busy_next``): the next N eligible
  operations are refused;
* rates (``requote_rate``, ``off_quotes_rate``, ``busy_rate``) drawn from a ``random.Random(seed)``
  of their own; every eligible operation draws three values whatever the settings, so a seed and
  an operation sequence always give the same refusals.

Busy applies to every trading operation (place, modify, close, delete); requote and off quotes to
the ones executed at the market (a market placement, closing an open ticket). They are checked
after the request is validated, so a one-shot is spent on an operation that would otherwise have
gone through. ``market_closed``/``trade_disabled`` name symbols (``"*"`` = all) refused 132/133.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from venues.mt4.wire import OFF_QUOTES, REQUOTE, TRADE_CONTEXT_BUSY

_COUNTERS = ("requote_next", "off_quotes_next", "busy_next")
_RATES = ("requote_rate", "off_quotes_rate", "busy_rate")
_SYMBOL_SETS = ("market_closed", "trade_disabled")
FIELDS: tuple[str, ...] = (*_COUNTERS, *_RATES, "seed", *_SYMBOL_SETS)


@dataclass(slots=True)
class TradeKnobs:
    requote_next: int = 0
    off_quotes_next: int = 0
    busy_next: int = 0
    requote_rate: float = 0.0
    off_quotes_rate: float = 0.0
    busy_rate: float = 0.0
    seed: int = 0
    market_closed: set[str] = field(default_factory=set)
    trade_disabled: set[str] = field(default_factory=set)
    _rng: random.Random = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _validate({name: getattr(self, name) for name in FIELDS})
        self._rng = random.Random(self.seed)

    def is_closed(self, symbol: str) -> bool:
        return symbol in self.market_closed or "*" in self.market_closed

    def is_disabled(self, symbol: str) -> bool:
        return symbol in self.trade_disabled or "*" in self.trade_disabled

    def refusal(self, *, at_market: bool) -> int | None:
        """The retcode refusing this trading operation, or ``None`` to let it through."""
        busy_draw, off_draw, requote_draw = self._rng.random(), self._rng.random(), self._rng.random()
        if self.busy_next > 0:
            self.busy_next -= 1
            return TRADE_CONTEXT_BUSY
        if at_market and self.off_quotes_next > 0:
            self.off_quotes_next -= 1
            return OFF_QUOTES
        if at_market and self.requote_next > 0:
            self.requote_next -= 1
            return REQUOTE
        if busy_draw < self.busy_rate:
            return TRADE_CONTEXT_BUSY
        if at_market and off_draw < self.off_quotes_rate:
            return OFF_QUOTES
        if at_market and requote_draw < self.requote_rate:
            return REQUOTE
        return None

    def update(self, patch: Mapping[str, Any]) -> None:
        """Apply a partial change (keys left out keep their value); all or nothing.

        A new ``seed`` restarts the rate draws. Raises ``ValueError`` naming the bad key.
        """
        unknown = sorted(set(patch) - set(FIELDS))
        if unknown:
            raise ValueError(f"unknown knob(s): {', '.join(unknown)}; known: {', '.join(FIELDS)}")
        _validate(patch)
        for name, value in patch.items():
            if name in _RATES:
                value = float(value)
            elif name in _SYMBOL_SETS:
                value = set(value)
            setattr(self, name, value)
        if "seed" in patch:
            self._rng = random.Random(self.seed)

    def to_json(self) -> dict[str, Any]:
        return {name: sorted(getattr(self, name)) if name in _SYMBOL_SETS else getattr(self, name)
                for name in FIELDS}


def _validate(values: Mapping[str, Any]) -> None:
    for name, value in values.items():
        if name in _RATES:
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
                    or not 0 <= value <= 1:
                raise ValueError(f"{name} must be a number between 0 and 1, got {value!r}")
        elif name in (*_COUNTERS, "seed"):
            if isinstance(value, bool) or not isinstance(value, int) or (name != "seed" and value < 0):
                raise ValueError(f"{name} must be an integer{'' if name == 'seed' else ' >= 0'}, got {value!r}")
        elif name in _SYMBOL_SETS and (
            isinstance(value, str) or not isinstance(value, list | set | tuple)
            or not all(isinstance(s, str) for s in value)
        ):
            raise ValueError(f"{name} must be a list of symbols (\"*\" = all), got {value!r}")
