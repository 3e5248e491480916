"""The NAV-arb detector (execution/nav_arb.py) against hand-computed series and direct statistics."""

from __future__ import annotations

import random
import statistics
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from execution.nav_arb import (
    Decision,
    Episode,
    NavArbParams,
    PairState,
    RollingStats,
    group_id_for,
    leg_signal_id,
    spread_of,
)

T0 = datetime(2026, 11, 30, 14, 30, tzinfo=UTC)
PARAMS = NavArbParams(window=10, min_obs=5)


def feed(state: PairState, spreads: list[float], params: NavArbParams = PARAMS, start: int = 0):
    return [state.observe(T0 + timedelta(seconds=start + i), s, params) for i, s in enumerate(spreads)]


def direct_z(values: list[float], window: int) -> float:
    w = values[-window:]
    return (w[-1] - statistics.fmean(w)) / statistics.stdev(w)


def test_spread_is_ieee_double_of_the_decimal_strings() -> None:
    spread = spread_of(Decimal("38.50"), Decimal("40.00"))
    assert spread == 38.5 / 40.0 - 1.0  # to the last bit, as every implementation computes it
    assert abs(spread - -0.0375) < 1e-15


def test_running_statistics_equal_a_direct_computation_over_a_long_series() -> None:
    rng = random.Random(7)
    stats, values = RollingStats(60), []
    level = 0.0
    for i in range(100_000):
        level += rng.gauss(0, 0.001)
        x = level + rng.gauss(0, 0.01) + (5.0 if 40_000 <= i < 40_100 else 0.0)  # a jump, then back
        stats.push(x)
        values.append(x)
        if i % 997 == 0 or i > 99_900:
            w = values[-60:]
            assert abs(stats.mean - statistics.fmean(w)) < 1e-9
            if len(w) > 1:
                assert abs(stats.std - statistics.stdev(w)) < 1e-9


def test_no_z_and_no_decision_before_the_minimum_observations_or_on_a_constant_window() -> None:
    state = PairState.new("GBTC-BTC", PARAMS)
    observed = feed(state, [-0.05] * 4)
    assert [o.z for o in observed] == [None] * 4 and all(o.decision is None for o in observed)
    observed = feed(state, [-0.05] * 6, start=4)  # window reached, but constant: std == 0
    assert all(o.z is None and o.decision is None for o in observed)


def test_long_trust_short_spot_at_the_tick_where_both_conditions_hold() -> None:
    state = PairState.new("GBTC-BTC", PARAMS)
    calm = [0.001, -0.001, 0.002, -0.002, 0.0, 0.001, -0.001, 0.0, 0.002]
    observed = feed(state, [*calm, -0.03])
    last = observed[-1]
    assert last.z == pytest.approx(direct_z([*calm, -0.03], 10), abs=1e-12)
    assert last.z < -2.0 and last.spread < -0.02
    assert last.decision is Decision.LONG_TRUST_SHORT_SPOT
    assert all(o.decision is None for o in observed[:-1])


def test_short_trust_long_spot_mirrors_it() -> None:
    state = PairState.new("GBTC-BTC", PARAMS)
    calm = [0.001, -0.001, 0.002, -0.002, 0.0, 0.001, -0.001, 0.0, 0.002]
    assert feed(state, [*calm, 0.03])[-1].decision is Decision.SHORT_TRUST_LONG_SPOT


def test_a_z_extreme_inside_two_percent_does_not_trade_nor_does_a_wide_spread_without_z() -> None:
    calm = [0.001, -0.001, 0.002, -0.002, 0.0, 0.001, -0.001, 0.0, 0.002]
    only_z = feed(PairState.new("P", PARAMS), [*calm, -0.015])[-1]
    assert only_z.z is not None and only_z.z < -2.0 and only_z.decision is None
    wide = [-0.05, -0.049, -0.051, -0.05, -0.052, -0.048, -0.05, -0.051, -0.049]
    only_spread = feed(PairState.new("P", PARAMS), [*wide, -0.05])[-1]
    assert only_spread.spread < -0.02 and only_spread.z is not None and abs(only_spread.z) < 2.0
    assert only_spread.decision is None


def test_in_a_position_only_the_exit_rule_applies() -> None:
    state = PairState.new("P", PARAMS)
    calm = [0.001, -0.001, 0.002, -0.002, 0.0, 0.001, -0.001, 0.0, 0.002]
    assert feed(state, [*calm, -0.03])[-1].decision is Decision.LONG_TRUST_SHORT_SPOT
    state.episode, state.direction = Episode.IN_POSITION, Decision.LONG_TRUST_SHORT_SPOT
    # an opposite extreme does nothing while in a position
    assert feed(state, [0.2], start=10)[-1].decision is None
    observed = feed(state, [0.01, 0.0, 0.01, 0.02, 0.015], start=11)
    exits = [o for o in observed if o.decision is Decision.EXIT]
    assert exits, [o.z for o in observed]
    first = exits[0]
    assert first.z is not None and abs(first.z) <= 0.3
    before = observed[: observed.index(first)]
    assert all(o.z is None or abs(o.z) > 0.3 for o in before)


def test_a_duplicate_or_late_quote_changes_nothing() -> None:
    state = PairState.new("P", PARAMS)
    feed(state, [0.001, 0.002, 0.003])
    snapshot = state.to_dict()
    assert state.observe(T0 + timedelta(seconds=2), 0.5, PARAMS) is None  # same ts as the last
    assert state.observe(T0, 0.5, PARAMS) is None  # older
    assert state.to_dict() == snapshot


def test_state_round_trips_through_plain_data_and_resumes_identically() -> None:
    rng = random.Random(3)
    spreads = [rng.gauss(0, 0.01) for _ in range(300)]
    whole = PairState.new("P", NavArbParams())
    uninterrupted = [o.z for o in feed(whole, spreads, NavArbParams()) if o]
    first = PairState.new("P", NavArbParams())
    zs = [o.z for o in feed(first, spreads[:137], NavArbParams()) if o]
    resumed = PairState.from_dict(first.to_dict())  # what a restarted worker reads from its table
    zs += [o.z for o in feed(resumed, spreads[137:], NavArbParams(), start=137) if o]
    assert zs == uninterrupted


def test_leg_ids_are_deterministic_per_pair_quote_and_leg() -> None:
    assert leg_signal_id("P", T0, "trust") == leg_signal_id("P", T0, "trust")
    assert len({leg_signal_id("P", T0, "trust"), leg_signal_id("P", T0, "spot"),
                leg_signal_id("P", T0 + timedelta(seconds=1), "trust"), leg_signal_id("Q", T0, "trust")}) == 4
    assert group_id_for("P", T0, Decision.EXIT) != group_id_for("P", T0, Decision.LONG_TRUST_SHORT_SPOT)
