"""``superintel demo`` (``make run``): the whole pipeline on the embedded stack, watched live.

Starts what is missing (Tansu, PostgreSQL, Redis, the Binance, TWS and MT4 simulators), a real worker
process, and a producer of a mixed-asset signal stream with a few malformed messages in it; shows
progress from the database, Redis and the dead-letter topic while it runs, and ends with a
summary. Crypto trades on the Binance simulator, equities, options and futures on the TWS
simulator ("IBKR", through ib_async), FX on the MT4 bridge simulator ("MT4", REST through httpx).
Two faults are played: a Binance outage (HTTP 503, the breaker opens, crypto goes to paper) and IB
Gateway's nightly restart (``devstack/ibkr_restart.py``: orders held, rerouted or rejected per
policy, fills made while the worker was disconnected recorded once after the reconnect). Then the
NAV-arbitrage agent trades a synthetic GBTC premium (``devstack/nav_demo.py``). Every
row it reports is read back from where a user would look, never from counters inside the producer.
It never deletes data: this run's rows are told apart by a run id.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import re
import time
import uuid
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg
import redis.asyncio as redis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from rich.console import Console, Group, JustifyMethod
from rich.live import Live
from rich.table import Table

from adapters.timescale import queries
from devstack import ibkr_restart, nav_demo
from devstack.signal_mix import MALFORMED, SignalMix
from devstack.stack import EmbeddedStack, create_topics
from devstack.venues_embedded import EmbeddedVenues
from devstack.worker_process import WorkerProcess
from schemas import Broker, DeadLetter, Fill, Signal
from streams.topics import ALL_TOPICS, DLQ, SIGNALS

TERMINAL = ("FILLED", "CANCELLED", "REJECTED", "EXPIRED")


@dataclass
class Progress:
    published: int = 0
    malformed_sent: int = 0
    redis_fills: dict[str, Fill] = field(default_factory=dict)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    states: dict[str, int] = field(default_factory=dict)
    db_fills: int = 0

    @property
    def terminal(self) -> int:
        return sum(n for s, n in self.states.items() if s in TERMINAL)


def run_demo(signals: int = 300, rate: float = 100.0, malformed: int = 5, outage: float = 3.0,
             ibkr_restart: float = 2.0) -> int:
    return asyncio.run(_demo(signals, rate, min(malformed, len(MALFORMED)), outage, ibkr_restart))


async def _demo(n_mix: int, rate: float, n_malformed: int, outage: float, restart_seconds: float) -> int:
    console = Console()
    run_id = uuid.uuid4().hex[:6]
    started_at = datetime.now(UTC)
    console.rule(f"[bold]SuperIntel Execution demo[/] run {run_id}")
    async with contextlib.AsyncExitStack() as stack_ctx:
        with console.status("starting the embedded stack (Kafka API, PostgreSQL, Redis, venue simulators)..."):
            stack = await stack_ctx.enter_async_context(EmbeddedStack())
            venues = await stack_ctx.enter_async_context(EmbeddedVenues())
            await create_topics(stack.kafka_bootstrap, list(ALL_TOPICS), int(os.environ.get("TOPIC_PARTITIONS", 4)))
        console.print(f"kafka     {redact(stack.kafka_bootstrap)}\npostgres  {redact_url(stack.database_url)}\n"
                      f"redis     {redact_url(stack.redis_url)}\nstarted   {', '.join(stack.started) or 'nothing'}")
        for line in venues.describe():
            console.print(redact(line))

        run_dir = stack.run_dir
        # a twitchy breaker with a short cooldown, so the demo's outage shows it open and recover
        worker_env = {**stack.env(), **venues.env(), **ibkr_restart.worker_env(),
                      "BREAKER_FAILURE_THRESHOLD": os.environ.get("BREAKER_FAILURE_THRESHOLD", "2"),
                      "BREAKER_COOLDOWN": os.environ.get("BREAKER_COOLDOWN", "3")}
        worker = WorkerProcess(worker_env, run_dir / f"demo-worker-{run_id}.log")
        stack_ctx.callback(worker.stop)
        with console.status("starting the worker (joining the consumer group)..."):
            worker.start()
            await asyncio.to_thread(worker.wait_ready, 120)
        console.print(f"worker    pid {worker.pid}, log {worker.log_path}")

        prefix = _run_prefix(run_id)
        restarting = restart_seconds > 0 and venues.tws is not None
        # a few IB orders left resting, for the nightly restart to fill while the worker is away
        probes = ibkr_restart.probe_signals(venues.tws, prefix) if restarting and venues.tws else []
        signals = probes + SignalMix(seed=int(time.time()), prefix=f"demo-{run_id}").take(n_mix)
        n_signals = len(signals)
        report = ibkr_restart.RestartReport(probes)
        progress = Progress()
        pool = await stack_ctx.enter_async_context(_pool(stack.database_url))
        watchers = [
            asyncio.create_task(_watch_redis(stack.redis_url, {s.client_order_id for s in signals}, progress)),
            asyncio.create_task(_watch_dlq(stack.kafka_bootstrap, started_at, progress)),
        ]
        await asyncio.sleep(0.2)
        producer = asyncio.create_task(_produce(stack.kafka_bootstrap, signals, n_malformed, rate, progress))
        if outage > 0 and venues.can_fail:
            watchers.append(asyncio.create_task(_outage(console, venues, n_signals / rate / 3, outage)))
        restart: asyncio.Task[None] | None = None
        if restarting:  # halfway through the stream, while signals flow
            restart = asyncio.create_task(ibkr_restart.run_restart(
                console, venues, pool, report, seconds=restart_seconds,
                ready=lambda: sum(progress.states.values()) >= n_signals // 2))
        deadline = time.monotonic() + max(60.0, n_signals / rate * 3 + 30)
        last, stable_since = None, time.monotonic()
        with Live(console=console, refresh_per_second=4) as live:
            while time.monotonic() < deadline:
                await _poll_db(pool, run_id, progress)
                live.update(_progress_view(progress, n_signals, n_malformed))
                snapshot = (tuple(sorted(progress.states.items())), progress.db_fills,
                            len(progress.redis_fills), len(progress.dead_letters))
                if snapshot != last:
                    last, stable_since = snapshot, time.monotonic()
                if producer.done() and _settled(progress, n_signals, n_malformed) \
                        and (restart is None or restart.done()) and time.monotonic() - stable_since >= 3.0:
                    break  # orders still open now rest at their venue (limits away from the market)
                await asyncio.sleep(0.25)
        for task in watchers:
            task.cancel()
        if restart is not None and not restart.done():
            restart.cancel()
        await producer
        console.print(await _summary(pool, run_id, progress, n_signals, n_malformed))
        log_lines = worker.process.output().splitlines()  # this run's log, whole (ib_async logs a lot)
        breaker_lines = [_log_message(line) for line in log_lines if "BREAKER" in line]
        if breaker_lines:
            console.print("[bold]circuit breaker (from the worker log)[/]\n" + redact("\n".join(breaker_lines)))
        ok = _settled(progress, n_signals, n_malformed)
        if restart is not None:
            ib_lines = [redact(_log_message(line)) for line in log_lines
                        if "IBKR connection lost" in line or " connected as client " in line]
            console.print(*await ibkr_restart.restart_summary(
                pool, prefix, report, ibkr_restart.policy_label(worker_env), ib_lines))
            ok = ok and ibkr_restart.resynced_ok(report, await queries.recorded_exec_ids(pool, prefix))
        # NAV arbitrage (issue 15): a synthetic GBTC premium crossing both thresholds, traded by the agent
        console.print(await nav_demo.run(console, stack.kafka_bootstrap, venues, pool, run_id))
        console.print(await _replay_own_run(console, stack.kafka_bootstrap, started_at, run_id))
        console.rule("[green]done[/]" if ok else "[red]incomplete: see the worker log[/]")
        return 0 if ok else 1
    return 1


async def _outage(console: Console, venues: EmbeddedVenues, after: float, seconds: float) -> None:
    await asyncio.sleep(after)
    console.log(f"[yellow]injecting a {seconds:g} s Binance outage (every request answers HTTP 503)[/]")
    await venues.binance_outage(seconds)
    console.log("[green]Binance simulator answering again[/]")


def _log_message(line: str) -> str:
    """A worker log line without its timestamp and logger prefix (``... [WARNING] message``)."""
    for level in ("[WARNING] ", "[INFO] ", "[ERROR] "):
        if level in line:
            return line.split(level, 1)[-1]
    return line


def _settled(p: Progress, n_signals: int, n_malformed: int) -> bool:
    """Every valid signal became an order that reached its venue (or a terminal state), every
    recorded fill reached Redis, every malformed message reached the dead-letter topic."""
    return (sum(p.states.values()) == n_signals and p.states.get("PENDING", 0) == 0
            and len(p.redis_fills) >= p.db_fills and len(p.dead_letters) >= n_malformed)


@contextlib.asynccontextmanager
async def _pool(dsn: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
    try:
        yield pool
    finally:
        await pool.close()


async def _produce(bootstrap: str, signals: list[Signal], n_malformed: int, rate: float, progress: Progress) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=1)
    await producer.start()
    try:
        bad_every = max(1, len(signals) // (n_malformed + 1))
        bad = list(MALFORMED[:n_malformed])
        t0 = time.monotonic()
        for i, signal in enumerate(signals, 1):
            stamped = signal.model_copy(update={"ts": datetime.now(UTC)})  # latency counts from here
            await producer.send(SIGNALS, key=signal.symbol.encode(), value=stamped.to_bytes())
            progress.published += 1
            if bad and i % bad_every == 0:
                m = bad.pop(0)
                await producer.send(SIGNALS, key=m.key, value=m.value)
                progress.malformed_sent += 1
            lag = t0 + i / rate - time.monotonic()
            if lag > 0:
                await asyncio.sleep(lag)
        for m in bad:
            await producer.send(SIGNALS, key=m.key, value=m.value)
            progress.malformed_sent += 1
        await producer.flush()
    finally:
        await producer.stop()


async def _watch_redis(url: str, client_order_ids: set[str], progress: Progress) -> None:
    client = redis.from_url(url)
    pubsub = client.pubsub()
    await pubsub.subscribe("fills")
    try:
        async for message in pubsub.listen():
            if message["type"] == "message":
                fill = Fill.model_validate_json(message["data"])
                if fill.client_order_id in client_order_ids:
                    progress.redis_fills[fill.exec_id] = fill
    finally:
        await pubsub.aclose()  # type: ignore[no-untyped-call]
        await client.aclose()


async def _watch_dlq(bootstrap: str, since: datetime, progress: Progress) -> None:
    consumer = AIOKafkaConsumer(DLQ, bootstrap_servers=bootstrap, group_id=None,
                                auto_offset_reset="earliest", fetch_max_wait_ms=100)
    await consumer.start()
    try:
        async for record in consumer:
            if record.value:
                letter = DeadLetter.model_validate_json(record.value)
                if letter.ts >= since:
                    progress.dead_letters.append(letter)
    finally:
        await consumer.stop()


def _run_prefix(run_id: str) -> str:
    """What every signal id of this run starts with (``SignalMix(prefix=f"demo-{run_id}")``)."""
    return f"demo-{run_id}-"


async def _poll_db(pool: asyncpg.Pool, run_id: str, progress: Progress) -> None:
    prefix = _run_prefix(run_id)
    progress.states = {state.value: n for state, n in (await queries.state_counts(pool, prefix)).items()}
    progress.db_fills = await queries.fill_count(pool, prefix)


def _progress_view(p: Progress, n_signals: int, n_malformed: int) -> Table:
    total_orders = sum(p.states.values())
    table = Table(title="live progress", show_header=False, min_width=60)
    table.add_column("what")
    table.add_column("count", justify="right")
    table.add_row("signals published", f"{p.published}/{n_signals} (+{p.malformed_sent} malformed)")
    table.add_row("orders (db)", f"{total_orders}: " + ", ".join(
        f"{s} {p.states.get(s, 0)}" for s in TERMINAL) + f", open {total_orders - p.terminal}")
    table.add_row("fills recorded (db)", str(p.db_fills))
    table.add_row("fills seen on Redis", str(len(p.redis_fills)))
    table.add_row("dead letters", f"{len(p.dead_letters)}/{n_malformed}")
    return table


def _table(
    title: str, columns: tuple[str, ...], rows: Iterable[tuple[str, ...]], justify: JustifyMethod = "left"
) -> Table:
    table = Table(title=title)
    for col in columns:
        table.add_column(col, justify=justify)
    for row in rows:
        table.add_row(*row)
    return table


async def _summary(pool: asyncpg.Pool, run_id: str, p: Progress, n_signals: int, n_malformed: int) -> Group:
    prefix = _run_prefix(run_id)
    by_broker = _table("orders by broker and state", ("broker", "routed for", "state", "orders"), (
        (r.broker.value, r.routed_for.value, r.state.value, str(r.orders))
        for r in await queries.orders_by_route(pool, prefix)))

    fills = _table("fills", ("broker", "fills", "quantity", "notional", "signal->fill p50 ms", "p99 ms"), (
        (f.broker.value, str(f.fills), _num(f.quantity), _num(f.notional), f"{f.p50_ms:.1f}", f"{f.p99_ms:.1f}")
        for f in await queries.fill_summary(pool, prefix)),
        justify="right")

    positions = _table("positions (account totals, all runs)",
                       ("broker", "symbol", "quantity", "avg price", "realized pnl"), (
        (pos.broker.value, pos.symbol, _num(pos.quantity), _num(pos.avg_price), _num(pos.realized_pnl))
        for pos in await queries.positions(pool, traded_by=prefix)),
        justify="right")

    rerouted = _table("live-venue orders moved to paper, by reason", ("routed for", "reason", "orders"), (
        (r.label, r.reason[:100], str(r.orders))
        for r in await queries.reroute_reasons(pool, prefix, rerouted_from=[Broker.BINANCE])))

    rejected = _table("rejections and expiries by reason", ("state", "reason", "orders"), (
        (r.label, r.reason[:100], str(r.orders)) for r in await queries.outcome_reasons(pool, prefix)))

    dead = _table("dead letters", ("agent", "offset", "reason"), (
        (letter.agent, f"{letter.partition}:{letter.offset}", letter.reason[:110]) for letter in p.dead_letters))

    recorded = await queries.recorded_exec_ids(pool, prefix)
    stray = _table("fills seen on Redis but not recorded (should be empty)",
                   ("exec_id", "order", "qty", "cumulative", "price"), (
        (exec_id, f.client_order_id, _num(f.quantity), _num(f.cumulative_quantity), _num(f.price))
        for exec_id, f in p.redis_fills.items() if exec_id not in recorded))

    totals = Table(title="totals", show_header=False)
    totals.add_row("valid signals published", str(n_signals))
    totals.add_row("orders in a terminal state", str(p.terminal))
    totals.add_row("orders resting at their venue", str(sum(p.states.values()) - p.terminal))
    totals.add_row("fills recorded / seen on Redis", f"{p.db_fills} / {len(p.redis_fills)}")
    totals.add_row("malformed published / dead-lettered", f"{n_malformed} / {len(p.dead_letters)}")
    reroutes, strays = ([t] if t.rows else [] for t in (rerouted, stray))
    return Group(by_broker, *reroutes, rejected, fills, positions, dead, *strays, totals)


async def _replay_own_run(console: Console, bootstrap: str, since: datetime, run_id: str) -> Group | str:
    """This run's stretch of ``signals`` replayed as a backtest (``superintel replay``, issue 17):
    every broker on paper at the signals' reference prices, on recorded time, into its own store;
    what it did, and where the report is. A failure here is reported, never the demo's end."""
    from replay.runner import ReplayOptions, run_replay
    from replay.window import ReplayRange, iso
    from streams.settings import Settings

    window = ReplayRange(since, datetime.now(UTC) + timedelta(milliseconds=1))
    try:
        with console.status("replaying this run's signals (superintel replay: paper, recorded time)..."):
            done = await run_replay(ReplayOptions(window, run_id=f"demo-{run_id}"), Settings(),
                                    bootstrap=bootstrap, progress_stream=io.StringIO())
    except Exception as exc:
        return f"[red]replaying this run failed: {exc!r}[/]"
    summary = json.loads(done.files.summary.read_text())
    signals, pnl = summary["signals"], summary["pnl"]
    table = _table(f"replay of this run: superintel replay --from {iso(window.start)} --to {iso(window.end)}",
                   ("measure", "value"), [
        ("records in range / valid / malformed", f"{signals['read']} / {signals['valid']} / {signals['invalid']}"),
        ("orders", ", ".join(f"{state} {n}" for state, n in summary["orders"].items())),
        ("fills", str(summary["fills"])),
        ("P&L realized / unrealized / fees",
         " / ".join(_num(Decimal(pnl[k]).quantize(Decimal("0.01"))) for k in ("realized", "unrealized", "fees")))])
    return Group(table, f"replay report: [bold]{done.files.html}[/] (summary.json, fills.csv, equity.png beside it)")


