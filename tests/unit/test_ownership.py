"""Exactly one placement per order under scale-out, rebalances and restarts: the durable claim.

Two ExecutionServices over one store and one venue are two executor processes of one broker.
The store is the package's InMemoryStore (the same claim semantics as TimescaleStore, proven by
tests/contract/test_order_claims.py) on a shared ManualClock, so lease expiry is deterministic."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from decimal import Decimal as D

from adapters.paper import PaperAdapter
from execution.breaker import CircuitBreaker
from execution.fallback import CompositeBrokerAdapter
from execution.fill_tracker import FillTracker
from execution.ports import PlacementUnknown, VenueOrderStatus
from execution.risk import PreTradeLimits
from execution.router import BrokerRouter
from execution.service import ExecutionService
from schemas import Broker, Order, OrderRequest, OrderState
from tests.unit.fakes import (
    FakeClock,
    FakeMarketData,
    InMemoryOrderStore,
    RecordingEvents,
    ScriptedBroker,
    make_signal,
    venue_status,
)

LEASE = 30.0


class GatedVenue(ScriptedBroker):
    """A venue whose placements wait at a gate: a slow executor, still working its batch."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.gate.set()
        self.by_cid: dict[str, int] = {}

    async def place(self, order: Order) -> VenueOrderStatus:
        await self.gate.wait()
        self.by_cid[order.client_order_id] = self.by_cid.get(order.client_order_id, 0) + 1
        return await super().place(order)


def executor(store: InMemoryOrderStore, venue: ScriptedBroker | None, clock: FakeClock, name: str,
             paper: PaperAdapter | None = None) -> ExecutionService:
    sink = RecordingEvents()
    gateway = CompositeBrokerAdapter(venue, paper or PaperAdapter(), CircuitBreaker("binance", clock=clock),
                                     health_ttl=0.0, clock=clock)
    return ExecutionService(broker=gateway, store=store, sink=sink, tracker=FillTracker(store, sink, clock=clock),
                            limits=PreTradeLimits(D("1000"), D("100000000")), clock=clock,
                            executor=Broker.BINANCE, owner=name, lease_seconds=LEASE)


def requests(n: int, clock: FakeClock, **kw: object) -> list[OrderRequest]:
    return [BrokerRouter([Broker.BINANCE]).route(make_signal(signal_id=f"o-{i}", ts=clock.now(), **kw))
            for i in range(n)]


async def test_two_live_executors_never_place_the_same_order() -> None:
    """The race of issue 12: A is slow; the partition moves to B, which re-reads the same batch."""
    clock = FakeClock()
    store, venue = InMemoryOrderStore(clock), GatedVenue()
    a, b = executor(store, venue, clock, "A"), executor(store, venue, clock, "B")
    batch = requests(5, clock)
    venue.gate.clear()
    working = asyncio.create_task(a.handle(batch))
    await asyncio.sleep(0)  # A has claimed the batch and waits at the venue
    placed_by_b = await b.handle(batch)  # redelivered to B: the venue does not know them yet
    assert venue.by_cid == {} and placed_by_b == []
    venue.gate.set()
    await working
    assert sorted(venue.by_cid.values()) == [1] * 5
    await b.reconcile()  # and B's sweep leaves A's live claims alone
    assert sorted(venue.by_cid.values()) == [1] * 5 and b.tracker.open_count == 0


async def test_a_redelivered_copy_during_the_resolver_round_is_not_placed_again() -> None:
    clock = FakeClock()
    store, venue = InMemoryOrderStore(clock), GatedVenue()
    a = executor(store, venue, clock, "A")
    [request] = requests(1, clock)
    venue.on_place(PlacementUnknown("response lost"))
    await a.handle([request])
    cid = request.client_order_id
    assert a.unresolved == {cid} and venue.by_cid == {cid: 1}
    venue.known.pop(cid, None)  # the venue never got it: whoever asks next will (rightly) place it
    venue.gate.clear()
    resolving = asyncio.create_task(a.retry_unresolved())
    await asyncio.sleep(0)
    await a.handle([request])  # the redelivered copy, while the resolver works on it
    venue.gate.set()
    await resolving
    assert venue.by_cid == {cid: 2}  # the first (lost) try and exactly one re-placement


async def test_a_dead_executors_resting_orders_are_taken_over_after_the_lease_only() -> None:
    clock = FakeClock()
    store, venue = InMemoryOrderStore(clock), GatedVenue()
    a, b = executor(store, venue, clock, "A"), executor(store, venue, clock, "B")
    batch = requests(3, clock, order_type="LIMIT", limit_price=D("90"))
    await a.handle(batch)
    assert a.tracker.open_count == 3
    clock.advance(LEASE / 2)
    assert (await b.sweep()).checked == 0  # A's claims are live
    clock.advance(LEASE)  # A died (no renewal): its claims expire
    report = await b.sweep()
    assert (report.checked, report.replaced) == (3, 0)  # the venue knows them: resumed, not re-sent
    assert b.tracker.open_count == 3 and sum(venue.by_cid.values()) == 3
    cid = batch[0].client_order_id
    venue.knows(venue_status(cid, OrderState.FILLED, filled="1", avg="90"))
    clock.advance(5)
    await b.tracker.poll_due()
    assert [f.client_order_id for f in b.sink.emitted_fills] == [cid]  # type: ignore[attr-defined]


