"""``make bench``: pipeline throughput and latency on the embedded broker, as one table.

Each measurement runs on a freshly started memory-only Tansu (it ignores retention and keeps every
message in memory, so long benches restart it), against the machine's PostgreSQL (a database created
for the run and dropped after it) and Redis (db 7, flushed first):

1. raw pass-through ceiling: a plain aiokafka consume -> produce loop, topic A -> topic B, over
   pre-loaded real Signal JSON; rate from the first record consumed to the last one acked.
2. router agent rate: the real router in a ``superintel worker`` with ``WORKER_ROLES=["router"]``
   over the same number of pre-loaded signals; rate from the first to the last record on
   ``orders.*`` (their broker timestamps), read after the worker has committed everything, so the
   bench's reader takes no CPU from the worker while it runs. Target (issue 16): >= 0.35x raw.
   Sections 1, 1b and 2 run in three alternating rounds and the target is judged on the median
   round's ratio: a round lasts about a second, and on a shared machine one second's rate moves by
   20-30 % (single rounds of one afternoon: 0.23x to 0.41x).
   2b. a do-nothing agent (bench/noop_agent.py) draining a pre-loaded backlog: its rate, the time
   its main thread spent idle meanwhile (neither running nor waiting for a CPU; target: no idle
   gap, <= 5 % of the span), the longest pause between two batches, and the consumer's empty
   fetches.
3. the full worker (default roles, no live venue): its CPU while idle (target <= 3 % of a core),
   then signal -> fill-on-Redis latency for paper orders, signals published at a fixed rate with
   ``ts`` = send time; latency = arrival on the Redis ``fills`` channel - ``Fill.signal_ts``.
   For each rate, the CPU per signal of every process from /proc (bench/procstat.py): the worker,
   the broker and the PostgreSQL backends of the bench's database. Targets at 500/s: worker CPU
   <= 0.5 ms per signal, p50 <= 40 ms, p99 <= 100 ms.
4. the floor (bench/floor.py): three chained raw aiokafka hops and a Redis PUBLISH, at the same
   rates, so the pipeline's latency reads as a ratio to what the broker and the machine allow;
   with the floor process's and the broker's CPU per signal, which is what the client library
   alone costs for the pipeline's shape (the worker's CPU reads as a ratio to it too).

Numbers, not assertions. Every number of one run comes from the same machine state: compare
ratios within a run (the machine may be shared), and the load average is printed with them.

    python -m bench.run [--quick] [--keep-logs]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import redis.asyncio as redis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from adapters.timescale import queries
from bench import procstat
from bench.kafka_hop import PARTITIONS, _produce_paced, percentile
from devstack.databases import scratch_database
from devstack.signal_mix import SignalMix
from devstack.stack import ManagedProcess, create_topics, start_tansu
from devstack.topics import read_topic
from devstack.worker_process import WorkerProcess
from execution.router import BrokerRouter
from schemas import Fill, Signal, TimeInForce
from streams.settings import Settings
from streams.topics import ALL_TOPICS, ORDER_TOPICS, SIGNALS

ADMIN_DATABASE_URL = os.environ.get("BENCH_ADMIN_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/7")
#: where ``python -m bench.*`` child processes run
PROJECT_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Plan:
    throughput_n: int
    #: rounds of sections 1, 1b and 2, alternating: the router's ratio is the median of the rounds'
    #: (one round lasts about a second, and a shared machine moves a second's rate by 20-30 %)
    rounds: int
    rates: tuple[tuple[float, float], ...]  # (signals/s, seconds), measured in this order
    warmup: tuple[float, float]
    backlog_n: int  # the do-nothing agent's backlog
    idle_seconds: float  # how long the idle worker's CPU is sampled


FULL = Plan(throughput_n=20_000, rounds=3, rates=((100.0, 5.0), (500.0, 10.0)), warmup=(100.0, 3.0), backlog_n=40_000,
            idle_seconds=10.0)
QUICK = Plan(throughput_n=5_000, rounds=1, rates=((100.0, 3.0), (500.0, 4.0)), warmup=(100.0, 2.0), backlog_n=10_000,
             idle_seconds=5.0)


# --------------------------------------------------------------------------- shared plumbing


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@contextlib.asynccontextmanager
async def fresh_tansu(run_dir: Path, topics: list[str]) -> AsyncIterator[str]:
    """A new memory-only Tansu with ``topics`` created; stopped (and its memory freed) after."""
    async with fresh_broker(run_dir, topics) as broker:
        yield broker.url


@contextlib.asynccontextmanager
async def fresh_broker(run_dir: Path, topics: list[str]) -> AsyncIterator[ManagedProcess]:
    """``fresh_tansu``, yielding the broker process itself (its pid for /proc)."""
    broker: ManagedProcess = await start_tansu(run_dir)
    try:
        await create_topics(broker.url, topics, PARTITIONS)
        yield broker
    finally:
        await asyncio.to_thread(broker.stop)


def fresh_database() -> contextlib.AbstractAsyncContextManager[str]:
    """A database created for this run on the machine's PostgreSQL, dropped afterwards."""
    return scratch_database(ADMIN_DATABASE_URL, "si_bench")


