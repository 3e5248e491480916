"""adapters/memory.py: the in-memory store and fill publisher keep production's rules without a
database or Redis (tests/contract/test_store_parity.py compares the store with TimescaleStore)."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from adapters.memory import InMemoryFillPublisher, InMemoryStore
from execution.ports import FillFee
from schemas import AssetClass, Broker, Fill, Order, OrderEvent, OrderState, Side
from tests.unit.fakes import make_order

D = Decimal
T0 = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)


def fill(order: Order, cumulative: str, price: str, exec_id: str, quantity: str | None = None) -> Fill:
    return Fill(exec_id=exec_id, cumulative_quantity=D(cumulative), quantity=D(quantity or cumulative),
                client_order_id=order.client_order_id, venue_order_id="V-1", broker=order.broker,
                symbol=order.symbol, asset_class=AssetClass.CRYPTO, side=order.side, price=D(price), ts=T0)


def moved(order: Order, state: OrderState, **changes: object) -> tuple[Order, OrderEvent]:
    new = order.transition(state, at=T0, **changes)
    return new, OrderEvent.of(new, order.state)


@pytest.fixture
def store() -> InMemoryStore:
    return InMemoryStore(now=lambda: T0)


async def test_insert_is_idempotent_and_writes_the_first_event(store: InMemoryStore) -> None:
    a, b = make_order(signal_id="a"), make_order(signal_id="b")
    assert await store.insert_orders([a, a]) == {a.client_order_id}
    assert await store.insert_orders([a, b]) == {b.client_order_id}
    assert await store.insert_orders([a.model_copy(update={"quantity": D("9")})]) == set()
    assert (await store.get_orders([a.client_order_id, "nope"])) == {a.client_order_id: a}
    assert [(e.previous_state, e.state) for e in await store.order_events(a.client_order_id)] == [
        (None, OrderState.PENDING)]


async def test_transitions_never_leave_terminal_states_move_backwards_or_touch_fill_totals(
    store: InMemoryStore,
) -> None:
    order = make_order(quantity=D("2"))
    await store.insert_orders([order])
    await store.apply_fills([fill(order, "0.5", "10", "e1")])  # PARTIALLY_FILLED by the fills writer
    submitted = moved(order, OrderState.SUBMITTED, venue_order_id="V-9", filled_quantity=D("2"))
    await store.save_transitions([submitted])
    stored = store.orders[order.client_order_id]
    assert (stored.state, stored.venue_order_id, stored.filled_quantity) == (
        OrderState.PARTIALLY_FILLED, "V-9", D("0.5"))

    await store.save_transitions([moved(submitted[0], OrderState.CANCELLED, reason="user cancel")])
    late = moved(submitted[0], OrderState.REJECTED, reason="too late")
    await store.save_transitions([late])
    stored = store.orders[order.client_order_id]
    assert (stored.state, stored.reason) == (OrderState.CANCELLED, "user cancel")
    assert (await store.order_events(order.client_order_id))[-1] == late[1]  # audited all the same

    ghost = make_order(signal_id="ghost")
    await store.save_transitions([moved(ghost, OrderState.SUBMITTED)])
    assert ghost.client_order_id not in store.orders


async def test_open_orders_are_the_non_terminal_ones_of_a_broker_oldest_first(store: InMemoryStore) -> None:
    older = make_order(signal_id="o1").model_copy(update={"created_at": T0})
    newer = make_order(signal_id="o2").model_copy(update={"created_at": T0 + timedelta(seconds=1)})
    done = make_order(signal_id="o3", state=OrderState.FILLED)
    paper = make_order(signal_id="o4", broker=Broker.PAPER)
    await store.insert_orders([newer, done, paper, older])
    assert [o.client_order_id for o in await store.open_orders(Broker.BINANCE)] == [
        older.client_order_id, newer.client_order_id]
    assert await store.open_orders(Broker.MT4) == []


async def test_fills_apply_growth_once_and_move_orders_and_positions(store: InMemoryStore) -> None:
    buy = make_order(signal_id="buy", quantity=D("1"))
    sell = make_order(signal_id="sell", side=Side.SELL, quantity=D("0.5"))
    await store.insert_orders([buy, sell])
    first = fill(buy, "0.4", "100", "b1")
    assert await store.apply_fills([first, first]) == [first]
    assert await store.apply_fills([first]) == []
    assert await store.apply_fills([fill(buy, "0.4", "100", "b1-again"), fill(buy, "0.3", "99", "b0")]) == []
    [applied] = await store.apply_fills([fill(buy, "1", "110", "b2", quantity="0.3")])
    assert applied.quantity == D("0.6")
    stored = store.orders[buy.client_order_id]
    assert (stored.state, stored.filled_quantity, stored.avg_fill_price, stored.updated_at) == (
        OrderState.FILLED, D("1"), D("106"), T0)

    await store.apply_fills([fill(sell, "0.5", "120", "s1")])
    [position] = await store.positions()
    assert (position.broker, position.quantity, position.avg_price, position.realized_pnl) == (
        Broker.BINANCE, D("0.5"), D("106"), D("7"))
    assert await store.fill_count() == 3
    assert await store.order_counts() == {(Broker.BINANCE, OrderState.FILLED): 2}
    assert [f.quantity for f in await store.recorded_fills(buy.client_order_id)] == [D("0.4"), D("0.6")]
    assert [(e.previous_state, e.state) for e in await store.order_events(buy.client_order_id)] == [
        (None, OrderState.PENDING), (OrderState.PENDING, OrderState.PARTIALLY_FILLED),
        (OrderState.PARTIALLY_FILLED, OrderState.FILLED)]


async def test_an_orphan_fill_is_recorded_with_a_warning_and_its_own_watermark(
    store: InMemoryStore, caplog: pytest.LogCaptureFixture
) -> None:
    ghost = make_order(signal_id="ghost", symbol="SOL-USDT")
    with caplog.at_level(logging.WARNING, logger="adapters.memory"):
        assert len(await store.apply_fills([fill(ghost, "2", "20", "g1")])) == 1
    assert any(ghost.client_order_id in r.getMessage() for r in caplog.records)
    assert await store.apply_fills([fill(ghost, "2", "20", "g2")]) == []
    assert [f.quantity for f in await store.apply_fills([fill(ghost, "3", "26", "g3", quantity="1")])] == [D("1")]
    assert await store.get_orders([ghost.client_order_id]) == {}
    [position] = await store.positions(Broker.BINANCE)
    assert (position.quantity, position.avg_price) == (D("3"), D("22"))


async def test_a_late_fee_applies_whether_it_comes_before_or_after_its_fill(store: InMemoryStore) -> None:
    order = make_order(quantity=D("1"))
    await store.insert_orders([order])
    await store.record_fees([FillFee(Broker.BINANCE, "e2", D("0.2"), "USDT")])
    await store.apply_fills([fill(order, "0.5", "10", "e1"), fill(order, "1", "10", "e2", quantity="0.5")])
    await store.record_fees([FillFee(Broker.BINANCE, "e1", D("0.1"))] * 2)
    assert [(f.commission, f.commission_asset) for f in await store.recorded_fills()] == [
        (D("0.1"), None), (D("0.2"), "USDT")]
    await store.record_fees([FillFee(Broker.PAPER, "e1", D("9"))])  # another broker's e1
    assert (await store.recorded_fills())[0].commission == D("0.1")


async def test_the_publisher_publishes_each_fill_once_to_matching_subscribers() -> None:
    publisher = InMemoryFillPublisher()
    order = make_order(symbol="BTC-USDT")
    everything = publisher.subscribe()
    btc = publisher.subscribe(Broker.BINANCE, "btc-usdt")
    paper = publisher.subscribe(Broker.PAPER)
    one, two = fill(order, "0.5", "10", "e1"), fill(order, "1", "10", "e2", quantity="0.5")
    assert await publisher.publish_fills([one, one]) == 1
    assert await publisher.publish_fills([one, two]) == 1
    assert publisher.published == [one, two]
    assert [everything.get_nowait(), everything.get_nowait()] == [one, two]
    assert btc.qsize() == 2 and paper.empty()

    publisher.unsubscribe(everything)
    three = fill(order, "1.5", "10", "e3", quantity="0.5")
    await publisher.publish_fills([three])
    assert everything.empty() and await asyncio.wait_for(btc.get(), 1) == one
    with pytest.raises(ValueError, match="names its broker"):
        publisher.subscribe(symbol="BTC-USDT")
    await publisher.close()
