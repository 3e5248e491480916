"""Netting (``MT4_CLOSE_OPPOSITE=true``) while other orders of the symbol close tickets too.

Found by the MT4 chaos drill (``tests/chaos/test_chaos_mt4.py``): executors taking over partitions
and re-placements after unknown outcomes place orders of one symbol at the same time, so an
opposite ticket a netting order listed may be closed by another order before its own close
arrives (MT4 answers 4108, the ticket is closed). That changed nothing at MT4, so the order nets
against the open tickets as they are now instead of being REJECTED; but when the ticket was closed
by this very order (placed elsewhere at the same time), going on could execute it twice, so the
adapter stops and leaves the answer to ``query``.

Real httpx against the bridge simulator in this process (``venues/mt4/``); the "other order" is the
simulator's engine closing a ticket between the adapter's listing and its close.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal

import pytest
import pytest_asyncio

from adapters.mt4.errors import OutcomeUnknown
from adapters.mt4.execution import Mt4Adapter
from adapters.mt4.parsing import Ticket
from schemas import AssetClass, Broker, Order, OrderState, Side, client_order_id_for
from tests.contract.venue_harness import MT4_SIM_TOKEN, mt4_test_config
from venues.common.prices import PricePath
from venues.mt4 import CloseRequest, Mt4Simulator, PlaceRequest

D = Decimal


@pytest_asyncio.fixture(loop_scope="session")
async def sim() -> AsyncIterator[Mt4Simulator]:
    simulator = Mt4Simulator(price_path=PricePath(seed=3, volatility=D(0)), api_token=MT4_SIM_TOKEN)
    await simulator.start()
    yield simulator
    await simulator.stop()


@pytest_asyncio.fixture(loop_scope="session")
async def adapter(sim: Mt4Simulator) -> AsyncIterator[Mt4Adapter]:
    mt4 = Mt4Adapter(mt4_test_config(sim.base_url, close_opposite=True))  # type: ignore[arg-type]
    await mt4.connect()
    yield mt4
    await mt4.close()


def sell(signal_id: str, units: str) -> Order:
    return Order(signal_id=signal_id, client_order_id=client_order_id_for(signal_id), symbol="EURUSD",
                 side=Side.SELL, quantity=D(units), asset_class=AssetClass.FX, broker=Broker.MT4)


def buy_ticket(sim: Mt4Simulator, client_id: str, lots: str) -> int:
    return sim.engine.place(PlaceRequest(symbol="EURUSD", side="buy", type="market", volume=D(lots),
                                         client_id=client_id)).ticket


def close_after_listing(adapter: Mt4Adapter, sim: Mt4Simulator, ticket: int, closer: str,
                        monkeypatch: pytest.MonkeyPatch) -> None:
    """The first listing of open tickets is answered, then ``closer`` closes ``ticket`` at MT4."""
    real = adapter.fetch_tickets
    raced: list[int] = []

    async def listing_then_close(state: str) -> list[Ticket]:
        listed = await real(state)
        if not raced:
            raced.append(ticket)
            sim.engine.close(CloseRequest(ticket=ticket, client_id=closer))
        return listed

    monkeypatch.setattr(adapter, "fetch_tickets", listing_then_close)


async def test_an_opposite_ticket_closed_by_another_order_meanwhile_is_netted_around(
        sim: Mt4Simulator, adapter: Mt4Adapter, monkeypatch: pytest.MonkeyPatch) -> None:
    older = buy_ticket(sim, "other-a", "0.10")
    newer = buy_ticket(sim, "other-b", "0.20")
    order = sell("race-1", "15000")
    close_after_listing(adapter, sim, older, "someone-else", monkeypatch)

    status = await adapter.place(order)

    assert (status.state, status.filled_quantity) == (OrderState.FILLED, D(15000))
    mine = sim.engine.orders(client_id=order.client_order_id)
    assert [(t.ticket, t.volume, t.close_client_id) for t in mine] == [(newer, D("0.15"), order.client_order_id)]
    assert [t.volume for t in sim.engine.orders(state="open")] == [D("0.05")]  # the newer ticket's remainder
    for number in [t.ticket for t in sim.engine.orders(state="open")]:
        sim.engine.close(CloseRequest(ticket=number))


async def test_a_ticket_closed_by_the_same_order_elsewhere_stops_the_placement(
        sim: Mt4Simulator, adapter: Mt4Adapter, monkeypatch: pytest.MonkeyPatch) -> None:
    older = buy_ticket(sim, "other-c", "0.10")
    buy_ticket(sim, "other-d", "0.20")
    order = sell("race-2", "10000")
    close_after_listing(adapter, sim, older, order.client_order_id, monkeypatch)  # its twin got there first

    with pytest.raises(OutcomeUnknown, match="did not make"):
        await adapter.place(order)

    assert [t.ticket for t in sim.engine.orders(client_id=order.client_order_id)] == [older]  # executed once
    status = await adapter.query(order)
    assert status is not None and (status.state, status.filled_quantity) == (OrderState.FILLED, D(10000))
    for number in [t.ticket for t in sim.engine.orders(state="open")]:
        sim.engine.close(CloseRequest(ticket=number))
