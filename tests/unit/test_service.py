"""ExecutionService + CompositeBrokerAdapter + FillTracker, end to end through the in-memory ports."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from adapters.paper import PaperAdapter
from execution.breaker import BreakerState, CircuitBreaker
from execution.fallback import CompositeBrokerAdapter
from execution.fill_tracker import FillTracker
from execution.ports import BrokerUnavailable, OrderRejected, PlacementUnknown, VenueOrderStatus
from execution.risk import PreTradeLimits
from execution.router import BrokerRouter
from execution.service import ExecutionService, ReconcileReport
from schemas import Broker, Order, OrderRequest, OrderState
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

D = Decimal


class CountingPaper(PaperAdapter):
    """The real PaperAdapter, counting what it is asked."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.placed: list[Order] = []
        self.queried: list[Order] = []

    async def place(self, order: Order) -> VenueOrderStatus:
        self.placed.append(order)
        return await super().place(order)

    async def query(self, order: Order) -> VenueOrderStatus | None:
        self.queried.append(order)
        return await super().query(order)


class Rig:
    """One executor: a live venue (or none) with paper behind it, over in-memory ports."""

    def __init__(
        self,
        live: ScriptedBroker | None = None,
        *,
        threshold: int = 3,
        cooldown: float = 30.0,
        force_paper: bool = False,
        max_quantity: str = "100",
        max_notional: str = "1000000",
        paper: CountingPaper | None = None,
        store: InMemoryOrderStore | None = None,
    ) -> None:
        self.clock = FakeClock()
        self.live = live
        self.paper = paper or CountingPaper()
        self.store = store or InMemoryOrderStore(self.clock)
        self.sink = RecordingEvents()
        self.changes: list[tuple[str, BreakerState, str]] = []
        self.breaker = CircuitBreaker("binance", failure_threshold=threshold, cooldown=cooldown,
                                      clock=self.clock, on_change=lambda *c: self.changes.append(c))
        self.gateway = CompositeBrokerAdapter(live, self.paper, self.breaker, force_paper=force_paper,
                                              health_ttl=0.0, clock=self.clock)
        self.tracker = FillTracker(self.store, self.sink, clock=self.clock)
        self.service = ExecutionService(broker=self.gateway, store=self.store, sink=self.sink,
                                        tracker=self.tracker,
                                        limits=PreTradeLimits(D(max_quantity), D(max_notional)))

    def restarted(self) -> Rig:
        """A new process over the same store and venue after a crash: tracker and breaker start
        empty, and the dead process's claims have expired."""
        self.clock.advance(LEASE + 1)
        return Rig(self.live, store=self.store)


#: the executors' claim lease in these rigs (ExecutionService's default)
LEASE = 30.0


def crypto(signal_id: str = "s-1", **kw: Any) -> OrderRequest:
    """An order request the router sends to Binance."""
    return BrokerRouter([Broker.BINANCE]).route(make_signal(signal_id=signal_id, **kw))


def to_paper(signal_id: str = "s-1", **kw: Any) -> OrderRequest:
    """An order request the router sends to paper (no live adapter configured)."""
    return BrokerRouter([]).route(make_signal(signal_id=signal_id, **kw))


# --- happy path and idempotency ----------------------------------------------------------------


async def test_paper_market_order_happy_path() -> None:
    rig = Rig(live=None)
    request = to_paper(quantity=D("2"), reference_price=D("100"))
    assert (request.broker, request.rerouted_from) == (Broker.PAPER, Broker.BINANCE)
    cid = request.client_order_id

    [order] = await rig.service.handle([request])

    assert rig.store.history[cid] == [OrderState.PENDING, OrderState.SUBMITTED]
    stored = rig.store.orders[cid]
    assert stored.state is OrderState.SUBMITTED
    assert stored.venue_order_id == f"P{cid}"
    assert stored.broker is Broker.PAPER
    assert [(e.previous_state, e.state) for e in rig.store.events] == [
        (OrderState.PENDING, OrderState.SUBMITTED)]

    [fill] = rig.sink.emitted_fills
    assert (fill.client_order_id, fill.broker, fill.quantity, fill.cumulative_quantity, fill.price) == (
        cid, Broker.PAPER, D("2"), D("2"), D("100.1"))
    assert fill.exec_id == f"paper-{cid}-2"
    assert rig.sink.states_for(cid) == [OrderState.SUBMITTED, OrderState.FILLED]

    assert order.state is OrderState.FILLED
    assert (order.filled_quantity, order.avg_fill_price) == (D("2"), D("100.1"))
    assert not rig.tracker.is_tracking(cid)
    assert len(rig.paper.placed) == 1