@contextlib.asynccontextmanager
async def running_worker(env: dict[str, str], log_path: Path) -> AsyncIterator[WorkerProcess]:
    worker = WorkerProcess(env, log_path)
    worker.start()
    try:
        await asyncio.to_thread(worker.wait_ready, 90)
        yield worker
    finally:
        await asyncio.to_thread(worker.stop)


def worker_env(bootstrap: str, database_url: str, run_dir: Path, **extra: str) -> dict[str, str]:
    return {
        "KAFKA_BOOTSTRAP": bootstrap,
        "DATABASE_URL": database_url,
        "REDIS_URL": REDIS_URL,
        "SUPERINTEL_APP_ID": f"si-bench-{uuid.uuid4().hex[:8]}",
        "TOPIC_PARTITIONS": str(PARTITIONS),
        "BINANCE_ENABLED": "false",  # no live venue: every order goes to paper
        "SUPERINTEL_DATA_DIR": str(run_dir / "data"),  # Faust's data directory: the run's, removed after
        **extra,
    }


def signal_messages(n: int, prefix: str) -> list[tuple[bytes, bytes]]:
    return [(s.symbol.encode(), s.to_bytes()) for s in SignalMix(seed=3, prefix=prefix).take(n)]


async def preload(bootstrap: str, topic: str, messages: list[tuple[bytes, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, max_batch_size=256 * 1024)
    await producer.start()
    try:
        for key, value in messages:
            await producer.send(topic, value, key=key)
        await producer.flush()
    finally:
        await producer.stop()


# --------------------------------------------------------------------------- 1. raw pass-through


@dataclass
class Throughput:
    n: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.n / self.seconds if self.seconds > 0 else float("nan")


def route_bytes(router: BrokerRouter) -> Callable[[bytes], tuple[bytes, bytes]]:
    """The router agent's own work on one message (validate, map, route, serialise), no Faust."""

    def route(value: bytes) -> tuple[bytes, bytes]:
        request = router.route(Signal.model_validate_json(value))
        return request.symbol.encode(), request.to_bytes()

    return route


async def raw_pass_through(
    run_dir: Path, n: int, fetch_max_wait_ms: int, work: Callable[[bytes], tuple[bytes, bytes]] | None = None
) -> tuple[Throughput, float]:
    """A plain aiokafka consume -> produce loop; with ``work``, each message is transformed first."""
    messages = signal_messages(n, "raw")
    size = sum(len(v) for _, v in messages) / len(messages)
    async with fresh_tansu(run_dir, ["bench-a", "bench-b"]) as bootstrap:
        await preload(bootstrap, "bench-a", messages)
        consumer = AIOKafkaConsumer(
            "bench-a", bootstrap_servers=bootstrap, group_id=f"bench-raw-{uuid.uuid4().hex[:6]}",
            auto_offset_reset="earliest", fetch_max_wait_ms=fetch_max_wait_ms,
            session_timeout_ms=8000, heartbeat_interval_ms=1500,
        )
        # acks and linger as the Faust producer of the worker has them (acks=-1, linger 0)
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0, acks="all")
        await consumer.start()
        await producer.start()
        try:
            seen, first = 0, 0.0
            while seen < n:
                batch = await consumer.getmany(timeout_ms=1000)
                for records in batch.values():
                    if not seen:
                        first = time.perf_counter()
                    for record in records:
                        if work is None:
                            await producer.send("bench-b", record.value, key=record.key)
                        else:
                            key, value = work(record.value)
                            await producer.send("bench-b", value, key=key)
                    seen += len(records)
            await producer.flush()
            end = time.perf_counter()
        finally:
            await producer.stop()
            await consumer.stop()
    return Throughput(n, end - first), size


# --------------------------------------------------------------------------- 2. router agent


async def committed(bootstrap: str, group: str, topic: str) -> int:
    """Offsets ``group`` has committed on ``topic``, summed over its partitions (Tansu does not
    answer the admin client's OffsetFetch, so ask as a consumer of the group that never joins)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        total = 0
        for partition in range(PARTITIONS):
            offset = await consumer.committed(TopicPartition(topic, partition))
            total += offset or 0
        return total
    finally:
        await consumer.stop()


async def read_timestamps(bootstrap: str, topics: list[str], n: int, timeout: float = 60.0) -> list[int]:
    """Broker timestamps (ms) of the first ``n`` records of ``topics``, read from the start."""
    return [r.timestamp for r in await read_topic(bootstrap, topics, n, timeout)]


async def router_rate(run_dir: Path, n: int) -> Throughput:
    async with fresh_tansu(run_dir, list(ALL_TOPICS)) as bootstrap:
        await preload(bootstrap, SIGNALS, signal_messages(n, "router"))
        env = worker_env(bootstrap, ADMIN_DATABASE_URL, run_dir, WORKER_ROLES='["router"]')
        group = Settings(SUPERINTEL_APP_ID=env["SUPERINTEL_APP_ID"], WORKER_ROLES=["router"]).consumer_group()
        async with running_worker(env, run_dir / "worker-router.log"):
            deadline = time.monotonic() + 120
            while await committed(bootstrap, group, SIGNALS) < n:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"router committed {await committed(bootstrap, group, SIGNALS)}/{n}")
                await asyncio.sleep(0.5)
        stamps = await read_timestamps(bootstrap, list(ORDER_TOPICS.values()), n)
    if len(stamps) < n:
        raise RuntimeError(f"only {len(stamps)}/{n} orders found on orders.*")
    # n records span n-1 intervals between the first and the last timestamp
    return Throughput(n - 1, (max(stamps) - min(stamps)) / 1000)


# --------------------------------------------------------------------------- 2b. do-nothing agent


@dataclass
class Drain:
    """A do-nothing agent draining a pre-loaded backlog (bench/noop_agent.py's report)."""

    n: int
    span: float
    longest_gap: float
    idle: float
    fetches: int | None
    empty_fetches: int | None
    other_threads_cpu: float = 0.0

    @property
    def unexplained_idle(self) -> float:
        """Main-thread idle time not spent waiting for the consumer thread (which holds the GIL
        while it decodes fetched records): waiting on a fetch timeout, a sleep, the broker."""
        return max(0.0, self.idle - self.other_threads_cpu)

    @property
    def rate(self) -> float:
        return self.n / self.span if self.span > 0 else float("nan")


async def backlog_drain(run_dir: Path, n: int) -> Drain:
    topic = "bench-backlog"
    out = run_dir / "noop.json"
    out.unlink(missing_ok=True)
    async with fresh_tansu(run_dir, [topic]) as bootstrap:
        await preload(bootstrap, topic, signal_messages(n, "backlog"))
        env = {**os.environ, **worker_env(bootstrap, ADMIN_DATABASE_URL, run_dir)}
        log_file = (run_dir / "worker-noop.log").open("ab")
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.noop_agent", "--topic", topic, "--count", str(n), "--out", str(out),
            env=env, stdout=log_file, stderr=log_file, cwd=PROJECT_ROOT)
        try:
            deadline = time.monotonic() + 180
            while not out.exists():
                if proc.returncode is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"do-nothing agent did not drain {n} events; see {run_dir}/worker-noop.log")
                await asyncio.sleep(0.25)
            await asyncio.sleep(0.1)  # the report is written whole before the next poll reads it
            report: dict[str, Any] = json.loads(out.read_text())
        finally:
            await _terminate(proc)
            log_file.close()
    return Drain(int(report["events"]), float(report["span"]), float(report["longest_gap"]),
                 float(report["idle"]), report.get("fetches"), report.get("empty_fetches"),
                 float(report.get("other_threads_cpu", 0.0)))


