"""The venue-independent parts of the chaos drills (issue 12): executors of one broker scaled out,
one killed with SIGKILL and replaced, while a strategy publishes at a steady rate; then what the
database holds, for the drill to hold against what the venue itself reports.

Each drill (``test_chaos_<venue>.py``) brings its venue: the simulator as its own process, how to
ask it for every order it holds (through the venue's own protocol), and what "settled" means there.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import aiohttp

from devstack.signal_mix import SignalMix
from devstack.stack import ManagedProcess, spawn
from devstack.worker_process import READY_MARK, WorkerProcess
from schemas import Signal
from streams.topics import SIGNALS
from tests.pipeline.harness import Pipeline, eventually

#: what a venue reports of one order (a Binance order, an IB order, an MT4 ticket)
V = TypeVar("V")

SEED = int(os.environ.get("CHAOS_SEED", "12"))  # fixed; the variable replays another stream
SIGNAL_COUNT = 600
RATE = 20.0  # signals per second: a 30 s stream of 600, long enough for the executors to join under load
TERMINAL = frozenset({"FILLED", "CANCELLED", "REJECTED", "EXPIRED"})
#: the worker that routes signals and writes fills; executors come and go beside it
CORE = {"WORKER_ROLES": '["router","fills"]'}


def executor_env(broker: str) -> dict[str, str]:
    """The settings of an executor worker of ``broker`` only, as the drill scales them out."""
    return {"WORKER_ROLES": '["executors"]', "WORKER_BROKERS": f'["{broker}"]'}


def superintel() -> str:
    """The installed console script beside this interpreter (as an operator runs it)."""
    return str(Path(sys.executable).with_name("superintel"))


def pick_signals(n: int, seed: int, prefix: str, symbols: Collection[str]) -> list[Signal]:
    """The first ``n`` signals of the seeded mix (market, marketable and far IOC limits, stops)
    whose symbol is one of ``symbols``: the ones the router sends to the drill's venue."""
    picked: list[Signal] = []
    for signal in SignalMix(seed=seed, prefix=prefix):
        if signal.symbol in symbols:
            picked.append(signal)
            if len(picked) == n:
                break
    return picked


@contextlib.asynccontextmanager
async def simulator(name: str, args: list[str], log_path: Path, banner: str,
                    env: Mapping[str, str] | None = None) -> AsyncIterator[tuple[ManagedProcess, re.Match[str]]]:
    """``superintel venue <args>`` as its own process, until its start banner (``banner``, a
    regular expression whose groups name the ports or URLs) shows; stopped on exit."""
    process = spawn(name, [superintel(), "venue", *args], log_path, env=dict(env) if env is not None else None)
    try:
        deadline = time.monotonic() + 30
        while (found := re.search(banner, process.output())) is None:
            if not process.alive() or time.monotonic() > deadline:
                raise RuntimeError(f"simulator did not start:\n{process.log_tail()}")
            await asyncio.sleep(0.05)
        yield process, found
    finally:
        process.stop()


