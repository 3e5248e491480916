"""The demo's simulated nightly restart of IB Gateway, and what its summary shows about it.

The seed's gateway restarts every night at 11:59 PM. ``superintel demo`` plays one: a few IB
limit orders are left resting (GTC, away from the market), and while signals flow the TWS
simulator drops every connection and closes its port for a couple of seconds
(``TwsSimulator.restart``, what ``POST /_sim/restart`` does). While it is down the market moves
through the resting orders, so IB fills them with nobody listening; new orders for IBKR's asset
classes follow ``IBKR_DISCONNECTED_POLICY`` per class (the demo sets one of each: EQUITY held until
the reconnect, OPTION to paper, FUTURE rejected, unless the environment sets a policy).

Everything the summary reports is read back from where an operator would look: the orders and
order_events tables (the reasons on the orders), the fills table (the executions IB made while
the worker was away, each recorded once after the reconnect, matched by IB's execId), and the
worker log (the connection lost and regained).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

import asyncpg
from rich.console import Console
from rich.table import Table

from devstack.venues_embedded import EmbeddedVenues, Restart
from schemas import OrderType, Side, Signal, TimeInForce
from venues.common.prices import floor_to
from venues.tws import TwsSimulator

#: one policy of each kind, so the summary shows all three (an operator's setting wins)
DEMO_POLICY: dict[str, str] = {"EQUITY": "hold", "OPTION": "paper", "FUTURE": "reject"}
#: the worker retries the gateway every quarter second or so, not the production backoff's
#: growing wait (up to 15 s), so the demo's restart is over in a few seconds
DEMO_RECONNECT_BACKOFF = {"attempts": 1_000_000, "base": 0.25, "factor": 1.5, "cap": 1.0}
#: the resting orders: (simulator key = symbol, quantity); GTC BUY limits this far below the market
PROBES: tuple[tuple[str, Decimal], ...] = (("SPY", Decimal(10)), ("AAPL", Decimal(10)), ("ESZ6", Decimal(1)))
PROBE_DISTANCE = Decimal("0.015")
#: the market falls this far below a probe's limit while the gateway is down
THROUGH = Decimal("0.002")
_HELD = "%held, not placed now%"
_REJECTED = "%DISCONNECTED_POLICY=reject%"
#: order ids and prices in reasons, so orders that met the same rule count as one row
_NOISE = r"si[0-9a-f]{24}|mid [0-9.]+"


def worker_env(environ: dict[str, str] | None = None) -> dict[str, str]:
    """The IBKR settings the demo's worker gets, unless the environment has its own."""
    env = os.environ if environ is None else environ
    out: dict[str, str] = {}
    if "IBKR_DISCONNECTED_POLICY" not in env:
        out["IBKR_DISCONNECTED_POLICY"] = json.dumps(DEMO_POLICY)
    if "IBKR_RECONNECT_BACKOFF" not in env:
        out["IBKR_RECONNECT_BACKOFF"] = json.dumps(DEMO_RECONNECT_BACKOFF)
    return out


def policy_label(env: dict[str, str]) -> str:
    """``IBKR_DISCONNECTED_POLICY`` as the worker has it, for the summary's title."""
    return env.get("IBKR_DISCONNECTED_POLICY") or os.environ.get("IBKR_DISCONNECTED_POLICY") or "paper"


def probe_signals(sim: TwsSimulator, prefix: str) -> list[Signal]:
    """GTC BUY limits ``PROBE_DISTANCE`` below the simulator's current prices: they rest at IB
    until the restart moves the market through them."""
    signals = []
    for key, qty in PROBES:
        inst = sim.engine.instruments[key]
        limit = floor_to(sim.engine.last(inst) * (1 - PROBE_DISTANCE), inst.min_tick)
        signals.append(Signal(signal_id=f"{prefix}ibkr-resting-{key.lower()}", strategy="demo-restart", symbol=key,
                              side=Side.BUY, quantity=qty, order_type=OrderType.LIMIT, limit_price=limit,
                              time_in_force=TimeInForce.GTC, reference_price=sim.engine.last(inst)))
    return signals


@dataclass
class RestartReport:
    """What the restart did, as the simulator saw it; filled in while the demo runs."""

    probes: list[Signal]
    restart: Restart | None = None
    #: IB execIds of the executions made while no client was connected
    executed_while_down: list[str] = field(default_factory=list)
    skipped: str = ""


