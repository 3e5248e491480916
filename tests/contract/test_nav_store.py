"""The NAV-arb agent's durable state (``NavArbStore``) on the real PostgreSQL, and the in-memory
store giving the same answers to the same calls (adapters/timescale/nav.py, adapters/memory.py)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D
from typing import Any

import pytest

from adapters.memory import InMemoryStore
from adapters.timescale import TimescaleStore
from execution.nav_arb import (
    Decision,
    Episode,
    EpisodeRecord,
    NavArbParams,
    PairState,
    PairWrite,
    SpreadRow,
    StaleNavState,
    fingerprint,
)
from schemas import Side, Signal

T0 = datetime(2026, 11, 30, 14, 30, tzinfo=UTC)
NAV_TABLES = "nav_pairs, nav_episodes, nav_spreads"


def state(pair: str, n: int) -> dict[str, Any]:
    s = PairState.new(pair, NavArbParams(window=5, min_obs=2))
    for i in range(n):
        s.observe(T0 + timedelta(seconds=i), 0.001 * i, NavArbParams(window=5, min_obs=2))
    return s.to_dict()


def leg(n: int) -> Signal:
    return Signal(signal_id=f"nav-P-trust-{n}", ts=T0, strategy="nav-arb", symbol="GBTC", side=Side.BUY,
                  quantity=D(100), reference_price=D("48.5"), group_id="nav-P-0123456789abcdef0123")


def spread(pair: str, i: int, z: float | None, decision: Decision | None = None) -> SpreadRow:
    return SpreadRow(pair=pair, ts=T0 + timedelta(seconds=i), trust_price=D("48.5000"), nav=D("50"),
                     spot_price=D("56000.5"), spread=48.5 / 50 - 1 + i * 1e-17, z=z, decision=decision,
                     episode=Episode.FLAT, group_id=None)


async def script(store: InMemoryStore | TimescaleStore) -> list[Any]:
    """Every call a worker makes, including a stale save, in order; the answers and what is
    readable afterwards make the transcript."""
    out: list[Any] = []
    out.append(await store.load_nav_pairs({"P": "", "Q": ""}))
    await store.save_nav([PairWrite("P", 0, state("P", 1), Episode.FLAT)], [spread("P", 0, None)], [])
    out.append(await store.load_nav_pairs({"P": ""}))
    out.append(await store.load_nav_pairs({"P": fingerprint(state("P", 1))}))  # cached state current: no state
    out.append(await store.load_nav_pairs({"P": fingerprint(state("P", 2))}))  # another state: the stored one
    with pytest.raises(StaleNavState):  # a worker that still believes there is no row
        await store.save_nav([PairWrite("P", 0, state("P", 2), Episode.FLAT)], [spread("P", 1, 1.5)], [])
    with pytest.raises(StaleNavState):  # one stale pair fails the whole save
        await store.save_nav([PairWrite("Q", 0, state("Q", 1), Episode.FLAT),
                              PairWrite("P", 7, state("P", 2), Episode.FLAT)], [spread("Q", 0, 0.5)], [])
    out.append(await store.load_nav_pairs({"P": fingerprint(state("P", 1)), "Q": ""}))  # nothing of it was saved
    record = EpisodeRecord("P", T0, "nav-P-0123456789abcdef0123", Episode.FLAT, Episode.ENTERING,
                           Decision.LONG_TRUST_SHORT_SPOT, "entry", ({"name": "trust", "filled": "0"},))
    await store.save_nav([PairWrite("P", 1, state("P", 2), Episode.ENTERING, (leg(1), leg(2)))],
                         [spread("P", 1, -2.0000000000000004, Decision.LONG_TRUST_SHORT_SPOT)], [record])
    out.append(await store.load_nav_pairs({"P": fingerprint(state("P", 2))}))  # current; its outbox unsent
    out.append(await store.unsent_nav_outboxes())
    await store.save_nav([PairWrite("P", 2, state("P", 3), Episode.ENTERING)], [spread("P", 2, 0.1)], [])
    out.append(await store.unsent_nav_outboxes())  # a save without an outbox keeps the unsent one
    await store.mark_nav_outbox_sent({"P": 2})  # an older version's confirmation: left alone
    out.append(sorted(await store.unsent_nav_outboxes()))
    await store.mark_nav_outbox_sent({"P": 3})
    out.append(await store.unsent_nav_outboxes())
    out.append(await store.load_nav_pairs({"P": ""}))
    out.append(await store.nav_spreads("P"))
    out.append(await store.nav_episodes("P"))
    return out


async def test_the_in_memory_nav_store_answers_as_postgresql(store: TimescaleStore) -> None:
    await store.pool.execute(f"TRUNCATE {NAV_TABLES}")
    expected = await script(InMemoryStore())
    assert await script(store) == expected
    assert [r.z for r in expected[-2]] == [None, -2.0000000000000004, 0.1]
    assert expected[-2][0].spread == 48.5 / 50 - 1  # a double, stored and read back to the last bit


async def test_doubles_survive_the_numeric_column_to_the_last_bit(store: TimescaleStore) -> None:
    await store.pool.execute(f"TRUNCATE {NAV_TABLES}")
    rng = random.Random(5)
    values = [rng.gauss(0, 3) * 10 ** rng.randint(-12, 6) for _ in range(300)] + [5e-324, 1.7976931348623157e308]
    rows = [SpreadRow("R", T0 + timedelta(seconds=i), D(1), D(1), None, v, -v, None, Episode.FLAT, None)
            for i, v in enumerate(values)]
    await store.save_nav([], rows, [])
    back = await store.nav_spreads("R")
    assert [(r.spread, r.z) for r in back] == [(v, -v) for v in values]


async def test_a_concurrent_writer_of_the_same_version_loses(store: TimescaleStore, database_url: str) -> None:
    """Two workers that both read version 1 (a rebalance's overlap): exactly one save wins."""
    await store.pool.execute(f"TRUNCATE {NAV_TABLES}")
    await store.save_nav([PairWrite("P", 0, state("P", 1), Episode.FLAT)], [], [])
    other = TimescaleStore(database_url, max_pool_size=2)
    await other.start()
    try:
        outcomes = []
        for writer, n in ((store, 2), (other, 3)):
            try:
                await writer.save_nav([PairWrite("P", 1, state("P", n), Episode.FLAT)], [spread("P", n, 1.0)], [])
                outcomes.append("saved")
            except StaleNavState:
                outcomes.append("stale")
        assert outcomes == ["saved", "stale"]
        [row] = (await store.load_nav_pairs({"P": ""})).values()
        assert row.version == 2 and row.state == state("P", 2)
        assert [r.ts for r in await store.nav_spreads("P")] == [T0 + timedelta(seconds=2)]
    finally:
        await other.close()