async def test_same_request_twice_in_one_batch_places_once() -> None:
    live = ScriptedBroker().on_place(lambda o: venue_status(o, OrderState.FILLED, filled=o.quantity,
                                                            avg="100"))
    rig = Rig(live)
    request = crypto()
    placed = await rig.service.handle([request, request])
    assert len(placed) == 1
    assert live.place_count == 1
    assert len(rig.sink.emitted_fills) == 1
    assert rig.store.history[request.client_order_id] == [OrderState.PENDING, OrderState.SUBMITTED]


async def test_redelivery_after_the_fill_was_recorded_is_a_no_op() -> None:
    live = ScriptedBroker().on_place(lambda o: venue_status(o, OrderState.FILLED, filled=o.quantity,
                                                            avg="100"))
    rig = Rig(live)
    request = crypto()
    await rig.service.handle([request])
    await rig.store.apply_fills(rig.sink.emitted_fills)  # the fills writer (steps 6-7)
    assert rig.store.orders[request.client_order_id].state is OrderState.FILLED

    assert await rig.service.handle([request]) == []
    assert live.place_count == 1
    assert live.queried == []  # terminal in the store: the venue is not even asked
    assert len(rig.sink.emitted_fills) == 1


async def test_redelivery_before_the_fill_was_recorded_re_emits_the_same_fill() -> None:
    live = ScriptedBroker().on_place(lambda o: venue_status(o, OrderState.FILLED, filled=o.quantity,
                                                            avg="100"))
    rig = Rig(live)
    request = crypto()
    await rig.service.handle([request])
    await rig.service.handle([request])  # store still SUBMITTED: the venue is asked, not re-placed
    assert live.place_count == 1
    assert len(live.queried) == 1
    fills = rig.sink.emitted_fills
    # the same fill again, recognisable downstream by exec id and watermark: one fill in effect
    assert len({(f.exec_id, f.cumulative_quantity) for f in fills}) == 1
    assert await rig.store.apply_fills(fills) == fills[:1]
    assert rig.store.orders[request.client_order_id].filled_quantity == request.quantity


async def test_pending_order_unknown_at_the_venue_is_placed_exactly_once() -> None:
    live = ScriptedBroker()  # accepts and rests (SUBMITTED)
    rig = Rig(live)
    request = crypto()
    cid = request.client_order_id
    rig.store.seed(Order.from_request(request))  # crash between step 2 and step 4

    [order] = await rig.service.handle([request])
    assert live.placed_ids() == [cid]
    assert [o.client_order_id for o in live.queried] == [cid]
    assert order.state is OrderState.SUBMITTED
    assert rig.store.orders[cid].state is OrderState.SUBMITTED
    assert rig.tracker.is_tracking(cid)

    await rig.service.handle([request])  # redelivered again: tracked here, left alone
    assert live.place_count == 1 and len(live.queried) == 1

    restarted = rig.restarted()
    await restarted.service.handle([request])  # and after a restart the venue knows it now
    assert live.place_count == 1
    assert len(live.queried) == 2
    assert restarted.tracker.is_tracking(cid)


async def test_one_symbol_is_placed_in_order_and_all_symbols_are_placed() -> None:
    live = ScriptedBroker()
    rig = Rig(live)
    requests = [crypto(f"a{i}", symbol="BTC-USDT") for i in range(5)] + [
        crypto(f"b{i}", symbol="ETH-USDT") for i in range(3)]
    placed = await rig.service.handle(requests)
    assert sorted(o.client_order_id for o in placed) == sorted(r.client_order_id for r in requests)
    btc = [o.client_order_id for o in live.placed if o.symbol == "BTC-USDT"]
    assert btc == [r.client_order_id for r in requests[:5]]
    assert all(rig.store.orders[r.client_order_id].state is OrderState.SUBMITTED for r in requests)


async def test_live_fills_arrive_through_polling() -> None:
    live = ScriptedBroker(poll_interval=3.0)
    rig = Rig(live)
    request = crypto(quantity=D("1"))
    cid = request.client_order_id
    live.on_query(cid, venue_status(cid, OrderState.PARTIALLY_FILLED, filled="0.3", avg="100"),
                  venue_status(cid, OrderState.FILLED, filled="1", avg="101"))
    await rig.service.handle([request])
    assert rig.sink.emitted_fills == []
    rig.clock.advance(3)
    await rig.tracker.poll_due()
    rig.clock.advance(3)
    await rig.tracker.poll_due()
    assert [f.cumulative_quantity for f in rig.sink.emitted_fills] == [D("0.3"), D("1")]
    assert sum(f.quantity for f in rig.sink.emitted_fills) == D("1")
    assert not rig.tracker.is_tracking(cid)


