"""The pipeline's clock: the one place the core reads time.

Live, it is the wall clock. In a replay it is recorded time (each record's timestamp), so that
ages, order/fill/event timestamps and poll scheduling depend on the data, not on when the replay
ran: the same replay gives the same results twice. Everything that reads time is *handed* a
clock by the composition root (``streams/bootstrap.py``); nothing on the hot path calls
``datetime.now`` or ``time.monotonic`` itself.
"""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware UTC (stamps on orders, fills, events; signal ages)."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (intervals, poll and retry scheduling)."""
        ...


class SystemClock:
    """Wall time and the process's monotonic clock: production's default."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()


class ManualClock:
    """A clock that moves only when told: unit tests, and replays driven by recorded timestamps.

    ``monotonic`` is the seconds elapsed since the clock's start, so it advances together with
    ``now``; ``set`` never moves time backwards (a late record leaves the clock where it is)."""

    def __init__(self, start: datetime | None = None) -> None:
        self._start = start or datetime(2026, 1, 1, tzinfo=UTC)
        if self._start.tzinfo is None:
            raise ValueError("ManualClock needs a timezone-aware start")
        self._now = self._start

    def now(self) -> datetime:
        return self._now

    def monotonic(self) -> float:
        return (self._now - self._start).total_seconds()

    def advance(self, seconds: float) -> datetime:
        if seconds < 0:
            raise ValueError("a clock does not go back")
        self._now += timedelta(seconds=seconds)
        return self._now

    def set(self, when: datetime) -> datetime:
        if when.tzinfo is None:
            raise ValueError("timestamps must be timezone-aware")
        self._now = max(self._now, when.astimezone(UTC))
        return self._now


SYSTEM_CLOCK = SystemClock()


def seeded_random(seed: int | None) -> random.Random:
    """The random source of retry jitter: seedable so a replay or a test repeats exactly."""
    return random.Random(seed)
