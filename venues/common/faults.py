"""The fault model every simulator shares, HTTP and TCP venues alike.

A venue asks ``Faults.decide(op, key)`` once per request it receives (HTTP) or per connection
and per message (TCP), and acts on the answer in its own protocol:

===========  ======================================  ========================================
``Fault``    HTTP venue                              TCP venue
===========  ======================================  ========================================
``FAIL``     answer 503 without processing           refuse/close the connection unprocessed
``DROP``     close the connection unprocessed        close the connection unprocessed
``LOSE``     process, then close without answering   process, then close without answering
===========  ======================================  ========================================

``LOSE`` is the ambiguous-submit case: the order exists at the venue but the client never heard
about it. ``latency`` delays every venue request (or connection) before the decision.

Two sources of faults, checked in this order:

* one-shot counters (``drop_next``, ``fail_next``, ``lose_response_next``), limited by ``match``
  to requests whose key (``"POST /api/v3/order"``, ``"CONNECT"``, ...) starts with it: a test
  says exactly which request fails;
* rates (``fail_rate`` for every request, ``lose_rate`` for order placements only), drawn from
  a ``random.Random(seed)`` of their own, apart from the price path's. Every ``decide`` call
  draws the same number of values whatever the settings, so one seed and one request sequence
  always give the same faults.

The control endpoints (``venues/common/control.py``) change all of it while the venue runs.
"""

from __future__ import annotations

import enum
import math
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


class Op(enum.StrEnum):
    """What a request does, which decides the faults it can get."""

    MARKET_DATA = "market_data"
    #: account queries, order queries and cancels
    TRADING = "trading"
    #: a new order: the only kind ``lose_rate`` applies to
    PLACEMENT = "placement"
    #: a TCP venue's new connection
    CONNECT = "connect"


class Fault(enum.StrEnum):
    NONE = "none"
    FAIL = "fail"
    DROP = "drop"
    LOSE = "lose"


#: every kind the stats count: the three faults above plus delayed requests
FAULT_KINDS: tuple[str, ...] = ("latency", Fault.FAIL.value, Fault.DROP.value, Fault.LOSE.value)

_RATES = ("latency", "fail_rate", "lose_rate")
_COUNTERS = ("fail_next", "drop_next", "lose_response_next")
FIELDS: tuple[str, ...] = (*_RATES, "seed", *_COUNTERS, "match")


@dataclass(slots=True)
class Faults:
    """Faults to inject, mutable while the simulator runs (plain attributes or ``update``).

    aiohttp clients (ccxt among them) resend an idempotent GET/DELETE once after a dropped
    connection, so it takes ``drop_next=2`` to make one GET fail; a POST fails on the first.
    """

    latency: float = 0.0
    fail_rate: float = 0.0
    lose_rate: float = 0.0
    #: seeds the rate draws; the same seed and request sequence give the same faults
    seed: int = 0
    fail_next: int = 0
    drop_next: int = 0
    lose_response_next: int = 0
    match: str | None = None
    _rng: random.Random = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _validate({name: getattr(self, name) for name in FIELDS})
        self._rng = random.Random(self.seed)

    def applies(self, key: str) -> bool:
        """Whether the one-shot counters apply to the request ``key`` (``"METHOD /path"``)."""
        return self.match is None or key.startswith(self.match)

    def decide(self, op: Op, key: str, *, use_fail_rate: bool = True) -> Fault:
        """The fault for one request (or connection): counters first, then the seeded rates.

        ``use_fail_rate=False`` exempts the request from ``fail_rate`` (the counters and
        ``lose_rate`` still apply, and the draws are the same): a TCP venue whose ``fail_rate``
        means refused connections asks so for the messages inside a connection.
        """
        fail_draw = self._rng.random()
        lose_draw = self._rng.random() if op is Op.PLACEMENT else 1.0
        if self.applies(key):
            if self.drop_next > 0:
                self.drop_next -= 1
                return Fault.DROP
            if self.fail_next > 0:
                self.fail_next -= 1
                return Fault.FAIL
            if self.lose_response_next > 0 and op is not Op.CONNECT:  # a connection has no answer to lose
                self.lose_response_next -= 1
                return Fault.LOSE
        if use_fail_rate and fail_draw < self.fail_rate:
            return Fault.FAIL
        if lose_draw < self.lose_rate:
            return Fault.LOSE
        return Fault.NONE

    def update(self, patch: Mapping[str, Any]) -> None:
        """Apply a partial change (keys left out keep their value); all or nothing.

        A new ``seed`` restarts the rate draws from it. Raises ``ValueError`` naming the bad key.
        """
        unknown = sorted(set(patch) - set(FIELDS))
        if unknown:
            raise ValueError(f"unknown fault setting(s): {', '.join(unknown)}; known: {', '.join(FIELDS)}")
        _validate(patch)
        for name, value in patch.items():
            setattr(self, name, float(value) if name in _RATES else value)
        if "seed" in patch:
            self._rng = random.Random(self.seed)

    def to_json(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in FIELDS}


def _validate(values: Mapping[str, Any]) -> None:
    for name, value in values.items():
        if name in _RATES:
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise ValueError(f"{name} must be a number, got {value!r}")
            if value < 0 or (name != "latency" and value > 1):
                limits = ">= 0" if name == "latency" else "between 0 and 1"
                raise ValueError(f"{name} must be {limits}, got {value!r}")
        elif name in (*_COUNTERS, "seed"):
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{name} must be an integer, got {value!r}")
            if name != "seed" and value < 0:
                raise ValueError(f"{name} must be >= 0, got {value!r}")
        elif name == "match" and value is not None and not isinstance(value, str):
            raise ValueError(f"match must be a string or null, got {value!r}")
