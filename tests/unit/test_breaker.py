"""CircuitBreaker with an injected clock: open, cool down, probe, close or re-open."""

from __future__ import annotations

import pytest

from execution.breaker import BreakerState, CircuitBreaker
from tests.unit.fakes import FakeClock


class Changes:
    def __init__(self) -> None:
        self.calls: list[tuple[str, BreakerState, str]] = []

    def __call__(self, name: str, state: BreakerState, reason: str) -> None:
        self.calls.append((name, state, reason))

    @property
    def states(self) -> list[BreakerState]:
        return [state for _, state, _ in self.calls]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def changes() -> Changes:
    return Changes()


@pytest.fixture
def breaker(clock: FakeClock, changes: Changes) -> CircuitBreaker:
    return CircuitBreaker("binance", failure_threshold=3, cooldown=30.0, clock=clock, on_change=changes)


def open_it(breaker: CircuitBreaker, n: int = 3) -> None:
    for i in range(n):
        breaker.record_failure(f"timeout {i}")


def test_starts_closed_and_allows(breaker: CircuitBreaker, changes: Changes) -> None:
    assert breaker.state is BreakerState.CLOSED
    assert all(breaker.allow() for _ in range(10))
    assert changes.calls == []


def test_opens_after_n_consecutive_failures(breaker: CircuitBreaker, changes: Changes) -> None:
    breaker.record_failure("timeout 1")
    breaker.record_failure("timeout 2")
    assert breaker.state is BreakerState.CLOSED
    assert breaker.consecutive_failures == 2
    assert breaker.allow()
    breaker.record_failure("timeout 3")
    assert breaker.state is BreakerState.OPEN
    assert breaker.consecutive_failures == 3
    assert breaker.last_reason == "timeout 3"
    assert changes.calls == [("binance", BreakerState.OPEN, "timeout 3")]


def test_success_resets_the_count(breaker: CircuitBreaker) -> None:
    breaker.record_failure("a")
    breaker.record_failure("b")
    breaker.record_success()
    assert breaker.consecutive_failures == 0
    breaker.record_failure("c")
    breaker.record_failure("d")
    assert breaker.state is BreakerState.CLOSED  # 2 consecutive, not 4 in total
    breaker.record_failure("e")
    assert breaker.state is BreakerState.OPEN


def test_threshold_of_one_opens_at_once(clock: FakeClock) -> None:
    breaker = CircuitBreaker("x", failure_threshold=1, clock=clock)
    breaker.record_failure("boom")
    assert breaker.state is BreakerState.OPEN
    assert not breaker.allow()


def test_threshold_must_be_positive() -> None:
    with pytest.raises(ValueError, match="failure_threshold"):
        CircuitBreaker("x", failure_threshold=0)


def test_open_blocks_until_cooldown(breaker: CircuitBreaker, clock: FakeClock) -> None:
    open_it(breaker)
    assert not breaker.allow()
    clock.advance(29.999)
    assert breaker.state is BreakerState.OPEN
    assert not any(breaker.allow() for _ in range(5))


def test_half_open_lets_exactly_one_probe_through(
    breaker: CircuitBreaker, clock: FakeClock, changes: Changes
) -> None:
    open_it(breaker)
    clock.advance(30)
    assert breaker.state is BreakerState.HALF_OPEN
    assert changes.calls[-1] == ("binance", BreakerState.HALF_OPEN,
                                 "cooldown elapsed; next order probes the venue")
    assert [breaker.allow() for _ in range(5)] == [True, False, False, False, False]
    assert breaker.state is BreakerState.HALF_OPEN


def test_probe_success_closes(breaker: CircuitBreaker, clock: FakeClock, changes: Changes) -> None:
    open_it(breaker)
    clock.advance(31)
    assert breaker.allow()
    breaker.record_success()
    assert breaker.state is BreakerState.CLOSED
    assert breaker.consecutive_failures == 0
    assert all(breaker.allow() for _ in range(3))
    assert changes.states == [BreakerState.OPEN, BreakerState.HALF_OPEN, BreakerState.CLOSED]
    assert changes.calls[-1] == ("binance", BreakerState.CLOSED, "venue answered")


def test_probe_failure_reopens_for_a_new_cooldown(
    breaker: CircuitBreaker, clock: FakeClock, changes: Changes
) -> None:
    open_it(breaker)
    clock.advance(30)
    assert breaker.allow()
    breaker.record_failure("still down")
    assert breaker.state is BreakerState.OPEN
    assert not breaker.allow()
    assert changes.calls[-1] == ("binance", BreakerState.OPEN, "still down")
    clock.advance(29)  # the cooldown restarts at the failed probe
    assert breaker.state is BreakerState.OPEN
    clock.advance(1)
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.allow()
    breaker.record_success()
    assert breaker.state is BreakerState.CLOSED
    assert changes.states == [BreakerState.OPEN, BreakerState.HALF_OPEN, BreakerState.OPEN,
                              BreakerState.HALF_OPEN, BreakerState.CLOSED]


def test_lost_probe_does_not_block_the_venue_forever(breaker: CircuitBreaker, clock: FakeClock) -> None:
    """A probe whose outcome is never recorded (the order was rejected before reaching the venue,
    or the adapter raised something unexpected) must not wedge the breaker half-open forever."""
    open_it(breaker)
    clock.advance(30)
    assert breaker.allow()          # probe handed out, result never reported
    assert not breaker.allow()      # meanwhile no second probe
    clock.advance(30)
    assert breaker.allow()          # after another cooldown, a new probe
    breaker.record_success()
    assert breaker.state is BreakerState.CLOSED


def test_failures_while_open_do_not_extend_or_notify(
    breaker: CircuitBreaker, clock: FakeClock, changes: Changes
) -> None:
    open_it(breaker)
    clock.advance(10)
    breaker.record_failure("late failure of an order placed before opening")
    assert len(changes.calls) == 1
    clock.advance(20)  # 30s after opening, not after the late failure
    assert breaker.state is BreakerState.HALF_OPEN


def test_success_while_closed_does_not_notify(breaker: CircuitBreaker, changes: Changes) -> None:
    breaker.record_success()
    breaker.record_failure("x")
    breaker.record_success()
    assert changes.calls == []
