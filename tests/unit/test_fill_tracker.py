"""derive_fill and FillTracker: fills from cumulative growth, polling, terminal states."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from execution.fill_tracker import FillTracker, derive_fill
from execution.fills import PRICE_PLACES
from execution.outcome import BatchOutcome
from execution.ports import BrokerUnavailable, VenueOrderStatus
from schemas import Broker, Order, OrderState
from tests.unit.fakes import (
    FakeClock,
    RecordingEvents,
    ScriptedBroker,
    make_order,
    venue_status,
)
from tests.unit.fakes import LenientOrderStore as InMemoryOrderStore  # see its docstring

D = Decimal


def submitted(**kw: Any) -> Order:
    kw.setdefault("signal_id", "track-1")
    kw.setdefault("venue_order_id", "V-1")
    kw.setdefault("state", OrderState.SUBMITTED)
    return make_order(**kw)


# --- derive_fill ---------------------------------------------------------------------------------


def test_first_partial_fill() -> None:
    order = submitted(quantity=D("1"))
    fill = derive_fill(order, venue_status(order, OrderState.PARTIALLY_FILLED, filled="0.3", avg="100",
                                           venue_id="V-1", commission="0.01"))
    assert fill is not None
    assert (fill.quantity, fill.price, fill.cumulative_quantity) == (D("0.3"), D("100"), D("0.3"))
    assert fill.exec_id == f"binance-{order.client_order_id}-0.3"
    assert (fill.client_order_id, fill.venue_order_id, fill.broker, fill.symbol, fill.side) == (
        order.client_order_id, "V-1", Broker.BINANCE, "BTC-USDT", order.side)
    assert fill.commission == D("0.01")
    assert fill.signal_ts == order.ts


def test_second_fill_price_makes_the_vwap_match() -> None:
    order = submitted(quantity=D("1"), filled_quantity=D("0.3"), avg_fill_price=D("100"),
                      state=OrderState.PARTIALLY_FILLED)
    fill = derive_fill(order, venue_status(order, OrderState.FILLED, filled="1.0", avg="101", venue_id="V-1"))
    assert fill is not None
    assert fill.quantity == D("0.7")
    assert fill.cumulative_quantity == D("1.0")
    # 0.3 * 100 + 0.7 * p = 1.0 * 101  =>  p = 71 / 0.7 = 101.428571428571... (12 places)
    assert fill.price == (D("71") / D("0.7")).quantize(PRICE_PLACES)
    assert fill.price == D("101.428571428571")
    vwap = (D("0.3") * D("100") + fill.quantity * fill.price) / fill.cumulative_quantity
    assert abs(vwap - D("101")) <= PRICE_PLACES  # 710/7 has no finite decimal; exact to 12 places
    assert fill.exec_id == f"binance-{order.client_order_id}-1"


def test_second_fill_vwap_is_exact_when_representable() -> None:
    order = submitted(quantity=D("1"), filled_quantity=D("0.5"), avg_fill_price=D("100"),
                      state=OrderState.PARTIALLY_FILLED)
    fill = derive_fill(order, venue_status(order, OrderState.FILLED, filled="1", avg="101.5"))
    assert fill is not None
    assert (fill.quantity, fill.price) == (D("0.5"), D("103"))
    assert (D("0.5") * D("100") + fill.quantity * fill.price) / D("1") == D("101.5")


@pytest.mark.parametrize("filled", ["0", "0.3", "0.2"])
def test_no_fill_when_cumulative_does_not_grow(filled: str) -> None:
    order = submitted(quantity=D("1"), filled_quantity=D("0.3"), avg_fill_price=D("100"),
                      state=OrderState.PARTIALLY_FILLED)
    assert derive_fill(order, venue_status(order, OrderState.PARTIALLY_FILLED, filled=filled,
                                           avg="100")) is None


def test_no_fill_without_an_average_price() -> None:
    order = submitted()
    assert derive_fill(order, venue_status(order, OrderState.PARTIALLY_FILLED, filled="0.5")) is None


def test_exec_id_is_deterministic_and_depends_on_the_watermark() -> None:
    order = submitted()
    status = venue_status(order, OrderState.PARTIALLY_FILLED, filled="0.50", avg="100", venue_id="V-1")
    first, again = derive_fill(order, status), derive_fill(order, status)
    assert first is not None and again is not None
    assert first.exec_id == again.exec_id == f"binance-{order.client_order_id}-0.5"
    other = derive_fill(order, venue_status(order, OrderState.FILLED, filled="1", avg="100", venue_id="V-1"))
    assert other is not None and other.exec_id == f"binance-{order.client_order_id}-1"
    # venue order ids repeat (per symbol, per session): the id never depends on them
    other_venue_id = derive_fill(order, venue_status(order, OrderState.PARTIALLY_FILLED, filled="0.5", avg="100",
                                                     venue_id="V-2"))
    assert other_venue_id is not None and other_venue_id.exec_id == first.exec_id


# --- FillTracker ---------------------------------------------------------------------------------


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store() -> InMemoryOrderStore:
    return InMemoryOrderStore()


@pytest.fixture
def sink() -> RecordingEvents:
    return RecordingEvents()


@pytest.fixture
def tracker(store: InMemoryOrderStore, sink: RecordingEvents, clock: FakeClock) -> FillTracker:
    return FillTracker(store, sink, clock=clock)


async def start_tracking(tracker: FillTracker, order: Order, status: VenueOrderStatus, venue: ScriptedBroker,
                         store: InMemoryOrderStore, sink: RecordingEvents) -> None:
    """Observe ``order``'s first status and flush it: the tracker takes an order on once durable."""
    outcome = BatchOutcome()
    tracker.observe(order, status, venue, outcome)
    await outcome.flush(store, sink)


