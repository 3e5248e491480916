"""The venue-independent parts of the chaos drills (issue 12): executors of one broker scaled out,
one killed with SIGKILL and replaced, while a strategy publishes at a steady rate; then what the
database holds, for the drill to hold against what the venue itself reports.

Each drill (``test_chaos_<venue>.py``) brings its venue: the simulator as its own process, how to
ask it for every order it holds (through the venue's own protocol), and what "settled" means there.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from devstack.worker_process import READY_MARK, WorkerProcess
from schemas import Signal
from streams.topics import SIGNALS
from tests.pipeline.harness import Pipeline, eventually

RATE = 20.0  # signals per second: a 30 s stream of 600, long enough for the executors to join under load
TERMINAL = frozenset({"FILLED", "CANCELLED", "REJECTED", "EXPIRED"})


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
