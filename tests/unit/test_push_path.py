"""The FillTracker's push path: a venue that pushes statuses, executions and late fees
(IB-style) gets the same watermark as a polled one: nothing counted twice, whatever arrives twice."""

from __future__ import annotations

from decimal import Decimal as D

from execution.fill_tracker import FillTracker
from execution.outcome import BatchOutcome
from execution.ports import FillFee, UpdateListener, VenueExecution, VenueFee, VenueOrderStatus
from schemas import Broker, Order, OrderState
from tests.unit.fakes import FakeClock, RecordingEvents, ScriptedBroker, make_order, venue_status


class PushingVenue(ScriptedBroker):
    """A push-only venue (no polling): what it pushes goes to the listener it was given."""

    def __init__(self) -> None:
        super().__init__(Broker.IBKR, poll_interval=None)
        self.listeners: list[UpdateListener] = []

    def subscribe(self, listener: UpdateListener) -> None:
        self.listeners.append(listener)

    def status(self, status: VenueOrderStatus) -> None:
        for listener in self.listeners:
            listener.on_status(status)

    def execution(self, cid: str, exec_id: str, cum: str, avg: str, commission: str | None = None) -> None:
        for listener in self.listeners:
            listener.on_execution(VenueExecution(cid, exec_id, f"IB-{cid}", D(cum), D(avg),
                                                 None if commission is None else D(commission), "USD"))

    def fee(self, exec_id: str, commission: str) -> None:
        for listener in self.listeners:
            listener.on_fee(VenueFee(exec_id, D(commission), "USD"))


class FeeStore:
    """The part of the OrderStore the push path writes: transitions and late fees."""

    def __init__(self) -> None:
        self.fees: list[FillFee] = []
        self.saved = 0

    async def save_transitions(self, changes: object) -> None:
        self.saved += 1

    async def record_fees(self, fees: list[FillFee]) -> None:
        self.fees.extend(fees)


async def _rig(clock: FakeClock | None = None) -> tuple[FillTracker, PushingVenue, RecordingEvents, FeeStore, Order]:
    store, sink, venue = FeeStore(), RecordingEvents(), PushingVenue()
    tracker = FillTracker(store, sink, clock=clock or FakeClock())  # type: ignore[arg-type]
    tracker.listen_to(venue)
    order = make_order(broker=Broker.IBKR, symbol="SPY", quantity=D("10"), state=OrderState.SUBMITTED)
    outcome = BatchOutcome(FakeClock())
    tracker.observe(order, venue_status(order, OrderState.SUBMITTED), venue, outcome)
    await outcome.flush(store, sink)  # type: ignore[arg-type]  # the tracker takes it on once durable
    return tracker, venue, sink, store, order


async def test_executions_become_one_fill_each_with_the_venue_exec_id() -> None:
    tracker, venue, sink, _, order = await _rig()
    cid = order.client_order_id
    venue.execution(cid, "0001.01", cum="4", avg="100")
    venue.execution(cid, "0001.02", cum="10", avg="101.2")
    assert await tracker.apply_pushed() == 2
    fills = sink.fills_for(cid)
    assert [f.exec_id for f in fills] == ["ibkr-0001.01", "ibkr-0001.02"]
    assert [(f.quantity, f.price, f.cumulative_quantity) for f in fills] == [
        (D("4"), D("100"), D("4")), (D("6"), D("102"), D("10"))]  # 6 @ 102 makes 10 @ 101.2
    assert not tracker.is_tracking(cid) and sink.states_for(cid)[-1] is OrderState.FILLED


async def test_a_repeated_execution_or_one_a_status_covered_adds_nothing() -> None:
    tracker, venue, sink, _, order = await _rig()
    cid = order.client_order_id
    venue.status(venue_status(order, OrderState.PARTIALLY_FILLED, filled="4", avg="100"))
    venue.execution(cid, "0001.01", cum="4", avg="100")   # the status already covered it
    venue.execution(cid, "0001.01", cum="4", avg="100")   # and it arrives twice
    await tracker.apply_pushed()
    assert [f.quantity for f in sink.fills_for(cid)] == [D("4")]
    venue.execution(cid, "0001.02", cum="7", avg="100")
    venue.execution(cid, "0001.02", cum="7", avg="100")
    await tracker.apply_pushed()
    assert [f.cumulative_quantity for f in sink.fills_for(cid)] == [D("4"), D("7")]
    assert tracker.is_tracking(cid)