# --- rejections ----------------------------------------------------------------------------------


async def test_venue_rejection_is_rejected_with_the_venues_message() -> None:
    live = ScriptedBroker().on_place(
        OrderRejected("Account has insufficient balance for requested action.", code=-2010))
    rig = Rig(live)
    request = crypto()
    [order] = await rig.service.handle([request])
    assert order.state is OrderState.REJECTED
    assert order.reason == "binance: Account has insufficient balance for requested action."
    assert order.broker is Broker.BINANCE and order.rerouted_from is None
    assert rig.store.orders[request.client_order_id].state is OrderState.REJECTED
    assert rig.sink.states_for(request.client_order_id) == [OrderState.REJECTED]
    assert rig.sink.emitted_fills == [] and rig.paper.placed == []
    assert rig.breaker.consecutive_failures == 0  # the venue answered: transport is fine


async def test_rejected_first_answer_is_rejected() -> None:
    live = ScriptedBroker().on_place(lambda o: venue_status(o, OrderState.REJECTED, reason="MIN_NOTIONAL"))
    rig = Rig(live)
    [order] = await rig.service.handle([crypto()])
    assert (order.state, order.reason, order.venue_order_id) == (
        OrderState.REJECTED, "MIN_NOTIONAL", f"V-{order.client_order_id}")


async def test_unexpected_adapter_error_costs_one_order_visibly() -> None:
    live = ScriptedBroker().on_place(RuntimeError("adapter bug"))
    rig = Rig(live)
    good, bad = crypto("good", symbol="ETH-USDT"), crypto("bad", symbol="BTC-USDT")
    live.place_script.clear()
    live.on_place(lambda o: (_ for _ in ()).throw(RuntimeError("adapter bug"))
                  if o.client_order_id == bad.client_order_id else None)
    placed = {o.client_order_id: o for o in await rig.service.handle([bad, good])}
    assert placed[bad.client_order_id].state is OrderState.REJECTED
    assert placed[bad.client_order_id].reason == "binance error: RuntimeError('adapter bug')"
    assert placed[good.client_order_id].state is OrderState.SUBMITTED


async def test_pre_trade_violation_is_rejected_without_any_placement() -> None:
    live = ScriptedBroker()
    rig = Rig(live, max_quantity="10", max_notional="5000")
    too_big = crypto("big", quantity=D("11"))
    too_rich = crypto("rich", symbol="ETH-USDT", quantity=D("1"), reference_price=D("5000.01"))
    fine = crypto("fine", symbol="SOL-USDT", quantity=D("1"))
    placed = {o.client_order_id: o for o in await rig.service.handle([too_big, too_rich, fine])}
    assert placed[too_big.client_order_id].state is OrderState.REJECTED
    assert placed[too_big.client_order_id].reason == (
        "pre-trade limit: quantity 11 exceeds max_order_quantity 10")
    assert placed[too_rich.client_order_id].reason == (
        "pre-trade limit: notional 5000.01 exceeds max_order_notional 5000")
    assert live.placed_ids() == [fine.client_order_id]
    assert rig.paper.placed == []
    assert rig.store.orders[too_big.client_order_id].state is OrderState.REJECTED


async def test_pre_trade_violation_on_paper_is_not_placed_either() -> None:
    rig = Rig(live=None, max_quantity="1")
    [order] = await rig.service.handle([to_paper(quantity=D("2"))])
    assert order.state is OrderState.REJECTED and rig.paper.placed == []
    assert rig.sink.emitted_fills == []


# --- fallbacks to paper --------------------------------------------------------------------------