async def _terminate(proc: asyncio.subprocess.Process, timeout: float = 20.0) -> None:
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), timeout)
        except TimeoutError:
            proc.kill()
            await proc.wait()


# --------------------------------------------------------------------------- 3. fill latency


@dataclass
class ChannelClock:
    """Arrival time of every message on a Redis channel (channels are server-wide, so phases keep
    only the messages of their own orders)."""

    channel: str = "fills"
    arrivals: list[tuple[float, bytes]] = field(default_factory=list)
    _task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        client = redis.from_url(REDIS_URL)
        pubsub = client.pubsub()
        await pubsub.subscribe(self.channel)

        async def pump() -> None:
            try:
                while True:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if message is not None and message["type"] == "message":
                        self.arrivals.append((time.time(), message["data"]))
            finally:
                await pubsub.aclose()  # type: ignore[no-untyped-call]
                await client.aclose()

        self._task = asyncio.create_task(pump())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


#: the hops of a paper order, from the timestamps the pipeline itself records
HOPS = ("router", "executor", "placed", "to Redis")


@dataclass
class Latency:
    rate: float
    sent: int
    achieved: float
    expected_fills: int
    latencies_ms: list[float]
    #: p50 of each of HOPS: signal.ts -> routed_at (router), -> orders.created_at (executor took
    #: it), -> fill.ts (placed and filled on paper), -> arrival on Redis
    hops_p50: list[float]
    #: CPU of each process (worker, broker, postgres) from the first signal sent to the last fill seen
    cpu: procstat.Usage | None = None

    def p(self, pct: int) -> float:
        return percentile(self.latencies_ms, pct) if self.latencies_ms else float("nan")


