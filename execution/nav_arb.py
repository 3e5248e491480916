"""NAV arbitrage, the pure part: rolling spread statistics, the entry/exit rule, the pair's episode
and the legs it trades.

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

The episode, as transitions of plain data (``PairState.act`` after a quote's observation,
``PairState.on_order_event`` for a leg's outcome), each returning the signals to send and the
episode records to keep, so the agent (agents/nav_arb.py) stays I/O and every rule is unit-tested:

* FLAT + an entry decision -> ENTERING: two MARKET legs (trust ``trust_qty``; spot
  ``trust_qty x nav_per_share / spot_price`` rounded down to ``spot_step``), one group id,
  deterministic signal ids from the pair, the quote's ts and the leg.
* ENTERING, both legs terminal: both FILLED -> IN_POSITION with the filled quantities (and at once
  EXITING if an exit was decided meanwhile); otherwise whatever filled is unwound with opposite
  MARKET legs (UNWINDING, the reason recorded), or FLAT when nothing filled.
* IN_POSITION + EXIT -> EXITING: legs closing exactly the filled quantities; both terminal -> FLAT,
  or back IN_POSITION with what is left (the exit rule applies again).
* UNWINDING, legs terminal: FLAT once everything is closed; else the rest is unwound again on the
  next quote, up to ``unwind_attempts`` times.

Everything here is plain data (``PairState.to_dict``/``from_dict``), kept by the agent in its
Faust table and, durably, in PostgreSQL (``NavArbStore``).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_FLOOR, Decimal
from enum import StrEnum
from typing import Any, Protocol

from schemas import NavQuote, OrderEvent, OrderState, OrderType, Side, Signal, client_order_id_for

#: the ``strategy`` of every signal the agent sends (and how its orders' events are recognised)
STRATEGY = "nav-arb"
TRUST = "trust"
SPOT = "spot"


class Decision(StrEnum):
    LONG_TRUST_SHORT_SPOT = "LONG_TRUST_SHORT_SPOT"
    SHORT_TRUST_LONG_SPOT = "SHORT_TRUST_LONG_SPOT"
    EXIT = "EXIT"


ENTRIES = (Decision.LONG_TRUST_SHORT_SPOT, Decision.SHORT_TRUST_LONG_SPOT)


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
    #: the spot venue's quantity step: the spot leg is rounded down to a multiple of it
    spot_step: Decimal = Decimal("0.00001")
    #: how many times an unwind that did not close everything is sent again (one per quote)
    unwind_attempts: int = 3

    def __post_init__(self) -> None:
        if self.window < 2 or not 2 <= self.min_obs <= self.window:
            raise ValueError("NAV-arb needs window >= 2 and 2 <= min_obs <= window")
        if self.trust_qty <= 0 or self.spot_step <= 0:
            raise ValueError("NAV-arb needs trust_qty > 0 and spot_step > 0")
        if self.unwind_attempts < 1:
            raise ValueError("NAV-arb needs unwind_attempts >= 1")


def spread_of(trust_price: Decimal, nav_per_share: Decimal) -> float:
    """The premium of the trust over its NAV, in IEEE double as the rule prescribes."""
    return float(trust_price) / float(nav_per_share) - 1.0


def spot_quantity(trust_qty: Decimal, nav_per_share: Decimal, spot_price: Decimal, step: Decimal) -> Decimal:
    """The spot leg hedging the trust leg's NAV exposure, rounded down to the venue's step."""
    raw = trust_qty * nav_per_share / spot_price
    return (raw / step).to_integral_value(rounding=ROUND_FLOOR) * step


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


@dataclass(slots=True)
class Leg:
    """One order of the pair's current step (entry, exit or unwind) and, once known, its outcome."""

    name: str
    signal_id: str
    symbol: str
    side: Side
    quantity: Decimal
    #: terminal state once its order ended (None: working)
    state: OrderState | None = None
    filled: Decimal = Decimal(0)
    avg_price: Decimal | None = None
    reason: str = ""

    @property
    def client_order_id(self) -> str:
        return client_order_id_for(self.signal_id)

    @property
    def done(self) -> bool:
        return self.state is not None

    @property
    def signed_filled(self) -> Decimal:
        return self.filled * self.side.sign

    def describe(self) -> str:
        text = f"{self.name} leg {self.side} {_qty(self.quantity)} {self.symbol}: {self.state or 'working'}"
        if self.state is not None and self.state is not OrderState.FILLED:
            text += f" (filled {_qty(self.filled)}{', ' + self.reason if self.reason else ''})"
        return text

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "signal_id": self.signal_id, "client_order_id": self.client_order_id,
                "symbol": self.symbol, "side": self.side.value, "quantity": str(self.quantity),
                "state": self.state.value if self.state else None, "filled": str(self.filled),
                "avg_price": None if self.avg_price is None else str(self.avg_price), "reason": self.reason}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Leg:
        return cls(name=data["name"], signal_id=data["signal_id"], symbol=data["symbol"], side=Side(data["side"]),
                   quantity=Decimal(data["quantity"]), state=OrderState(data["state"]) if data.get("state") else None,
                   filled=Decimal(data.get("filled") or 0),
                   avg_price=Decimal(data["avg_price"]) if data.get("avg_price") is not None else None,
                   reason=str(data.get("reason") or ""))


