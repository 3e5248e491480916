"""Chaos with real processes on MT4: exactly one placement per order while executors come and go (issue 12).

The MT4 counterpart of ``test_chaos_binance.py``: the MT4 REST bridge simulator standalone
(``superintel venue mt4``, with a bearer token) with latency, 503s and lost placement answers
(the shared fault knobs, ``venues/common/faults.py``) plus MT4's own "nothing happened, try again"
answers (146 trade context busy, 138 requote, 136 off quotes: ``venues/mt4/knobs.py``); Tansu,
PostgreSQL and Redis; one core worker (router + fills) and MT4 executor workers scaled out (a
second and a third started while FX signals flow), the first killed with SIGKILL and replaced.
The account nets (``MT4_CLOSE_OPPOSITE=true``): a market order first closes open opposite tickets
of its symbol, each close carrying its client id, so an order may touch several tickets and a
retried or re-placed step has more ways to happen twice than in hedging mode (every order one
ticket); ``CHAOS_MT4_CLOSE_OPPOSITE=false`` replays the drill hedging.

Afterwards, with the faults off, the bridge is asked through its own REST API for every ticket it
holds (``GET /orders?state=`` for open, pending, closed and deleted) and its answer is held against
the database. Per client order id, as the adapter maps orders to tickets (``adapters/mt4/parsing.py``,
README "MT4 bridge contract"): the tickets it *opened* carry it as ``client_id`` (a partial close's
remainder inherits it, naming its origin in ``from_ticket``), and the tickets it *closed* carry it
as ``close_client_id``; what it executed is the lots of its opened tickets that are open or closed
plus the lots of the tickets it closed, times the contract size. Then:

* no client order id opened two tickets, nor executed more than its quantity (nothing placed twice,
  no close sent twice);
* every order is terminal in the database, or visibly working at MT4 (a pending ticket of its own)
  or on paper, and still watched (its claim renewed by a live executor);
* for every order MT4 holds tickets of, the database's filled quantity is what MT4 executed;
* nothing MT4 executed was also filled on paper;
* every signal has exactly one order row (nothing dropped), and the fills rows of each order sum to
  its filled quantity.

The fault draws, the price path and the signal stream are seeded; process timing is not, so a
failure prints a summary (counts, the offending client ids and their log lines) to replay from.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import pytest

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

BROKER = "mt4"

#: the mix's FX symbols (market orders only, devstack/signal_mix.py MARKET_ONLY); both quoted by the
#: simulator (venues/mt4/symbols.py) and routed to MT4 (execution/router.py: FX -> mt4)
FX = ("EURUSD", "GBPUSD")
CLOSE_OPPOSITE = os.environ.get("CHAOS_MT4_CLOSE_OPPOSITE", "true")
TOKEN = "mt4-chaos-token-5e1b"
#: units per lot, as the adapter converts them (MT4_CONTRACT_SIZE's default, adapters/mt4/config.py)
CONTRACT = Decimal(100_000)
STATES = ("open", "pending", "closed", "deleted")
EXECUTED = frozenset({"open", "closed"})
#: the issue's fault mix, plus MT4's own refusals (retried by the adapter as certainly not executed);
#: a balance large enough that margin (134 not enough money) is not what the drill tests. Latency is
#: 50 ms, not the Binance drill's 150: a netting order takes two to four bridge requests (list the
#: open tickets, close, open), one order after another per symbol, and the mix has two FX symbols;
#: at 150 ms the executors place about 4 orders/s and most of the stream would reach MT4 only after
#: the faults are off.
VENUE_ARGS = ("--latency", "0.05", "--fail-rate", "0.05", "--lose-rate", "0.05", "--seed", str(SEED),
              "--busy-rate", "0.03", "--requote-rate", "0.03", "--off-quotes-rate", "0.02",
              "--price-seed", str(SEED), "--balance", "100000000")

VenueTickets = Mapping[str, list[dict[str, Any]]]


def fx_signals(n: int, seed: int) -> list[Signal]:
    """The first ``n`` FX signals of the seeded mix: market orders of 10 000 to 50 000 units."""
    return pick_signals(n, seed, f"chaosmt4{seed}", FX)


@dataclass
class Venue(SimControl):
    """The standalone bridge simulator (REST and control on one URL, bearer token) and its process."""

    process: ManagedProcess | None = None

    async def faults_off(self) -> None:
        """The network's faults (``/_sim/faults``) and MT4's refusals (``/_sim/mt4``) all off."""
        await self.post("/_sim/faults", {"latency": 0.0, "fail_rate": 0.0, "lose_rate": 0.0})
        await self.post("/_sim/mt4", {"busy_rate": 0.0, "requote_rate": 0.0, "off_quotes_rate": 0.0})

    async def tickets(self) -> list[dict[str, Any]]:
        """Every ticket on the account, open and history, as the bridge lists them
        (``GET /orders?state=``); a ticket that changed state between two listings is kept once,
        in its later state."""
        by_number: dict[int, dict[str, Any]] = {}
        for state in STATES:
            answer = await self.get("/orders", state=state)
            for ticket in answer["orders"]:
                by_number[int(ticket["ticket"])] = ticket
        return list(by_number.values())

    async def tickets_by_client_id(self) -> dict[str, list[dict[str, Any]]]:
        """Client order id -> the tickets it opened (``client_id``) or closed (``close_client_id``)."""
        by_cid: dict[str, list[dict[str, Any]]] = {}
        for ticket in await self.tickets():
            for cid in {ticket.get("client_id"), ticket.get("close_client_id")} - {None, ""}:
                by_cid.setdefault(str(cid), []).append(ticket)
        return by_cid



@contextlib.asynccontextmanager
async def venue_process(log_path: Path) -> AsyncIterator[Venue]:
    """``superintel venue mt4`` on a free port (``--port 0``; the banner names the URL)."""
    env = {**os.environ, "MT4_API_TOKEN": TOKEN}
    banner = r"mt4 bridge simulator on (http://\S+) "
    async with simulator("mt4-sim", ["mt4", "--port", "0", *VENUE_ARGS], log_path, banner, env) as started:
        process, found = started
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as http:
            yield Venue(found.group(1), http, process)


def opened(cid: str, tickets: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The tickets ``cid``'s placements opened: its own, less the remainders of partial closes."""
    return [t for t in tickets if t.get("client_id") == cid and t.get("from_ticket") is None]


