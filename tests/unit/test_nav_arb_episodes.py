"""The NAV-arb episode as pure transitions (execution/nav_arb.py): the legs an entry, an exit and an
unwind send, and how leg outcomes move the pair, without Faust, Kafka or a database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

import pytest

from execution.nav_arb import (
    SPOT,
    STRATEGY,
    TRUST,
    Decision,
    Episode,
    NavArbParams,
    PairState,
    Step,
    group_id_for,
    leg_signal_id,
    pair_of_group,
    spot_quantity,
    spread_of,
    unwind_signal_id,
)
from schemas import Broker, NavQuote, OrderEvent, OrderState, OrderType, Side, Signal

T0 = datetime(2026, 11, 30, 14, 30, tzinfo=UTC)
PARAMS = NavArbParams(window=10, min_obs=5, trust_qty=D(100))
NAV = D("50")
SPOT_PRICE = D("56000")
CALM = [0.001, -0.001, 0.002, -0.002, 0.0, 0.001, -0.001, 0.0, 0.002]


def quote(i: int, spread: float, spot_price: D | None = SPOT_PRICE) -> NavQuote:
    trust = (NAV * (1 + D(str(spread)))).quantize(D("0.0001"))
    return NavQuote(pair="GBTC-BTC", trust_symbol="GBTC", spot_symbol="BTC-USDT", trust_price=trust,
                    nav_per_share=NAV, spot_price=spot_price, ts=T0 + timedelta(seconds=i))


class Pair:
    """A PairState fed quote by quote, as the agent does: observe, then act."""

    def __init__(self, params: NavArbParams = PARAMS) -> None:
        self.state = PairState.new("GBTC-BTC", params)
        self.params = params
        self.i = 0
        self.decisions: list[Decision | None] = []

    def feed(self, *spreads: float, spot_price: D | None = SPOT_PRICE) -> list[Step]:
        steps = []
        for s in spreads:
            q = quote(self.i, s, spot_price)
            self.i += 1
            obs = self.state.observe(q.ts, spread_of(q.trust_price, q.nav_per_share), self.params)
            assert obs is not None
            self.decisions.append(obs.decision)
            steps.append(self.state.act(obs, q, q.spot_price, self.params))
        return steps

    def settle(self, signal: Signal, state: OrderState = OrderState.FILLED, filled: D | None = None,
               reason: str = "") -> Step:
        qty = signal.quantity if filled is None and state is OrderState.FILLED else (filled or D(0))
        event = OrderEvent(client_order_id=signal.client_order_id, broker=Broker.PAPER, symbol=signal.symbol,
                           state=state, reason=reason, ts=T0 + timedelta(seconds=self.i, milliseconds=500),
                           strategy=STRATEGY, group_id=signal.group_id, filled_quantity=qty,
                           avg_fill_price=signal.reference_price if qty else None)
        return self.state.on_order_event(event)


def signals(steps: list[Step]) -> list[Signal]:
    return [s for step in steps for s in step.signals]


def test_an_entry_sends_two_market_legs_with_one_group_sized_by_nav() -> None:
    pair = Pair()
    steps = pair.feed(*CALM, -0.03)
    legs = signals(steps)
    assert pair.decisions[-1] is Decision.LONG_TRUST_SHORT_SPOT and len(legs) == 2
    trust, spot = legs
    ts = T0 + timedelta(seconds=9)
    assert (trust.symbol, trust.side, trust.quantity) == ("GBTC", Side.BUY, D(100))
    # 100 x 50 / 56000 = 0.0892857.. -> rounded down to the 0.00001 step
    assert (spot.symbol, spot.side, spot.quantity) == ("BTC-USDT", Side.SELL, D("0.08928"))
    assert {s.group_id for s in legs} == {group_id_for("GBTC-BTC", ts, Decision.LONG_TRUST_SHORT_SPOT)}
    assert [s.signal_id for s in legs] == [leg_signal_id("GBTC-BTC", ts, TRUST), leg_signal_id("GBTC-BTC", ts, SPOT)]
    assert all(s.ts == ts and s.strategy == STRATEGY and s.order_type is OrderType.MARKET for s in legs)
    assert (trust.reference_price, spot.reference_price) == (D("48.5000"), SPOT_PRICE)
    assert pair.state.episode is Episode.ENTERING
    assert [(r.previous, r.episode) for r in steps[-1].records] == [(Episode.FLAT, Episode.ENTERING)]


def test_the_short_trust_entry_mirrors_it() -> None:
    pair = Pair()
    trust, spot = signals(pair.feed(*CALM, 0.03))
    assert (trust.side, spot.side) == (Side.SELL, Side.BUY)


def test_both_legs_filled_is_a_position_and_the_exit_closes_exactly_what_filled() -> None:
    pair = Pair()
    trust, spot = signals(pair.feed(*CALM, -0.03))
    pair.settle(trust, filled=D(100))
    assert pair.state.episode is Episode.ENTERING  # one leg still working
    pair.settle(spot)
    assert pair.state.episode is Episode.IN_POSITION
    assert pair.state.filled == {TRUST: D(100), SPOT: D("-0.08928")}
    steps = pair.feed(0.2)  # an opposite extreme does nothing in a position
    assert not signals(steps) and pair.decisions[-1] is None
    steps = pair.feed(0.0, 0.0, 0.001, 0.0, 0.001, 0.0)
    exits = signals(steps)
    assert Decision.EXIT in pair.decisions and len(exits) == 2
    assert [(s.symbol, s.side, s.quantity) for s in exits] == [("BTC-USDT", Side.BUY, D("0.08928")),
                                                                ("GBTC", Side.SELL, D(100))]
    assert len({s.group_id for s in exits}) == 1 and exits[0].group_id != trust.group_id
    assert pair.state.episode is Episode.EXITING
    for leg in exits:
        pair.settle(leg)
    assert (pair.state.episode, pair.state.filled, pair.state.direction) == (Episode.FLAT, {}, None)


def test_an_exit_decided_while_the_entry_legs_work_waits_for_both() -> None:
    pair = Pair()
    trust, spot = signals(pair.feed(*CALM, -0.03))
    steps = pair.feed(0.0, 0.0, 0.001, 0.0, 0.001, 0.0, 0.0)
    assert pair.decisions.count(Decision.EXIT) == 1  # decided once, then pending
    assert not signals(steps) and pair.state.exit_pending
    assert not pair.settle(trust).signals
    exits = pair.settle(spot).signals  # both terminal: the exit goes at once
    assert [(s.side, s.quantity) for s in exits] == [(Side.BUY, D("0.08928")), (Side.SELL, D(100))]
    decided = T0 + timedelta(seconds=pair.decisions.index(Decision.EXIT))  # the ids: from the deciding quote
    assert exits[0].signal_id == leg_signal_id("GBTC-BTC", decided, "exit-spot")
    assert exits[0].ts > decided  # sent now, not back then
    assert pair.state.episode is Episode.EXITING


def test_one_leg_rejected_unwinds_the_other_and_the_pair_reenters_only_after() -> None:
    pair = Pair()
    trust, spot = signals(pair.feed(*CALM, -0.03))
    pair.settle(trust)
    step = pair.settle(spot, OrderState.REJECTED, reason="Account has insufficient balance")
    [unwind] = step.signals
    assert (unwind.symbol, unwind.side, unwind.quantity) == ("GBTC", Side.SELL, D(100))
    assert unwind.group_id == trust.group_id and unwind.signal_id == unwind_signal_id(trust.group_id or "", TRUST, 1)
    assert pair.state.episode is Episode.UNWINDING
    [record] = step.records
    assert (record.previous, record.episode) == (Episode.ENTERING, Episode.UNWINDING)
    assert "spot leg SELL 0.08928 BTC-USDT: REJECTED" in record.reason and "insufficient balance" in record.reason
    assert not signals(pair.feed(-0.06))  # an entry extreme while unwinding: nothing
    assert pair.decisions[-1] is None
    done = pair.settle(unwind)
    assert pair.state.episode is Episode.FLAT and done.records[-1].episode is Episode.FLAT
    assert "unwound after leg risk" in done.records[-1].reason
    assert len(signals(pair.feed(*CALM[:5], -0.08))) == 2  # flat again: the next extreme enters


def test_both_legs_refused_is_flat_at_once_with_nothing_to_unwind() -> None:
    pair = Pair()
    trust, spot = signals(pair.feed(*CALM, 0.03))
    pair.settle(trust, OrderState.REJECTED, reason="limit")
    step = pair.settle(spot, OrderState.EXPIRED, reason="too old")
    assert not step.signals and pair.state.episode is Episode.FLAT
    assert "entry failed, nothing filled" in step.records[-1].reason


def test_a_partly_filled_cancelled_leg_unwinds_what_filled_of_both() -> None:
    pair = Pair()
    trust, spot = signals(pair.feed(*CALM, 0.03))  # sell trust, buy spot
    pair.settle(trust, OrderState.CANCELLED, filled=D(40), reason="remainder cancelled")
    unwinds = pair.settle(spot).signals
    assert [(s.symbol, s.side, s.quantity) for s in unwinds] == [("BTC-USDT", Side.SELL, D("0.08928")),
                                                                  ("GBTC", Side.BUY, D(40))]


def test_an_incomplete_unwind_is_sent_again_on_the_next_quote_up_to_the_attempts() -> None:
    pair = Pair(NavArbParams(window=10, min_obs=5, unwind_attempts=2))
    trust, spot = signals(pair.feed(*CALM, -0.03))
    pair.settle(trust)
    [first] = pair.settle(spot, OrderState.REJECTED).signals
    pair.settle(first, OrderState.CANCELLED, filled=D(30))
    assert pair.state.episode is Episode.UNWINDING and pair.state.filled == {TRUST: D(70)}
    [second] = signals(pair.feed(0.0))
    assert (second.side, second.quantity) == (Side.SELL, D(70)) and second.signal_id != first.signal_id
    pair.settle(second, OrderState.REJECTED)
    assert not signals(pair.feed(0.0, 0.0))  # attempts used up: left to an operator, still not flat
    assert pair.state.episode is Episode.UNWINDING


def test_duplicate_and_foreign_order_events_change_nothing() -> None:
    pair = Pair()
    trust, _ = signals(pair.feed(*CALM, -0.03))
    assert pair.settle(trust).changed
    before = pair.state.to_dict()
    assert not pair.settle(trust).changed
    stranger = Signal(signal_id="other", symbol="GBTC", side=Side.BUY, quantity=D(1))
    assert not pair.settle(stranger).changed
    assert pair.state.to_dict() == before


def test_no_spot_price_means_no_trade_with_the_reason() -> None:
    pair = Pair()
    steps = pair.feed(*CALM, -0.03, spot_price=None)
    assert pair.decisions[-1] is Decision.LONG_TRUST_SHORT_SPOT
    assert not signals(steps) and pair.state.episode is Episode.FLAT
    assert "no spot price" in steps[-1].records[-1].reason


def test_a_state_restored_mid_episode_carries_on_identically() -> None:
    pair = Pair()
    trust, spot = signals(pair.feed(*CALM, -0.03))
    pair.settle(trust)
    restored = Pair()
    restored.state, restored.i = PairState.from_dict(pair.state.to_dict()), pair.i
    assert restored.state.to_dict() == pair.state.to_dict()
    assert pair.settle(spot).records == restored.settle(spot).records


def test_spot_quantity_rounds_down_to_the_step() -> None:
    assert spot_quantity(D(100), D("57.85"), D("65000"), D("0.00001")) == D("0.08900")
    assert spot_quantity(D(1), D("1"), D("3"), D("0.1")) == D("0.3")


@pytest.mark.parametrize("pair", ["GBTC-BTC", "P", "ETHE-ETH-USDT"])
def test_the_pair_is_read_back_from_a_group_id(pair: str) -> None:
    assert pair_of_group(group_id_for(pair, T0, Decision.EXIT)) == pair
    assert pair_of_group("momo-1") is None and pair_of_group(None) is None