async def test_broker_unavailable_reroutes_to_paper_and_opens_the_breaker() -> None:
    live = ScriptedBroker()
    rig = Rig(live, threshold=3)
    outage = BrokerUnavailable("binance: connect timeout")
    live.on_place(outage, outage, outage)

    for i in range(3):
        request = crypto(f"s{i}", reference_price=D("100"))
        [order] = await rig.service.handle([request])
        assert order.broker is Broker.PAPER
        assert order.rerouted_from is Broker.BINANCE
        assert order.reason == "binance unavailable: binance: connect timeout"
        assert order.state is OrderState.FILLED
        stored = rig.store.orders[request.client_order_id]
        assert (stored.state, stored.broker, stored.rerouted_from) == (
            OrderState.SUBMITTED, Broker.PAPER, Broker.BINANCE)
        assert "unavailable" in stored.reason
        assert rig.sink.fills_for(request.client_order_id)[0].broker is Broker.PAPER
        assert rig.breaker.consecutive_failures == i + 1
    assert live.place_count == 3
    assert rig.breaker.state is BreakerState.OPEN
    assert rig.changes == [("binance", BreakerState.OPEN, "binance: connect timeout")]

    # open: later batches go straight to paper, the venue is not touched
    later = [crypto("later-1"), crypto("later-2", symbol="ETH-USDT")]
    health_before = live.health_checks
    for order in await rig.service.handle(later):
        assert (order.broker, order.rerouted_from) == (Broker.PAPER, Broker.BINANCE)
        assert order.reason == "binance circuit breaker open: binance: connect timeout"
        assert "circuit breaker open" in rig.store.orders[order.client_order_id].reason
    assert live.place_count == 3
    assert live.health_checks == health_before

    # after the cooldown one probe batch reaches the venue again and closes the breaker
    rig.clock.advance(30)
    [probe] = await rig.service.handle([crypto("probe")])
    assert probe.broker is Broker.BINANCE and probe.rerouted_from is None
    assert live.place_count == 4
    assert rig.breaker.state is BreakerState.CLOSED


async def test_half_open_probe_rejected_before_the_venue_does_not_wedge_the_breaker() -> None:
    live = ScriptedBroker()
    rig = Rig(live, threshold=1, max_quantity="10")
    live.on_place(BrokerUnavailable("down"))
    await rig.service.handle([crypto("s0")])
    assert rig.breaker.state is BreakerState.OPEN
    rig.clock.advance(30)
    [rejected] = await rig.service.handle([crypto("fat-finger", quantity=D("1000"))])
    assert rejected.state is OrderState.REJECTED  # the probe never reached the venue
    rig.clock.advance(30)
    [order] = await rig.service.handle([crypto("next")])
    assert order.broker is Broker.BINANCE
    assert rig.breaker.state is BreakerState.CLOSED


async def test_redelivered_rerouted_order_is_asked_at_paper_not_placed_again() -> None:
    live = ScriptedBroker().on_place(BrokerUnavailable("down"))
    rig = Rig(live)
    request = crypto()
    await rig.service.handle([request])
    assert rig.store.orders[request.client_order_id].broker is Broker.PAPER
    await rig.service.handle([request])
    assert live.place_count == 1 and live.queried == []
    assert len(rig.paper.placed) == 1
    assert [o.client_order_id for o in rig.paper.queried] == [request.client_order_id]
    assert len({f.exec_id for f in rig.sink.emitted_fills}) == 1


async def test_failed_health_check_goes_to_paper_with_reason() -> None:
    live = ScriptedBroker().on_health(False, RuntimeError("socket closed"))
    rig = Rig(live, threshold=5)
    [first] = await rig.service.handle([crypto("h1")])
    [second] = await rig.service.handle([crypto("h2")])
    for order in (first, second):
        assert (order.broker, order.rerouted_from) == (Broker.PAPER, Broker.BINANCE)
        assert order.reason == "binance failed health_check"
        assert order.state is OrderState.FILLED
    assert live.place_count == 0
    assert rig.breaker.consecutive_failures == 2
    assert rig.breaker.last_reason == "health check failed"
    [third] = await rig.service.handle([crypto("h3")])  # healthy again
    assert third.broker is Broker.BINANCE and live.place_count == 1
    assert rig.breaker.consecutive_failures == 0


async def test_force_paper_goes_to_paper_without_touching_the_venue() -> None:
    live = ScriptedBroker()
    rig = Rig(live, force_paper=True)
    [order] = await rig.service.handle([crypto()])
    assert (order.broker, order.rerouted_from, order.reason) == (
        Broker.PAPER, Broker.BINANCE, "FORCE_PAPER_TRADING=true")
    assert order.state is OrderState.FILLED
    assert live.place_count == 0 and live.health_checks == 0
    assert len(rig.paper.placed) == 1


