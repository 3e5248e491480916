"""How a simulated venue's prices move: one seeded random walk or a replayed series, per symbol.

Every simulator (Binance now, TWS and MT4 next) quotes from a ``PriceBook``, so the same
``PricePath`` gives the same prices on every venue and a replayed series is exact. The book also
keeps each symbol's price history, which is what candles, 24-hour statistics and historical bars
are built from. The walk draws from its own ``random.Random(seed)``: fault draws (see
``venues/common/faults.py``) never disturb it.
"""

from __future__ import annotations

import bisect
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, Decimal

#: history kept per symbol before the oldest half is dropped (a long-running simulator stays bounded)
HISTORY_CAP = 200_000


def floor_to(value: Decimal, step: Decimal) -> Decimal:
    """Round ``value`` down onto the ``step`` grid (tick size, lot step)."""
    return (value / step).to_integral_value(rounding=ROUND_DOWN) * step


@dataclass(frozen=True, slots=True)
class PricePath:
    """How prices move on each tick: a seeded random walk, or a replayed series per symbol.

    ``volatility`` is the standard deviation of the relative move per tick. A replayed series
    is consumed one element per tick and then holds its last value, so a replay is exact.
    ``start`` overrides a venue's default opening prices.
    """

    seed: int = 7
    start: Mapping[str, Decimal] = field(default_factory=dict)
    volatility: Decimal = Decimal("0.0005")
    series: Mapping[str, Sequence[Decimal]] | None = None


class PriceBook:
    """The current price of each symbol, moved along a ``PricePath``, plus its recorded history.

    ``ticks`` gives each symbol's tick size (every price is floored onto it, never below one
    tick); ``default_start`` is the venue's own opening price where the path names none, and
    ``fallback_start`` the price of a symbol neither knows. ``now_ms`` stamps the history (a
    venue passes its own, possibly offset, clock).
    """

    def __init__(
        self,
        path: PricePath,
        ticks: Mapping[str, Decimal],
        *,
        now_ms: Callable[[], int],
        default_start: Mapping[str, Decimal] | None = None,
        fallback_start: Decimal = Decimal(100),
    ) -> None:
        self.path = path
        self._ticks = dict(ticks)
        self._now_ms = now_ms
        self._rng = random.Random(path.seed)
        self._price: dict[str, Decimal] = {}
        self._series_pos: dict[str, int] = {}
        self._held: set[str] = set()
        self._history: dict[str, list[tuple[int, Decimal]]] = {}
        defaults = default_start or {}
        started = now_ms()
        for sym, tick in self._ticks.items():
            start = path.start.get(sym) or defaults.get(sym) or fallback_start
            series = (path.series or {}).get(sym)
            if series:
                start = Decimal(series[0])
                self._series_pos[sym] = 1
            self._price[sym] = floor_to(Decimal(start), tick)
            self._history[sym] = [(started, self._price[sym])]

    @property
    def symbols(self) -> list[str]:
        return list(self._price)

    def __contains__(self, symbol: object) -> bool:
        return symbol in self._price

    def price(self, symbol: str) -> Decimal:
        return self._price[symbol]

    def set(self, symbol: str, price: Decimal, *, hold: bool = True) -> Decimal:
        """Move ``symbol`` to ``price`` now (floored onto its tick); with ``hold`` the walk leaves it alone."""
        self._price[symbol] = floor_to(Decimal(price), self._ticks[symbol])
        if hold:
            self._held.add(symbol)
        self._record(symbol)
        return self._price[symbol]

    def release(self, symbol: str) -> None:
        """Hand a held symbol back to the path."""
        self._held.discard(symbol)

    def step(self) -> None:
        """Advance every symbol that is not held one step along the path."""
        for sym, tick in self._ticks.items():
            if sym in self._held:
                continue
            self._price[sym] = self._next(sym, tick)
            self._record(sym)

    def history(self, symbol: str) -> Sequence[tuple[int, Decimal]]:
        """``(ts_ms, price)`` for every change of ``symbol``, oldest first."""
        return self._history[symbol]

    def price_at(self, symbol: str, ts: int) -> Decimal:
        """The last price at or before ``ts`` (the first known price if ``ts`` precedes history)."""
        history = self._history[symbol]
        idx = bisect.bisect_right(history, ts, key=lambda point: point[0])
        return history[max(0, idx - 1)][1]

    def _next(self, sym: str, tick: Decimal) -> Decimal:
        series = (self.path.series or {}).get(sym)
        if series:
            pos = self._series_pos.get(sym, 0)
            self._series_pos[sym] = pos + 1
            value = Decimal(series[min(pos, len(series) - 1)])
        else:
            move = Decimal(repr(self._rng.gauss(0.0, 1.0))) * self.path.volatility
            value = self._price[sym] * (1 + move)
        return max(tick, floor_to(value, tick))

    def _record(self, sym: str) -> None:
        history = self._history[sym]
        history.append((self._now_ms(), self._price[sym]))
        if len(history) > HISTORY_CAP:
            del history[: len(history) - HISTORY_CAP // 2]
