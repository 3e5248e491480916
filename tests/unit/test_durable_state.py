"""Durable before advancing, and re-placing what a venue lost (issue 12).

* The FillTracker and the resolver advance their in-memory state only after the batch's writes
  succeeded: a failed flush leaves them where they were, so the same fill is derived again (and
  recognised downstream by its exec id and cumulative watermark), nothing pushed is lost, and no
  unresolved order is forgotten.
* A partly filled order the venue lost is placed again for its remainder only, and the order's
  fills never add up to more than its quantity; a refused re-placement costs that order (visibly,
  with the reason), never the executor or the other orders of its batch.

Deterministic: the package's InMemoryStore on a ManualClock, scripted venues, the real
PaperAdapter; failures are injected by the store and the event sink, once each, where told.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal as D

import pytest

from adapters.paper import PaperAdapter
from execution.breaker import CircuitBreaker
from execution.fallback import CompositeBrokerAdapter
from execution.fill_tracker import FillTracker, derive_fill
from execution.outcome import BatchOutcome
from execution.ports import (
    ExecutionEvents,
    OrderRejected,
    PlacementUnknown,
    UpdateListener,
    VenueExecution,
    VenueOrderStatus,
)
from execution.risk import PreTradeLimits
from execution.router import BrokerRouter
from execution.service import ExecutionService
from schemas import Broker, Fill, Order, OrderEvent, OrderRequest, OrderState
from tests.unit.fakes import (
    FakeClock,
    FakeMarketData,
    InMemoryOrderStore,
    RecordingEvents,
    ScriptedBroker,
    make_order,
    make_signal,
    venue_status,
)

LEASE = 30.0


class Down(ConnectionError):
    """What an unreachable database or broker raises here."""


class FlakyStore(InMemoryOrderStore):
    """The in-memory store (production semantics) whose writes or reads fail when told to."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__(clock)
        self.fail_saves = 0
        self.fail_reads = 0

    async def save_transitions(self, changes: Sequence[tuple[Order, OrderEvent]]) -> None:
        if self.fail_saves:
            self.fail_saves -= 1
            raise Down("database unreachable")
        await super().save_transitions(changes)

    async def get_orders(self, client_order_ids: Sequence[str]) -> dict[str, Order]:
        if self.fail_reads:
            self.fail_reads -= 1
            raise Down("database unreachable")
        return await super().get_orders(client_order_ids)


class WritingEvents(RecordingEvents):
    """The fills topic with its DB writer behind it (steps 6-7): every fill produced is applied
    to the store. ``fail_fills`` / ``fail_events`` make the next produce(s) fail."""

    def __init__(self, store: InMemoryOrderStore) -> None:
        super().__init__()
        self.store = store
        self.fail_fills = 0
        self.fail_events = 0

    async def fills(self, fills: Sequence[Fill]) -> None:
        if self.fail_fills:
            self.fail_fills -= 1
            raise Down("fills topic unreachable")
        await super().fills(fills)
        await self.store.apply_fills(fills)

    async def order_events(self, events: Sequence[OrderEvent]) -> None:
        if self.fail_events:
            self.fail_events -= 1
            raise Down("order-events topic unreachable")
        await super().order_events(events)


class Venue(ScriptedBroker):
    """A scripted venue that refuses some client order ids, and that can lose orders."""

    def __init__(self, **kw: object) -> None:
        super().__init__(**kw)  # type: ignore[arg-type]
        self.refuse: dict[str, str] = {}

    async def place(self, order: Order) -> VenueOrderStatus:
        if order.client_order_id in self.refuse:
            self.placed.append(order)
            raise OrderRejected(self.refuse[order.client_order_id])
        return await super().place(order)

    def lose(self, *cids: str) -> None:
        for cid in cids:
            self.known.pop(cid, None)


class CountingPaper(PaperAdapter):
    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.placed: list[Order] = []

    async def place(self, order: Order) -> VenueOrderStatus:
        self.placed.append(order)
        return await super().place(order)


