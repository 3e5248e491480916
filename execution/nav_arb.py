"""NAV arbitrage, the pure part: rolling spread statistics, the entry/exit rule, the pair's episode.

The rule (the seed's "NAV Arbitrage — Dual-Leg Execution", made exact so that any two
implementations agree to the last digit):

* ``spread = trust_price / nav_per_share - 1`` in IEEE double (Python ``float`` of the quote's
  decimal strings).
* The window is the last ``window`` spreads of the pair **including the current one**;
  ``z = (spread - mean) / std`` with the sample standard deviation (ddof = 1), as pandas'
  ``rolling(window).std()``. No decision while the window holds fewer than ``min_obs`` spreads or
  when std is 0.
* Flat: ``z < -entry_z and spread < -entry_spread`` -> LONG_TRUST_SHORT_SPOT;
  ``z > +entry_z and spread > +entry_spread`` -> SHORT_TRUST_LONG_SPOT (strict inequalities).
* In a position only the exit rule applies: ``|z| <= exit_z`` -> EXIT. No second entry while the pair
  is in a position, exiting or unwinding.
* Per pair, quotes are processed in ``ts`` order; a quote not after the last processed one changes
  nothing and is not an observation.

Running statistics: Welford's update with removal of the value leaving the window, so a tick
costs O(1); every ``window`` updates the sums are recomputed exactly from the window (amortised
O(1)), which bounds the rounding drift of a long series: the statistics equal a direct
computation over the window within 1e-9 (tests/unit/test_nav_arb.py checks 100 000 ticks).

Everything here is plain data (``PairState.to_dict``/``from_dict``), so the agent keeps it in a
Faust table and a restarted worker resumes with the same window, the same position and the same
z-scores as an uninterrupted run.
"""

from __future__ import annotations

import hashlib
import math
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any


class Decision(StrEnum):
    LONG_TRUST_SHORT_SPOT = "LONG_TRUST_SHORT_SPOT"
    SHORT_TRUST_LONG_SPOT = "SHORT_TRUST_LONG_SPOT"
    EXIT = "EXIT"


class Episode(StrEnum):
    """Where the pair stands: FLAT (may enter), ENTERING (entry legs working), IN_POSITION,
    EXITING (exit legs working), UNWINDING (one leg failed; the other is being closed)."""

    FLAT = "FLAT"
    ENTERING = "ENTERING"
    IN_POSITION = "IN_POSITION"
    EXITING = "EXITING"
    UNWINDING = "UNWINDING"


@dataclass(frozen=True, slots=True)
class NavArbParams:
    """The seed's values are the defaults (``NAV_ARB_*`` settings, per-pair overrides)."""

    window: int = 60
    min_obs: int = 30
    entry_z: float = 2.0
    entry_spread: float = 0.02
    exit_z: float = 0.3
    trust_qty: Decimal = Decimal(100)

    def __post_init__(self) -> None:
        if self.window < 2 or not 2 <= self.min_obs <= self.window:
            raise ValueError("NAV-arb needs window >= 2 and 2 <= min_obs <= window")


def spread_of(trust_price: Decimal, nav_per_share: Decimal) -> float:
    """The premium of the trust over its NAV, in IEEE double as the rule prescribes."""
    return float(trust_price) / float(nav_per_share) - 1.0


@dataclass(slots=True)
class RollingStats:
    """Mean and sample variance of the last ``window`` values, updated in O(1) per value."""

    window: int
    values: deque[float] = field(default_factory=deque)
    mean: float = 0.0
    m2: float = 0.0
    #: updates since the sums were last recomputed exactly
    since_exact: int = 0

    def push(self, x: float) -> None:
        if len(self.values) == self.window:
            self._remove(self.values.popleft())
        self.values.append(x)
        n = len(self.values)
        delta = x - self.mean
        self.mean += delta / n
        self.m2 += delta * (x - self.mean)
        self.since_exact += 1
        if self.since_exact >= self.window:
            self._exact()

    def _remove(self, x: float) -> None:
        n = len(self.values)  # values left after ``x`` was popped
        if n == 0:
            self.mean, self.m2 = 0.0, 0.0
            return
        delta = x - self.mean
        self.mean -= delta / n
        self.m2 -= delta * (x - self.mean)

    def _exact(self) -> None:
        n = len(self.values)
        self.mean = math.fsum(self.values) / n
        self.m2 = math.fsum((v - self.mean) ** 2 for v in self.values)
        self.since_exact = 0

    @property
    def count(self) -> int:
        return len(self.values)

    @property
    def std(self) -> float:
        """Sample standard deviation (ddof = 1); 0.0 below two values or for a constant window."""
        if len(self.values) < 2:
            return 0.0
        return math.sqrt(max(self.m2, 0.0) / (len(self.values) - 1))

    def to_dict(self) -> dict[str, Any]:
        return {"window": self.window, "values": list(self.values), "mean": self.mean, "m2": self.m2,
                "since_exact": self.since_exact}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RollingStats:
        return cls(window=int(data["window"]), values=deque(float(v) for v in data["values"]),
                   mean=float(data["mean"]), m2=float(data["m2"]), since_exact=int(data["since_exact"]))


