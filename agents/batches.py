"""Micro-batching for agents that write to a database or venue: one round trip per batch.

A batch closes as soon as nothing more is waiting in the agent's input queue, or at ``batch_max``
events, or ``batch_window`` seconds after it started, whichever comes first. Events are acked only
after the loop body has processed them, so a crash mid-batch redelivers the whole batch.

Why not Faust's ``Stream.take_events``: it always waits the full window before it yields (so every
batching hop adds the window to the latency, even for a lone event), and while the previous batch
is processed it buffers nothing, so under load a batch holds only what arrives *within the window
after* that batch, not the backlog. Closing on "input queue empty" costs no latency when idle and
makes batches grow with the backlog, which is what amortises the per-batch round trips
(bench/run.py measures both).

A batch is one database transaction or venue round trip, so one bad message would fail all of
it: ``process_batch`` splits a failing batch until the bad message stands alone and dead-letters
only that one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar, cast

import faust
from faust.types import EventT, StreamT
from mode.utils.futures import notify
from pydantic import BaseModel, ValidationError

from agents.dead_letters import DeadLetters, describe
from execution.retry import FOREVER, Backoff, until_done

log = logging.getLogger(__name__)
P = TypeVar("P")
M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True, slots=True)
class BatchLimits:
    """A batch closes at ``max_events`` or ``window`` seconds after its first event (settings
    ``AGENT_BATCH_MAX`` / ``AGENT_BATCH_WINDOW``), or as soon as the agent's queue is empty."""

    max_events: int = 500
    window: float = 0.002


def batches(stream: StreamT[bytes], limits: BatchLimits) -> AsyncIterator[Sequence[EventT[Any]]]:
    return greedy_batches(cast(faust.Stream[bytes], stream), limits.max_events, limits.window)


#: how often an idle batcher wakes up anyway (only to notice a stop; arrivals wake it at once)
_IDLE_WAKEUP = 1.0


async def greedy_batches(
    stream: faust.Stream[bytes], max_: int, within: float
) -> AsyncIterator[Sequence[EventT[Any]]]:
    """Batches of events: closed when the input queue is empty, at ``max_`` events, or ``within``
    seconds after the first event, whichever comes first; acked once the caller has processed them.

    The mechanics are those of ``faust.Stream.take_events`` (a buffering processor on the stream,
    the stream drained passively, acks disabled and done here after each batch); only the moment
    a batch closes differs.
    """
    queue = getattr(stream.channel, "queue", None)
    events: list[EventT[Any]] = []
    ready = asyncio.Event()  # a batch can close: the queue ran dry or the batch is full
    room = asyncio.Event()  # a full batch was handed over: buffering may go on
    room.set()
    consuming: asyncio.Future[None] | None = None
    loop = asyncio.get_running_loop()
    first_at = 0.0

    async def add_to_buffer(value: bytes) -> bytes:
        nonlocal consuming, first_at
        try:
            if consuming is not None:  # the previous batch is being processed: hold this one
                try:
                    await consuming
                finally:
                    consuming = None
            event = stream.current_event
            if event is None:
                raise RuntimeError("batch buffer found current_event is None")
            if not events:
                first_at = loop.time()
            events.append(event)
            if len(events) >= max_:
                ready.set()
                room.clear()
                await stream.wait(room)  # type: ignore[arg-type]  # never hand over more than max_
            elif queue is None or queue.empty():
                ready.set()
        except asyncio.CancelledError:  # pragma: no cover
            raise
        except Exception as exc:
            log.exception("batch buffer failed: %r", exc)
            await stream.crash(exc)
        return value

    enable_acks = stream.enable_acks
    stream.enable_acks = False  # acked below, after the batch was processed
    stream.add_processor(add_to_buffer)
    stream._enable_passive(cast(Any, stream.channel))
    try:
        while not stream.should_stop:
            if not ready.is_set():
                # idle: sleep until an event arrives; some buffered but more still queued: wait
                # for those, but no longer than `within` after the first one
                timeout = max(0.0, first_at + within - loop.time()) if events else _IDLE_WAKEUP
                await stream.wait_for_stopped(ready, timeout=timeout)  # type: ignore[arg-type]
            ready.clear()
            if not events or (loop.time() < first_at + within and not _closed(events, max_, queue)):
                continue
            batch = list(events)
            consuming = loop.create_future()
            try:
                yield batch
                # Reached only when the caller asks for the next batch, i.e. its loop body
                # completed. If the body raised, the generator is closed here instead and the
                # batch stays unacked: its offsets are not committed and it is redelivered.
                for event in batch:
                    await stream.ack(event)
            finally:
                events.clear()
                notify(consuming)
                room.set()
    finally:
        stream.enable_acks = enable_acks
        stream._processors.remove(add_to_buffer)