@dataclass
class Processes:
    """The processes whose CPU a phase reports: name -> how to find their pids now."""

    worker: int
    broker: int
    database_url: str

    async def sample(self) -> procstat.Sample:
        postgres = await procstat.backend_pids(self.database_url)
        return procstat.sample({"worker": [self.worker], "broker": [self.broker], "postgres": postgres})


async def latency_phase(bootstrap: str, database_url: str, clock: ChannelClock, rate: float, seconds: float,
                        prefix: str, processes: Processes | None = None) -> Latency:
    signals = SignalMix(seed=5, prefix=prefix).take(int(rate * seconds))
    ids = {s.client_order_id for s in signals}
    # paper fills every order at once except the IOC limits placed 5% away, which expire
    expected = sum(1 for s in signals if s.time_in_force is not TimeInForce.IOC)

    def stamped(i: int) -> tuple[bytes | None, bytes]:
        signal = signals[i].model_copy(update={"ts": datetime.now(UTC)})
        return signal.symbol.encode(), signal.to_bytes()

    seen = len(clock.arrivals)
    fills: list[tuple[float, Fill]] = []

    def collect() -> None:
        """Parse what arrived since the last call; keep this phase's fills (the channel is
        server-wide: other runs' messages are skipped)."""
        nonlocal seen
        arrived, seen = clock.arrivals[seen:], len(clock.arrivals)
        for t, raw in arrived:
            try:
                fill = Fill.model_validate_json(raw)
            except ValueError:
                continue
            if fill.client_order_id in ids:
                fills.append((t, fill))

    before = await processes.sample() if processes is not None else None
    started = time.monotonic()
    achieved = await _produce_paced(bootstrap, SIGNALS, len(signals), rate, stamped)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        collect()
        if len(fills) >= expected:
            break
        await asyncio.sleep(0.05)
    cpu = None
    if processes is not None and before is not None:
        cpu = procstat.usage(before, await processes.sample(), time.monotonic() - started)
    latencies = [(t - f.signal_ts.timestamp()) * 1000 for t, f in fills if f.signal_ts is not None]
    return Latency(rate, len(signals), achieved, expected, latencies, await hops(database_url, fills), cpu)


