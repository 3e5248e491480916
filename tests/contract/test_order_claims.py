"""Order ownership (issue 12): claims, leases and sweeps, on both stores.

Every scenario runs against the in-memory store (leases read its injected ManualClock, moved by
the test) and against PostgreSQL (leases read the database's ``now()``, so time passes by
sleeping; short leases expire, long ones cannot expire during a test). "Another executor" is a
second handle on the same data: a second ``TimescaleStore`` (its own pool, as another process
would have), or the same ``InMemoryStore``.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import pytest_asyncio

from adapters.memory import InMemoryStore
from adapters.timescale import TimescaleStore, load_migrations
from adapters.timescale.sql import CLAIM_EXPIRED, TERMINAL_STATE_VALUES
from execution.clock import ManualClock
from execution.ports import ClaimResult
from schemas import AssetClass, Broker, Fill, Order, OrderEvent, OrderState, Side, client_order_id_for
from tests.fixtures.storage import STORE_TABLES

D = Decimal
T0 = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)

#: expires after one ``rig.expire()``
SHORT = 0.2
#: never expires during a test
LONG = 60.0

Store = InMemoryStore | TimescaleStore


@dataclass
class Rig:
    store: Store
    #: a second executor's handle on the same orders
    peer: Store
    #: let more than ``SHORT`` seconds of the store's clock pass
    expire: Callable[[], Awaitable[None]]


_seq = iter(range(1_000_000))


def order(broker: Broker = Broker.BINANCE, **changes: Any) -> Order:
    signal_id = f"claim-{uuid.uuid4().hex[:12]}"
    at = T0 + timedelta(milliseconds=next(_seq))
    return Order(signal_id=signal_id, client_order_id=client_order_id_for(signal_id), symbol="BTC-USDT",
                 side=Side.BUY, quantity=D("1"), broker=broker, asset_class=AssetClass.CRYPTO, ts=T0,
                 routed_at=at, created_at=at, updated_at=at, **changes)


def ids(orders: list[Order]) -> set[str]:
    return {o.client_order_id for o in orders}


async def save(store: Store, current: Order, moved: Order) -> Order:
    await store.save_transitions([(moved, OrderEvent.of(moved, current.state))])
    return moved


@pytest_asyncio.fixture(loop_scope="session", params=["memory", "timescale"])
async def rig(request: pytest.FixtureRequest, database_url: str) -> AsyncIterator[Rig]:
    if request.param == "memory":
        clock = ManualClock(T0)
        memory = InMemoryStore(now=clock.now)

        async def advance() -> None:
            clock.advance(SHORT * 1.5)

        yield Rig(memory, memory, advance)
        return

    async def sleep() -> None:
        await asyncio.sleep(SHORT * 1.5)

    store, peer = (TimescaleStore(database_url, max_pool_size=2) for _ in range(2))
    try:
        await store.start()
        await peer.start()
        await store.pool.execute(f"TRUNCATE {', '.join(STORE_TABLES)}")
        yield Rig(store, peer, sleep)
    finally:
        await asyncio.gather(store.close(), peer.close())


# ---- claim_orders: step 2 with ownership ---------------------------------------------------------


async def test_new_orders_are_inserted_owned_and_a_redelivery_to_another_owner_gets_nothing(rig: Rig) -> None:
    a, b = order(), order()
    assert await rig.store.claim_orders([a, b, a], owner="A", lease_seconds=LONG) == ClaimResult(
        frozenset(ids([a, b])), frozenset())
    assert await rig.peer.claim_orders([a, b], owner="B", lease_seconds=LONG) == ClaimResult(frozenset(), frozenset())
    # the owner's own redelivery is a resume: claimed, not inserted again
    assert await rig.store.claim_orders([a], owner="A", lease_seconds=LONG) == ClaimResult(
        frozenset(), frozenset(ids([a])))
    assert await rig.store.claim_orders([], owner="A", lease_seconds=LONG) == ClaimResult(frozenset(), frozenset())
    stored = await rig.store.get_orders(sorted(ids([a, b])))
    assert stored == {a.client_order_id: a, b.client_order_id: b}
    assert [e.state for e in await rig.store.order_events(a.client_order_id)] == [OrderState.PENDING]


async def test_two_owners_racing_on_the_same_batch_each_get_a_disjoint_share(rig: Rig) -> None:
    for _round in range(3):
        fresh = [order() for _ in range(120)]
        free = [order() for _ in range(120)]
        await rig.store.insert_orders(free)  # existing and unowned: the UPDATE path races too
        batch = fresh + free
        a, b = await asyncio.gather(
            rig.store.claim_orders(batch, owner="A", lease_seconds=LONG),
            rig.peer.claim_orders(list(reversed(batch)), owner="B", lease_seconds=LONG),
        )
        won_a, won_b = a.inserted | a.claimed, b.inserted | b.claimed
        assert not won_a & won_b, "an order was claimed by both owners"
        assert won_a | won_b == ids(batch), "an order was claimed by neither"
        assert (a.inserted | b.inserted) == ids(fresh) and not (a.claimed | b.claimed) & ids(fresh)
        assert not (a.inserted | b.inserted) & ids(free)


async def test_an_expired_lease_is_taken_over_and_a_live_one_is_not(rig: Rig) -> None:
    short, live = order(), order()
    await rig.store.claim_orders([short], owner="A", lease_seconds=SHORT)
    await rig.store.claim_orders([live], owner="A", lease_seconds=LONG)
    # (no assertion on ``short`` before it expires: a loaded machine may take longer than SHORT)
    assert await rig.peer.claim_orders([live], owner="B", lease_seconds=LONG) == ClaimResult(
        frozenset(), frozenset())
    await rig.expire()
    assert await rig.peer.claim_orders([short, live], owner="B", lease_seconds=LONG) == ClaimResult(
        frozenset(), frozenset(ids([short])))
    # A learns it lost the first one: renewing returns only what it still holds
    assert await rig.store.renew_claims(owner="A", client_order_ids=sorted(ids([short, live])),
                                        lease_seconds=LONG) == ids([live])


async def test_renewing_keeps_the_claim_past_the_first_lease(rig: Rig) -> None:
    kept, lapsed = order(), order()
    await rig.store.claim_orders([kept, lapsed], owner="A", lease_seconds=SHORT)
    assert await rig.store.renew_claims(owner="A", client_order_ids=[kept.client_order_id],
                                        lease_seconds=LONG) == ids([kept])
    assert await rig.peer.renew_claims(owner="B", client_order_ids=[kept.client_order_id],
                                       lease_seconds=LONG) == set()  # only the owner renews
    await rig.expire()
    assert await rig.peer.claim_orders([kept, lapsed], owner="B", lease_seconds=LONG) == ClaimResult(
        frozenset(), frozenset(ids([lapsed])))
    assert ids(await rig.peer.claim_expired(Broker.BINANCE, owner="B", lease_seconds=LONG)) == set()
    assert await rig.store.renew_claims(owner="A", client_order_ids=[], lease_seconds=LONG) == set()


async def test_released_claims_are_free_at_once_and_only_the_owner_releases(rig: Rig) -> None:
    mine, other = order(), order()
    await rig.store.claim_orders([mine], owner="A", lease_seconds=LONG)
    await rig.peer.claim_orders([other], owner="B", lease_seconds=LONG)
    await rig.store.release_claims(owner="A", client_order_ids=sorted(ids([mine, other])))
    await rig.store.release_claims(owner="A", client_order_ids=[])
    swept = await rig.peer.claim_expired(Broker.BINANCE, owner="C", lease_seconds=LONG)
    assert ids(swept) == ids([mine])
    assert await rig.peer.renew_claims(owner="B", client_order_ids=[other.client_order_id],
                                       lease_seconds=LONG) == ids([other])


# ---- terminal orders ---------------------------------------------------------------------------


async def test_terminal_orders_are_never_claimed(rig: Rig) -> None:
    cancelled, filled, born_rejected = order(), order(), order(state=OrderState.REJECTED, reason="too old")
    # inserted terminal: a new row (reported) that nobody owns
    assert await rig.store.claim_orders([cancelled, filled, born_rejected], owner="A",
                                        lease_seconds=SHORT) == ClaimResult(
        frozenset(ids([cancelled, filled, born_rejected])), frozenset())
    submitted = await save(rig.store, cancelled, cancelled.transition(OrderState.SUBMITTED, venue_order_id="V-1"))
    await save(rig.store, submitted, submitted.transition(OrderState.CANCELLED, reason="user cancel"))
    applied = await rig.store.apply_fills([Fill(
        exec_id=f"x-{filled.client_order_id}", cumulative_quantity=D("1"), quantity=D("1"),
        client_order_id=filled.client_order_id, broker=filled.broker, symbol=filled.symbol,
        asset_class=filled.asset_class, side=filled.side, price=D("100"), ts=T0)])
    assert len(applied) == 1
    terminal = ids([cancelled, filled, born_rejected])
    # a terminal transition clears the claim: the owner holds nothing to renew
    assert await rig.store.renew_claims(owner="A", client_order_ids=sorted(terminal), lease_seconds=LONG) == set()
    await rig.expire()
    assert await rig.peer.claim_orders([cancelled, filled, born_rejected], owner="B",
                                       lease_seconds=LONG) == ClaimResult(frozenset(), frozenset())
    assert await rig.peer.claim_expired(Broker.BINANCE, owner="B", lease_seconds=LONG) == []
    states = {cid: o.state for cid, o in (await rig.store.get_orders(sorted(terminal))).items()}
    assert states == {cancelled.client_order_id: OrderState.CANCELLED, filled.client_order_id: OrderState.FILLED,
                      born_rejected.client_order_id: OrderState.REJECTED}


# ---- claim_expired: the sweep ------------------------------------------------------------------


async def test_the_sweep_takes_free_and_expired_orders_of_its_topic_including_those_rerouted_to_paper(
    rig: Rig,
) -> None:
    unowned, expired, live, rerouted = order(), order(), order(), order()
    paper_topic = order(Broker.PAPER, rerouted_from=Broker.BINANCE, route_reason="FORCE_PAPER_TRADING=true")
    await rig.store.insert_orders([unowned])
    await rig.store.claim_orders([expired, rerouted, paper_topic], owner="A", lease_seconds=SHORT)
    await rig.store.claim_orders([live], owner="A", lease_seconds=LONG)
    moved = await save(rig.store, rerouted, rerouted.rerouted(Broker.PAPER, "binance circuit open"))
    assert moved.broker is Broker.PAPER and moved.rerouted_from is Broker.BINANCE
    await rig.expire()

    swept = await rig.peer.claim_expired(Broker.BINANCE, owner="B", lease_seconds=LONG)
    assert [o.client_order_id for o in swept] == [  # oldest first; ``live`` stays A's
        unowned.client_order_id, expired.client_order_id, rerouted.client_order_id]
    assert swept[2] == (await rig.store.get_orders([rerouted.client_order_id]))[rerouted.client_order_id]
    assert swept[2].broker is Broker.PAPER
    # an order that came from orders.paper belongs to the paper executor's sweep, not binance's
    assert ids(await rig.peer.claim_expired(Broker.PAPER, owner="P", lease_seconds=LONG)) == ids([paper_topic])
    assert await rig.peer.claim_expired(Broker.BINANCE, owner="C", lease_seconds=LONG) == []
    # what the sweep took is B's now: A's renewal fails, B's succeeds
    taken = sorted(ids(swept))
    assert await rig.store.renew_claims(owner="A", client_order_ids=taken, lease_seconds=LONG) == set()
    assert await rig.peer.renew_claims(owner="B", client_order_ids=taken, lease_seconds=LONG) == set(taken)


async def test_the_sweep_takes_at_most_limit_oldest_first(rig: Rig) -> None:
    batch = [order() for _ in range(7)]
    await rig.store.insert_orders(list(reversed(batch)))
    first = await rig.peer.claim_expired(Broker.BINANCE, owner="B", lease_seconds=LONG, limit=3)
    assert first == batch[:3]
    assert await rig.peer.claim_expired(Broker.BINANCE, owner="B", lease_seconds=LONG, limit=0) == []
    assert await rig.peer.claim_expired(Broker.BINANCE, owner="B", lease_seconds=LONG) == batch[3:]


async def test_concurrent_sweeps_never_return_the_same_order(rig: Rig) -> None:
    batch = [order() for _ in range(400)]
    await rig.store.insert_orders(batch)
    seen: list[str] = []
    while True:
        a, b = await asyncio.gather(
            rig.store.claim_expired(Broker.BINANCE, owner="A", lease_seconds=LONG, limit=60),
            rig.peer.claim_expired(Broker.BINANCE, owner="B", lease_seconds=LONG, limit=60),
        )
        if not a and not b:
            break
        seen += [o.client_order_id for o in a + b]
    assert len(seen) == len(set(seen)), "two sweepers took the same order"
    assert set(seen) == ids(batch)


# ---- PostgreSQL only: the migration and the sweep's index --------------------------------------


async def test_the_migration_backfills_executor_from_the_broker_an_order_was_inserted_with(
    store: TimescaleStore,
) -> None:
    plain, rerouted, done = order(), order(Broker.IBKR), order()
    await store.insert_orders([plain, rerouted, done])
    await save(store, rerouted, rerouted.rerouted(Broker.PAPER, "gateway down"))
    await save(store, done, done.transition(OrderState.REJECTED, reason="bad"))
    migration = next(m for m in load_migrations() if m.version == "004_order_claims")
    async with store.pool.acquire() as conn:
        tx = conn.transaction()
        await tx.start()
        try:
            # the rows as they were before 004: no executor
            await conn.execute("ALTER TABLE orders ALTER COLUMN executor DROP NOT NULL")
            await conn.execute("UPDATE orders SET executor = NULL")
            await conn.execute(migration.sql)
            rows = await conn.fetch("SELECT client_order_id, executor FROM orders")
            nullable = await conn.fetchval(
                "SELECT is_nullable FROM information_schema.columns "
                "WHERE table_name = 'orders' AND column_name = 'executor'")
        finally:
            await tx.rollback()
    assert dict(rows) == {plain.client_order_id: "binance", rerouted.client_order_id: "ibkr",
                          done.client_order_id: "binance"}
    assert nullable == "NO"


async def test_the_sweep_can_use_its_partial_index(store: TimescaleStore) -> None:
    definition = await store.pool.fetchval(
        "SELECT indexdef FROM pg_indexes WHERE indexname = 'orders_claim_sweep_idx'")
    assert all(f"'{state}'" in definition for state in TERMINAL_STATE_VALUES)
    async with store.pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL enable_seqscan = off")
        plan = "\n".join(r[0] for r in await conn.fetch(f"EXPLAIN {CLAIM_EXPIRED}", "binance", "X", 1.0, 10))
    assert "orders_claim_sweep_idx" in plan, plan