async def test_observe_tracks_open_orders_and_drops_terminal_ones(
    tracker: FillTracker, store: InMemoryOrderStore, sink: RecordingEvents
) -> None:
    venue = ScriptedBroker()
    order = submitted()
    outcome = BatchOutcome()
    now = tracker.observe(order, venue_status(order, OrderState.SUBMITTED), venue, outcome)
    assert not tracker.is_tracking(order.client_order_id)  # staged until the outcome is durable
    assert outcome.fills == [] and outcome.transitions == []
    await outcome.flush(store, sink)
    assert tracker.is_tracking(order.client_order_id) and tracker.open_count == 1
    done = tracker.observe(now, venue_status(order, OrderState.FILLED, filled="1", avg="100"), venue, outcome)
    assert done.state is OrderState.FILLED
    assert (done.filled_quantity, done.avg_fill_price) == (D("1"), D("100"))
    assert [f.quantity for f in outcome.fills] == [D("1")]
    # the FILLED state goes to the audit topic only; the fills writer persists it
    assert outcome.transitions == []
    assert [(e.previous_state, e.state) for e in outcome.events] == [
        (OrderState.SUBMITTED, OrderState.FILLED)]
    assert tracker.is_tracking(order.client_order_id)
    await outcome.flush(store, sink)
    assert not tracker.is_tracking(order.client_order_id)


async def test_polling_emits_fills_and_stops_at_terminal_state(
    tracker: FillTracker, store: InMemoryOrderStore, sink: RecordingEvents, clock: FakeClock
) -> None:
    venue = ScriptedBroker(poll_interval=3.0)
    order = submitted(quantity=D("1"))
    store.seed(order)
    venue.on_query(
        order,
        venue_status(order, OrderState.PARTIALLY_FILLED, filled="0.3", avg="100", venue_id="V-1"),
        venue_status(order, OrderState.PARTIALLY_FILLED, filled="0.3", avg="100", venue_id="V-1"),
        venue_status(order, OrderState.FILLED, filled="1.0", avg="101", venue_id="V-1"),
    )
    await start_tracking(tracker, order, venue_status(order, OrderState.SUBMITTED, venue_id="V-1"), venue, store, sink)

    assert await tracker.poll_due() == 0  # not due before the interval
    clock.advance(2.9)
    assert await tracker.poll_due() == 0
    assert venue.queried == []

    clock.advance(0.1)
    assert await tracker.poll_due() == 1
    assert [(f.quantity, f.price, f.cumulative_quantity) for f in sink.emitted_fills] == [
        (D("0.3"), D("100"), D("0.3"))]
    assert tracker.is_tracking(order.client_order_id)

    assert await tracker.poll_due() == 0  # polled just now
    clock.advance(3)
    assert await tracker.poll_due() == 1  # no growth: no fill
    assert len(sink.emitted_fills) == 1

    clock.advance(3)
    assert await tracker.poll_due() == 1
    cid = order.client_order_id
    assert [f.exec_id for f in sink.emitted_fills] == [f"binance-{cid}-0.3", f"binance-{cid}-1"]
    assert sink.emitted_fills[1].quantity == D("0.7")
    assert sum(f.quantity for f in sink.emitted_fills) == order.quantity
    assert not tracker.is_tracking(order.client_order_id)
    assert sink.states_for(order.client_order_id) == [OrderState.PARTIALLY_FILLED, OrderState.FILLED]

    clock.advance(100)
    assert await tracker.poll_due() == 0
    assert len(venue.queried) == 3