def _qty(value: Decimal) -> str:
    """A quantity as people write it in a reason (0.08900000 -> 0.089, 100.0 -> 100)."""
    return f"{value.normalize():f}"


@dataclass(frozen=True, slots=True)
class EpisodeRecord:
    """One change of the pair's episode, with why (a ``nav_episodes`` row)."""

    pair: str
    ts: datetime
    group_id: str | None
    previous: Episode
    episode: Episode
    direction: Decision | None
    reason: str
    legs: tuple[dict[str, Any], ...] = ()


@dataclass(slots=True)
class Step:
    """What one transition asks for: the signals to send (all of them, concurrently) and the
    episode records to keep; ``changed`` says the state changed and must be saved."""

    signals: list[Signal] = field(default_factory=list)
    records: list[EpisodeRecord] = field(default_factory=list)
    changed: bool = False


#: a z-score whose std is below this is treated as a constant window (std == 0 up to rounding)
_CONSTANT = 1e-15


@dataclass(slots=True)
class PairState:
    """Everything the agent keeps per pair (a Faust table value, a ``nav_pairs`` row)."""

    pair: str
    stats: RollingStats
    last_ts: datetime | None = None
    episode: Episode = Episode.FLAT
    #: the direction of the open position (its entry decision), if any
    direction: Decision | None = None
    #: the group id of the legs working or last placed
    group_id: str | None = None
    #: the open position (or what is left to unwind), by leg name, signed (+ bought)
    filled: dict[str, Decimal] = field(default_factory=dict)
    #: an exit decided while the entry legs were still working: done once they are terminal
    exit_pending: bool = False
    #: the ts of the quote that decided the pending exit (its legs' ids derive from it)
    exit_ts: datetime | None = None
    #: the legs of the current step (entry, exit or unwind), working or terminal, by leg name
    legs: dict[str, Leg] = field(default_factory=dict)
    #: the position's symbol of each leg
    symbols: dict[str, str] = field(default_factory=dict)
    #: the last price seen of each leg (reference prices of exits and unwinds)
    prices: dict[str, Decimal] = field(default_factory=dict)
    #: unwinds sent for the current failure
    attempts: int = 0
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

    # -- the episode ---------------------------------------------------------------------------

    def act(self, obs: Observation, quote: NavQuote, spot_price: Decimal | None, params: NavArbParams) -> Step:
        """What the observation of ``quote`` (just returned by ``observe``) makes the pair do.
        ``spot_price`` is the quote's, or the spot venue's when the quote has none (the agent
        asks only when an entry needs it); None when unknown."""
        self.symbols.setdefault(TRUST, quote.trust_symbol)
        self.symbols.setdefault(SPOT, quote.spot_symbol)
        self.prices[TRUST] = quote.trust_price
        if spot_price is not None:
            self.prices[SPOT] = spot_price
        step = Step(changed=True)  # the window moved
        if obs.decision in ENTRIES:
            self._enter(obs, quote, spot_price, params, step)
        elif obs.decision is Decision.EXIT:
            if self.episode is Episode.ENTERING:
                self.exit_pending, self.exit_ts = True, obs.ts
                self._record(step, obs.ts, self.episode, "exit decided while the entry legs work: "
                             "it is sent once both are terminal")
            else:
                self._start_exit(obs.ts, obs.ts, step)
        elif self.episode is Episode.UNWINDING and self.filled and all(leg.done for leg in self.legs.values()) \
                and self.attempts < params.unwind_attempts:
            self._start_unwind(obs.ts, self.attempts + 1, step, self.reason)
        return step

    def on_order_event(self, event: OrderEvent) -> Step:
        """A leg's order event (re-keyed by pair): a terminal one records the leg's outcome, and
        once every leg of the step is terminal the episode moves on. Events of orders that are
        not a working leg (duplicates, earlier steps) change nothing."""
        if not event.state.is_terminal:
            return Step()
        leg = next((leg for leg in self.legs.values() if leg.client_order_id == event.client_order_id), None)
        if leg is None or leg.done:
            return Step()
        leg.state = event.state
        if event.filled_quantity is not None:
            leg.filled = event.filled_quantity
        else:  # an older producer: FILLED means all of it, anything else nothing
            leg.filled = leg.quantity if event.state is OrderState.FILLED else Decimal(0)
        leg.avg_price = event.avg_fill_price
        leg.reason = event.reason
        step = Step(changed=True)
        if not all(other.done for other in self.legs.values()):
            return step
        if self.episode is Episode.ENTERING:
            self._entry_done(event.ts, step)
        elif self.episode is Episode.EXITING:
            self._exit_done(event.ts, step)
        elif self.episode is Episode.UNWINDING:
            self._unwind_done(event.ts, step)
        return step

    def _enter(self, obs: Observation, quote: NavQuote, spot_price: Decimal | None, params: NavArbParams,
               step: Step) -> None:
        assert obs.decision is not None
        if spot_price is None:
            self._record(step, obs.ts, Episode.FLAT, f"{obs.decision} not traded: no spot price for "
                         f"{quote.spot_symbol} (neither on the quote nor from the spot venue)")
            return
        spot_qty = spot_quantity(params.trust_qty, quote.nav_per_share, spot_price, params.spot_step)
        if spot_qty <= 0:
            self._record(step, obs.ts, Episode.FLAT, f"{obs.decision} not traded: the spot leg rounds to 0 "
                         f"at step {params.spot_step}")
            return
        long_trust = obs.decision is Decision.LONG_TRUST_SHORT_SPOT
        trust_side, spot_side = (Side.BUY, Side.SELL) if long_trust else (Side.SELL, Side.BUY)
        self.group_id = group_id_for(self.pair, obs.ts, obs.decision)
        self.direction = obs.decision
        self.symbols = {TRUST: quote.trust_symbol, SPOT: quote.spot_symbol}
        self.legs = {
            TRUST: Leg(TRUST, leg_signal_id(self.pair, obs.ts, TRUST), quote.trust_symbol, trust_side,
                       params.trust_qty),
            SPOT: Leg(SPOT, leg_signal_id(self.pair, obs.ts, SPOT), quote.spot_symbol, spot_side, spot_qty),
        }
        self.filled, self.exit_pending, self.exit_ts, self.attempts = {}, False, None, 0
        step.signals += [self._signal(self.legs[TRUST], obs.ts, quote.trust_price),
                         self._signal(self.legs[SPOT], obs.ts, spot_price)]
        self._record(step, obs.ts, Episode.ENTERING, f"{obs.decision} at spread {obs.spread:.6f}, z {obs.z:.4f}")

    def _entry_done(self, ts: datetime, step: Step) -> None:
        legs = list(self.legs.values())
        if all(leg.state is OrderState.FILLED for leg in legs):
            self.filled = {leg.name: leg.signed_filled for leg in legs}
            self._record(step, ts, Episode.IN_POSITION, "both legs filled")
            if self.exit_pending:
                assert self.exit_ts is not None
                self._start_exit(self.exit_ts, ts, step)
            return
        failed = "; ".join(leg.describe() for leg in legs if leg.state is not OrderState.FILLED)
        self.exit_pending, self.exit_ts = False, None
        self.filled = {leg.name: leg.signed_filled for leg in legs if leg.filled}
        if self.filled:
            self._start_unwind(ts, 1, step, f"leg risk: {failed}")
        else:
            self._record(step, ts, Episode.FLAT, f"entry failed, nothing filled: {failed}")

    def _start_exit(self, decided: datetime, ts: datetime, step: Step) -> None:
        """Close exactly what filled. ``decided``: the quote that decided the exit (the legs'
        ids); ``ts``: the signals' time (later, when the exit waited for the entry legs)."""
        self.exit_pending, self.exit_ts = False, None
        self.group_id = group_id_for(self.pair, decided, Decision.EXIT)
        self.legs = {name: Leg(name, leg_signal_id(self.pair, decided, f"exit-{name}"), self.symbols[name],
                               Side.SELL if qty > 0 else Side.BUY, abs(qty))
                     for name, qty in sorted(self.filled.items()) if qty}
        if not self.legs:
            self._record(step, ts, Episode.FLAT, "exit: nothing to close")
            return
        step.signals += [self._signal(leg, ts, self.prices.get(leg.name)) for leg in self.legs.values()]
        self._record(step, ts, Episode.EXITING, "exit: closing " + ", ".join(
            f"{leg.side} {_qty(leg.quantity)} {leg.symbol}" for leg in self.legs.values()))

    def _exit_done(self, ts: datetime, step: Step) -> None:
        failed = "; ".join(leg.describe() for leg in self.legs.values() if leg.state is not OrderState.FILLED)
        left = self._left_after(self.legs.values())
        if not left:
            self._record(step, ts, Episode.FLAT, "position closed")
            return
        self.reason = f"exit incomplete ({failed})"
        self._record(step, ts, Episode.IN_POSITION, f"{self.reason}; the exit rule applies again to what is left")

    def _start_unwind(self, ts: datetime, attempt: int, step: Step, reason: str) -> None:
        assert self.group_id is not None
        self.attempts = attempt
        self.reason = reason
        self.legs = {name: Leg(name, unwind_signal_id(self.group_id, name, attempt), self.symbols[name],
                               Side.SELL if qty > 0 else Side.BUY, abs(qty))
                     for name, qty in sorted(self.filled.items()) if qty}
        step.signals += [self._signal(leg, ts, self.prices.get(leg.name)) for leg in self.legs.values()]
        self._record(step, ts, Episode.UNWINDING, f"{reason}; unwinding (attempt {attempt}): " + ", ".join(
            f"{leg.side} {_qty(leg.quantity)} {leg.symbol}" for leg in self.legs.values()))

    def _unwind_done(self, ts: datetime, step: Step) -> None:
        failed = "; ".join(leg.describe() for leg in self.legs.values() if leg.state is not OrderState.FILLED)
        left = self._left_after(self.legs.values())
        if not left:
            self._record(step, ts, Episode.FLAT, f"unwound after {self.reason}")
            return
        self._record(step, ts, Episode.UNWINDING, f"unwind attempt {self.attempts} incomplete ({failed}); "
                     "the rest is unwound again on the next quote, up to the attempts allowed")

    def _left_after(self, legs: Iterable[Leg]) -> dict[str, Decimal]:
        """The position left once ``legs`` (closing orders) are applied; it becomes ``filled``."""
        left = dict(self.filled)
        for leg in legs:
            left[leg.name] = left.get(leg.name, Decimal(0)) + leg.signed_filled
        self.filled = {name: qty for name, qty in left.items() if qty}
        return self.filled

    def _signal(self, leg: Leg, ts: datetime, reference: Decimal | None) -> Signal:
        return Signal(signal_id=leg.signal_id, ts=ts, strategy=STRATEGY, symbol=leg.symbol, side=leg.side,
                      quantity=leg.quantity, order_type=OrderType.MARKET, reference_price=reference,
                      group_id=self.group_id)

    def _record(self, step: Step, ts: datetime, to: Episode, reason: str) -> None:
        previous, self.episode = self.episode, to
        if to is Episode.FLAT:
            self.direction, self.filled, self.attempts, self.reason = None, {}, 0, ""
        step.records.append(EpisodeRecord(self.pair, ts, self.group_id, previous, to, self.direction, reason,
                                          tuple(leg.to_dict() for leg in self.legs.values())))

    # -- plain data ----------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {"pair": self.pair, "stats": self.stats.to_dict(),
                "last_ts": self.last_ts.isoformat() if self.last_ts else None, "episode": self.episode.value,
                "direction": self.direction.value if self.direction else None, "group_id": self.group_id,
                "filled": {name: str(qty) for name, qty in self.filled.items()}, "exit_pending": self.exit_pending,
                "exit_ts": self.exit_ts.isoformat() if self.exit_ts else None,
                "legs": {name: leg.to_dict() for name, leg in self.legs.items()},
                "symbols": dict(self.symbols), "prices": {name: str(p) for name, p in self.prices.items()},
                "attempts": self.attempts, "reason": self.reason}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PairState:
        return cls(pair=data["pair"], stats=RollingStats.from_dict(data["stats"]),
                   last_ts=datetime.fromisoformat(data["last_ts"]) if data.get("last_ts") else None,
                   episode=Episode(data["episode"]),
                   direction=Decision(data["direction"]) if data.get("direction") else None,
                   group_id=data.get("group_id"),
                   filled={name: Decimal(qty) for name, qty in (data.get("filled") or {}).items()},
                   exit_pending=bool(data.get("exit_pending")),
                   exit_ts=datetime.fromisoformat(data["exit_ts"]) if data.get("exit_ts") else None,
                   legs={name: Leg.from_dict(leg) for name, leg in (data.get("legs") or {}).items()},
                   symbols=dict(data.get("symbols") or {}),
                   prices={name: Decimal(p) for name, p in (data.get("prices") or {}).items()},
                   attempts=int(data.get("attempts") or 0), reason=str(data.get("reason") or ""))