def executor(store: InMemoryOrderStore, venue: ScriptedBroker, clock: FakeClock, name: str,
             sink: ExecutionEvents, paper: PaperAdapter | None = None) -> ExecutionService:
    gateway = CompositeBrokerAdapter(venue, paper or PaperAdapter(), CircuitBreaker("binance", clock=clock),
                                     health_ttl=0.0, clock=clock)
    return ExecutionService(broker=gateway, store=store, sink=sink, tracker=FillTracker(store, sink, clock=clock),
                            limits=PreTradeLimits(D("1000"), D("100000000")), clock=clock,
                            executor=Broker.BINANCE, owner=name, lease_seconds=LEASE)


def request(clock: FakeClock, signal_id: str, **kw: object) -> OrderRequest:
    return BrokerRouter([Broker.BINANCE]).route(make_signal(signal_id=signal_id, ts=clock.now(), **kw))


async def tracked(tracker: FillTracker, order: Order, venue: ScriptedBroker, store: InMemoryOrderStore,
                  sink: ExecutionEvents) -> None:
    """Hand ``order`` (resting, nothing filled) to the tracker, durably."""
    outcome = BatchOutcome(FakeClock())
    tracker.observe(order, venue_status(order, OrderState.SUBMITTED), venue, outcome)
    await outcome.flush(store, sink)


# ---- the tracker: a failed flush advances nothing --------------------------------------------------


async def test_a_poll_whose_database_write_fails_derives_the_same_fill_again() -> None:
    clock = FakeClock()
    store = FlakyStore(clock)
    sink = WritingEvents(store)
    tracker = FillTracker(store, sink, clock=clock)
    venue = Venue(poll_interval=1.0)
    order = make_order(signal_id="db-down", quantity=D("2"), state=OrderState.SUBMITTED, venue_order_id="V-1")
    store.seed(order)
    cid = order.client_order_id
    await tracked(tracker, order, venue, store, sink)
    venue.knows(venue_status(order, OrderState.CANCELLED, filled="0.5", avg="10", reason="canceled by user"))

    store.fail_saves = 1  # the CANCELLED transition cannot be written
    clock.advance(1)
    with pytest.raises(Down):
        await tracker.poll_due()
    assert sink.emitted_fills == [] and tracker.is_tracking(cid)
    assert store.orders[cid].filled_quantity == 0 and store.orders[cid].state is OrderState.SUBMITTED

    clock.advance(1)  # the database is back: the next poll derives the same fill, once
    assert await tracker.poll_due() == 1
    [fill] = sink.emitted_fills
    assert (fill.quantity, fill.cumulative_quantity, fill.exec_id) == (D("0.5"), D("0.5"), f"binance-{cid}-0.5")
    stored = store.orders[cid]
    assert (stored.state, stored.filled_quantity, stored.avg_fill_price) == (OrderState.CANCELLED, D("0.5"), D("10"))
    assert not tracker.is_tracking(cid)


async def test_a_fill_whose_produce_fails_is_emitted_exactly_once_after_recovery() -> None:
    clock = FakeClock()
    store = FlakyStore(clock)
    sink = WritingEvents(store)
    tracker = FillTracker(store, sink, clock=clock)
    venue = Venue(poll_interval=1.0)
    order = make_order(signal_id="kafka-down", quantity=D("1"), state=OrderState.SUBMITTED, venue_order_id="V-1")
    store.seed(order)
    cid = order.client_order_id
    await tracked(tracker, order, venue, store, sink)
    venue.on_query(order, venue_status(order, OrderState.PARTIALLY_FILLED, filled="0.4", avg="100"))
    venue.knows(venue_status(order, OrderState.PARTIALLY_FILLED, filled="0.4", avg="100"))

    sink.fail_fills = 1
    clock.advance(1)
    with pytest.raises(Down):
        await tracker.poll_due()
    assert tracker.is_tracking(cid) and sink.emitted_fills == []

    clock.advance(1)
    await tracker.poll_due()
    venue.knows(venue_status(order, OrderState.FILLED, filled="1", avg="101"))
    clock.advance(1)
    await tracker.poll_due()
    assert [(f.quantity, f.cumulative_quantity) for f in sink.emitted_fills] == [(D("0.4"), D("0.4")),
                                                                               (D("0.6"), D("1"))]
    stored = store.orders[cid]
    assert (stored.state, stored.filled_quantity, stored.avg_fill_price) == (OrderState.FILLED, D("1"), D("101"))
    assert sum(f.quantity for f in await store.recorded_fills(cid)) == D("1")


