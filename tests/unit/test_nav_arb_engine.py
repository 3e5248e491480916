"""The NAV-arb agent's engine (agents/nav_arb.py NavArbEngine) on the in-memory store, without
Faust: the database is the state, the cache only a cache, the outbox makes signals survive a
crash between the commit and the produce, and nothing is traded twice."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

import pytest

from adapters.memory import InMemoryStore
from agents.nav_arb import NavArbEngine
from agents.publish import DeliveryFailed
from execution.nav_arb import STRATEGY, Decision, Episode, NavArbParams, PairState, spread_of
from schemas import Broker, NavQuote, OrderEvent, OrderState, Signal

T0 = datetime(2026, 11, 30, 14, 30, tzinfo=UTC)
PARAMS = NavArbParams(window=10, min_obs=5)
CALM = [0.001, -0.001, 0.002, -0.002, 0.0, 0.001, -0.001, 0.0, 0.002]


def quotes(spreads: Sequence[float], start: int = 0, spot: D | None = D("56000")) -> list[NavQuote]:
    return [NavQuote(pair="GBTC-BTC", trust_symbol="GBTC", spot_symbol="BTC-USDT",
                     trust_price=(D(50) * (1 + D(str(s)))).quantize(D("0.0001")), nav_per_share=D(50),
                     spot_price=spot, ts=T0 + timedelta(seconds=start + i)) for i, s in enumerate(spreads)]


def filled(signal: Signal, state: OrderState = OrderState.FILLED) -> OrderEvent:
    qty = signal.quantity if state is OrderState.FILLED else D(0)
    return OrderEvent(client_order_id=signal.client_order_id, broker=Broker.PAPER, symbol=signal.symbol,
                      state=state, ts=T0 + timedelta(hours=1), strategy=STRATEGY, group_id=signal.group_id,
                      filled_quantity=qty, avg_fill_price=signal.reference_price if qty else None)


class Sender:
    def __init__(self) -> None:
        self.sent: list[Signal] = []
        self.fail = False

    async def __call__(self, signals: Sequence[Signal]) -> None:
        if self.fail:
            raise DeliveryFailed("broker down")
        self.sent.extend(signals)


def engine(store: InMemoryStore, sender: Sender, cache: dict[bytes, bytes] | None = None) -> NavArbEngine:
    async def get_store() -> InMemoryStore:
        return store

    async def no_price(symbol: str) -> D | None:
        return None

    return NavArbEngine(get_store, sender, lambda pair: PARAMS, no_price, cache)


async def test_observations_and_legs_are_saved_and_a_redelivered_quote_trades_nothing() -> None:
    store, sender = InMemoryStore(), Sender()
    nav = engine(store, sender)
    stream = quotes([*CALM, -0.03])
    await nav.handle(stream[:4])
    await nav.handle(stream[4:])
    assert [s.side for s in sender.sent] == ["BUY", "SELL"] and len({s.group_id for s in sender.sent}) == 1
    rows = await store.nav_spreads("GBTC-BTC")
    assert len(rows) == 10 and rows[-1].decision is Decision.LONG_TRUST_SHORT_SPOT
    assert rows[-1].episode is Episode.ENTERING and rows[-1].group_id == sender.sent[0].group_id
    await nav.handle([stream[-1], stream[3]])  # redelivered: the decision's quote and an older one
    assert len(sender.sent) == 2 and len(await store.nav_spreads("GBTC-BTC")) == 10
    assert await store.unsent_nav_outboxes() == {}


async def test_a_stale_cache_is_replaced_by_the_database_state() -> None:
    store, sender = InMemoryStore(), Sender()
    first = engine(store, sender)
    stream = quotes([*CALM, -0.03, 0.0, 0.001])
    await first.handle(stream[:3])
    old_cache = dict(first.cache)  # what a changelog recovery that stopped short would hold
    await first.handle(stream[3:7])
    second = engine(store, sender, old_cache)  # a restarted worker, its table behind
    await second.handle(stream[7:])
    assert second.reloads == 1
    whole = PairState.new("GBTC-BTC", PARAMS)
    expected = [whole.observe(q.ts, spread_of(q.trust_price, q.nav_per_share), PARAMS) for q in stream]
    rows = await store.nav_spreads("GBTC-BTC")
    assert [(r.z, r.decision) for r in rows] == [(o.z, o.decision) for o in expected if o]


async def test_signals_not_delivered_after_the_commit_are_sent_by_the_next_worker() -> None:
    store, sender = InMemoryStore(), Sender()
    dying = engine(store, sender)
    sender.fail = True
    with pytest.raises(DeliveryFailed):
        await dying.handle(quotes([*CALM, 0.03]))  # committed, then the produce failed: it "died"
    assert sender.sent == [] and list(await store.unsent_nav_outboxes()) == ["GBTC-BTC"]
    sender.fail = False
    await engine(store, sender).start()  # the next worker, on start
    assert [s.side for s in sender.sent] == ["SELL", "BUY"]
    assert await store.unsent_nav_outboxes() == {}


async def test_the_in_process_retry_of_a_failed_produce_sends_the_outbox_once_delivered() -> None:
    store, sender = InMemoryStore(), Sender()
    nav = engine(store, sender)
    batch = quotes([*CALM, 0.03])
    sender.fail = True
    with pytest.raises(DeliveryFailed):
        await nav.handle(batch)
    sender.fail = False
    await nav.handle(batch)  # the agent retries the same batch: duplicates, but the outbox goes
    assert len(sender.sent) == 2


async def test_leg_outcomes_move_the_episode_and_an_unwind_goes_out() -> None:
    store, sender = InMemoryStore(), Sender()
    nav = engine(store, sender)
    await nav.handle(quotes([*CALM, -0.03]))
    trust, spot = sender.sent
    await nav.handle([filled(trust), filled(spot, OrderState.REJECTED)])
    assert len(sender.sent) == 3 and sender.sent[2].side == "SELL" and sender.sent[2].quantity == D(100)
    await nav.handle([filled(trust)])  # a duplicate event: nothing
    assert len(sender.sent) == 3
    await nav.handle([filled(sender.sent[2])])
    episodes = await store.nav_episodes("GBTC-BTC")
    assert [(e.previous, e.episode) for e in episodes] == [
        (Episode.FLAT, Episode.ENTERING), (Episode.ENTERING, Episode.UNWINDING), (Episode.UNWINDING, Episode.FLAT)]
    assert "REJECTED" in episodes[1].reason


async def test_without_a_spot_price_the_spot_venue_is_asked() -> None:
    store, sender = InMemoryStore(), Sender()
    asked: list[str] = []

    async def get_store() -> InMemoryStore:
        return store

    async def price(symbol: str) -> D | None:
        asked.append(symbol)
        return D("62500")

    nav = NavArbEngine(get_store, sender, lambda pair: PARAMS, price)
    await nav.handle(quotes([*CALM, 0.03], spot=None))
    assert asked == ["BTC-USDT"]  # once, for the decision only
    assert sender.sent[1].quantity == D("0.08") and sender.sent[1].reference_price == D("62500")