async def test_cancel_after_partial_fill_persists_cancelled(
    tracker: FillTracker, store: InMemoryOrderStore, sink: RecordingEvents, clock: FakeClock
) -> None:
    venue = ScriptedBroker(poll_interval=1.0)
    order = submitted(quantity=D("2"))
    store.seed(order)
    venue.on_query(
        order,
        venue_status(order, OrderState.PARTIALLY_FILLED, filled="0.5", avg="10", venue_id="V-1"),
        venue_status(order, OrderState.CANCELLED, filled="0.5", avg="10", venue_id="V-1",
                     reason="canceled by user"),
    )
    await start_tracking(tracker, order, venue_status(order, OrderState.SUBMITTED, venue_id="V-1"), venue, store, sink)
    clock.advance(1)
    await tracker.poll_due()
    clock.advance(1)
    await tracker.poll_due()

    stored = store.orders[order.client_order_id]
    assert stored.state is OrderState.CANCELLED
    assert stored.reason == "canceled by user"
    assert stored.filled_quantity == D("0.5") and stored.avg_fill_price == D("10")
    assert [f.quantity for f in sink.emitted_fills] == [D("0.5")]
    assert [(e.previous_state, e.state) for e in store.events] == [
        (OrderState.PARTIALLY_FILLED, OrderState.CANCELLED)]
    assert sink.states_for(order.client_order_id) == [OrderState.PARTIALLY_FILLED, OrderState.CANCELLED]
    assert not tracker.is_tracking(order.client_order_id)


async def test_partial_fill_and_cancel_in_one_status(
    tracker: FillTracker, store: InMemoryOrderStore, sink: RecordingEvents
) -> None:
    venue = ScriptedBroker()
    order = submitted(quantity=D("2"))
    outcome = BatchOutcome()
    now = tracker.observe(order, venue_status(order, OrderState.CANCELLED, filled="0.4", avg="10",
                                              venue_id="V-9"), venue, outcome)
    await outcome.flush(store, sink)
    assert now.state is OrderState.CANCELLED and now.filled_quantity == D("0.4")
    assert now.venue_order_id == "V-9"
    assert [f.quantity for f in sink.emitted_fills] == [D("0.4")]
    assert store.orders[order.client_order_id].state is OrderState.CANCELLED
    assert sink.states_for(order.client_order_id) == [OrderState.PARTIALLY_FILLED, OrderState.CANCELLED]


async def test_venue_state_that_the_machine_forbids_is_ignored(tracker: FillTracker) -> None:
    order = submitted().transition(OrderState.PARTIALLY_FILLED, filled_quantity=D("0.5"),
                                   avg_fill_price=D("10"))
    outcome = BatchOutcome()
    now = tracker.observe(order, venue_status(order, OrderState.REJECTED, filled="0.5", avg="10"),
                          ScriptedBroker(), outcome)
    assert now.state is OrderState.PARTIALLY_FILLED
    assert outcome.transitions == [] and outcome.fills == []
    assert not tracker.is_tracking(order.client_order_id)  # the venue is done with it