async def test_a_paused_executor_loses_its_claims_and_stops_working_them() -> None:
    clock = FakeClock()
    store, venue = InMemoryOrderStore(clock), GatedVenue()
    a, b = executor(store, venue, clock, "A"), executor(store, venue, clock, "B")
    await a.handle(requests(2, clock, order_type="LIMIT", limit_price=D("90")))
    clock.advance(LEASE + 1)  # A was paused past its lease
    await b.sweep()
    assert b.tracker.open_count == 2
    assert await a.renew() == 2 and a.tracker.open_count == 0
    # and a paused executor does not place before its claims are confirmed again
    [late] = requests(1, clock)
    clock.advance(LEASE)
    [order] = await b.handle([late.model_copy(update={"client_order_id": "fresh-1"})])
    assert order.state is OrderState.SUBMITTED


async def test_a_renewing_executor_keeps_its_orders() -> None:
    clock = FakeClock()
    store, venue = InMemoryOrderStore(clock), GatedVenue()
    a, b = executor(store, venue, clock, "A"), executor(store, venue, clock, "B")
    await a.handle(requests(2, clock, order_type="LIMIT", limit_price=D("90")))
    for _ in range(6):
        clock.advance(LEASE / 3)
        assert await a.renew() == 0
        assert (await b.sweep()).checked == 0
    assert a.tracker.open_count == 2 and b.tracker.open_count == 0


async def test_orders_rerouted_to_paper_are_watched_by_their_topics_executor_after_a_restart() -> None:
    clock = FakeClock()
    data = FakeMarketData()
    data.set_mid("BTC-USDT", "100")
    store = InMemoryOrderStore(clock)
    down = ScriptedBroker(healthy=False)
    a = executor(store, down, clock, "A", paper=PaperAdapter(market_data=data))
    [request] = requests(1, clock, order_type="LIMIT", limit_price=D("90"), reference_price=None)
    [order] = await a.handle([request])
    assert (order.broker, order.rerouted_from, order.state) == (Broker.PAPER, Broker.BINANCE, OrderState.SUBMITTED)
    clock.advance(LEASE + 1)  # A died with the order resting on its (in-memory) paper book
    b = executor(store, down, clock, "B", paper=PaperAdapter(market_data=data))
    report = await b.sweep()
    assert (report.checked, report.replaced) == (1, 1)  # unknown to B's paper: placed there again
    data.set_mid("BTC-USDT", "89")
    clock.advance(2)
    await b.tracker.poll_due()
    [fill] = b.sink.emitted_fills  # type: ignore[attr-defined]
    assert (fill.client_order_id, fill.broker) == (request.client_order_id, Broker.PAPER)


async def test_a_stale_signal_expires_and_is_never_placed() -> None:
    clock = FakeClock()
    store, venue = InMemoryOrderStore(clock), GatedVenue()
    a = executor(store, venue, clock, "A")
    [old] = requests(1, clock)
    clock.advance(301)
    [order] = await a.handle([old])
    assert order.state is OrderState.EXPIRED and "ORDER_MAX_AGE" in order.reason
    assert venue.by_cid == {}
    [fresh] = [r.model_copy(update={"client_order_id": "fresh-2", "ts": clock.now() - timedelta(seconds=5)})
               for r in requests(1, clock)]
    [placed] = await a.handle([fresh])
    assert placed.state is OrderState.SUBMITTED and venue.by_cid == {"fresh-2": 1}


class StepVenue(GatedVenue):
    """Lets ``allow`` placements through, then holds the next one (only that one) at the gate
    until the test opens it: a slow venue answer."""

    def __init__(self, allow: int) -> None:
        super().__init__()
        self.allow = allow
        self.held = False

    async def place(self, order: Order) -> VenueOrderStatus:
        if self.allow > 0:
            self.allow -= 1
        elif not self.held:
            self.held = True
            self.gate.clear()
        return await super().place(order)


async def test_a_claim_confirmed_for_other_orders_never_lets_an_unconfirmed_one_be_placed() -> None:
    """The chaos drill's duplicate: X sweeps a dead executor's backlog and works through it
    slowly; meanwhile a batch of X's own confirms X's claims on *its* orders, which must not
    count for the swept ones, whose claims nothing renewed. X stops placing them; Y takes them
    over once they lapse, and every order is placed exactly once."""
    clock = FakeClock()
    store, venue = InMemoryOrderStore(clock), StepVenue(allow=1)
    x, y = executor(store, venue, clock, "X"), executor(store, venue, clock, "Y")
    backlog = requests(4, clock)  # one symbol: placed one after another
    await store.claim_orders([Order.from_request(r, at=clock.now()) for r in backlog], owner="DEAD",
                             lease_seconds=LEASE)
    clock.advance(LEASE + 1)  # the owner died; its claims lapsed
    sweep = asyncio.create_task(x.sweep())  # X claims all four, places the first, the second waits
    await asyncio.sleep(0.01)
    clock.advance(LEASE * 2 / 3 + 1)  # past the margin of the swept claims (nothing renewed them)
    [own] = requests(1, clock, symbol="ETH-USDT")
    own = own.model_copy(update={"signal_id": "own-1", "client_order_id": "own-1"})
    await asyncio.wait_for(asyncio.gather(x.handle([own]), _open_gate_soon(venue)), 5)
    await asyncio.wait_for(sweep, 5)
    ids = [r.client_order_id for r in backlog]
    # the first placed, the second already on its way when the margin passed, the rest left
    assert sorted(venue.by_cid.get(cid, 0) for cid in ids) == [0, 0, 1, 1]
    assert venue.by_cid["own-1"] == 1

    clock.advance(LEASE)  # X's claims on the last two lapse; Y's sweep takes them
    await y.sweep()
    assert [venue.by_cid.get(cid, 0) for cid in ids] == [1, 1, 1, 1]


async def _open_gate_soon(venue: GatedVenue) -> None:
    await asyncio.sleep(0.01)
    venue.gate.set()