async def test_a_fill_produced_before_a_later_write_failed_is_recognised_when_derived_again() -> None:
    """The fills went out, the order events did not: the tracker did not advance, so the next
    poll emits the fill again under the same exec id and watermark, and the books count it once."""
    clock = FakeClock()
    store = FlakyStore(clock)
    sink = WritingEvents(store)
    tracker = FillTracker(store, sink, clock=clock)
    venue = Venue(poll_interval=1.0)
    order = make_order(signal_id="events-down", quantity=D("1"), state=OrderState.SUBMITTED)
    store.seed(order)
    cid = order.client_order_id
    await tracked(tracker, order, venue, store, sink)
    venue.knows(venue_status(order, OrderState.FILLED, filled="1", avg="50"))

    sink.fail_events = 1
    clock.advance(1)
    with pytest.raises(Down):
        await tracker.poll_due()
    assert tracker.is_tracking(cid)
    clock.advance(1)
    await tracker.poll_due()
    assert not tracker.is_tracking(cid)
    assert {f.exec_id for f in sink.emitted_fills} == {f"binance-{cid}-1"}
    assert [f.quantity for f in await store.recorded_fills(cid)] == [D("1")]
    assert store.orders[cid].filled_quantity == D("1")


class PushingVenue(ScriptedBroker):
    """A push-only venue (IB-style)."""

    def __init__(self) -> None:
        super().__init__(Broker.IBKR, poll_interval=None)
        self.listeners: list[UpdateListener] = []

    def subscribe(self, listener: UpdateListener) -> None:
        self.listeners.append(listener)

    def execution(self, cid: str, exec_id: str, cum: str, avg: str) -> None:
        for listener in self.listeners:
            listener.on_execution(VenueExecution(cid, exec_id, f"IB-{cid}", D(cum), D(avg), D("0.5"), "USD"))


async def test_pushed_updates_survive_a_failed_flush_and_are_applied_once() -> None:
    clock = FakeClock()
    store = FlakyStore(clock)
    sink = WritingEvents(store)
    tracker = FillTracker(store, sink, clock=clock)
    venue = PushingVenue()
    tracker.listen_to(venue)
    order = make_order(broker=Broker.IBKR, signal_id="push", symbol="SPY", quantity=D("10"),
                       state=OrderState.SUBMITTED)
    store.seed(order)
    cid = order.client_order_id
    await tracked(tracker, order, venue, store, sink)

    venue.execution(cid, "0001.01", cum="4", avg="100")
    sink.fail_fills = 1
    with pytest.raises(Down):
        await tracker.apply_pushed()
    venue.execution(cid, "0001.02", cum="10", avg="101.2")  # pushed while the first round was failing
    assert await tracker.apply_pushed() == 2  # the failed round's update first, then the new one
    assert [(f.exec_id, f.quantity, f.cumulative_quantity) for f in sink.emitted_fills] == [
        ("ibkr-0001.01", D("4"), D("4")), ("ibkr-0001.02", D("6"), D("10"))]
    assert [f.commission for f in sink.emitted_fills] == [D("0.5"), D("0")]  # cumulative 0.5, not twice
    stored = store.orders[cid]
    assert (stored.state, stored.filled_quantity) == (OrderState.FILLED, D("10"))
    assert not tracker.is_tracking(cid) and await tracker.apply_pushed() == 0


