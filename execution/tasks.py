"""Stopping a background task for sure, on a Python whose ``wait_for`` can swallow a cancellation.

On Python 3.11, ``asyncio.wait_for`` may swallow the cancellation of the task awaiting it when
the awaited call completes at the same moment (CPython gh-86296, fixed in 3.12): a polling loop
cancelled there goes on as if nothing happened, and ``task.cancel(); await task`` then waits
forever. Seen in this project as an IBKR adapter whose ``close()`` never returned (its refresh
loop polls IB with ``wait_for`` every 0.1 s in tests). ``stop_task`` cancels, waits a bounded time,
and cancels again while the task lives; loops that poll should also check a stop flag of their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

log = logging.getLogger(__name__)


async def stop_task(task: asyncio.Task[object] | asyncio.Future[object] | None, *, grace: float = 2.0,
                    rounds: int = 5) -> bool:
    """Cancel ``task`` and wait for it to end, cancelling again every ``grace`` seconds, at most
    ``rounds`` times; returns whether it ended (a task that outlives every round is logged and
    left behind rather than hanging the caller, typically a shutdown). Its outcome (a result, an
    error, the cancellation) is consumed."""
    if task is None:
        return True
    for _ in range(rounds):
        if task.done():
            break
        task.cancel()
        await asyncio.wait({task}, timeout=grace)
    if not task.done():
        log.warning("task %r did not stop after %d cancellations", task, rounds)
        return False
    with contextlib.suppress(asyncio.CancelledError, Exception):
        task.result()
    return True
