"""CircuitBreaker: stop hammering a failing venue, send its orders to paper, probe it later.

Only transport failures (``BrokerUnavailable``) count: a venue that *answers* "insufficient
funds" is healthy. The clock is injected so the cooldown is testable without sleeping.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from enum import StrEnum

from execution.clock import SYSTEM_CLOCK, Clock

log = logging.getLogger(__name__)


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    def __init__(
        self,
        name: str,
        *,
        failure_threshold: int = 5,
        cooldown: float = 30.0,
        clock: Clock = SYSTEM_CLOCK,
        on_change: Callable[[str, BreakerState, str], None] | None = None,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be >= 1")
        self.name = name
        self._threshold = failure_threshold
        self._cooldown = cooldown
        self._clock = clock
        self._on_change = on_change
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._probe_in_flight = False
        self._probe_started = 0.0
        self.last_reason = ""

    @property
    def state(self) -> BreakerState:
        if self._state is BreakerState.OPEN and self._clock.monotonic() - self._opened_at >= self._cooldown:
            self._set(BreakerState.HALF_OPEN, "cooldown elapsed; next order probes the venue")
        return self._state

    @property
    def consecutive_failures(self) -> int:
        return self._failures

    def allow(self) -> bool:
        """May an order go to the venue now? In half-open, exactly one probe is let through.

        A probe whose outcome is never recorded (its orders failed pre-trade checks, or the
        adapter raised something unexpected) expires after one cooldown, so it cannot wedge the
        breaker half-open forever."""
        state = self.state
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.HALF_OPEN and (
            not self._probe_in_flight or self._clock.monotonic() - self._probe_started >= self._cooldown
        ):
            self._probe_in_flight = True
            self._probe_started = self._clock.monotonic()
            return True
        return False

    def record_success(self) -> None:
        self._failures = 0
        self._probe_in_flight = False
        if self._state is not BreakerState.CLOSED:
            self._set(BreakerState.CLOSED, "venue answered")

    def record_failure(self, reason: str) -> None:
        self._failures += 1
        self.last_reason = reason
        probing = self._probe_in_flight
        self._probe_in_flight = False
        if probing or (self._state is BreakerState.CLOSED and self._failures >= self._threshold):
            self._opened_at = self._clock.monotonic()
            self._set(BreakerState.OPEN, reason)

    def _set(self, state: BreakerState, reason: str) -> None:
        if state is self._state:
            return
        log.warning("circuit breaker %s: %s -> %s (%s)", self.name, self._state, state, reason)
        self._state = state
        if self._on_change is not None:
            self._on_change(self.name, state, reason)