@dataclass(frozen=True, slots=True)
class Observation:
    """One processed quote: what ``nav_spreads`` records."""

    pair: str
    ts: datetime
    spread: float
    z: float | None
    decision: Decision | None
    episode: Episode


#: a z-score whose std is below this is treated as a constant window (std == 0 up to rounding)
_CONSTANT = 1e-15


@dataclass(slots=True)
class PairState:
    """Everything the agent keeps per pair (a Faust table value)."""

    pair: str
    stats: RollingStats
    last_ts: datetime | None = None
    episode: Episode = Episode.FLAT
    #: the direction of the open position (its entry decision), if any
    direction: Decision | None = None
    #: the group id of the legs working or last placed
    group_id: str | None = None
    #: filled quantities of the position's legs, by leg name ("trust", "spot"), signed (+ bought)
    filled: dict[str, str] = field(default_factory=dict)
    #: an exit decided while the entry legs were still working: done once they are terminal
    exit_pending: bool = False
    #: leg name -> terminal state of the working legs ("FILLED", "REJECTED", ...)
    legs_done: dict[str, str] = field(default_factory=dict)
    reason: str = ""

    @classmethod
    def new(cls, pair: str, params: NavArbParams) -> PairState:
        return cls(pair=pair, stats=RollingStats(params.window))

    def observe(self, ts: datetime, spread: float, params: NavArbParams) -> Observation | None:
        """Apply one quote; None when it is a duplicate or late (changes nothing)."""
        if self.last_ts is not None and ts <= self.last_ts:
            return None
        self.last_ts = ts
        self.stats.push(spread)
        z: float | None = None
        if self.stats.count >= params.min_obs:
            std = self.stats.std
            if std > _CONSTANT:
                z = (spread - self.stats.mean) / std
        return Observation(self.pair, ts, spread, z, self._decide(spread, z, params), self.episode)

    def _decide(self, spread: float, z: float | None, params: NavArbParams) -> Decision | None:
        if z is None:
            return None
        if self.episode is Episode.FLAT:
            if z < -params.entry_z and spread < -params.entry_spread:
                return Decision.LONG_TRUST_SHORT_SPOT
            if z > params.entry_z and spread > params.entry_spread:
                return Decision.SHORT_TRUST_LONG_SPOT
            return None
        if self.episode in (Episode.IN_POSITION, Episode.ENTERING) and not self.exit_pending \
                and abs(z) <= params.exit_z:
            return Decision.EXIT
        return None

    def to_dict(self) -> dict[str, Any]:
        return {"pair": self.pair, "stats": self.stats.to_dict(),
                "last_ts": self.last_ts.isoformat() if self.last_ts else None, "episode": self.episode.value,
                "direction": self.direction.value if self.direction else None, "group_id": self.group_id,
                "filled": dict(self.filled), "exit_pending": self.exit_pending, "legs_done": dict(self.legs_done),
                "reason": self.reason}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PairState:
        return cls(pair=data["pair"], stats=RollingStats.from_dict(data["stats"]),
                   last_ts=datetime.fromisoformat(data["last_ts"]) if data.get("last_ts") else None,
                   episode=Episode(data["episode"]),
                   direction=Decision(data["direction"]) if data.get("direction") else None,
                   group_id=data.get("group_id"), filled=dict(data.get("filled") or {}),
                   exit_pending=bool(data.get("exit_pending")), legs_done=dict(data.get("legs_done") or {}),
                   reason=str(data.get("reason") or ""))


def leg_signal_id(pair: str, ts: datetime, leg: str) -> str:
    """A leg's signal id: derived from the pair, the triggering quote's ts and the leg, so a
    re-processed quote produces the same ids and the pipeline's idempotency places it once."""
    digest = hashlib.sha256(f"{pair}|{ts.isoformat()}|{leg}".encode()).hexdigest()[:20]
    return f"nav-{pair}-{leg}-{digest}"


def group_id_for(pair: str, ts: datetime, decision: Decision) -> str:
    digest = hashlib.sha256(f"{pair}|{ts.isoformat()}|{decision.value}".encode()).hexdigest()[:20]
    return f"nav-{pair}-{digest}"
