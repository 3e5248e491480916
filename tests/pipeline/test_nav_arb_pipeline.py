"""The NAV-arbitrage agent end to end (issue 15): quotes on ``nav.quotes`` -> real ``superintel
worker`` processes on a private Tansu, PostgreSQL and Redis -> two-leg trades through the router,
the executors (paper for GBTC, the Binance simulator over ccxt for BTC-USDT) and the fill writers;
leg risk; and a worker killed -9 mid-window whose restart gives the uninterrupted run's z-scores
and decisions, computed here with execution/nav_arb.py directly."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from agents.nav_arb import changelog_topic_name
from execution.nav_arb import Decision, Episode, NavArbParams, PairState, fingerprint, spread_of
from schemas import NavQuote
from streams.topics import NAV_QUOTES
from tests.fixtures.binance import SIM_API_KEY, SIM_API_SECRET, STILL
from tests.pipeline.harness import FillSubscriber, Pipeline, eventually, pipeline
from tests.pipeline.test_pipeline import assert_books_balance
from venues.binance import BinanceSimulator

pytestmark = pytest.mark.pipeline
REDIS = "redis://127.0.0.1:6379/5"
PAIR = "GBTC-BTC"
HOLDINGS = D("0.00089")  # BTC per GBTC share
BTC = D("60000.00")  # the simulator's BTC-USDT
NAV = (HOLDINGS * BTC).quantize(D("0.0001"))  # 53.4
WINDOW, MIN_OBS = 20, 10
ENV = {"NAV_ARB_WINDOW": str(WINDOW), "NAV_ARB_MIN_OBS": str(MIN_OBS), "NAV_ARB_TRUST_QTY": "100"}
PARAMS = NavArbParams(window=WINDOW, min_obs=MIN_OBS)
SPOT_QTY = D("0.08900")  # 100 x 53.4 / 60000, on the 0.00001 step


class AnyOrder(set[str]):
    """Every client order id (Redis pub/sub is server-wide: the test filters by its own ids after)."""

    def __contains__(self, item: object) -> bool:
        return True


@dataclass
class Feed:
    """Quotes of one pair with strictly increasing timestamps near now (a leg's signal ts is its
    quote's ts, and ORDER_MAX_AGE expires old signals), from spreads around NAV."""

    start: datetime
    n: int = 0

    def quotes(self, spreads: Sequence[float]) -> list[NavQuote]:
        out = []
        for s in spreads:
            out.append(NavQuote(pair=PAIR, trust_symbol="GBTC", spot_symbol="BTC-USDT",
                                trust_price=(NAV * (1 + D(repr(s)))).quantize(D("0.0001")), nav_per_share=NAV,
                                spot_price=BTC, ts=self.start + timedelta(milliseconds=50 * self.n)))
            self.n += 1
        return out


def calm(n: int, seed: int) -> list[float]:
    rng = random.Random(seed)
    return [round(rng.gauss(0, 0.002), 5) for _ in range(n)]


async def publish(pipe: Pipeline, quotes: Sequence[NavQuote]) -> None:
    """As a feeder would: keyed by pair, each delivery confirmed (a lost quote fails here, loudly)."""
    producer = await pipe.producer()
    deliveries = [await producer.send(NAV_QUOTES, key=q.pair.encode(), value=q.to_bytes()) for q in quotes]
    await asyncio.gather(*deliveries)


async def spreads(pipe: Pipeline) -> list[Any]:
    return await pipe.sql("SELECT ts, spread, zscore, decision, episode, group_id, recorded_at FROM nav_spreads "
                          "WHERE pair = $1 ORDER BY ts", PAIR)


async def episode(pipe: Pipeline) -> str | None:
    rows = await pipe.sql("SELECT episode FROM nav_pairs WHERE pair = $1", PAIR)
    return rows[0]["episode"] if rows else None


async def wait_observed(pipe: Pipeline, n: int, timeout: float = 90.0, feed: Feed | None = None) -> None:
    async def enough() -> bool:
        return len(await spreads(pipe)) >= n

    async def detail() -> str:
        rows = await spreads(pipe)
        seen = f"{len(rows)} rows"
        if feed is not None:
            index = {feed.start + timedelta(milliseconds=50 * i): i for i in range(feed.n)}
            missing = sorted(set(range(feed.n)) - {index.get(r["ts"], -1) for r in rows})
            seen += f"; quotes not observed: {missing}"
        return seen + "\n" + "\n".join(w.tail(30) for w in pipe.workers)

    await eventually(enough, timeout, f"{n} observations in nav_spreads", detail)


async def wait_episode(pipe: Pipeline, wanted: str, timeout: float = 90.0) -> None:
    async def there() -> bool:
        return await episode(pipe) == wanted

    async def detail() -> str:
        orders = await pipe.sql("SELECT symbol, side, quantity, broker, state, reason FROM orders ORDER BY created_at")
        eps = await pipe.sql("SELECT previous, episode, reason FROM nav_episodes ORDER BY id")
        return (f"episode {await episode(pipe)}; orders {[dict(o) for o in orders]}; "
                f"episodes {[dict(e) for e in eps]}\n" + "\n".join(w.tail(30) for w in pipe.workers))

    await eventually(there, timeout, f"the pair {wanted}", detail)


async def nav_orders(pipe: Pipeline) -> list[Any]:
    return await pipe.sql("SELECT * FROM orders WHERE strategy = 'nav-arb' ORDER BY created_at, symbol")


@pytest_asyncio.fixture(loop_scope="session")
async def sim() -> AsyncIterator[BinanceSimulator]:
    simulator = BinanceSimulator(api_key=SIM_API_KEY, api_secret=SIM_API_SECRET, price_path=STILL)
    await simulator.start()
    yield simulator
    await simulator.stop()


def binance_env(sim: BinanceSimulator) -> dict[str, str]:
    return {"BINANCE_ENABLED": "true", "BINANCE_BASE_URL": sim.base_url, "BINANCE_API_KEY": SIM_API_KEY,
            "BINANCE_API_SECRET": SIM_API_SECRET, "BINANCE_POLL_INTERVAL": "0.2"}


async def test_each_direction_opens_and_closes_with_two_legs_per_decision(
        database_url: str, tmp_path: Path, sim: BinanceSimulator) -> None:
    feed = Feed(datetime.now(UTC))
    async with pipeline(database_url, REDIS, tmp_path, **ENV, **binance_env(sim)) as pipe:
        subscriber = FillSubscriber(pipe.redis_url, AnyOrder())  # the legs' ids are known only later
        await subscriber.start()
        try:
            await pipe.ready_worker()
            # premium: enter short trust / long spot, then back to calm: exit
            await publish(pipe, feed.quotes([*calm(WINDOW, 1), 0.03]))
            await wait_episode(pipe, "IN_POSITION")
            await publish(pipe, feed.quotes(calm(3, 2)))
            await wait_episode(pipe, "FLAT")
            # discount: enter long trust / short spot, then exit
            await publish(pipe, feed.quotes([*calm(WINDOW, 3), -0.03]))
            await wait_episode(pipe, "IN_POSITION")
            await publish(pipe, feed.quotes(calm(3, 4)))
            await wait_episode(pipe, "FLAT")
            orders = await nav_orders(pipe)
            ids = {o["client_order_id"] for o in orders}
            rows = await spreads(pipe)
            # a redelivered quote (the first entry's) and, after it, one that proves both were read
            entry = next(r for r in rows if r["decision"] == "SHORT_TRUST_LONG_SPOT")
            replay = [q for q in Feed(feed.start, 0).quotes([*calm(WINDOW, 1), 0.03]) if q.ts == entry["ts"]]
            await publish(pipe, [*replay, *feed.quotes([0.0])])
            await wait_observed(pipe, len(rows) + 1)

            async def fills_on_redis() -> bool:
                return len({f.client_order_id for f in subscriber.fills} & ids) >= len(orders)

            await eventually(fills_on_redis, 60, "the legs' fills on Redis")
        finally:
            await subscriber.stop()

        rows = await spreads(pipe)
        decisions = [r["decision"] for r in rows if r["decision"]]
        assert decisions == ["SHORT_TRUST_LONG_SPOT", "EXIT", "LONG_TRUST_SHORT_SPOT", "EXIT"]
        assert len(rows) == len({r["ts"] for r in rows}) == feed.n  # one row per quote, the replay none
        orders = await nav_orders(pipe)
        assert len(orders) == 8, [dict(o) for o in orders]  # exactly two legs per decision
        groups: dict[str, list[Any]] = {}
        for o in orders:
            groups.setdefault(o["group_id"], []).append(o)
        assert len(groups) == 4 and all(len(legs) == 2 for legs in groups.values())
        decided = {r["group_id"]: r["decision"] for r in rows if r["group_id"]}
        assert [decided[g] for g in groups] == decisions  # each decision's quote row names its legs' group
        expected_sides = {"SHORT_TRUST_LONG_SPOT": {"GBTC": "SELL", "BTC-USDT": "BUY"},
                          "LONG_TRUST_SHORT_SPOT": {"GBTC": "BUY", "BTC-USDT": "SELL"}}
        entry_sides: dict[str, str] = {}
        for group, legs in groups.items():
            if decided[group] == "EXIT":  # closes the position the entry before it opened
                expected_sides["EXIT"] = {s: "BUY" if side == "SELL" else "SELL" for s, side in entry_sides.items()}
            else:
                entry_sides = expected_sides[decided[group]]
            by_symbol = {o["symbol"]: o for o in legs}
            assert set(by_symbol) == {"GBTC", "BTC-USDT"}
            assert (by_symbol["GBTC"]["quantity"], by_symbol["BTC-USDT"]["quantity"]) == (D(100), SPOT_QTY)
            # GBTC is EQUITY -> IBKR, not configured here: paper, the reason kept; BTC-USDT on Binance
            assert (by_symbol["GBTC"]["broker"], by_symbol["GBTC"]["rerouted_from"]) == ("paper", "ibkr")
            assert (by_symbol["BTC-USDT"]["broker"], by_symbol["BTC-USDT"]["rerouted_from"]) == ("binance", None)
            assert all(o["state"] == "FILLED" and o["filled_quantity"] == o["quantity"] for o in legs)
            assert {s: o["side"] for s, o in by_symbol.items()} == expected_sides[decided[group]]
            # each leg's signal ts is its deciding quote's ts
            assert all(o["ts"] == next(r["ts"] for r in rows if r["group_id"] == group) for o in legs)
            for o in legs:  # the venue placed each leg once, with our id
                if o["broker"] == "binance":
                    assert len(sim.engine.orders_for(o["client_order_id"])) == 1
        fills = await pipe.sql("SELECT client_order_id, quantity FROM fills WHERE strategy = 'nav-arb'")
        assert sorted(f["client_order_id"] for f in fills) == sorted(o["client_order_id"] for o in orders)
        # every leg's fill reached Redis, once each
        assert sorted(f.client_order_id for f in subscriber.fills if f.client_order_id in ids) == sorted(ids)
        positions = {(p["broker"], p["symbol"]): p["quantity"] for p in await pipe.sql("SELECT * FROM positions")}
        assert positions.get(("paper", "GBTC"), D(0)) == 0 and positions.get(("binance", "BTC-USDT"), D(0)) == 0
        await assert_books_balance(pipe)
        episodes = [(e["previous"], e["episode"]) for e in await pipe.sql("SELECT * FROM nav_episodes ORDER BY id")]
        assert episodes == [("FLAT", "ENTERING"), ("ENTERING", "IN_POSITION"), ("IN_POSITION", "EXITING"),
                            ("EXITING", "FLAT")] * 2


async def test_one_leg_rejected_unwinds_the_other_and_the_pair_reenters_only_after(
        database_url: str, tmp_path: Path, sim: BinanceSimulator) -> None:
    feed = Feed(datetime.now(UTC))
    sim.engine.set_balance("BTC", D(0))  # the spot account holds no BTC: the spot sell is refused
    try:
        async with pipeline(database_url, REDIS, tmp_path, **ENV, **binance_env(sim)) as pipe:
            await pipe.ready_worker()
            # a discount, then more extreme quotes right behind it: they arrive while the pair is
            # entering / unwinding, and must not enter again
            await publish(pipe, feed.quotes([*calm(WINDOW, 5), -0.03, -0.045, -0.06, -0.08]))

            async def unwound() -> bool:
                eps = await pipe.sql("SELECT episode FROM nav_episodes ORDER BY id")
                return [e["episode"] for e in eps][-1:] == ["FLAT"] and len(eps) >= 3

            await eventually(unwound, 90, "the unwind to fill and the pair to be flat")
            sim.engine.set_balance("BTC", D(10))
            await publish(pipe, feed.quotes([*calm(WINDOW, 6), -0.03]))
            await wait_episode(pipe, "IN_POSITION")
            rows = await spreads(pipe)
            orders = await nav_orders(pipe)
            episodes = await pipe.sql("SELECT * FROM nav_episodes ORDER BY id")
    finally:
        sim.engine.set_balance("BTC", D(10))

    entries = [r for r in rows if r["decision"] == "LONG_TRUST_SHORT_SPOT"]
    assert len(entries) == 2, [(r["decision"], r["episode"]) for r in rows]
    first, second = entries
    by_group: dict[str, dict[str, Any]] = {}
    for o in orders:
        by_group.setdefault(o["group_id"], {})[f'{o["symbol"]}/{o["side"]}'] = o
    failed = by_group[first["group_id"]]
    assert failed["GBTC/BUY"]["state"] == "FILLED" and failed["BTC-USDT/SELL"]["state"] == "REJECTED"
    assert "insufficient balance" in failed["BTC-USDT/SELL"]["reason"]
    unwind = failed["GBTC/SELL"]  # the filled leg closed with an opposite market order, same group
    assert (unwind["quantity"], unwind["state"], unwind["broker"]) == (D(100), "FILLED", "paper")
    assert len(failed) == 3
    ok = by_group[second["group_id"]]
    assert {k: o["state"] for k, o in ok.items()} == {"GBTC/BUY": "FILLED", "BTC-USDT/SELL": "FILLED"}
    seen = [(e["previous"], e["episode"]) for e in episodes]
    assert seen == [("FLAT", "ENTERING"), ("ENTERING", "UNWINDING"), ("UNWINDING", "FLAT"),
                    ("FLAT", "ENTERING"), ("ENTERING", "IN_POSITION")]
    assert "REJECTED" in episodes[1]["reason"] and "insufficient balance" in episodes[1]["reason"]
    legs = json.loads(episodes[1]["legs"]) if isinstance(episodes[1]["legs"], str) else episodes[1]["legs"]
    assert [leg["name"] for leg in legs] == ["trust"]  # the unwind: the trust leg only
    # the pair re-entered only after the unwind filled: the second entry's quote was processed
    # after the FLAT was recorded, and every quote in between was flat-lined (no decision)
    flat_at = episodes[2]["recorded_at"]
    between = [r for r in rows if first["ts"] < r["ts"] < second["ts"]]
    assert between and all(r["decision"] is None for r in between)
    assert second["recorded_at"] >= flat_at


def expected_series(phases: Sequence[Sequence[NavQuote]]) -> list[tuple[float | None, Decision | None]]:
    """The uninterrupted run, from execution/nav_arb.py alone: quotes applied in order, each
    phase's legs filled before the next phase (the test waits for that in the pipeline too)."""
    state = PairState.new(PAIR, PARAMS)
    out: list[tuple[float | None, Decision | None]] = []
    for quotes in phases:
        for q in quotes:
            obs = state.observe(q.ts, spread_of(q.trust_price, q.nav_per_share), PARAMS)
            assert obs is not None
            out.append((obs.z, obs.decision))
            if obs.decision in (Decision.LONG_TRUST_SHORT_SPOT, Decision.SHORT_TRUST_LONG_SPOT):
                state.episode = Episode.IN_POSITION
            elif obs.decision is Decision.EXIT:
                state.episode = Episode.FLAT
    return out


async def test_a_worker_killed_mid_window_resumes_with_the_uninterrupted_z_scores(
        database_url: str, tmp_path: Path) -> None:
    feed = Feed(datetime.now(UTC))
    warmup = feed.quotes(calm(30, 7))
    entry = feed.quotes([*calm(5, 8), 0.035])
    exit_ = feed.quotes(calm(12, 10))
    second = feed.quotes([*calm(WINDOW, 11), -0.04])
    close = feed.quotes(calm(6, 12))
    expected = expected_series([warmup, entry, exit_, second, close])
    async with pipeline(database_url, REDIS, tmp_path, **ENV) as pipe:
        worker = await pipe.ready_worker()
        await publish(pipe, warmup[:18])
        await wait_observed(pipe, 12)
        worker.kill()  # mid-window: the window (20) not even full, offsets and table wherever they were
        killed_at = len(await spreads(pipe))
        # The worst a changelog can do: its last record for the pair is an old state (what a
        # recovery that stopped at lagging end offsets, or lost changelog writes, would leave).
        stale = PairState.new(PAIR, PARAMS)
        stale.observe(warmup[0].ts, spread_of(warmup[0].trust_price, warmup[0].nav_per_share), PARAMS)
        producer = await pipe.producer()
        await producer.send_and_wait(changelog_topic_name(pipe.app_id), key=PAIR.encode(),
                                     value=json.dumps({"version": 1, "fingerprint": fingerprint(stale.to_dict()),
                                                       "state": stale.to_dict()}).encode())
        await publish(pipe, [*warmup[18:], *entry])  # published while no worker runs
        worker = await pipe.ready_worker()
        await wait_episode(pipe, "IN_POSITION")
        assert "the cached state (version 1) is not the database's" in worker.log_path.read_text()
        await publish(pipe, exit_[:5])
        await wait_observed(pipe, len(warmup) + len(entry) + 2)
        worker.kill()  # again, this time in a position, with its exit about to be decided
        await publish(pipe, exit_[5:])
        await pipe.ready_worker()
        await wait_episode(pipe, "FLAT")
        await publish(pipe, second)
        await wait_episode(pipe, "IN_POSITION")
        await publish(pipe, close)
        await wait_episode(pipe, "FLAT")
        await wait_observed(pipe, feed.n, feed=feed)
        rows = await spreads(pipe)
        orders = await nav_orders(pipe)

    assert 12 <= killed_at < 18 or killed_at == 18
    got = [(None if r["zscore"] is None else float(r["zscore"]), Decision(r["decision"]) if r["decision"] else None)
           for r in rows]
    assert len(got) == feed.n
    assert got == expected  # every z-score to the last bit, every decision at the same quote
    assert [d for _, d in got if d] == [Decision.SHORT_TRUST_LONG_SPOT, Decision.EXIT,
                                        Decision.LONG_TRUST_SHORT_SPOT, Decision.EXIT]
    assert len(orders) == 8 and all(o["state"] == "FILLED" for o in orders)  # nothing traded twice