async def test_paper_refusal_after_reroute_is_rejected_not_dropped() -> None:
    live = ScriptedBroker().on_place(BrokerUnavailable("down"))
    rig = Rig(live)
    [order] = await rig.service.handle([crypto(reference_price=None)])
    # visible, not dropped: REJECTED with paper's reason and the reroute that led there
    assert order.state is OrderState.REJECTED
    assert (order.broker, order.rerouted_from) == (Broker.PAPER, Broker.BINANCE)
    assert order.reason.startswith("paper: no reference_price and no market data")
    assert order.reason.endswith("(after reroute from binance: binance unavailable: down)")
    assert rig.store.orders[order.client_order_id].state is OrderState.REJECTED
    assert rig.sink.states_for(order.client_order_id) == [OrderState.REJECTED]
    assert rig.breaker.consecutive_failures == 1


# --- reconcile -----------------------------------------------------------------------------------


async def test_reconcile_reattaches_known_orders_and_replaces_unseen_ones() -> None:
    live = ScriptedBroker(poll_interval=3.0)
    store = InMemoryOrderStore()
    partial = make_order(signal_id="partial", state=OrderState.SUBMITTED, venue_order_id="V-partial")
    filled = make_order(signal_id="filled", symbol="ETH-USDT", state=OrderState.SUBMITTED)
    unseen = make_order(signal_id="unseen", symbol="SOL-USDT")  # PENDING: crashed before step 4
    done = make_order(signal_id="done", state=OrderState.FILLED, filled_quantity=D("1"),
                      avg_fill_price=D("1"))
    on_paper = make_order(signal_id="paper", broker=Broker.PAPER, state=OrderState.SUBMITTED)
    store.seed(partial, filled, unseen, done, on_paper)
    live.knows(venue_status(partial, OrderState.PARTIALLY_FILLED, filled="0.4", avg="100",
                            venue_id="V-partial"),
               venue_status(filled, OrderState.FILLED, filled="1", avg="200"))
    rig = Rig(live, store=store)

    report = await rig.service.reconcile()

    assert report == ReconcileReport(checked=3, resumed=2, replaced=1)
    assert sorted(o.client_order_id for o in live.queried) == sorted(
        o.client_order_id for o in (partial, filled, unseen))
    assert live.placed_ids() == [unseen.client_order_id]
    missed = {f.client_order_id: (f.quantity, f.price) for f in rig.sink.emitted_fills}
    assert missed == {partial.client_order_id: (D("0.4"), D("100")),
                      filled.client_order_id: (D("1"), D("200"))}
    assert rig.tracker.is_tracking(partial.client_order_id)
    assert rig.tracker.is_tracking(unseen.client_order_id)
    assert not rig.tracker.is_tracking(filled.client_order_id)
    assert store.orders[unseen.client_order_id].state is OrderState.SUBMITTED
    assert rig.paper.placed == []

    # the re-attached order goes on being polled
    live.on_query(partial, venue_status(partial, OrderState.FILLED, filled="1", avg="100",
                                        venue_id="V-partial"))
    rig.clock.advance(3)
    await rig.tracker.poll_due()
    assert [f.quantity for f in rig.sink.fills_for(partial.client_order_id)] == [D("0.4"), D("0.6")]


async def test_reconcile_with_nothing_open() -> None:
    rig = Rig(ScriptedBroker())
    assert await rig.service.reconcile() == ReconcileReport(0, 0, 0)


async def test_paper_reconcile_after_restart_replaces_resting_orders() -> None:
    """Paper keeps its book in memory: after a restart a resting SUBMITTED order is unknown to
    it and is placed again (deterministic ids), which must not trip the state machine."""
    data = FakeMarketData()
    data.set_mid("BTC-USDT", "100")
    rig = Rig(live=None, paper=CountingPaper(market_data=data))
    request = to_paper("rest", order_type="LIMIT", limit_price=D("90"), reference_price=None)
    await rig.service.handle([request])
    cid = request.client_order_id
    assert rig.store.orders[cid].state is OrderState.SUBMITTED

    rig.clock.advance(LEASE + 1)  # the first process died: its claims expired
    restarted = Rig(live=None, paper=CountingPaper(market_data=data), store=rig.store)
    report = await restarted.service.reconcile()
    assert report == ReconcileReport(checked=1, resumed=0, replaced=1)
    assert [o.client_order_id for o in restarted.paper.placed] == [cid]
    assert restarted.tracker.is_tracking(cid)
    assert restarted.store.orders[cid].state is OrderState.SUBMITTED

    data.set_mid("BTC-USDT", "89")
    restarted.clock.advance(1)
    await restarted.tracker.poll_due()
    [fill] = restarted.sink.emitted_fills
    assert (fill.client_order_id, fill.quantity, fill.price) == (cid, request.quantity, D("89.089"))


