"""InMemoryStore (adapters/memory.py) and TimescaleStore give the same answers to the same writes.

Each scenario is a script of store calls. It runs once on a fresh in-memory store and once on a
freshly truncated PostgreSQL one, both stamping with clocks that tick alike, and the transcripts
(every call's answer, then everything readable) must be equal. A replay or unit test composed on
the in-memory store then sees what production would have seen.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import pytest_asyncio

from adapters.memory import InMemoryStore
from adapters.timescale import TimescaleStore
from execution.ports import ClaimResult, FillFee
from schemas import AssetClass, Broker, Fill, Order, OrderEvent, OrderState, Side, client_order_id_for
from tests.fixtures.storage import STORE_TABLES

D = Decimal
T0 = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)

Store = InMemoryStore | TimescaleStore
#: long enough that no claim of a scenario expires while it runs
LEASE = 600.0
Step = tuple[str, Any]


class TickingClock:
    """Each reading is one second after the previous: equal sequences of calls, equal stamps."""

    def __init__(self) -> None:
        self._ticks = 0

    def now(self) -> datetime:
        self._ticks += 1
        return T0 + timedelta(hours=1, seconds=self._ticks)


def order(n: int, symbol: str = "BTC-USDT", side: Side = Side.BUY, quantity: str = "1",
          broker: Broker = Broker.PAPER) -> Order:
    signal_id = f"parity-{n}"
    at = T0 + timedelta(seconds=n)
    return Order(signal_id=signal_id, client_order_id=client_order_id_for(signal_id), symbol=symbol, side=side,
                 quantity=D(quantity), broker=broker, asset_class=AssetClass.CRYPTO, ts=T0, routed_at=at,
                 created_at=at, updated_at=at)


_fill_seq = iter(range(1_000_000))


def fill(of: Order, cumulative: str, price: str, exec_id: str, quantity: str | None = None,
         notional: str | None = None) -> Fill:
    return Fill(exec_id=exec_id, cumulative_quantity=D(cumulative), quantity=D(quantity or cumulative),
                client_order_id=of.client_order_id, venue_order_id=f"V-{of.signal_id}", broker=of.broker,
                symbol=of.symbol, asset_class=of.asset_class, side=of.side, price=D(price),
                ts=T0 + timedelta(minutes=1, milliseconds=next(_fill_seq)), signal_ts=T0,
                cumulative_notional=None if notional is None else D(notional))


def move(current: Order, state: OrderState, minute: int, **changes: Any) -> tuple[Order, OrderEvent]:
    moved = current.transition(state, at=T0 + timedelta(minutes=minute), **changes)
    return moved, OrderEvent.of(moved, current.state)


@dataclass(frozen=True)
class Scenario:
    name: str
    orders: list[Order]
    steps: list[Step]
    #: a check on the transcript, so a scenario in which nothing happens cannot pass unnoticed
    check: Callable[[dict[str, Any]], bool]


def _scenarios() -> list[Scenario]:
    a, b, c = order(1), order(2), order(3, quantity="2")
    watermark = Scenario("watermark", [a, b], [
        ("insert", [a, b, a]),
        ("fills", [fill(a, "0.4", "100", "a1"), fill(a, "0.4", "100", "a1")]),  # same exec id twice
        ("fills", [fill(a, "0.4", "100", "a1-again")]),  # re-emitted under a new id
        ("fills", [fill(a, "0.2", "99", "a0")]),  # stale
        ("fills", [fill(a, "1", "110", "a2", quantity="0.3"),  # covers a lost fill
                   fill(b, "0.8", "104", "b2", quantity="0.3"), fill(b, "0.5", "102", "b1", quantity="0.2")]),
        ("insert", [a]),
    ], lambda t: t["fill_count"] == 3 and t["orders"][a.client_order_id].state is OrderState.FILLED)

    to_submitted = move(c, OrderState.SUBMITTED, 2, venue_order_id="V-c")
    submitted = to_submitted[0]
    late = Scenario("late fill, stale transition, orphan", [c], [
        ("insert", [c]),
        ("save", [to_submitted, move(submitted, OrderState.CANCELLED, 3, reason="user cancel")]),
        ("save", [move(submitted, OrderState.PARTIALLY_FILLED, 4)]),  # terminal: only audited
        ("fills", [fill(c, "0.25", "100", "c1")]),  # late fill on a cancelled order
        ("fills", [fill(order(9), "2", "20", "ghost-1")]),  # no order row
        ("fills", [fill(order(9), "2", "20", "ghost-2"), fill(order(9), "3", "26", "ghost-3", quantity="1")]),
    ], lambda t: t["orders"][c.client_order_id].filled_quantity == D("0.25") and t["fill_count"] == 3)

    d = order(4)
    backwards = Scenario("a stale transition never moves an order backwards", [d], [
        ("insert", [d]),
        ("fills", [fill(d, "0.4", "100", "d1")]),
        ("save", [move(d, OrderState.SUBMITTED, 5, venue_order_id="V-d9")]),
        ("look", [d]),  # still PARTIALLY_FILLED, with the venue id
        ("save", [move(d.model_copy(update={"state": OrderState.SUBMITTED}), OrderState.REJECTED, 6,
                       reason="too late")]),
    ], lambda t: t["answers"][3][d.client_order_id].state is OrderState.PARTIALLY_FILLED
       and t["orders"][d.client_order_id].state is OrderState.REJECTED)

    symbol = "ETH-USDT"
    legs = [order(10, symbol, Side.BUY, "2"), order(11, symbol, Side.BUY, "1"), order(12, symbol, Side.SELL, "1.5"),
            order(13, symbol, Side.SELL, "2.5"), order(14, symbol, Side.BUY, "1"),
            order(15, symbol, Side.SELL, "0.7", broker=Broker.BINANCE)]
    positions = Scenario("average-cost positions across a flip", legs, [
        ("insert", legs),
        ("fills", [fill(legs[0], "2", "100", "p0"), fill(legs[1], "1", "130", "p1")]),
        ("fills", [fill(legs[2], "1.5", "120", "p2")]),
        ("fills", [fill(legs[3], "2.5", "100", "p3"), fill(legs[5], "0.7", "3000", "p5")]),
        ("fills", [fill(legs[4], "0.3", "93", "p4a"), fill(legs[4], "1", "88.7", "p4b", quantity="0.7")]),
    ], lambda t: [(p.broker, p.quantity) for p in t["positions"]] == [(Broker.BINANCE, D("-0.7")),
                                                                       (Broker.PAPER, D("0"))])

    e = order(20)
    fees = Scenario("late fees, before and after their fill", [e], [
        ("insert", [e]),
        ("fees", [FillFee(Broker.PAPER, "e2", D("0.2"), "USD")]),  # before its fill is recorded
        ("fills", [fill(e, "0.5", "10", "e1"), fill(e, "1", "10", "e2", quantity="0.5")]),
        ("fees", [FillFee(Broker.PAPER, "e1", D("0.1")), FillFee(Broker.PAPER, "e1", D("0.15"), "USD")]),
        ("fees", [FillFee(Broker.PAPER, "e1", D("0.15"), "USD")]),  # again: same value
    ], lambda t: [f.commission for f in t["fills"]] == [D("0.15"), D("0.2")])

    k, m, n = order(30, broker=Broker.BINANCE), order(31, broker=Broker.BINANCE), order(32, broker=Broker.BINANCE)
    rerouted = m.rerouted(Broker.PAPER, "binance circuit open", at=T0 + timedelta(minutes=7))
    # Claims come after every write the stores stamp with their clocks: the in-memory store reads
    # its clock for leases, PostgreSQL reads now(), so later stamps would tick apart.
    ownership = Scenario("claims, renewals, release and the executor's sweep", [k, m, n], [
        ("insert", [k]),  # unowned
        ("claim", ([k, m, n, m], "A")),  # m, n inserted owned by A; k taken over
        ("claim", ([k, m], "B")),  # A's and live: nothing
        ("save", [(rerouted, OrderEvent.of(rerouted, m.state)), move(n, OrderState.CANCELLED, 8, reason="x")]),
        ("renew", ("A", [k, m, n])),  # n is terminal: its claim went with it
        ("release", ("A", [k, m])),
        ("sweep", (Broker.PAPER, "B")),  # m is at paper now, but came from orders.binance
        ("sweep", (Broker.BINANCE, "B")),
        ("claim", ([k, n], "C")),  # B's, and terminal
    ], lambda t: [(o.client_order_id, o.broker) for o in t["answers"][7]] == [
        (k.client_order_id, Broker.BINANCE), (m.client_order_id, Broker.PAPER)]
       and t["answers"][1] == ClaimResult(frozenset({m.client_order_id, n.client_order_id}),
                                          frozenset({k.client_order_id}))
       and t["answers"][4] == {k.client_order_id, m.client_order_id} and t["answers"][8].claimed == frozenset())

    # issue 12, "Books": fills carrying the cumulative notional price any gap from the store's
    # own watermark (g: a restarted tracker's 1.0 @ 101 after 0.5 @ 100; h: the first fill never
    # arrived); i: the same as g from a producer without the notional, applied as before (100.5)
    g, h, i = order(40, "SOL-USDT"), order(41, "SOL-USDT"), order(42, "ADA-USDT")
    gaps = Scenario("gaps priced by the cumulative notional", [g, h, i], [
        ("insert", [g, h, i]),
        ("fills", [fill(g, "0.5", "100", "g1", notional="50"), fill(i, "0.5", "100", "i1")]),
        ("fills", [fill(g, "1", "101", "g2", notional="101"), fill(h, "1", "102", "h2", quantity="0.5",
                                                                   notional="101"),
                   fill(i, "1", "101", "i2")]),
        ("fills", [fill(g, "0.5", "100", "g1-again", notional="50")]),
    ], lambda t: [t["orders"][o.client_order_id].avg_fill_price for o in (g, h, i)] == [D("101"), D("101"), D("100.5")]
       and [(p.symbol, p.quantity, p.avg_price) for p in t["positions"]] == [
           ("ADA-USDT", D("1"), D("100.5")), ("SOL-USDT", D("2"), D("101"))]
       and [(f.quantity, f.price, f.cumulative_notional) for f in t["fills_by_order"][g.client_order_id]] == [
           (D("0.5"), D("100"), D("50")), (D("0.5"), D("102"), D("101"))])

    return [watermark, late, backwards, positions, fees, ownership, gaps]


SCENARIOS = _scenarios()


async def transcript(store: Store, scenario: Scenario) -> dict[str, Any]:
    answers: list[Any] = []
    for kind, arg in scenario.steps:
        if kind == "insert":
            answers.append(await store.insert_orders(arg))
        elif kind == "save":
            await store.save_transitions(arg)
            answers.append(None)
        elif kind == "fills":
            answers.append(await store.apply_fills(arg))
        elif kind == "fees":
            await store.record_fees(arg)
            answers.append(None)
        elif kind == "claim":
            answers.append(await store.claim_orders(arg[0], owner=arg[1], lease_seconds=LEASE))
        elif kind == "renew":
            answers.append(await store.renew_claims(owner=arg[0], client_order_ids=[o.client_order_id for o in arg[1]],
                                                    lease_seconds=LEASE))
        elif kind == "release":
            await store.release_claims(owner=arg[0], client_order_ids=[o.client_order_id for o in arg[1]])
            answers.append(None)
        elif kind == "sweep":
            answers.append(await store.claim_expired(arg[0], owner=arg[1], lease_seconds=LEASE))
        elif kind == "look":
            answers.append(await store.get_orders([o.client_order_id for o in arg]))
        else:
            raise AssertionError(kind)
    ids = sorted({o.client_order_id for o in scenario.orders} | {f.client_order_id for k, a in scenario.steps
                                                                   if k == "fills" for f in a})
    return {
        "answers": answers,
        "orders": await store.get_orders(ids),
        "events": {cid: await store.order_events(cid) for cid in ids},
        "open": {broker: await store.open_orders(broker) for broker in Broker},
        "positions": await store.positions(),
        "paper_positions": await store.positions(Broker.PAPER),
        "fills": await store.recorded_fills(),
        "fills_by_order": {cid: await store.recorded_fills(cid) for cid in ids},
        "fill_count": await store.fill_count(),
        "order_counts": await store.order_counts(),
    }


@pytest_asyncio.fixture(loop_scope="session")
async def timescale(database_url: str) -> AsyncIterator[TimescaleStore]:
    store = TimescaleStore(database_url, max_pool_size=2, now=TickingClock().now)
    await store.start()
    await store.pool.execute(f"TRUNCATE {', '.join(STORE_TABLES)}")
    try:
        yield store
    finally:
        await store.close()


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
async def test_in_memory_and_timescale_stores_agree(scenario: Scenario, timescale: TimescaleStore) -> None:
    expected = await transcript(timescale, scenario)
    assert scenario.check(expected), "the scenario did not do what it is about"
    got = await transcript(InMemoryStore(now=TickingClock().now), scenario)
    for key in expected:
        assert got[key] == expected[key], key
