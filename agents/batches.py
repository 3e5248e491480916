"""Micro-batching for agents that write to a database or venue: one round trip per batch.

A batch closes at ``batch_max`` events or ``batch_window`` seconds; Faust acks its events only
after the loop body has processed them, so a crash mid-batch redelivers the whole batch.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, cast

import faust
from faust.types import EventT, StreamT

from agents.dead_letters import DeadLetters, describe
from execution.retry import until_done
from streams.settings import Settings

log = logging.getLogger(__name__)


def batches(stream: StreamT[bytes], settings: Settings) -> AsyncIterator[Sequence[EventT[Any]]]:
    return cast(faust.Stream[bytes], stream).take_events(settings.batch_max, within=settings.batch_window)


async def process_batch(
    name: str,
    events: Sequence[EventT[Any]],
    call: Callable[[], Awaitable[object]],
    dead: DeadLetters,
    transient: tuple[type[BaseException], ...],
) -> bool:
    """Run ``call`` for a batch: transient failures retry until they pass; anything else ends
    with every event of the batch on the dead-letter topic with the reason, and the agent moves
    on. Returns False when the batch was dead-lettered."""
    try:
        await until_done(f"{name} batch of {len(events)}", call, transient=transient)
        return True
    except Exception as exc:
        log.exception("%s: batch of %d dead-lettered", name, len(events))
        reason = f"{name} failed: {describe(exc)}"
        for event in events:
            await dead.send(event, reason)
        return False