def _num(value: Decimal | None) -> str:
    if value is None:
        return "-"
    return f"{value.normalize():f}" if abs(value) < Decimal("1e12") else f"{value:.4E}"


#: query parameters that carry a secret in a DSN or URL (libpq's ``password``, tokens, keys)
_SECRET_PARAMS = re.compile(r"pass(word|wd)?|secret|token|api[-_]?key|sslpassword|key", re.IGNORECASE)
_URL = re.compile(r"\b[A-Za-z][A-Za-z0-9+.\-]*://[^\s'\"<>]+")


def redact_url(url: str) -> str:
    """A URL or DSN safe to print: the password in its authority becomes ``***``
    (``postgresql://user:pass@host/db`` -> ``postgresql://user:***@host/db``, the user kept so an
    operator still sees who connects), and so does the value of any query parameter that carries
    a secret (``?password=…``, ``?token=…``). Anything else (a bare ``host:port``) is unchanged."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if not parts.scheme or not parts.netloc:
        return url
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user, has_password, _ = userinfo.partition(":")
        netloc = f"{user}:***@{hostport}" if has_password else netloc
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(_SECRET_PARAMS.fullmatch(name) for name, _ in pairs):
            query = urlencode([(n, "***" if _SECRET_PARAMS.fullmatch(n) else v) for n, v in pairs], safe="*")
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def redact(text: str) -> str:
    """``text`` with every URL in it redacted (``redact_url``): for lines the demo prints that it
    did not write itself (a venue's description, the worker's log)."""
    return _URL.sub(lambda match: redact_url(match.group(0)), text)