async def test_query_error_keeps_tracking(
    tracker: FillTracker, store: InMemoryOrderStore, sink: RecordingEvents, clock: FakeClock
) -> None:
    venue = ScriptedBroker(poll_interval=1.0)
    order = submitted()
    venue.on_query(order, BrokerUnavailable("timeout"),
                   venue_status(order, OrderState.FILLED, filled="1", avg="5"))
    await start_tracking(tracker, order, venue_status(order, OrderState.SUBMITTED), venue, store, sink)
    clock.advance(1)
    assert await tracker.poll_due() == 1
    assert sink.emitted_fills == [] and tracker.is_tracking(order.client_order_id)
    clock.advance(1)
    assert await tracker.poll_due() == 1
    assert [f.quantity for f in sink.emitted_fills] == [D("1")]
    assert not tracker.is_tracking(order.client_order_id)


async def test_push_only_venues_are_never_polled(
    tracker: FillTracker, store: InMemoryOrderStore, sink: RecordingEvents, clock: FakeClock
) -> None:
    venue = ScriptedBroker(Broker.IBKR, poll_interval=None)
    order = submitted(broker=Broker.IBKR)
    await start_tracking(tracker, order, venue_status(order, OrderState.SUBMITTED), venue, store, sink)
    clock.advance(10_000)
    assert await tracker.poll_due() == 0
    assert venue.queried == [] and tracker.is_tracking(order.client_order_id)
    tracker.forget(order.client_order_id)
    assert tracker.open_count == 0


def test_commission_is_split_not_repeated_across_partial_fills() -> None:
    """Venues report commission cumulatively; each fill must carry only its own share."""
    order = make_order(quantity=D("1"), state=OrderState.SUBMITTED)
    first = derive_fill(order, venue_status(order, OrderState.PARTIALLY_FILLED, filled="0.4", avg="100",
                                            commission="0.04"), known_commission=D(0))
    assert first is not None and first.commission == D("0.04")
    moved = order.model_copy(update={"filled_quantity": D("0.4"), "avg_fill_price": D("100")})
    second = derive_fill(moved, venue_status(order, OrderState.FILLED, filled="1", avg="100",
                                             commission="0.10"), known_commission=D("0.04"))
    assert second is not None and second.commission == D("0.06")
    # first sight after a restart: the share proportional to the quantity
    unknown = derive_fill(moved, venue_status(order, OrderState.FILLED, filled="1", avg="100",
                                              commission="0.10"))
    assert unknown is not None and unknown.commission == D("0.06")


class ListingBroker(ScriptedBroker):
    """A venue that can also list a symbol's open orders in one call."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.listings = 0
        self.listing_fails = False

    async def fetch_open_orders(self, symbol: str | None = None) -> list[VenueOrderStatus]:
        self.listings += 1
        if self.listing_fails:
            raise BrokerUnavailable("listing timed out")
        return [s for s in self.known.values() if not s.state.is_terminal]


async def test_a_listing_spares_queries_for_unchanged_orders_and_failing_falls_back(
    tracker: FillTracker, store: InMemoryOrderStore, sink: RecordingEvents, clock: FakeClock
) -> None:
    venue = ListingBroker(poll_interval=1.0)
    orders = [submitted(signal_id=f"rest-{i}") for i in range(4)]
    for order in orders:
        venue.known[order.client_order_id] = venue_status(order, OrderState.SUBMITTED, venue_id=order.signal_id)
        await start_tracking(tracker, order, venue.known[order.client_order_id], venue, store, sink)
    clock.advance(1)
    assert await tracker.poll_due() == 4
    assert (venue.listings, len(venue.queried)) == (1, 0)  # all unchanged: no individual query

    changed = orders[0]
    venue.known[changed.client_order_id] = venue_status(changed, OrderState.PARTIALLY_FILLED, filled="0.4",
                                                        avg="100", venue_id="rest-0")
    clock.advance(1)
    await tracker.poll_due()
    assert (venue.listings, [o.client_order_id for o in venue.queried]) == (2, [changed.client_order_id])

    venue.listing_fails = True
    clock.advance(1)
    await tracker.poll_due()
    assert len(venue.queried) == 1 + 4  # the listing failed: everyone asked one by one
