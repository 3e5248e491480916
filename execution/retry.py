"""Retry with exponential backoff and jitter: the one place adapters get it from.

Venues fail transiently (timeouts, 5xx, 429). Each adapter declares which of its exceptions are
transient; everything else propagates at once. ``Retry-After`` hints win over the computed delay.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")
log = logging.getLogger(__name__)

#: jitter's random source when the caller hands none; a replay or a test hands a seeded one
#: (``execution.clock.seeded_random``) so its retry timings repeat exactly
_DEFAULT_RNG = random.Random()


@dataclass(frozen=True, slots=True)
class Backoff:
    attempts: int = 4
    base: float = 0.05
    factor: float = 2.0
    cap: float = 2.0
    jitter: float = 0.2

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Delay before retry number ``attempt`` (1-based), capped and jittered by ``rng``."""
        raw = min(self.cap, self.base * self.factor ** (attempt - 1))
        return raw * (1 + (rng or _DEFAULT_RNG).uniform(-self.jitter, self.jitter))


async def retry_async(
    call: Callable[[], Awaitable[T]],
    *,
    transient: tuple[type[BaseException], ...],
    backoff: Backoff = Backoff(),
    retry_after: Callable[[BaseException], float | None] = lambda _exc: None,
    what: str = "call",
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    rng: random.Random | None = None,
) -> T:
    """Run ``call`` until it succeeds, a non-transient error is raised, or attempts run out."""
    for attempt in range(1, backoff.attempts + 1):
        try:
            return await call()
        except transient as exc:
            if attempt == backoff.attempts:
                raise
            wait = retry_after(exc) or backoff.delay(attempt, rng)
            log.warning("%s failed (%s: %s); retry %d/%d in %.3fs", what, type(exc).__name__,
                        exc, attempt, backoff.attempts - 1, wait)
            await sleep(wait)
    raise AssertionError("unreachable")  # pragma: no cover


FOREVER = Backoff(attempts=1_000_000, base=0.2, cap=10.0)


async def until_done(
    what: str,
    call: Callable[[], Awaitable[object]],
    *,
    transient: tuple[type[BaseException], ...],
    other_attempts: int = 3,
    backoff: Backoff = FOREVER,
    rng: random.Random | None = None,
) -> None:
    """Retry an infrastructure step (a database write, a publish) until it succeeds.

    Used where giving up would mean dropping a message: a ``transient`` failure (connection
    lost, database restarting) is retried for as long as it lasts, holding the batch unacked.
    Any other exception is a poison message or a bug: after ``other_attempts`` it is raised so
    the caller can dead-letter the batch with the reason instead of blocking the partition.
    """
    attempt = 0
    while True:
        try:
            await call()
            return
        except transient:
            attempt += 1
            log.exception("%s failed (attempt %d); retrying", what, attempt)
        except Exception:
            attempt += 1
            if attempt >= other_attempts:
                raise
            log.exception("%s failed (attempt %d/%d)", what, attempt, other_attempts)
        await asyncio.sleep(backoff.delay(attempt, rng))