async def hops(database_url: str, fills: list[tuple[float, Fill]]) -> list[float]:
    conn = await asyncpg.connect(database_url)
    try:
        orders = await queries.order_times(conn, [f.client_order_id for _, f in fills])
    finally:
        await conn.close()
    spans: list[list[float]] = [[] for _ in HOPS]
    for arrived, fill in fills:
        order = orders.get(fill.client_order_id)
        if order is None or fill.signal_ts is None:
            continue
        stamps = [fill.signal_ts.timestamp(), order.routed_at.timestamp(), order.created_at.timestamp(),
                  fill.ts.timestamp(), arrived]
        for i, span in enumerate(spans):
            span.append((stamps[i + 1] - stamps[i]) * 1000)
    return [percentile(span, 50) if span else float("nan") for span in spans]


@dataclass
class FullWorker:
    idle: procstat.Usage
    latencies: list[Latency]


async def fill_latency(run_dir: Path, plan: Plan) -> FullWorker:
    async with fresh_broker(run_dir, list(ALL_TOPICS)) as broker, fresh_database() as database_url:
        bootstrap = broker.url
        client = redis.from_url(REDIS_URL)
        await client.flushdb()  # dedupe keys of an earlier run would swallow this run's fills
        await client.aclose()
        clock = ChannelClock()
        await clock.start()
        try:
            env = worker_env(bootstrap, database_url, run_dir)
            async with running_worker(env, run_dir / "worker-full.log") as worker:
                processes = Processes(worker.pid, broker.pid, database_url)
                await asyncio.sleep(3.0)  # past the start: first sweeps, group join settled
                log(f"idle worker CPU over {plan.idle_seconds:.0f} s")
                before, started = await processes.sample(), time.monotonic()
                await asyncio.sleep(plan.idle_seconds)
                idle = procstat.usage(before, await processes.sample(), time.monotonic() - started)
                warm_rate, warm_seconds = plan.warmup
                await latency_phase(bootstrap, database_url, clock, warm_rate, warm_seconds, "warmup")
                results = []
                for rate, seconds in plan.rates:
                    log(f"latency at {rate:.0f} signals/s for {seconds:.0f} s")
                    results.append(await latency_phase(bootstrap, database_url, clock, rate, seconds,
                                                       f"lat{rate:.0f}", processes))
        finally:
            await clock.stop()
    return FullWorker(idle, results)


# --------------------------------------------------------------------------- 4. the floor


@dataclass
class Floor:
    rate: float
    achieved: float
    latencies_ms: list[float]
    expected: int
    #: CPU of the floor process and the broker over the phase (from the first record sent to the
    #: last one seen on Redis): what three raw aiokafka hops and a PUBLISH cost per signal
    cpu: procstat.Usage | None = None

    def p(self, pct: int) -> float:
        return percentile(self.latencies_ms, pct) if self.latencies_ms else float("nan")