async def test_a_fee_in_the_same_round_rides_on_its_fill_a_later_one_is_recorded_once() -> None:
    tracker, venue, sink, store, order = await _rig()
    cid = order.client_order_id
    venue.execution(cid, "0001.01", cum="4", avg="100")
    venue.fee("0001.01", "1.25")
    await tracker.apply_pushed()
    [first] = sink.fills_for(cid)
    assert first.commission == D("1.25") and store.fees == []

    venue.execution(cid, "0001.02", cum="5", avg="100")
    await tracker.apply_pushed()
    assert sink.fills_for(cid)[-1].commission == D(0)
    venue.fee("0001.02", "0.35")
    venue.fee("0001.02", "0.35")  # the venue repeats it (reconnect): the same value, set twice
    await tracker.apply_pushed()
    assert len(sink.fills_for(cid)) == 2  # a fee is never a second fill
    assert {(f.broker, f.exec_id, f.commission) for f in store.fees} == {(Broker.IBKR, "ibkr-0001.02", D("0.35"))}


async def test_updates_pushed_before_the_order_is_tracked_are_applied_once_it_is() -> None:
    store, sink, venue = FeeStore(), RecordingEvents(), PushingVenue()
    tracker = FillTracker(store, sink, clock=FakeClock())  # type: ignore[arg-type]
    tracker.listen_to(venue)
    order = make_order(broker=Broker.IBKR, quantity=D("2"), state=OrderState.SUBMITTED)
    venue.execution(order.client_order_id, "0002.01", cum="2", avg="50")  # before place() returned
    await tracker.apply_pushed()
    assert sink.emitted_fills == []
    outcome = BatchOutcome(FakeClock())
    tracker.observe(order, venue_status(order, OrderState.SUBMITTED), venue, outcome)
    await outcome.flush(store, sink)  # type: ignore[arg-type]
    await tracker.apply_pushed()
    assert [(f.exec_id, f.quantity) for f in sink.emitted_fills] == [("ibkr-0002.01", D("2"))]
    assert not tracker.is_tracking(order.client_order_id)


async def test_fill_and_event_times_come_from_the_injected_clock() -> None:
    clock = FakeClock()
    clock.advance(3600)
    tracker, venue, sink, _, order = await _rig(clock)
    venue.execution(order.client_order_id, "0003.01", cum="10", avg="10")
    await tracker.apply_pushed()
    assert {f.ts for f in sink.emitted_fills} == {clock.now()}
    assert sink.emitted_events[-1].ts == clock.now()


async def test_executions_pushed_before_the_placement_answer_keep_their_exec_ids_and_fees() -> None:
    """IB fills a market order before ``place`` returns: its executions and commission reports
    reach the tracker while the order is unknown there, and ``place`` answers with the totals.
    Each execution still becomes its own fill with IB's execId and its fee, and the totals in
    the answer add nothing on top."""
    store, sink, venue = FeeStore(), RecordingEvents(), PushingVenue()
    tracker = FillTracker(store, sink, clock=FakeClock())  # type: ignore[arg-type]
    tracker.listen_to(venue)
    order = make_order(broker=Broker.IBKR, symbol="SPY", quantity=D("10"), state=OrderState.SUBMITTED)
    cid = order.client_order_id
    venue.execution(cid, "0002.01", cum="4", avg="100")
    venue.fee("0002.01", "0.40")
    venue.execution(cid, "0002.02", cum="10", avg="101.2")
    venue.fee("0002.02", "0.60")
    await tracker.apply_pushed()  # all held: the order is not tracked yet
    assert sink.fills_for(cid) == []

    outcome = BatchOutcome(FakeClock())
    answer = venue_status(order, OrderState.FILLED, filled="10", avg="101.2")
    tracker.observe(order, answer, venue, outcome)
    await outcome.flush(store, sink)  # type: ignore[arg-type]
    fills = sink.fills_for(cid)
    assert [(f.exec_id, f.quantity, f.commission) for f in fills] == [
        ("ibkr-0002.01", D("4"), D("0.40")), ("ibkr-0002.02", D("6"), D("0.60"))]
    assert not tracker.is_tracking(cid)


async def test_updates_of_orders_never_tracked_here_do_not_pile_up(monkeypatch) -> None:
    """A venue shared by two executors pushes each one the other's orders too: the tracker holds
    at most EARLY_ORDERS_LIMIT such orders, dropping the oldest."""
    import execution.fill_tracker as fill_tracker

    monkeypatch.setattr(fill_tracker, "EARLY_ORDERS_LIMIT", 3)
    tracker, venue, _, _, _ = await _rig()
    for n in range(5):
        venue.status(venue_status(f"someone-else-{n}", OrderState.SUBMITTED))
    await tracker.apply_pushed()
    assert list(tracker._early) == ["someone-else-2", "someone-else-3", "someone-else-4"]
