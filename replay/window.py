"""The replayed time range: ``[from, to)`` of the Kafka record timestamp, timezone required.

Kafka timestamps are whole milliseconds since the epoch; the range bounds may carry microseconds.
A record is in the range when ``start <= ts < end`` on exact instants, so the comparisons here
are on integer microseconds, never floats.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)


class RangeError(ValueError):
    """A bound that is not an ISO 8601 instant with a timezone, or an empty range."""


def parse_instant(text: str) -> datetime:
    """An ISO 8601 date-time with an offset or ``Z`` (``2026-03-02T09:30:00Z``), as UTC.

    A naive time is refused: whose 09:30 would it be? The answer decides which records replay."""
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError as exc:
        raise RangeError(f"{text!r} is not an ISO 8601 date-time ({exc})") from None
    if value.tzinfo is None or value.utcoffset() is None:
        raise RangeError(f"{text!r} has no timezone: write it with an offset or Z (e.g. {text.strip()}Z)")
    return value.astimezone(UTC)


def micros(when: datetime) -> int:
    """Exact microseconds since the epoch."""
    return (when - EPOCH) // _US


def from_millis(ms: int) -> datetime:
    """A Kafka record timestamp as an aware UTC datetime (exact)."""
    return EPOCH + timedelta(milliseconds=ms)


@dataclass(frozen=True, slots=True)
class ReplayRange:
    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise RangeError("range bounds must be timezone-aware")
        if self.end <= self.start:
            raise RangeError(f"empty range: --to {self.end.isoformat()} is not after --from {self.start.isoformat()}")

    @classmethod
    def parse(cls, start: str, end: str) -> ReplayRange:
        return cls(parse_instant(start), parse_instant(end))

    @property
    def start_ms(self) -> int:
        """The first whole millisecond inside the range (the ``offsets_for_times`` target)."""
        return -(-micros(self.start) // 1000)

    def position(self, ts_ms: int, slack_ms: int = 0) -> int:
        """-1 before the range, 0 inside it, 1 after it (2: more than ``slack_ms`` after its end)."""
        us = ts_ms * 1000
        if us < micros(self.start):
            return -1
        end = micros(self.end)
        if us < end:
            return 0
        return 2 if us > end + slack_ms * 1000 else 1

    def fraction(self, when: datetime) -> float:
        """How far ``when`` is into the range, 0..1 (progress display only)."""
        total = (self.end - self.start).total_seconds()
        return min(1.0, max(0.0, (when - self.start).total_seconds() / total))

    def as_dict(self) -> dict[str, str]:
        return {"from": iso(self.start), "to": iso(self.end)}


def iso(when: datetime) -> str:
    """UTC ISO 8601 with ``Z``, microseconds only when there are some (stable across runs)."""
    text = when.astimezone(UTC).isoformat()
    return text.replace("+00:00", "Z")