# -- ids -------------------------------------------------------------------------------------------

def leg_signal_id(pair: str, ts: datetime, leg: str) -> str:
    """A leg's signal id: derived from the pair, the triggering quote's ts and the leg, so a
    re-processed quote produces the same ids and the pipeline's idempotency places it once."""
    digest = hashlib.sha256(f"{pair}|{ts.isoformat()}|{leg}".encode()).hexdigest()[:20]
    return f"nav-{pair}-{leg}-{digest}"


#: hex digits of the digest that ends a group id
_GROUP_DIGEST = 20


def group_id_for(pair: str, ts: datetime, decision: Decision) -> str:
    digest = hashlib.sha256(f"{pair}|{ts.isoformat()}|{decision.value}".encode()).hexdigest()[:_GROUP_DIGEST]
    return f"nav-{pair}-{digest}"


def pair_of_group(group_id: str | None) -> str | None:
    """The pair a NAV-arb group id belongs to (``nav-<pair>-<digest>``); None for another id."""
    if not group_id or not group_id.startswith("nav-") or len(group_id) <= 5 + _GROUP_DIGEST \
            or group_id[-_GROUP_DIGEST - 1] != "-":
        return None
    return group_id[4:-_GROUP_DIGEST - 1]


def unwind_signal_id(group_id: str, leg: str, attempt: int) -> str:
    """An unwind leg's signal id: from the failed entry's group, the leg and the attempt."""
    digest = hashlib.sha256(f"{group_id}|unwind|{attempt}|{leg}".encode()).hexdigest()[:20]
    pair = pair_of_group(group_id) or "pair"
    return f"nav-{pair}-unwind{attempt}-{leg}-{digest}"


