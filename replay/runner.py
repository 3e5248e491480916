"""One replay run: read the range, replay it, write the report (what ``superintel replay`` does).

The run id defaults to a digest of what decides the results (topic, range, price file contents),
so running the same backtest again replaces its own report (and its own PostgreSQL schema) and
nothing else. ``--speed`` only paces the wall clock; the pipeline's clock is recorded time either
way, so a paced run writes the same results as ``--speed max``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import platform
import re
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any, TextIO

from execution.clock import ManualClock
from replay.engine import ReplayOutcome, memory_store, postgres_store, replay_records, schema_name
from replay.prices import RecordedPrices
from replay.report import MATPLOTLIB_MISSING, ReportFiles, dec, write_report
from replay.source import RangeRead, Record, read_range
from replay.window import ReplayRange, iso
from streams.settings import Settings
from streams.topics import SIGNALS

DEFAULT_REPORT_ROOT = Path(".superintel") / "replay"


class SpeedError(ValueError):
    pass


class OptionError(ValueError):
    """A run id that could not name a directory and a schema, a negative slack, ..."""


#: a run id names the report directory and the PostgreSQL schema: no path separators, no dots first
RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,55}")


def parse_speed(text: str) -> float | None:
    """``max`` -> None (as fast as it goes), ``realtime`` -> 1.0, ``10x`` / ``0.5x`` -> the factor."""
    value = text.strip().lower()
    if value == "max":
        return None
    if value == "realtime":
        return 1.0
    try:
        factor = float(value.removesuffix("x"))
    except ValueError:
        raise SpeedError(f"--speed {text!r}: use max, realtime or a factor like 10x") from None
    if not factor > 0 or factor == float("inf"):
        raise SpeedError(f"--speed {text!r}: the factor must be positive and finite")
    return factor


def default_run_id(topic: str, window: ReplayRange, prices_digest: str | None) -> str:
    """A digest of (topic, range, price file contents): the same backtest gets the same id."""
    key = json.dumps([topic, iso(window.start), iso(window.end), prices_digest])
    return hashlib.sha256(key.encode()).hexdigest()[:12]


@dataclass(frozen=True, slots=True)
class ReplayOptions:
    window: ReplayRange
    topic: str = SIGNALS
    prices: Path | None = None
    speed: float | None = None
    run_id: str | None = None
    report: Path | None = None
    store: str = "memory"
    #: a partition finishes at its first record more than this many seconds past the range end
    slack: float = 60.0
    #: ... or when its end offset is reached and nothing new came for this many seconds
    quiet: float = 1.0

    def __post_init__(self) -> None:
        if self.run_id is not None and not RUN_ID.fullmatch(self.run_id):
            raise OptionError(f"--run-id {self.run_id!r}: letters, digits, '.', '_' and '-' only (up to 56), "
                              "starting with a letter or digit")
        if not self.slack >= 0:
            raise OptionError(f"--slack {self.slack}: must be 0 or more seconds")
        if not self.quiet > 0:
            raise OptionError(f"--quiet {self.quiet}: must be more than 0 seconds")
        if self.store not in ("memory", "postgres"):
            raise OptionError(f"--store {self.store!r}: memory or postgres")


@dataclass(frozen=True, slots=True)
class ReplayRun:
    run_id: str
    outcome: ReplayOutcome
    files: ReportFiles
    read: RangeRead


class Progress:
    """One status line: a bar of the recorded time reached within the range, and counts.

    No total is knowable up front on the embedded broker, so while reading the count is of
    records kept so far; while replaying it is of the records read. On a terminal the line is
    redrawn in place; otherwise a line is printed every few seconds."""

    def __init__(self, stream: TextIO, window: ReplayRange, *, width: int = 24) -> None:
        self._stream = stream
        self._window = window
        self._width = width
        self._tty = stream.isatty()
        self._every = 0.1 if self._tty else 2.0
        self._last = float("-inf")
        self._drawn = False

    def reading(self, kept: int, reached: datetime | None) -> None:
        self._show("reading", reached, f"{kept} records in range so far")

    def replaying(self, done: int, total: int, reached: datetime | None) -> None:
        self._show("replaying", reached, f"{done}/{total} records")

    def end_phase(self, label: str, reached: datetime | None, counts: str) -> None:
        self._show(label, reached, counts, force=True)
        if self._tty and self._drawn:
            self._stream.write("\n")
            self._stream.flush()
        self._drawn = False

    def _show(self, label: str, reached: datetime | None, counts: str, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < self._every:
            return
        self._last = now
        fraction = self._window.fraction(reached) if reached is not None else 0.0
        filled = round(fraction * self._width)
        bar = "#" * filled + "." * (self._width - filled)
        when = iso(reached) if reached is not None else "-"
        line = f"replay {label:<9} [{bar}] {fraction * 100:5.1f}%  recorded time {when}  {counts}"
        if self._tty:
            self._stream.write("\r" + line.ljust(110))
            self._drawn = True
        else:
            self._stream.write(line + "\n")
        self._stream.flush()


def _versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in ("superintel-execution", "aiokafka", "pydantic", "matplotlib"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


async def run_replay(options: ReplayOptions, settings: Settings, *, bootstrap: str | None = None,
                     progress_stream: TextIO | None = None) -> ReplayRun:
    """Read ``options.window`` of ``options.topic``, replay it, write the report; return it all."""
    started = time.monotonic()
    window = options.window
    clock = ManualClock(window.start)
    prices = RecordedPrices.from_csv(options.prices, clock) if options.prices is not None else None
    run_id = options.run_id or default_run_id(options.topic, window, prices.digest if prices else None)
    report_dir = options.report or DEFAULT_REPORT_ROOT / run_id
    stream = progress_stream if progress_stream is not None else sys.stderr
    progress = Progress(stream, window)

    read = await read_range(bootstrap or settings.kafka_bootstrap, options.topic, window, slack=options.slack,
                            quiet=options.quiet, progress=progress.reading)
    reached = read.records[-1].ts if read.records else None
    progress.end_phase("read", reached, f"{len(read.records)} records in range "
                                        f"({read.before} before it, {read.after} after it)")

    if options.store == "postgres":
        schema = schema_name(run_id)
        store, store_name = postgres_store(settings.database_url, schema, clock), f"postgres schema {schema}"
    else:
        store, store_name = memory_store(clock), "memory"

    total = len(read.records)
    pace: tuple[datetime, float] | None = None
    loop = asyncio.get_running_loop()

    async def before_record(index: int, record: Record) -> None:
        nonlocal pace
        if options.speed is not None:
            if pace is None:
                pace = (record.ts, loop.time())
            delay = pace[1] + (record.ts - pace[0]).total_seconds() / options.speed - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
        progress.replaying(index, total, record.ts)

    outcome = await replay_records(read.records, settings=settings, start=window.start, end=window.end,
                                   prices=prices, clock=clock, store=store, store_name=store_name,
                                   on_record=before_record)
    progress.end_phase("replayed", reached, f"{total}/{total} records")
    meta: dict[str, Any] = {
        "run_id": run_id,
        "generated_at": iso(datetime.now(UTC)),
        "range": window.as_dict(),
        "topic": options.topic,
        "prices": ({"file": str(options.prices), "sha256": prices.digest, "points": len(prices),
                    "symbols": prices.symbols} if prices is not None and options.prices is not None else None),
        "store": store_name,
        "speed": "max" if options.speed is None else f"{options.speed:g}x",
        "slack_seconds": options.slack,
        "records": {"in_range": len(read.records), "before_range": read.before, "after_range": read.after,
                    "partitions": {str(p): how for p, how in sorted(read.partitions.items())}},
        "order_events": outcome.order_events,
        "settings": {"paper_slippage": dec(settings.paper_slippage), "order_max_age": settings.order_max_age,
                     "max_order_quantity": dec(settings.max_order_quantity),
                     "max_order_notional": dec(settings.max_order_notional)},
        "versions": _versions(),
        "elapsed_seconds": round(time.monotonic() - started, 3),
    }
    files = write_report(report_dir, outcome, window, prices, meta)
    if files.chart is None:
        stream.write(MATPLOTLIB_MISSING + "\n")
    return ReplayRun(run_id, outcome, files, read)
