"""Chaos with real processes on Interactive Brokers: exactly one placement per order while IBKR
executors come and go (issue 12).

The IBKR counterpart of ``test_chaos_binance.py``, each part in its own process as an operator
would run it: the TWS simulator standalone (``superintel venue tws``) with latency on every
message, lost placement acknowledgements, connections dropped mid-placement and refused on
reconnect, and one short gateway restart; Tansu, PostgreSQL and Redis; one core worker (router +
fills) and IBKR executor workers scaled out (a second and a third started while signals flow,
each taking the next free API client id from ``IBKR_CLIENT_ID``), the first killed with SIGKILL
and replaced. Afterwards, with the faults off, IB is asked through its own protocol by a real
ib_async client on the simulator's master client id (outside the executors' span, so
``reqCompletedOrders`` and ``reqExecutions`` answer for every client, as TWS's "Master API
client ID" does): ``reqAllOpenOrders``, ``reqCompletedOrders`` and ``reqExecutions``, held
against the database:

* no orderRef (our client order id, see ``adapters/ibkr/parsing.py``) has two orders at IB;
* every order is terminal in the database, or visibly open (working at IB, or on paper) and
  still watched (its claim renewed by a live executor);
* for every order IB holds, the database's filled quantity is the sum of IB's executions;
* nothing IB executed was also filled on paper;
* every signal has exactly one order row, and the fill rows sum to each order's filled quantity.

The fault draws, the price path and the signal stream are seeded; process timing is not, so a
failure prints a summary (counts, the offending client ids with IB's client and order ids, their
log lines) to replay from.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from ib_async import IB

from devstack.stack import ManagedProcess
from schemas import Signal
from tests.chaos.drill import (
    SEED,
    SIGNAL_COUNT,
    TERMINAL,
    Run,
    SimControl,
    assert_promises,
    db_orders,
    judge,
    pick_signals,
    publish_while_churning,
    simulator,
    start_workers,
    summary,
    wait_placed,
    wait_settled,
)
from tests.pipeline.harness import pipeline

pytestmark = pytest.mark.pipeline

BROKER = "ibkr"

#: what the router sends to IBKR (equities, the option, the future) among the simulator's instruments
IB_SYMBOLS = ("GBTC", "SPY", "AAPL", "ESZ6", "SPY270115C00500000")
#: the executors take 7, 8, 9 ... (IBKR_CLIENT_ID, span 16); the drill's own client is IB's master
EXECUTOR_CLIENT_ID = 7
CHECKER_CLIENT_ID = 900
OPEN_AT_IB = frozenset({"PreSubmitted", "Submitted"})
#: latency per message (TWS answers one connection's messages in order, so this also paces each
#: executor), lost acknowledgements of 5% of placements, a tenth of (re)connections refused; the
#: dropped connections and the restart are sent while signals flow (``chaos``). Two executions
#: per fill, so "DB filled == sum of executions" is about more than one; cash enough that buys
#: are not refused for margin (a rejection would be terminal, and test less)
VENUE_ARGS = ("--latency", "0.03", "--fail-rate", "0.1", "--lose-rate", "0.05", "--seed", str(SEED),
              "--price-seed", str(SEED), "--master-client-id", str(CHECKER_CLIENT_ID),
              "--partial-fill-steps", "2", "--tick-ms", "250", "--starting-cash", "1000000000")
#: one connection dropped on a placement this often (seconds) while signals flow
DROP_EVERY = 6.0
#: a gateway restart this long, halfway through the stream
RESTART_SECONDS = 1.5
DISCONNECTED_POLICY = '{"EQUITY": "paper", "OPTION": "hold", "FUTURE": "hold"}'


def ib_signals(n: int, seed: int) -> list[Signal]:
    """The first ``n`` IBKR signals of the seeded mix: market, marketable and far IOC limits, stops."""
    return pick_signals(n, seed, f"chaos-ib{seed}", IB_SYMBOLS)


@dataclass
class IbOrder:
    """One order as IB reports it: its ids, status and the executions IB booked for it."""

    perm_id: int
    order_ref: str
    client_id: int | None = None
    order_id: int | None = None
    status: str = "?"
    quantity: Decimal = Decimal(0)
    exec_ids: set[str] = field(default_factory=set)
    executed: Decimal = Decimal(0)

    def brief(self) -> tuple[Any, ...]:
        return (f"client {self.client_id} id {self.order_id} perm {self.perm_id}", self.status, str(self.executed))


@dataclass
class Venue(SimControl):
    """The standalone simulator (its control endpoints), its API port, and the drill's own IB client."""

    port: int = 0
    process: ManagedProcess | None = None
    ib: IB = field(default_factory=IB)

    async def restart(self, seconds: float) -> dict[str, Any]:
        return await self.post("/_sim/restart", {"seconds": seconds})

    async def state(self) -> dict[str, Any]:
        return await self.get("/_sim/tws")

    async def orders_by_ref(self) -> dict[str, list[IbOrder]]:
        """Every order IB holds, asked as any API client asks: all clients' open orders, then the
        completed orders and the executions (the master client's answers cover every client),
        grouped by orderRef; one ``IbOrder`` per permId, IB's unique order number."""
        if not self.ib.isConnected():
            await self.ib.connectAsync("127.0.0.1", self.port, clientId=CHECKER_CLIENT_ID, timeout=20)
        by_perm: dict[int, IbOrder] = {}

        def entry(perm_id: int, order_ref: str) -> IbOrder:
            return by_perm.setdefault(perm_id, IbOrder(perm_id, order_ref))

        for trade in await asyncio.wait_for(self.ib.reqAllOpenOrdersAsync(), 30):
            order = entry(trade.order.permId, trade.order.orderRef)
            order.client_id, order.order_id = trade.order.clientId, trade.order.orderId
            order.status, order.quantity = trade.orderStatus.status, Decimal(str(trade.order.totalQuantity))
        for trade in await asyncio.wait_for(self.ib.reqCompletedOrdersAsync(False), 30):
            order = entry(trade.order.permId, trade.order.orderRef)
            order.status, order.quantity = trade.orderStatus.status, Decimal(str(trade.order.totalQuantity))
        for fill in await asyncio.wait_for(self.ib.reqExecutionsAsync(), 30):
            execution = fill.execution
            order = entry(execution.permId, execution.orderRef)
            order.client_id, order.order_id = execution.clientId, execution.orderId
            if execution.execId not in order.exec_ids:
                order.exec_ids.add(execution.execId)
                order.executed += Decimal(str(execution.shares))
        by_ref: dict[str, list[IbOrder]] = {}
        for order in by_perm.values():
            by_ref.setdefault(order.order_ref, []).append(order)
        return by_ref