# -- what the agent persists -----------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class SpreadRow:
    """One observation as ``nav_spreads`` keeps it; ``episode`` is the pair's after the quote."""

    pair: str
    ts: datetime
    trust_price: Decimal
    nav: Decimal
    spot_price: Decimal | None
    spread: float
    z: float | None
    decision: Decision | None
    episode: Episode
    group_id: str | None


def fingerprint(state: Mapping[str, Any]) -> str:
    """What identifies a saved state by its content: a cache holding a state with the stored
    fingerprint holds exactly the stored state (whatever history its version number came from)."""
    text = json.dumps(state, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class StoredPair:
    """A pair's row as the store has it. ``state`` is None when the caller's cached state has
    the stored fingerprint; ``outbox`` holds the signals of that version not yet confirmed sent."""

    version: int
    state: dict[str, Any] | None
    outbox: tuple[Signal, ...] = ()


@dataclass(frozen=True, slots=True)
class PairWrite:
    """A pair's new state, saved only if the stored version is still ``expected`` (0: no row).
    ``outbox``: the signals this change asks for (None: keep the stored outbox as it is)."""

    pair: str
    expected: int
    state: dict[str, Any]
    episode: Episode
    outbox: tuple[Signal, ...] | None = None

    @property
    def version(self) -> int:
        return self.expected + 1

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.state)