async def floor_latency(run_dir: Path, plan: Plan, fetch_wait_ms: int) -> list[Floor]:
    """Three raw hops + a Redis PUBLISH (bench/floor.py, its own process) at each of the plan's rates."""
    channel = f"floor-{uuid.uuid4().hex[:8]}"
    async with fresh_broker(run_dir, ["floor-1", "floor-2", "floor-3"]) as broker:
        bootstrap = broker.url
        clock = ChannelClock(channel)
        await clock.start()
        log_file = (run_dir / "floor.log").open("ab")
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.floor", "--bootstrap", bootstrap, "--redis", REDIS_URL,
            "--channel", channel, "--fetch-wait-ms", str(fetch_wait_ms),
            stdout=asyncio.subprocess.PIPE, stderr=log_file, cwd=PROJECT_ROOT)
        try:
            assert proc.stdout is not None
            line = await asyncio.wait_for(proc.stdout.readline(), 60)
            if b"floor ready" not in line:
                raise RuntimeError(f"floor process did not start; see {run_dir}/floor.log")
            results = []
            for rate, seconds in (plan.warmup, *plan.rates):
                signals = SignalMix(seed=9, prefix=f"floor{rate:.0f}").take(int(rate * seconds))
                ids = {s.signal_id for s in signals}

                def stamped(i: int, signals: list[Signal] = signals) -> tuple[bytes | None, bytes]:
                    signal = signals[i].model_copy(update={"ts": datetime.now(UTC)})
                    return signal.symbol.encode(), signal.to_bytes()

                seen = len(clock.arrivals)
                pids = {"floor": [proc.pid], "broker": [broker.pid]}
                before, started = procstat.sample(pids), time.monotonic()
                achieved = await _produce_paced(bootstrap, "floor-1", len(signals), rate, stamped)
                deadline = time.monotonic() + 15
                while time.monotonic() < deadline:
                    if len(clock.arrivals) - seen >= len(signals):
                        break
                    await asyncio.sleep(0.05)
                cpu = procstat.usage(before, procstat.sample(pids), time.monotonic() - started)
                latencies = []
                for t, raw in clock.arrivals[seen:]:
                    signal = Signal.model_validate_json(raw)
                    if signal.signal_id in ids:
                        latencies.append((t - signal.ts.timestamp()) * 1000)
                results.append(Floor(rate, achieved, latencies, len(signals), cpu))
        finally:
            await _terminate(proc)
            log_file.close()
            await clock.stop()
    return results[1:]  # without the warm-up


# --------------------------------------------------------------------------- the table


def environment(settings: Settings) -> str:
    load = os.getloadavg()
    return "\n".join([
        f"cores            {os.cpu_count()}; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} "
        "(1/5/15 min, at the end of the run)",
        f"python           {platform.python_version()} ({platform.python_implementation()}), "
        f"worker event loop {settings.event_loop}",
        f"broker           Tansu (embedded, memory), restarted per section; {PARTITIONS} partitions per topic",
        f"fetch wait       KAFKA_FETCH_MAX_WAIT_MS={settings.fetch_max_wait_ms} (worker, raw loop and floor)",
        f"batching         AGENT_BATCH_WINDOW={settings.batch_window * 1000:g} ms, "
        f"AGENT_BATCH_MAX={settings.batch_max}",
    ])


@dataclass
class Results:
    raw: Throughput
    size: float
    routed: Throughput
    router: Throughput
    #: the router/raw ratio of every round; raw, routed and router above are the median round's
    ratios: list[float]
    drain: Drain
    full: FullWorker
    floors: list[Floor]


def _cpu_row(usage: procstat.Usage | None, count: int) -> str:
    if usage is None:
        return "-"
    per = usage.per(count)
    return ", ".join(f"{name} {per.get(name, float('nan')):.2f}" for name in ("worker", "broker", "postgres")) + " ms"


