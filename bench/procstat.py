"""CPU time of processes, read from ``/proc``: what a phase of the bench cost each process.

Why per process: on two cores the worker, the embedded broker and PostgreSQL compete for the same
CPUs, so the pipeline's latency follows the CPU each spends per signal. Reporting them separately
shows what is ours (the worker) and what is the broker's or the database's.

* ``cpu_seconds(pid)``: user + system time of a process and all its threads (``/proc/<pid>/stat``
  fields 14 and 15), plus that of its live descendants (a process group that forked).
* ``run_delay_seconds(pid)``: time its threads spent runnable but waiting for a CPU
  (``/proc/<pid>/task/*/schedstat``, second field): on a saturated machine the worker waits about as
  long as it runs.
* PostgreSQL serves a database through one backend process per connection: ``backend_pids`` finds
  those of the bench's own database (``pg_stat_activity``), so the machine's other databases (and
  the server's shared background processes, which other users of the server also drive) are left out.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import asyncpg

_TICKS = os.sysconf("SC_CLK_TCK")
_PROC = Path("/proc")


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # the command name (field 2) is in parentheses and may hold spaces: split after its end
    return text[text.rindex(")") + 2:].split()


def _own_cpu(pid: int) -> float:
    fields = _stat_fields(pid)
    if fields is None:
        return 0.0
    # after the name: state is fields[0]; utime/stime are stat fields 14/15 -> indices 11/12
    return (int(fields[11]) + int(fields[12])) / _TICKS


def descendants(pid: int) -> list[int]:
    """Every live process below ``pid`` (children, grandchildren...)."""
    parents: dict[int, list[int]] = {}
    for entry in _PROC.iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields is not None:
            parents.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def cpu_seconds(pid: int, *, tree: bool = True) -> float:
    """User + system CPU seconds of ``pid`` (all threads), and of its live descendants."""
    return sum(_own_cpu(p) for p in [pid, *(descendants(pid) if tree else [])])


def run_delay_seconds(pid: int) -> float:
    """Seconds the threads of ``pid`` spent waiting on a run queue (0 when schedstat is absent)."""
    total = 0
    try:
        tasks = list((_PROC / str(pid) / "task").iterdir())
    except OSError:
        return 0.0
    for task in tasks:
        try:
            total += int((task / "schedstat").read_text().split()[1])
        except (OSError, IndexError, ValueError):
            continue
    return total / 1e9


def thread_times(pid: int, tid: int | None = None) -> tuple[float, float]:
    """(CPU seconds, seconds waiting for a CPU) of one thread (the main thread by default): what
    is neither was spent idle, waiting for I/O or an event."""
    task = _PROC / str(pid) / "task" / str(tid if tid is not None else pid)
    try:
        text = (task / "stat").read_text()
        delay = int((task / "schedstat").read_text().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return 0.0, 0.0
    fields = text[text.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS, delay


async def backend_pids(database_url: str) -> list[int]:
    """The PostgreSQL backend processes serving the database of ``database_url`` (other than the
    connection that asks)."""
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()")
        return [int(r["pid"]) for r in rows]
    finally:
        await conn.close()


@dataclass(frozen=True)
class Sample:
    """CPU seconds of every process of each named group at one instant (per pid, so a process
    that starts between two samples counts from zero), and their run-queue wait."""

    cpu: Mapping[str, Mapping[int, float]]
    waiting: Mapping[str, Mapping[int, float]]


def sample(groups: Mapping[str, Iterable[int]], *, tree: bool = True) -> Sample:
    """``groups``: name -> pids; each pid's descendants are part of its group when ``tree``."""
    cpu: dict[str, dict[int, float]] = {}
    waiting: dict[str, dict[int, float]] = {}
    for name, pids in groups.items():
        members = {m for p in pids for m in [p, *(descendants(p) if tree else [])]}
        cpu[name] = {m: _own_cpu(m) for m in members}
        waiting[name] = {m: run_delay_seconds(m) for m in members}
    return Sample(cpu, waiting)


@dataclass(frozen=True)
class Usage:
    """What each process group used between two samples."""

    seconds: float
    cpu: Mapping[str, float]
    waiting: Mapping[str, float]

    def per(self, count: int) -> dict[str, float]:
        """CPU milliseconds per item (signal, message) of each group."""
        return {name: used * 1000 / count for name, used in self.cpu.items()} if count else {}

    def share(self, name: str) -> float:
        """``name``'s CPU as a fraction of one core over the span."""
        return self.cpu.get(name, 0.0) / self.seconds if self.seconds > 0 else float("nan")


def _delta(before: Mapping[int, float], after: Mapping[int, float]) -> float:
    # a process gone by ``after`` is not counted (its last CPU time is unknown); one started
    # since ``before`` counts from zero
    return sum(max(0.0, used - before.get(pid, 0.0)) for pid, used in after.items() if used)


def usage(before: Sample, after: Sample, seconds: float) -> Usage:
    return Usage(
        seconds,
        {name: _delta(before.cpu.get(name, {}), after.cpu[name]) for name in after.cpu},
        {name: _delta(before.waiting.get(name, {}), after.waiting[name]) for name in after.waiting},
    )