def _closed(events: Sequence[EventT[Any]], max_: int, queue: Any) -> bool:
    return len(events) >= max_ or queue is None or queue.empty()


async def parse_items(
    events: Sequence[EventT[Any]],
    model: type[M],
    dead: DeadLetters,
    check: Callable[[M], str | None] | None = None,
) -> list[tuple[EventT[Any], M]]:
    """Each event whose message validates as ``model`` (and passes ``check``, which returns a
    reason to refuse a valid value, or None), paired with its parsed value; the others are
    dead-lettered here, once, with the reason (all of them delivered before this returns).
    Pairing keeps the message at hand, so a later failure dead-letters the one message it
    belongs to, and only once."""
    items: list[tuple[EventT[Any], M]] = []
    refused: list[tuple[EventT[Any], str]] = []
    for event in events:
        try:
            value = model.model_validate_json(event.value)
        except ValidationError as exc:
            refused.append((event, describe(exc)))
            continue
        reason = check(value) if check is not None else None
        if reason is not None:
            refused.append((event, reason))
        else:
            items.append((event, value))
    await dead.send_all(refused)
    return items


async def process_batch(
    name: str,
    items: Sequence[tuple[EventT[Any], P]],
    call: Callable[[Sequence[P]], Awaitable[object]],
    dead: DeadLetters,
    transient: tuple[type[BaseException], ...],
    *,
    other_attempts: int = 3,
    backoff: Backoff = FOREVER,
    on_dead: Callable[[P, str], Awaitable[object]] | None = None,
) -> int:
    """Run ``call`` on the parsed values of a batch, so that a poison message costs one message.

    A ``transient`` failure (database or broker unreachable) retries the whole batch until it
    passes, holding it unacked. Any other failure, after ``other_attempts`` tries of the whole
    batch, is blamed on some message in it: the batch is split in halves, each retried once on
    its own (and split again while it fails), until the failing message stands alone; only it
    goes to the dead-letter topic, with the reason, and every other message is processed. Halves
    run in order, so messages keep their order within the batch. Costs about ``2 log2(n)``
    extra calls per bad message; safe because every ``call`` is idempotent (a redelivery
    repeats it anyway). ``on_dead(value, reason)`` runs after a message was dead-lettered, for
    what a failed ``call`` may have left behind (the executor rejects an order row step 2 had
    already inserted). Returns how many messages were dead-lettered.
    """
    if not items:
        return 0
    try:
        await until_done(f"{name} batch of {len(items)}", partial(call, [value for _, value in items]),
                         transient=transient, other_attempts=other_attempts, backoff=backoff)
        return 0
    except Exception as exc:
        if len(items) == 1:
            log.exception("%s: message dead-lettered", name)
            reason = f"{name} failed: {describe(exc)}"
            await dead.send(items[0][0], reason)
            if on_dead is not None:
                await on_dead(items[0][1], reason)
            return 1
        log.warning("%s: batch of %d failed (%s); retrying it in halves to isolate the bad message",
                    name, len(items), describe(exc))
    middle = len(items) // 2
    halves = (items[:middle], items[middle:])
    dead_lettered = 0
    for half in halves:
        dead_lettered += await process_batch(name, half, call, dead, transient, other_attempts=1,
                                             backoff=backoff, on_dead=on_dead)
    return dead_lettered