@dataclass
class SimControl:
    """The ``/_sim`` control endpoints every simulator has (``venues/common/``), over HTTP."""

    control_url: str
    http: aiohttp.ClientSession

    async def post(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        async with self.http.post(f"{self.control_url}{path}", json=dict(body)) as resp:
            assert resp.status == 200, await resp.text()
            answer: dict[str, Any] = await resp.json()
            return answer

    async def get(self, path: str, **params: str) -> dict[str, Any]:
        async with self.http.get(f"{self.control_url}{path}", params=params) as resp:
            answer = await resp.json(content_type=None)
            assert resp.status == 200, answer
            assert isinstance(answer, dict), answer
            return answer

    async def faults(self, **patch: Any) -> dict[str, Any]:
        return await self.post("/_sim/faults", patch)

    async def stats(self) -> dict[str, Any]:
        return await self.get("/_sim/stats")


@dataclass
class Run:
    """What happened while the chaos ran, for the summary."""

    published: int = 0
    in_flight_at_kill: int = -1
    events: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    _progress: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def count(self, published: int) -> None:
        async with self._progress:
            self.published = published
            self._progress.notify_all()

    async def reached(self, n: int) -> None:
        async with self._progress:
            await self._progress.wait_for(lambda: self.published >= n)

    def note(self, what: str) -> None:
        self.events.append(f"{time.monotonic() - self.started:6.1f}s  {what} (published {self.published})")


async def publish_paced(pipe: Pipeline, signals: list[Signal], run: Run, rate: float = RATE) -> None:
    """Publish at ``rate`` per second, as a strategy would, counting in ``run.published``."""
    producer = await pipe.producer()
    start = time.monotonic()
    for i, signal in enumerate(signals, 1):
        await producer.send(SIGNALS, key=signal.symbol.encode(), value=signal.to_bytes())
        await run.count(i)
        delay = start + i / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
    await producer.flush()
    run.note("all signals published")


async def ready(worker: WorkerProcess) -> None:
    await asyncio.to_thread(worker.wait_ready, 120)


async def in_flight(pipe: Pipeline) -> int:
    """Orders inserted and not terminal yet: what the executors are working on."""
    rows = await pipe.sql("SELECT count(*) AS n FROM orders WHERE NOT state = ANY($1::text[])", list(TERMINAL))
    return int(rows[0]["n"])


async def scale_out_kill_replace(pipe: Pipeline, first: WorkerProcess, run: Run, executor: Mapping[str, str],
                                 signal_count: int, rate: float = RATE) -> None:
    """Second executor at 2 s of the stream, third at 5 s, while the first keeps working (the
    rebalances of issue 12's race); the first killed -9 once the second has joined, or at 90% of
    the stream if joining takes longer (slow CI), so the kill always lands while signals flow
    and while orders are in flight; a replacement started at once."""
    await run.reached(int(rate * 2))
    second = pipe.start_worker(**executor)
    run.note(f"second executor started (pid {second.pid})")
    await run.reached(int(rate * 5))
    third = pipe.start_worker(**executor)
    run.note(f"third executor started (pid {third.pid})")
    kill_by = signal_count * 9 // 10

    async def second_ready_or_late() -> bool:
        if not second.alive():
            raise AssertionError(f"second executor exited:\n{second.tail()}")
        return READY_MARK in second.process.output() or run.published >= kill_by

    await eventually(second_ready_or_late, 120, "the second executor to join")
    run.in_flight_at_kill = await in_flight(pipe)
    first.kill()
    run.note(f"first executor killed -9 (pid {first.pid}) with {run.in_flight_at_kill} orders in flight "
             f"(second ready: {READY_MARK in second.process.output()})")
    replacement = pipe.start_worker(**executor)
    run.note(f"replacement executor started (pid {replacement.pid})")
    for name, worker in (("second", second), ("third", third), ("replacement", replacement)):
        await ready(worker)
        run.note(f"{name} executor ready")


async def start_workers(pipe: Pipeline, broker: str) -> tuple[Run, WorkerProcess]:
    """The core worker and the first ``broker`` executor, both ready; the run's clock starts."""
    core = pipe.start_worker(**CORE)
    first = pipe.start_worker(**executor_env(broker))
    await ready(core)
    await ready(first)
    run = Run()
    run.note("core worker and first executor ready")
    return run, first


async def publish_while_churning(pipe: Pipeline, signals: list[Signal], run: Run, first: WorkerProcess,
                                 broker: str) -> None:
    """The strategy's stream at ``RATE``, while ``broker``'s executors are scaled out and the
    first is killed and replaced (``scale_out_kill_replace``)."""
    await asyncio.gather(publish_paced(pipe, signals, run),
                         scale_out_kill_replace(pipe, first, run, executor_env(broker), len(signals)))


async def db_orders(pipe: Pipeline) -> dict[str, Mapping[str, Any]]:
    rows = await pipe.sql("SELECT client_order_id, signal_id, broker, rerouted_from, state, quantity, "
                          "filled_quantity, reason, owner, coalesce(lease_until > now(), false) AS claim_live "
                          "FROM orders")
    return {r["client_order_id"]: dict(r) for r in rows}


def log_lines(pipe: Pipeline, cids: set[str], per_id: int = 12) -> str:
    """Every worker's log lines that name one of ``cids`` (a few per id), for the diagnosis."""
    out: list[str] = []
    for cid in sorted(cids)[:8]:
        hits: list[str] = []
        for n, worker in enumerate(pipe.workers):
            for line in worker.log_path.read_text(errors="replace").splitlines():
                if cid in line:
                    hits.append(f"  [worker-{n}] {line[:400]}")
        out.append(f"{cid}:\n" + "\n".join(hits[:per_id]))
    return "\n".join(out)


async def wait_placed(pipe: Pipeline, n: int, what: str) -> None:
    """Until every one of the ``n`` signals has its order row and none is PENDING: the faults stay
    on while the backlog is placed. Past the deadline the drill goes on (the faults go off) and
    its checks tell what is stuck."""

    async def everything_placed() -> bool:
        rows = await pipe.sql("SELECT count(*) FILTER (WHERE state = 'PENDING') AS pending, count(*) AS n "
                              "FROM orders")
        return int(rows[0]["n"]) >= n and int(rows[0]["pending"]) == 0

    with contextlib.suppress(AssertionError):  # a deadline here is judged by the checks
        await eventually(everything_placed, 60, what)


async def wait_settled(pipe: Pipeline, run: Run, n: int, at_venue: Callable[[], Awaitable[Mapping[str, Any]]],
                       settled: Callable[[str, Mapping[str, Any], Any], bool], what: str) -> None:
    """Until every order is terminal, or ``settled`` (given the client id, the order row and what
    ``at_venue()`` holds for it, or an empty list) says it is visibly open and watched; past the
    deadline the checks tell what is not."""

    async def all_settled() -> bool:
        orders = await db_orders(pipe)
        if len(orders) < n:
            return False
        if all(o["state"] in TERMINAL for o in orders.values()):
            return True
        venue = await at_venue()
        return all(settled(cid, o, venue.get(cid, [])) for cid, o in orders.items())

    with contextlib.suppress(AssertionError):
        await eventually(all_settled, 90, what)
    run.note("settled (or deadline)")


def judge(signals: list[Signal], orders: Mapping[str, Mapping[str, Any]], at_venue: Mapping[str, list[V]], *,
          executed: Callable[[str, list[V]], Decimal],
          placed_twice: Callable[[str, list[V], Mapping[str, Any] | None, Decimal], bool],
          settled: Callable[[str, Mapping[str, Any], list[V]], bool]) -> dict[str, set[str]]:
    """Client order ids breaking each promise (empty sets when all hold). ``at_venue`` is what the
    venue holds per client id; the venue says what it ``executed`` for one, whether it was
    ``placed_twice`` (given the order row, None if unknown, and what executed) and whether an
    order not terminal is ``settled`` there (visibly open and watched)."""
    expected = {s.client_order_id for s in signals}
    per_signal = Counter(o["signal_id"] for o in orders.values())
    report: dict[str, set[str]] = {
        "missing": expected - set(orders),
        "unknown": set(orders) - expected,
        "signal_twice": {cid for cid, o in orders.items() if per_signal[o["signal_id"]] > 1},
        "placed_twice": set(),
        "unsettled": {cid for cid, o in orders.items() if not settled(cid, o, at_venue.get(cid, []))},
        "filled_mismatch": set(),
        "executed_and_paper": set(),
    }
    for cid, rows in at_venue.items():
        order = orders.get(cid)
        done = executed(cid, rows)
        if placed_twice(cid, rows, order, done):
            report["placed_twice"].add(cid)
        if order is None:
            report["unknown"].add(cid)
            continue
        if order["filled_quantity"] != done:
            report["filled_mismatch"].add(cid)
        if done > 0 and order["broker"] == "paper":
            report["executed_and_paper"].add(cid)
    return report


async def assert_promises(pipe: Pipeline, run: Run, orders: Mapping[str, Mapping[str, Any]],
                          report: Mapping[str, set[str]], summary: str) -> None:
    """The drill's verdict: an order was in flight at the kill (or it tested nothing), every
    promise of ``report`` holds (no client id breaks it), and the fill rows of each order sum to
    its filled quantity. A failure carries the summary and the offending orders' log lines."""
    bad = set().union(*report.values())
    detail = f"{summary}\n--- log lines of offending orders ---\n{log_lines(pipe, bad)}" if bad else summary
    assert run.in_flight_at_kill > 0, f"no order was in flight at the kill: it tested nothing\n{summary}"
    for promise, cids in report.items():
        assert not cids, f"{promise}: {sorted(cids)[:10]}\n{detail}"
    fills = await pipe.sql("SELECT client_order_id, sum(quantity) AS q FROM fills GROUP BY 1")
    assert {f["client_order_id"]: f["q"] for f in fills} == {
        cid: o["filled_quantity"] for cid, o in orders.items() if o["filled_quantity"] > 0}, detail


def summary(title: str, run: Run, orders: Mapping[str, Mapping[str, Any]], venue_lines: Sequence[str],
            report: Mapping[str, set[str]], venue_of: Callable[[str], object]) -> str:
    """What the drill saw, printed with every run and carried by a failure: the run's events, the
    orders by broker and state, their reasons, ``venue_lines`` (what the venue reports), then each
    promise with up to ten offending orders, their rows and ``venue_of(cid)``."""
    by_state = Counter(f"{o['broker']}/{o['state']}" + (f"<-{o['rerouted_from']}" if o["rerouted_from"] else "")
                       for o in orders.values())
    reasons = Counter(re.sub(r"si[0-9a-f]{24}", "<id>", str(o["reason"]))[:100]
                      for o in orders.values() if o["reason"])
    lines = [
        f"=== chaos summary ({title}) ===",
        *run.events,
        f"orders in db: {len(orders)}  by broker/state: {dict(sorted(by_state.items()))}",
        "reasons: " + "; ".join(f"{n}x {why}" for why, n in reasons.most_common(6)),
        *venue_lines,
    ]
    for name, cids in report.items():
        lines.append(f"{name}: {len(cids)}")
        for cid in sorted(cids)[:10]:
            order = orders.get(cid, {})
            db = {k: order.get(k) for k in ("signal_id", "broker", "rerouted_from", "state", "quantity",
                                            "filled_quantity", "reason", "owner", "claim_live")}
            lines.append(f"    {cid} db={db} venue={venue_of(cid)}")
    return "\n".join(lines)