@pytest.mark.parametrize("force_paper", [False, True])
async def test_gateway_name_is_the_live_venue(force_paper: bool) -> None:
    rig = Rig(ScriptedBroker(Broker.MT4), force_paper=force_paper)
    assert rig.gateway.name is Broker.MT4
    assert Rig(live=None).gateway.name is Broker.PAPER


async def test_unreachable_venue_on_resume_never_replaces_and_asks_again_later() -> None:
    """A redelivered order the venue may already hold must not be placed again (on the venue or
    on paper) while the venue cannot be asked; it is retried once the venue answers."""
    live = ScriptedBroker(poll_interval=3.0)
    store = InMemoryOrderStore()
    maybe_placed = make_order(signal_id="maybe", state=OrderState.PENDING)
    store.seed(maybe_placed)
    live.on_query(maybe_placed, BrokerUnavailable("connection refused"))
    rig = Rig(live, store=store)

    report = await rig.service.reconcile()

    assert report == ReconcileReport(checked=1, resumed=1, replaced=0)
    assert live.placed == [] and rig.paper.placed == []
    assert rig.service.unresolved == {maybe_placed.client_order_id}
    assert any("unreachable" in e.reason for e in rig.sink.emitted_events
               if e.client_order_id == maybe_placed.client_order_id)

    live.knows(venue_status(maybe_placed, OrderState.FILLED, filled="1", avg="250", venue_id="V-9"))
    again = await rig.service.retry_unresolved()

    assert again == ReconcileReport(checked=1, resumed=1, replaced=0)
    assert rig.service.unresolved == set()
    assert live.placed == [] and rig.paper.placed == []
    assert [(f.quantity, f.price) for f in rig.sink.fills_for(maybe_placed.client_order_id)] == [
        (D("1"), D("250"))]
    assert await rig.service.retry_unresolved() is None


async def test_one_failed_health_check_counts_once_while_cached() -> None:
    live = ScriptedBroker().on_health(False)
    rig = Rig(live, threshold=3)
    rig.gateway = CompositeBrokerAdapter(live, rig.paper, rig.breaker, health_ttl=10.0, clock=rig.clock)
    rig.service.broker = rig.gateway
    for i in range(5):  # five batches inside one health TTL see one failed check
        [order] = await rig.service.handle([crypto(signal_id=f"hc-{i}")])
        assert (order.broker, order.reason) == (Broker.PAPER, "binance failed health_check")
    assert live.health_checks == 1
    assert rig.breaker.consecutive_failures == 1
    assert rig.breaker.state is BreakerState.CLOSED


async def test_placement_outcome_unknown_keeps_the_order_at_the_venue_and_reconciles() -> None:
    """A placement that may have reached the venue is never sent to paper (it could execute
    twice); the venue is asked again and the answer decides."""
    live = ScriptedBroker().on_place(PlacementUnknown("response lost"))
    rig = Rig(live, threshold=5)
    [order] = await rig.service.handle([crypto(signal_id="lost")])

    assert order.state is OrderState.PENDING and order.broker is Broker.BINANCE
    assert rig.paper.placed == []
    assert rig.service.unresolved == {order.client_order_id}
    assert rig.breaker.consecutive_failures == 1
    assert any("placement outcome unknown" in e.reason for e in rig.sink.emitted_events)

    # the venue did take it: the retry finds it there, tracks it and emits its fill, no second order
    live.knows(venue_status(order, OrderState.FILLED, filled="1", avg="101", venue_id="V-1"))
    await rig.service.retry_unresolved()
    assert live.place_count == 1 and rig.paper.placed == []
    assert [(f.quantity, f.price) for f in rig.sink.fills_for(order.client_order_id)] == [(D("1"), D("101"))]


async def test_placement_outcome_unknown_and_never_seen_is_placed_once_more_at_the_venue() -> None:
    live = ScriptedBroker().on_place(PlacementUnknown("connection dropped"))
    rig = Rig(live, threshold=5)
    [order] = await rig.service.handle([crypto(signal_id="dropped")])
    await rig.service.retry_unresolved()  # the venue never saw it: place it again, same client id
    assert live.placed_ids() == [order.client_order_id, order.client_order_id]
    assert rig.paper.placed == []
    assert rig.store.orders[order.client_order_id].state is OrderState.SUBMITTED