async def test_a_batch_whose_flush_fails_is_retried_without_a_second_placement_and_its_fill_emitted() -> None:
    """The tracker is told about a placed order before the batch is durable: if the flush fails,
    the retried batch must not find it 'already tracked' and skip the fill the DB never got."""
    clock = FakeClock()
    store = FlakyStore(clock)
    sink = WritingEvents(store)
    venue = Venue()
    service = executor(store, venue, clock, "A", sink)
    batch = [request(clock, "retry-me")]
    cid = batch[0].client_order_id
    venue.on_place(lambda o: venue_status(o, OrderState.PARTIALLY_FILLED, filled="0.4", avg="100"))

    sink.fail_fills = 1
    with pytest.raises(Down):
        await service.handle(batch)
    assert not service.tracker.is_tracking(cid) and sink.emitted_fills == []

    await service.handle(batch)  # process_batch retries the same batch: a redelivery, resumed
    assert venue.place_count == 1 and [o.client_order_id for o in venue.queried] == [cid]  # asked, not re-sent
    assert [(f.quantity, f.cumulative_quantity) for f in sink.emitted_fills] == [(D("0.4"), D("0.4"))]
    assert store.orders[cid].filled_quantity == D("0.4") and service.tracker.is_tracking(cid)

    venue.knows(venue_status(cid, OrderState.FILLED, filled="1", avg="100"))
    clock.advance(3)
    await service.tracker.poll_due()
    assert store.orders[cid].filled_quantity == D("1")
    assert sum(f.quantity for f in sink.emitted_fills) == D("1")


# ---- the resolver: an order leaves `unresolved` only once settled, durably ---------------------------


async def test_retry_unresolved_keeps_every_order_when_the_database_read_fails() -> None:
    clock = FakeClock()
    store = FlakyStore(clock)
    sink = WritingEvents(store)
    venue = Venue()
    service = executor(store, venue, clock, "A", sink)
    venue.on_place(PlacementUnknown("response lost"), PlacementUnknown("connection dropped"))
    batch = [request(clock, "lost-1"), request(clock, "lost-2", symbol="ETH-USDT")]
    await service.handle(batch)
    ids = {r.client_order_id for r in batch}
    assert service.unresolved == ids

    store.fail_reads = 1
    with pytest.raises(Down):
        await service.retry_unresolved()
    assert service.unresolved == ids  # not forgotten until a restart

    first, second = sorted(ids)
    venue.knows(venue_status(first, OrderState.FILLED, filled="1", avg="100"))
    venue.on_query(second, PlacementUnknown("still not sure"))
    sink.fail_fills = 1  # and this round's flush fails too
    with pytest.raises(Down):
        await service.retry_unresolved()
    assert service.unresolved == ids

    venue.on_query(second, PlacementUnknown("still not sure"))
    report = await service.retry_unresolved()
    assert report is not None and report.checked == 2
    assert service.unresolved == {second}  # only what was settled leaves the set
    assert store.orders[first].filled_quantity == D("1")
    assert venue.place_count == 2  # neither was ever sent twice


# ---- re-placing what the venue lost ------------------------------------------------------------------


async def partly_filled_by_a_dead_executor(store: InMemoryOrderStore, clock: FakeClock, signal_id: str,
                                           *, filled: str, avg: str, on_paper: bool = False,
                                           quantity: str = "1") -> Order:
    """An order executor 'A' placed and saw partly filled (its fill applied), then died."""
    [order] = [Order.from_request(request(clock, signal_id, quantity=D(quantity)), at=clock.now())]
    await store.claim_orders([order], owner="A", lease_seconds=LEASE)
    placed = order.rerouted(Broker.PAPER, "binance failed health_check", at=clock.now()) if on_paper else order
    placed = placed.transition(OrderState.SUBMITTED, placed.reason, at=clock.now(),
                               venue_order_id=f"V-{order.client_order_id}")
    await store.save_transitions([(placed, OrderEvent.of(placed, OrderState.PENDING))])
    fill = derive_fill(placed, venue_status(placed, OrderState.PARTIALLY_FILLED, filled=filled, avg=avg))
    assert fill is not None
    await store.apply_fills([fill])
    return store.orders[order.client_order_id]