@contextlib.asynccontextmanager
async def venue_process(log_path: Path) -> AsyncIterator[Venue]:
    """``superintel venue tws`` on a free port (``--port 0``; the banner names it and the control URL)."""
    banner = r"tws simulator on [\d.]+:(\d+) .*control: (http://\S+?)/_sim/faults"
    async with simulator("tws-sim", ["tws", "--port", "0", *VENUE_ARGS], log_path, banner) as started:
        process, found = started
        async with aiohttp.ClientSession() as http:
            venue = Venue(found.group(2), http, int(found.group(1)), process)
            try:
                yield venue
            finally:
                venue.ib.disconnect()


async def chaos(venue: Venue, run: Run, signal_count: int) -> None:
    """While signals flow: one connection dropped on a placement every ``DROP_EVERY`` seconds
    (ambiguous submits, and reconnects that ``fail_rate`` may refuse), and one gateway restart
    halfway through (every executor's connection at once). The drops end with the stream (an
    armed drop left waiting would take the one placement a recovering executor probes with);
    latency, lost acknowledgements and refused connections stay on until the faults go off."""
    async def drops() -> None:
        await venue.faults(match="placeOrder")
        while True:
            await asyncio.sleep(DROP_EVERY)
            await venue.faults(drop_next=1)

    dropping = asyncio.create_task(drops())
    try:
        await run.reached(signal_count // 2)
        answer = await venue.restart(RESTART_SECONDS)
        run.note(f"gateway restart for {RESTART_SECONDS}s ({answer['dropped_connections']} connections dropped)")
        await run.reached(signal_count)
    finally:
        dropping.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await dropping
    await venue.faults(drop_next=0)
    run.note("connection drops stopped")


def settled(order: Mapping[str, Any], at_ib: list[IbOrder]) -> bool:
    """Terminal in the database, or visibly open and watched: claimed by a live executor (its
    lease renewed) and either working at IB (one order there, still open) or resting on paper
    (paper is in the executor's memory, so the live claim is what shows it is looked after)."""
    if order["state"] in TERMINAL:
        return True
    if not order["claim_live"]:
        return False
    if order["broker"] == "paper":
        return bool(order["state"] in ("SUBMITTED", "PARTIALLY_FILLED"))
    return len(at_ib) == 1 and at_ib[0].status in OPEN_AT_IB


async def test_scale_out_kill_and_faults_place_each_ib_order_once(database_url: str, redis_url: str,
                                                                 tmp_path: Path) -> None:
    signals = ib_signals(SIGNAL_COUNT, SEED)
    async with venue_process(tmp_path / "venue.log") as venue, pipeline(
        database_url, redis_url, tmp_path,
        IBKR_ENABLED="true", IBKR_HOST="127.0.0.1", IBKR_PORT=str(venue.port),
        IBKR_CLIENT_ID=str(EXECUTOR_CLIENT_ID), IBKR_CONNECT_TIMEOUT="5", IBKR_REQUEST_TIMEOUT="5",
        SUPERINTEL_RANDOM_SEED=str(SEED),
        # a dropped connection fails every placement in flight at once, which opens the executor's
        # breaker; at the default 30 s cooldown the rest of the stream would go to paper and IB
        # would see little of it (the drill is about placements at IB)
        BREAKER_COOLDOWN="5",
        # both answers to "IB is down": equities go to paper (the seed's rule, so "nothing IB
        # executed was also filled on paper" is put to the test), options and futures are held
        # and placed once IB is back
        IBKR_DISCONNECTED_POLICY=DISCONNECTED_POLICY,
        F_DATADIR=str(tmp_path / "{conf.name}-data"),  # Faust's state dirs, not in the working directory
    ) as pipe:
        run, first = await start_workers(pipe, BROKER)
        faults = asyncio.create_task(chaos(venue, run, len(signals)))
        await publish_while_churning(pipe, signals, run, first, BROKER)

        await wait_placed(pipe, len(signals), "every signal to reach IB")
        await faults  # done with the stream: the drops have stopped
        await venue.faults(latency=0.0, fail_rate=0.0, lose_rate=0.0, drop_next=0, fail_next=0,
                           lose_response_next=0, match=None)
        run.note("faults off")

        await wait_settled(pipe, run, len(signals), venue.orders_by_ref,
                           lambda _cid, order, held: settled(order, held), "every order terminal or open at IB")

        orders = await db_orders(pipe)
        at_ib = await venue.orders_by_ref()
        report = judge(signals, orders, at_ib,
                       executed=lambda _cid, rows: sum((r.executed for r in rows), Decimal(0)),
                       placed_twice=lambda _cid, rows, _order, _executed: len(rows) > 1,
                       settled=lambda _cid, order, rows: settled(order, rows))
        text = summarize(run, orders, at_ib, await venue.stats(), await venue.state(), report)
        print(text)
        assert any(o["broker"] == "ibkr" for o in orders.values()), f"nothing reached IB\n{text}"
        await assert_promises(pipe, run, orders, report, text)


def summarize(run: Run, orders: Mapping[str, Mapping[str, Any]], at_ib: Mapping[str, list[IbOrder]],
              stats: Mapping[str, Any], state: Mapping[str, Any], report: Mapping[str, set[str]]) -> str:
    ib_status = Counter(r.status for rows in at_ib.values() for r in rows)
    by_client = Counter(r.client_id for rows in at_ib.values() for r in rows)
    return summary("IBKR", run, orders, [
        f"IB: {sum(len(r) for r in at_ib.values())} orders for {len(at_ib)} orderRefs, "
        f"by status: {dict(sorted(ib_status.items()))}, by client id: {dict(sorted(by_client.items(), key=str))}",
        f"IB now: clients {state.get('clients')}, open orders {state.get('open_orders')}, "
        f"executions {state.get('executions')}",
        f"venue stats: { {k: v for k, v in stats.items() if k != 'by_endpoint'} }",
    ], report, lambda cid: [r.brief() for r in at_ib.get(cid, [])])