def executed_units(cid: str, tickets: list[dict[str, Any]]) -> Decimal:
    """What MT4 executed for ``cid``, in units: the lots of its own tickets that are open or closed
    (remainders included: a partial close splits a ticket, the sum stays what was opened) and the
    lots of the tickets it closed (netting), times the contract size."""
    lots = Decimal(0)
    for t in tickets:
        if t.get("client_id") == cid:
            if t["state"] in EXECUTED:
                lots += Decimal(t["volume"])
        elif t.get("close_client_id") == cid and t["state"] == "closed":
            lots += Decimal(t["volume"])
    return lots * CONTRACT


def placed_twice(cid: str, tickets: list[dict[str, Any]], order: Mapping[str, Any] | None, executed: Decimal) -> bool:
    """More than one ticket opened for ``cid``, or more executed than the order's quantity."""
    return len(opened(cid, tickets)) > 1 or (order is not None and executed > order["quantity"])


def settled(cid: str, order: Mapping[str, Any], at_venue: list[dict[str, Any]]) -> bool:
    """Terminal in the database, or visibly working and watched: claimed by a live executor (its
    lease renewed) and either resting at MT4 (a pending ticket of its own) or resting on paper
    (paper lives in the executor's memory, so the live claim is what shows it is looked after)."""
    if order["state"] in TERMINAL:
        return True
    if not order["claim_live"]:
        return False
    if order["broker"] == "paper":
        return bool(order["state"] in ("SUBMITTED", "PARTIALLY_FILLED"))
    return any(t.get("client_id") == cid and t["state"] == "pending" for t in at_venue)