def table(r: Results) -> str:
    raw, routed, router, drain = r.raw, r.routed, r.router, r.drain
    ratio = router.rate / raw.rate
    idle_share = r.full.idle.share("worker")
    fetches = "" if drain.fetches is None else f", {drain.empty_fetches}/{drain.fetches} fetches empty"
    rows: list[tuple[str, str, str, str]] = [
        (f"1. raw pass-through (aiokafka, {raw.n} x {r.size:.0f} B)", f"{raw.rate:,.0f} msg/s", "(ceiling)", ""),
        ("1b. raw loop + the router's work (no Faust)", f"{routed.rate:,.0f} msg/s = {routed.rate / raw.rate:.2f}x raw",
         "(context)", ""),
        (f"2. router agent (worker, {router.n + 1} signals)",
         f"{router.rate:,.0f} msg/s = {ratio:.2f}x raw, {router.rate / routed.rate:.2f}x 1b"
         + (f" (median of {len(r.ratios)} rounds: " + ", ".join(f"{x:.2f}x" for x in sorted(r.ratios)) + ")"
            if len(r.ratios) > 1 else ""),
         ">= 0.35x raw", _ok(ratio >= 0.35)),
        (f"2b. do-nothing agent, {drain.n} backlog", f"{drain.rate:,.0f} msg/s = {drain.rate / raw.rate:.2f}x raw",
         "", ""),
        ("     main thread idle while the backlog waits",
         f"{drain.idle:.2f} s of {drain.span:.2f} s, of which the consumer thread ran "
         f"{drain.other_threads_cpu:.2f} s; longest pause between batches {drain.longest_gap * 1000:.0f} ms"
         f"{fetches}", "no idle gap", ""),
        ("     idle, less the consumer thread's run",
         f"{drain.unexplained_idle:.2f} s = {drain.unexplained_idle / drain.span * 100:.0f} % of the drain",
         "<= 5 %", _ok(drain.unexplained_idle <= 0.05 * drain.span)),
        (f"3. idle worker CPU ({r.full.idle.seconds:.0f} s)",
         f"{idle_share * 100:.1f} % of a core (broker {r.full.idle.share('broker') * 100:.1f} %)",
         "<= 3 %", _ok(idle_share <= 0.03)),
    ]
    floors = {f.rate: f for f in r.floors}
    for lat in r.full.latencies:
        targeted = lat.rate >= 500
        got = f"{len(lat.latencies_ms)}/{lat.expected_fills} fills, sent at {lat.achieved:.0f}/s"
        rows += [
            (f"3. signal -> fill on Redis @ {lat.rate:.0f}/s", got, "", ""),
            ("     p50", f"{lat.p(50):.1f} ms", "<= 40 ms" if targeted else "",
             _ok(lat.p(50) <= 40) if targeted else ""),
            ("     p99", f"{lat.p(99):.1f} ms", "<= 100 ms" if targeted else "",
             _ok(lat.p(99) <= 100) if targeted else ""),
            ("     max", f"{max(lat.latencies_ms, default=float('nan')):.1f} ms", "", ""),
            ("     p50 per hop", " + ".join(f"{h:.1f}" for h in lat.hops_p50) + " ms", "", ""),
            ("     CPU per signal", _cpu_row(lat.cpu, lat.sent), "worker <= 0.5 ms" if targeted else "",
             _ok(lat.cpu is not None and lat.cpu.per(lat.sent)["worker"] <= 0.5) if targeted else ""),
        ]
        if lat.cpu is not None:
            rows.append(("     worker CPU / waiting for a CPU",
                         f"{lat.cpu.share('worker') * 100:.0f} % / "
                         f"{lat.cpu.waiting.get('worker', 0.0) / lat.cpu.seconds * 100:.0f} % of a core", "", ""))
        floor = floors.get(lat.rate)
        if floor is not None:
            rows.append((f"4. floor @ {floor.rate:.0f}/s: 3 raw hops + PUBLISH",
                         f"p50 {floor.p(50):.1f} ms, p99 {floor.p(99):.1f} ms "
                         f"({len(floor.latencies_ms)}/{floor.expected}); pipeline = "
                         f"{lat.p(50) / floor.p(50):.1f}x / {lat.p(99) / floor.p(99):.1f}x floor", "", ""))
            if floor.cpu is not None:
                per = floor.cpu.per(floor.expected)
                floor_ms = per.get("floor", float("nan"))
                worker_ms = lat.cpu.per(lat.sent)["worker"] if lat.cpu is not None else float("nan")
                rows.append(("     floor CPU per signal",
                             f"floor process {floor_ms:.2f}, broker {per.get('broker', float('nan')):.2f} ms; "
                             f"worker = {worker_ms / floor_ms:.1f}x the floor process", "", ""))
    header = ("measurement", "measured", "target", "")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(4)]

    def line(row: tuple[str, ...]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()

    rule = "-" * len(line(tuple("x" * w for w in widths)))
    legend = (f"per hop: {' + '.join(HOPS)} (signal ts -> routed_at -> order created_at -> fill ts -> Redis)\n"
              "CPU per signal: from /proc, first signal sent -> last fill seen; postgres = the backends of "
              "the bench's database")
    return "\n".join([line(header), rule, *(line(row) for row in rows), rule, legend])


def _ok(passed: bool) -> str:
    return "ok" if passed else "MISSED"


SECTIONS = ("raw", "router", "backlog", "full", "floor")


async def run(plan: Plan, run_dir: Path) -> str:
    started = time.monotonic()
    wait = Settings().fetch_max_wait_ms
    rounds: list[tuple[Throughput, Throughput, Throughput]] = []
    size = 0.0
    for n in range(1, plan.rounds + 1):
        log(f"1/5 raw pass-through, {plan.throughput_n} messages, round {n}/{plan.rounds} (logs in {run_dir})")
        raw, size = await raw_pass_through(run_dir, plan.throughput_n, wait)
        log(f"    {raw.rate:,.0f} msg/s; 1b/5 the same loop doing the router's work")
        routed, _ = await raw_pass_through(run_dir, plan.throughput_n, wait, route_bytes(BrokerRouter([])))
        log(f"    {routed.rate:,.0f} msg/s; 2/5 router agent")
        router = await router_rate(run_dir, plan.throughput_n)
        log(f"    {router.rate:,.0f} msg/s = {router.rate / raw.rate:.2f}x raw")
        rounds.append((raw, routed, router))
    ratios = [router.rate / raw.rate for raw, _, router in rounds]
    raw, routed, router = sorted(rounds, key=lambda r: r[2].rate / r[0].rate)[len(rounds) // 2]
    log(f"2b/5 do-nothing agent, {plan.backlog_n} backlog")
    drain = await backlog_drain(run_dir, plan.backlog_n)
    log(f"    {drain.rate:,.0f} msg/s, idle {drain.idle:.2f} s; 3/5 full worker: idle CPU, signal -> fill latency")
    full = await fill_latency(run_dir, plan)
    log("4/5 floor: three raw hops + Redis PUBLISH")
    floors = await floor_latency(run_dir, plan, wait)
    log(f"done in {time.monotonic() - started:.0f} s")
    return environment(Settings()) + "\n\n" + table(Results(raw, size, routed, router, ratios, drain, full, floors))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer messages and shorter phases")
    parser.add_argument("--keep-logs", action="store_true", help="keep the broker/worker logs")
    args = parser.parse_args(argv)
    run_dir = Path(tempfile.mkdtemp(prefix="si-bench-"))
    try:
        print(asyncio.run(run(QUICK if args.quick else FULL, run_dir)))
    finally:
        if args.keep_logs:
            log(f"logs kept in {run_dir}")
        else:
            shutil.rmtree(run_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
