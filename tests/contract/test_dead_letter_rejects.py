"""A dead-lettered order that reached step 2 is marked REJECTED with the reason (issue 12).

``process_batch`` dead-letters a message whose batch keeps failing; for an executor, that failure
may come after step 2 inserted the order's row (PENDING, claimed). Left so, a later sweep would
place it, however old. Now the executor rejects that row with the dead letter's reason, unless the
venue already holds the order (the batch failed after placing it: the sweep settles it by asking).

Both stores implement ``reject_orders`` alike (``InMemoryStore``, ``TimescaleStore`` on the real
PostgreSQL); the executor's path runs the production ``process_batch`` and
``agents.executor.reject_dead_lettered`` over the real PostgreSQL and the real paper venue.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import partial
from typing import Any, cast

import pytest
import pytest_asyncio
from faust.types import EventT, TopicT

from adapters.memory import InMemoryStore
from adapters.paper import PaperAdapter
from adapters.timescale import TRANSIENT_ERRORS, TimescaleStore
from agents.batches import parse_items, process_batch
from agents.dead_letters import DeadLetters
from agents.executor import reject_dead_lettered
from execution.breaker import CircuitBreaker
from execution.clock import ManualClock
from execution.fallback import CompositeBrokerAdapter
from execution.fill_tracker import FillTracker
from execution.retry import Backoff
from execution.risk import PreTradeLimits
from execution.service import ExecutionService
from schemas import (
    AssetClass,
    Broker,
    Order,
    OrderEvent,
    OrderIntent,
    OrderRequest,
    OrderState,
    Side,
    client_order_id_for,
)
from tests.fixtures.storage import STORE_TABLES
from tests.unit.fakes import Event, Message, RecordingTopic

D = Decimal
T0 = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
SHORT, LONG = 0.2, 60.0
NO_WAIT = Backoff(attempts=1_000_000, base=0.0, cap=0.0, jitter=0.0)
Store = InMemoryStore | TimescaleStore


# ---- the store port: reject_orders on both stores ------------------------------------------------


@dataclass
class Rig:
    store: Store
    peer: Store  # another executor's handle on the same rows
    clock: ManualClock | None

    async def expire(self) -> None:
        if self.clock is not None:
            self.clock.advance(SHORT * 1.5)
        else:
            await asyncio.sleep(SHORT * 1.5)


@pytest_asyncio.fixture(loop_scope="session", params=["memory", "timescale"])
async def rig(request: pytest.FixtureRequest, database_url: str) -> AsyncIterator[Rig]:
    if request.param == "memory":
        clock = ManualClock(T0)
        memory = InMemoryStore(now=clock.now)
        yield Rig(memory, memory, clock)
        return
    store, peer = (TimescaleStore(database_url, max_pool_size=2) for _ in range(2))
    try:
        await store.start()
        await peer.start()
        await store.pool.execute(f"TRUNCATE {', '.join(STORE_TABLES)}")
        yield Rig(store, peer, None)
    finally:
        await asyncio.gather(store.close(), peer.close())


def order(**changes: Any) -> Order:
    signal_id = f"dl-{uuid.uuid4().hex[:12]}"
    return Order(signal_id=signal_id, client_order_id=client_order_id_for(signal_id), symbol="BTC-USDT",
                 side=Side.BUY, quantity=D("1"), broker=Broker.BINANCE, asset_class=AssetClass.CRYPTO, ts=T0,
                 routed_at=T0, created_at=T0, updated_at=T0, **changes)


async def save(store: Store, current: Order, state: OrderState) -> Order:
    moved = current.transition(state, at=T0 + timedelta(seconds=1))
    await store.save_transitions([(moved, OrderEvent.of(moved, current.state))])
    return moved


async def test_only_pending_rows_whose_claim_is_ours_free_or_expired_are_rejected(rig: Rig) -> None:
    mine, theirs, lapsed, free, placed, done = (order() for _ in range(6))
    await rig.store.claim_orders([mine, placed, done], owner="A", lease_seconds=LONG)
    await rig.peer.claim_orders([theirs], owner="B", lease_seconds=LONG)
    await rig.peer.claim_orders([lapsed], owner="B", lease_seconds=SHORT)
    await rig.store.insert_orders([free])
    await save(rig.store, placed, OrderState.SUBMITTED)  # may be working at the venue
    await save(rig.store, done, OrderState.CANCELLED)
    await rig.expire()
    at = T0 + timedelta(hours=1)
    everything = [mine, theirs, lapsed, free, placed, done]
    asked = [(o.client_order_id, f"executor-binance failed: boom {o.signal_id}") for o in everything]
    asked.append(("never-inserted", "executor-binance failed: before step 2"))

    events = await rig.store.reject_orders(asked, owner="A", at=at)

    rejected = {mine.client_order_id, lapsed.client_order_id, free.client_order_id}
    assert {e.client_order_id for e in events} == rejected
    for event in events:
        assert (event.state, event.previous_state, event.ts) == (OrderState.REJECTED, OrderState.PENDING, at)
        assert (event.broker, event.symbol) == (Broker.BINANCE, "BTC-USDT")
        assert event.reason == dict(asked)[event.client_order_id]
    stored = await rig.store.get_orders([o.client_order_id for o in everything])
    assert {cid: o.state for cid, o in stored.items()} == {
        mine.client_order_id: OrderState.REJECTED, lapsed.client_order_id: OrderState.REJECTED,
        free.client_order_id: OrderState.REJECTED, theirs.client_order_id: OrderState.PENDING,
        placed.client_order_id: OrderState.SUBMITTED, done.client_order_id: OrderState.CANCELLED,
    }
    assert stored[mine.client_order_id].reason == dict(asked)[mine.client_order_id]
    assert stored[mine.client_order_id].updated_at == at
    trail = await rig.store.order_events(mine.client_order_id)
    assert [(e.state, e.previous_state) for e in trail] == [
        (OrderState.PENDING, None), (OrderState.REJECTED, OrderState.PENDING)]
    # the claim went with it (terminal): nothing left to renew or to sweep
    assert await rig.store.renew_claims(owner="A", client_order_ids=[mine.client_order_id], lease_seconds=LONG) \
        == set()
    swept = await rig.peer.claim_expired(Broker.BINANCE, owner="C", lease_seconds=LONG)
    assert not {o.client_order_id for o in swept} & rejected
    # a second time: nothing more happens
    assert await rig.store.reject_orders(asked, owner="A", at=at) == []


# ---- the executor: a dead letter after step 2 ------------------------------------------------------


@dataclass
class RecordingEvents:
    """ExecutionEvents standing in for the order-events and fills topics."""

    events: list[OrderEvent] = field(default_factory=list)

    async def fills(self, fills: Sequence[Any]) -> None:
        pass

    async def order_events(self, events: Sequence[OrderEvent]) -> None:
        self.events.extend(events)


def request_event(offset: int, tag: str) -> EventT[Any]:
    data = {"signal_id": f"{tag}-{offset}", "client_order_id": f"{tag}-cid-{offset}", "strategy": "momo",
            "symbol": "BTC-USDT", "side": "BUY", "quantity": "0.5", "asset_class": "CRYPTO", "broker": "paper",
            "reference_price": "100", "ts": datetime.now(UTC).isoformat()}
    return cast(EventT[Any], Event(Message("orders.paper", 0, offset), b"BTC-USDT", json.dumps(data).encode()))


class FailingLimits(PreTradeLimits):
    """A pre-trade check that fails (a bug) on one order: a stand-in for any failure between
    step 2 (the row is inserted) and step 4 (nothing was placed)."""

    poison: str = ""

    def violation(self, order: OrderIntent) -> str | None:
        if getattr(order, "client_order_id", None) == type(self).poison:
            raise ArithmeticError("pre-trade check failed")
        return super().violation(order)


class FailingFlushStore(TimescaleStore):
    """The real store, refusing every write about one order once it was placed (its outcome
    cannot be persisted): the batch holding it fails after step 4."""

    poison = ""
    refused = False

    async def save_transitions(self, changes: Sequence[tuple[Order, OrderEvent]]) -> None:
        if any(o.client_order_id == self.poison for o, _ in changes):
            self.refused = True
            raise ValueError("cannot persist this outcome")
        await super().save_transitions(changes)

    async def claim_orders(self, orders: Sequence[Order], *, owner: str, lease_seconds: float) -> Any:
        if self.refused and any(o.client_order_id == self.poison for o in orders):
            raise ValueError("cannot persist this outcome")
        return await super().claim_orders(orders, owner=owner, lease_seconds=lease_seconds)


def executor(store: TimescaleStore, sink: RecordingEvents, paper: PaperAdapter,
             limits: PreTradeLimits | None = None) -> ExecutionService:
    breaker = CircuitBreaker("paper")
    composite = CompositeBrokerAdapter(None, paper, breaker)
    return ExecutionService(broker=composite, store=store, sink=sink, tracker=FillTracker(store, sink),
                            limits=limits or PreTradeLimits(D("100"), D("1000000")), executor=Broker.PAPER,
                            owner=f"paper-test-{uuid.uuid4().hex[:6]}")


async def run_batch(service: ExecutionService, sink: RecordingEvents, events: list[EventT[Any]],
                    topic: RecordingTopic) -> int:
    dead = DeadLetters(cast(TopicT, topic), "executor-paper")
    items = await parse_items(events, OrderRequest, dead)
    on_dead = partial(_reject, service, sink)
    return await process_batch("executor-paper", items, service.handle, dead, TRANSIENT_ERRORS,
                               backoff=NO_WAIT, on_dead=on_dead)


async def _reject(service: ExecutionService, sink: RecordingEvents, request: OrderRequest, reason: str) -> None:
    await reject_dead_lettered(service, sink, request, reason, TRANSIENT_ERRORS)


async def test_an_order_dead_lettered_after_step_2_is_rejected_with_the_reason(store: TimescaleStore) -> None:
    tag = f"s2-{uuid.uuid4().hex[:6]}"
    events = [request_event(i, tag) for i in range(6)]
    poison = f"{tag}-cid-3"
    limits = type("Limits", (FailingLimits,), {"poison": poison})(D("100"), D("1000000"))
    sink, paper, topic = RecordingEvents(), PaperAdapter(), RecordingTopic()
    service = executor(store, sink, paper, limits)

    assert await run_batch(service, sink, events, topic) == 1

    assert [letter.offset for letter in topic.letters] == [3]
    reason = topic.letters[0].reason
    assert reason == "executor-paper failed: ArithmeticError: pre-trade check failed"
    stored = await store.get_orders([f"{tag}-cid-{i}" for i in range(6)])
    assert len(stored) == 6  # step 2 had inserted the poisoned one too
    assert stored[poison].state is OrderState.REJECTED and stored[poison].reason == reason
    for cid, good in stored.items():  # every other order was placed, none rejected
        if cid != poison:
            assert good.state is not OrderState.REJECTED
            assert await paper.query(good) is not None
    assert await paper.query(stored[poison]) is None  # never placed
    assert [(e.state, e.reason) for e in sink.events if e.client_order_id == poison] == [
        (OrderState.REJECTED, reason)]
    assert [e.state for e in await store.order_events(poison)] == [OrderState.PENDING, OrderState.REJECTED]
    # and no sweep takes it up again
    assert poison not in {o.client_order_id for o in await store.claim_expired(
        Broker.PAPER, owner="sweeper", lease_seconds=LONG)}


async def test_an_order_the_venue_already_holds_is_not_rejected(database_url: str, store: TimescaleStore) -> None:
    """The batch failed after placing (persisting the outcome failed): the venue has the order,
    so rejecting it would contradict the venue. It stays PENDING for the sweep, which asks."""
    tag = f"held-{uuid.uuid4().hex[:6]}"
    events = [request_event(i, tag) for i in range(4)]
    poison = f"{tag}-cid-1"
    failing = type("Store", (FailingFlushStore,), {"poison": poison})(database_url, max_pool_size=2)
    await failing.start()
    try:
        sink, paper, topic = RecordingEvents(), PaperAdapter(), RecordingTopic()
        service = executor(failing, sink, paper)
        assert await run_batch(service, sink, events, topic) == 1
    finally:
        await failing.close()

    assert [letter.offset for letter in topic.letters] == [1]
    stored = await store.get_orders([poison])
    assert stored[poison].state is OrderState.PENDING  # not rejected
    held = await paper.query(stored[poison])
    assert held is not None and held.state is OrderState.FILLED  # the venue has it
    assert [e.state for e in sink.events if e.client_order_id == poison and e.state is OrderState.REJECTED] == []


async def test_messages_that_failed_validation_are_dead_lettered_once(store: TimescaleStore) -> None:
    """Events that already failed validation were dead-lettered twice (once when parsed, again
    with their batch); now once, and they never reach step 2."""
    tag = f"val-{uuid.uuid4().hex[:6]}"
    events = [request_event(0, tag), cast(EventT[Any], Event(Message("orders.paper", 0, 1), b"k", b"{not json")),
              request_event(2, tag)]
    sink, paper, topic = RecordingEvents(), PaperAdapter(), RecordingTopic()
    service = executor(store, sink, paper)
    assert await run_batch(service, sink, events, topic) == 0
    assert [letter.offset for letter in topic.letters] == [1]
    assert {o.state for o in (await store.get_orders([f"{tag}-cid-0", f"{tag}-cid-2"])).values()} == {
        OrderState.SUBMITTED}  # placed (paper fills them on its next poll)