async def run_restart(console: Console, venues: EmbeddedVenues, pool: asyncpg.Pool, report: RestartReport,
                      *, seconds: float, ready: Callable[[], bool]) -> None:
    """Wait until the probes rest at IB and ``ready()`` (signals are flowing), then restart the
    gateway for ``seconds``, move the market through the probes while it is down, and return once
    the worker is connected again."""
    sim = venues.tws
    if sim is None:
        report.skipped = "IBKR is configured in the environment: no simulator to restart"
        return
    ids = [p.client_order_id for p in report.probes]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        resting = await pool.fetchval("SELECT count(*) FROM orders WHERE client_order_id = ANY($1::text[]) "
                                      "AND broker = 'ibkr' AND state = 'SUBMITTED'", ids)
        if resting == len(ids) and ready():
            break
        await asyncio.sleep(0.05)
    else:
        report.skipped = "the resting IB orders never reached IB; no restart"
        return
    console.log(f"[yellow]IB Gateway nightly restart: every connection dropped, port closed for {seconds:g} s "
                f"({len(ids)} IB limit orders resting)[/]")

    def move_through_probes(sim: TwsSimulator) -> None:
        for probe in report.probes:
            assert probe.limit_price is not None
            inst = sim.engine.instruments[probe.symbol]
            sim.set_price(probe.symbol, floor_to(probe.limit_price * (1 - THROUGH), inst.min_tick), hold=False)

    restart = await venues.tws_restart(seconds, while_down=move_through_probes)
    report.restart = restart
    if restart is None:
        return
    until = restart.reconnected or time.time()
    report.executed_while_down = [e.exec_id for e in sim.engine.executions if restart.started <= e.time < until]
    if restart.reconnected is None:
        console.log("[red]IB Gateway back, but the worker has not reconnected[/]")
    else:
        console.log(f"[green]IB Gateway back; the worker reconnected "
                    f"{restart.reconnected - restart.started:.1f} s after the drop[/]")


def _clock(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%H:%M:%S.%f")[:-3]


async def restart_summary(pool: asyncpg.Pool, prefix: str, report: RestartReport, policy: str,
                          worker_log: Sequence[str]) -> list[Table]:
    """The restart's tables: what happened, the orders it touched by policy and reason, and the
    fills IB made meanwhile (recorded once each after the reconnect)."""
    restart = report.restart
    what = Table(title="IBKR nightly restart (TWS simulator)", show_header=False)
    if restart is None:
        what.add_row("restart", report.skipped or "not run")
        return [what]
    what.add_row("gateway down", f"{_clock(restart.started)} UTC for {restart.seconds:g} s, "
                                 f"{restart.dropped} connection(s) dropped")
    what.add_row("worker reconnected", "not yet" if restart.reconnected is None else
                 f"{restart.reconnected - restart.started:.1f} s after the drop")
    for line in worker_log:
        what.add_row("worker log", line)

    touched = Table(title=f"IBKR orders while it was down (IBKR_DISCONNECTED_POLICY={policy})")
    for col in ("asset class", "what happened", "reason", "orders"):
        touched.add_column(col, justify="right" if col == "orders" else "left")
    rows = await pool.fetch(
        "SELECT asset_class, 'moved to paper, ' || lower(state) AS what, "
        "regexp_replace(reason, $4, '<..>', 'g') AS why, count(*) AS n FROM orders "
        "WHERE starts_with(signal_id, $1) AND rerouted_from = 'ibkr' "
        "GROUP BY 1, 2, 3 "
        "UNION ALL "
        "SELECT o.asset_class, 'held, then ' || lower(o.state) || ' on ' || o.broker, "
        "regexp_replace(min(e.reason), $4, '<..>', 'g'), count(DISTINCT o.client_order_id) "
        "FROM orders o JOIN order_events e USING (client_order_id) "
        "WHERE starts_with(o.signal_id, $1) AND e.reason LIKE $2 GROUP BY 1, 2 "
        "UNION ALL "
        "SELECT asset_class, 'rejected', regexp_replace(reason, $4, '<..>', 'g'), count(*) FROM orders "
        "WHERE starts_with(signal_id, $1) AND state = 'REJECTED' AND reason LIKE $3 GROUP BY 1, 2, 3 "
        "ORDER BY 1, 2, 4 DESC", prefix, _HELD, _REJECTED, _NOISE)
    for row in rows[:12]:
        touched.add_row(row[0], row[1], _short(row[2]), str(row[3]))
    if not rows:
        touched.add_row("-", "no new IBKR order arrived while it was down", "", "0")

    fills = Table(title="fills IB made while the worker was disconnected (recorded after the reconnect)")
    for col in ("order", "symbol", "IB execId", "quantity", "price", "fill rows"):
        fills.add_column(col, justify="right" if col in ("quantity", "price", "fill rows") else "left")
    exec_ids = [f"ibkr-{e}" for e in report.executed_while_down]
    recorded = await pool.fetch(
        "SELECT o.signal_id, f.symbol, f.exec_id, f.quantity, f.price, count(*) OVER (PARTITION BY f.exec_id) AS n "
        "FROM fills f JOIN orders o USING (client_order_id) WHERE f.exec_id = ANY($1::text[]) ORDER BY 1",
        exec_ids)
    for row in recorded:
        fills.add_row(row[0].removeprefix(prefix), row[1], row[2].removeprefix("ibkr-"), _num(row[3]),
                      _num(row[4]), str(row[5]))
    missing = sorted(set(exec_ids) - {row[2] for row in recorded})
    for exec_id in missing:
        fills.add_row("-", "-", exec_id.removeprefix("ibkr-"), "-", "-", "0 (not recorded)")
    return [what, touched, fills]


def resynced_ok(report: RestartReport, recorded: set[str]) -> bool:
    """Every execution IB made while the worker was away is recorded (by its execId)."""
    return all(f"ibkr-{e}" in recorded for e in report.executed_while_down)


def _short(reason: str, width: int = 96) -> str:
    return reason if len(reason) <= width else reason[: width - 1] + "…"


def _num(value: Decimal) -> str:
    return f"{value.normalize():f}"