async def test_paper_after_a_restart_gets_only_the_remainder_of_a_partly_filled_order() -> None:
    clock = FakeClock()
    store = InMemoryOrderStore(clock)
    before = await partly_filled_by_a_dead_executor(store, clock, "half", filled="0.4", avg="100", on_paper=True)
    cid = before.client_order_id
    assert (before.broker, before.state, before.filled_quantity) == (Broker.PAPER, OrderState.PARTIALLY_FILLED,
                                                                   D("0.4"))
    clock.advance(LEASE + 1)
    data = FakeMarketData()
    data.set_mid("BTC-USDT", "110")
    paper = CountingPaper(market_data=data)  # a fresh paper book: it never saw the order
    sink = WritingEvents(store)
    b = executor(store, Venue(), clock, "B", sink, paper=paper)

    report = await b.sweep()

    assert (report.checked, report.replaced) == (1, 1)
    [placed] = paper.placed
    assert (placed.client_order_id, placed.quantity) == (cid, D("0.6"))  # the remainder, same client id
    [fill] = sink.emitted_fills
    assert (fill.quantity, fill.cumulative_quantity, fill.price) == (D("0.6"), D("1"), D("110.11"))
    stored = store.orders[cid]
    assert (stored.state, stored.filled_quantity) == (OrderState.FILLED, D("1"))
    assert stored.avg_fill_price == (D("0.4") * 100 + D("0.6") * D("110.11")) / 1
    assert sum(f.quantity for f in await store.recorded_fills(cid)) == stored.quantity
    assert any("placed again for the remaining 0.6" in e.reason for e in sink.emitted_events)


async def test_a_remainder_placed_in_a_round_whose_flush_failed_is_read_as_the_remainder_on_retry() -> None:
    clock = FakeClock()
    store = InMemoryOrderStore(clock)
    before = await partly_filled_by_a_dead_executor(store, clock, "retry-rest", filled="0.4", avg="100",
                                                    on_paper=True)
    cid = before.client_order_id
    clock.advance(LEASE + 1)
    data = FakeMarketData()
    data.set_mid("BTC-USDT", "110")
    paper = CountingPaper(market_data=data)
    sink = WritingEvents(store)
    b = executor(store, Venue(), clock, "B", sink, paper=paper)

    sink.fail_fills = 1
    with pytest.raises(Down):
        await b.sweep()
    assert b.unresolved == {cid} and not b.tracker.is_tracking(cid)  # asked about again soon

    report = await b.retry_unresolved()  # paper holds the 0.6 it filled: resumed, not placed again
    assert report is not None and (report.resumed, report.replaced) == (1, 0)
    assert [o.quantity for o in paper.placed] == [D("0.6")]
    [fill] = sink.emitted_fills
    assert (fill.quantity, fill.cumulative_quantity, fill.price) == (D("0.6"), D("1"), D("110.11"))
    assert (store.orders[cid].state, store.orders[cid].filled_quantity) == (OrderState.FILLED, D("1"))
    assert b.unresolved == set()