async def test_scale_out_kill_and_faults_place_each_fx_order_once(database_url: str, redis_url: str,
                                                                  tmp_path: Path) -> None:
    signals = fx_signals(SIGNAL_COUNT, SEED)
    async with venue_process(tmp_path / "venue.log") as venue, pipeline(
        database_url, redis_url, tmp_path,
        MT4_ENABLED="true", MT4_BASE_URL=venue.control_url, MT4_API_TOKEN=TOKEN, MT4_POLL_INTERVAL="0.5",
        MT4_CLOSE_OPPOSITE=CLOSE_OPPOSITE, SUPERINTEL_RANDOM_SEED=str(SEED),
        F_DATADIR=str(tmp_path / "{conf.name}-data"),  # Faust's state dirs, not in the working directory
    ) as pipe:
        run, first = await start_workers(pipe, BROKER)
        run.note(f"MT4_CLOSE_OPPOSITE={CLOSE_OPPOSITE}")
        await publish_while_churning(pipe, signals, run, first, BROKER)

        await wait_placed(pipe, len(signals), "every signal to reach the venue")
        pending = [r["client_order_id"] for r in await pipe.sql("SELECT client_order_id FROM orders "
                                                                 "WHERE state = 'PENDING' ORDER BY 1")]
        run.note(f"{len(pending)} orders still PENDING" + (f" (first: {', '.join(pending[:3])})" if pending else ""))
        await venue.faults_off()
        run.note("faults off")

        await wait_settled(pipe, run, len(signals), venue.tickets_by_client_id, settled,
                           "every order terminal or working at MT4")

        orders = await db_orders(pipe)
        at_venue = await venue.tickets_by_client_id()
        stats = await venue.stats()
        report = judge(signals, orders, at_venue, executed=executed_units, placed_twice=placed_twice,
                       settled=settled)
        text = summarize(run, orders, at_venue, stats, report)
        print(text)
        await assert_promises(pipe, run, orders, report, text)


def summarize(run: Run, orders: Mapping[str, Mapping[str, Any]], at_venue: VenueTickets,
              stats: Mapping[str, Any], report: Mapping[str, set[str]]) -> str:
    reasons = Counter(re.sub(r"[0-9]+(\.[0-9]+)?", "<n>", re.sub(r"si[0-9a-f]{24}", "<id>", str(o["reason"])))[:160]
                      for o in orders.values() if o["reason"] and (o["state"] != "FILLED" or o["rerouted_from"]))
    tickets = {int(t["ticket"]): t for rows in at_venue.values() for t in rows}
    by_ticket_state = Counter(t["state"] for t in tickets.values())
    closes = sum(1 for t in tickets.values() if t.get("close_client_id"))
    remainders = sum(1 for t in tickets.values() if t.get("from_ticket"))

    def venue_of(cid: str) -> object:
        return [(t["ticket"], t["state"], t["side"], t["volume"],
                 "own" if t.get("client_id") == cid else "closed-by", t.get("from_ticket"))
                for t in at_venue.get(cid, [])]

    return summary("mt4", run, orders, [
        "reasons (orders not filled at mt4):", *(f"    {n}x {why}" for why, n in reasons.most_common(10)),
        f"venue: {len(tickets)} tickets for {len(at_venue)} client ids, "
        f"by state: {dict(sorted(by_ticket_state.items()))}, {closes} closed by an order (netting), "
        f"{remainders} remainders of partial closes",
        f"venue stats: { {k: v for k, v in stats.items() if k != 'by_endpoint'} }",
        f"venue requests: {stats.get('by_endpoint')}",
    ], report, venue_of)