class StaleNavState(Exception):
    """A pair's stored version moved since it was read (another worker wrote it, or a cache was
    behind): nothing of the batch was saved; read again and redo it."""

    def __init__(self, pairs: Sequence[str]) -> None:
        super().__init__(f"NAV-arb state of {', '.join(sorted(pairs))} changed since it was read")
        self.pairs = tuple(pairs)


class NavArbStore(Protocol):
    """The NAV-arb agent's durable state (TimescaleStore; InMemoryStore in tests and replays)."""

    async def load_nav_pairs(self, known: Mapping[str, str]) -> dict[str, StoredPair]:
        """The stored rows of ``known``'s pairs (pair -> the fingerprint of the state the caller
        has cached, "" for none); a pair without a row is left out."""
        ...

    async def save_nav(self, writes: Sequence[PairWrite], spreads: Sequence[SpreadRow],
                       episodes: Sequence[EpisodeRecord]) -> None:
        """One transaction: every write (if its expected version holds, else ``StaleNavState``
        and nothing is saved), the observations and the episode records."""
        ...

    async def mark_nav_outbox_sent(self, sent: Mapping[str, int]) -> None:
        """pair -> version: that version's outbox was delivered (a newer version is left alone)."""
        ...

    async def unsent_nav_outboxes(self) -> dict[str, StoredPair]:
        """Every pair whose outbox is not confirmed sent (a worker died between commit and send)."""
        ...