async def test_a_resting_remainder_is_polled_as_the_remainder_and_its_fills_add_up_to_the_order() -> None:
    clock = FakeClock()
    store = InMemoryOrderStore(clock)
    before = await partly_filled_by_a_dead_executor(store, clock, "rest", filled="0.4", avg="100",
                                                    quantity="1")
    cid = before.client_order_id
    clock.advance(LEASE + 1)
    venue = Venue(poll_interval=1.0)  # restarted and lost the order
    sink = WritingEvents(store)
    b = executor(store, venue, clock, "B", sink)

    assert (await b.sweep()).replaced == 1
    assert [(o.client_order_id, o.quantity) for o in venue.placed] == [(cid, D("0.6"))]
    assert b.tracker.is_tracking(cid) and sink.emitted_fills == []
    assert store.orders[cid].state is OrderState.PARTIALLY_FILLED  # not moved back by the re-placement

    venue.knows(venue_status(cid, OrderState.PARTIALLY_FILLED, filled="0.3", avg="110"))  # of the 0.6
    clock.advance(1)
    await b.tracker.poll_due()
    assert venue.queried[-1].quantity == D("0.6")  # asked about what it holds
    venue.knows(venue_status(cid, OrderState.FILLED, filled="0.6", avg="120"))
    clock.advance(1)
    await b.tracker.poll_due()

    assert [(f.quantity, f.cumulative_quantity) for f in sink.emitted_fills] == [(D("0.3"), D("0.7")),
                                                                               (D("0.3"), D("1"))]
    assert [f.price for f in sink.emitted_fills] == [D("110"), D("130")]  # 0.3 @ 110, 0.3 @ 130: 0.6 @ 120
    stored = store.orders[cid]
    assert (stored.state, stored.filled_quantity) == (OrderState.FILLED, D("1"))
    assert stored.avg_fill_price == (D("0.4") * 100 + D("0.6") * 120) / 1
    assert not b.tracker.is_tracking(cid)


@pytest.mark.parametrize("refusal", ["exception", "status"])
async def test_a_refused_replacement_costs_that_order_visibly_never_the_executor(refusal: str) -> None:
    clock = FakeClock()
    store = InMemoryOrderStore(clock)
    partly = await partly_filled_by_a_dead_executor(store, clock, "partly", filled="0.4", avg="100")
    unfilled = Order.from_request(request(clock, "unfilled", symbol="ETH-USDT"), at=clock.now())
    other = Order.from_request(request(clock, "other", symbol="SOL-USDT"), at=clock.now())
    await store.claim_orders([unfilled, other], owner="A", lease_seconds=LEASE)
    for order in (unfilled, other):
        sent = order.transition(OrderState.SUBMITTED, at=clock.now(), venue_order_id=f"V-{order.client_order_id}")
        await store.save_transitions([(sent, OrderEvent.of(sent, OrderState.PENDING))])
    clock.advance(LEASE + 1)
    venue = Venue()  # lost all three
    refused = {partly.client_order_id, unfilled.client_order_id}
    if refusal == "exception":
        venue.refuse = dict.fromkeys(refused, "insufficient balance")
    else:
        venue.on_place(*[(lambda o: venue_status(o, OrderState.REJECTED, reason="insufficient balance")
                          if o.client_order_id in refused else None)] * 3)
    sink = WritingEvents(store)
    b = executor(store, venue, clock, "B", sink)

    report = await b.sweep()  # no exception escapes: the executor lives on

    assert (report.checked, report.replaced) == (3, 3)
    assert len(venue.placed) == 3
    done = store.orders[partly.client_order_id]
    # a partly filled order cannot be REJECTED: its remainder is cancelled, with the venue's reason
    assert (done.state, done.filled_quantity) == (OrderState.CANCELLED, D("0.4"))
    assert "insufficient balance" in done.reason and "remainder" in done.reason
    assert store.orders[unfilled.client_order_id].state is OrderState.REJECTED
    assert "insufficient balance" in store.orders[unfilled.client_order_id].reason
    assert OrderState.CANCELLED in sink.states_for(partly.client_order_id)
    assert store.orders[other.client_order_id].state is OrderState.SUBMITTED  # the others proceed
    assert b.tracker.tracked_ids() == {other.client_order_id}
    assert sink.emitted_fills == []
    assert (await b.sweep()).checked == 0  # terminal now: never swept (and refused) again
