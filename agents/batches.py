"""Micro-batching for agents that write to a database or venue: one round trip per batch.

A batch closes as soon as nothing more is waiting in the agent's input queue, or at ``batch_max``
events, whichever comes first. Events are acked only
after the loop body has processed them, so a crash mid-batch redelivers the whole batch.

Why not Faust's ``Stream.take_events``: it always waits the full window before it yields (so every
batching hop adds the window to the latency, even for a lone event), and while the previous batch
is processed it buffers nothing, so under load a batch holds only what arrives *within the window
after* that batch, not the backlog. Closing on "input queue empty" costs no latency when idle and
makes batches grow with the backlog, which is what amortises the per-batch round trips
(bench/run.py measures both). The queue is drained in bulk rather than through Faust's
per-event stream iteration (``greedy_batches`` says what of Faust's bookkeeping it keeps).

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
from faust.exceptions import Skip
from faust.types import EventT, StreamT
from mode.utils.futures import maybe_async
from pydantic import BaseModel, ValidationError

from agents.dead_letters import DeadLetters, describe
from execution.retry import FOREVER, Backoff, until_done

log = logging.getLogger(__name__)
P = TypeVar("P")
M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True, slots=True)
class BatchLimits:
    """A batch closes at ``max_events`` (``AGENT_BATCH_MAX``) or as soon as the agent's queue is
    empty. ``window`` (``AGENT_BATCH_WINDOW``) no longer delays anything: the queue is drained in
    bulk (``greedy_batches``), so an empty queue is seen at once; kept so the setting still parses."""

    max_events: int = 500
    window: float = 0.002


def batches(stream: StreamT[bytes], limits: BatchLimits) -> AsyncIterator[Sequence[EventT[Any]]]:
    return greedy_batches(cast(faust.Stream[bytes], stream), limits.max_events, limits.window)


async def greedy_batches(
    stream: faust.Stream[bytes], max_: int, within: float
) -> AsyncIterator[Sequence[EventT[Any]]]:
    """Batches of events: closed when the input queue is empty or at ``max_`` events; acked once
    the caller has processed them (the loop body that got the batch completed).

    The agent's queue (its channel's, which Faust's conductor fills with decoded events) is drained
    here in bulk: the first event is awaited, then everything already queued is taken at once, up
    to ``max_``. Faust's own stream iteration handed over one event per event-loop turn, with a
    channel get, sensors and an ack each (issue 16, item 4: ~15 us per event, more than the
    router's work on it). What that iteration does for offsets is done here the same way, per
    event: an event from before the current consumer generation (a rebalance since it was fetched)
    or arriving while the flow is stopped is acked and skipped, as Faust does; a message of an
    acking topic is tracked as unacked (``Consumer.track_message``: a stop or rebalance waits for
    it, and its offset is committed only once acked); each event is acked (``Stream.ack``) after
    the batch was processed. Nothing waits for ``within`` any more: with the queue drained at
    once, "empty" is known immediately (kept for the signature; ``AGENT_BATCH_WINDOW``).
    """
    del within
    channel = stream.channel
    queue = getattr(channel, "queue", None)
    if queue is None:
        raise TypeError(f"greedy_batches needs a stream over a channel with a queue, not {channel!r}")
    app = stream.app
    consumer = app.consumer
    acking_topics = app.topics.acking_topics
    flow_control = app.flow_control
    get, get_nowait, empty = queue.get, queue.get_nowait, queue.empty

    #: processors added to the stream (none in this project's agents; Faust's agent test context
    #: adds one to see each value) run on every event, as the stream iteration runs them
    processors = stream._processors

    def admit(event: EventT[Any], batch: list[EventT[Any]], stale: list[EventT[Any]]) -> None:
        message = event.message
        if not flow_control.is_active() or message.generation_id != app.consumer_generation_id:
            stale.append(event)  # fetched before a rebalance: Faust acks and skips it
            return
        if message.topic in acking_topics and not message.tracked:
            message.tracked = True
            consumer.track_message(message)
        batch.append(event)

    async def process(event: EventT[Any], batch: list[EventT[Any]], stale: list[EventT[Any]]) -> None:
        try:
            for processor in processors:
                await maybe_async(processor(event.value))
        except Skip:
            batch.remove(event)
            stale.append(event)  # filtered out: acked, as Faust does

    closed = False
    while not (closed or stream.should_stop):
        batch: list[EventT[Any]] = []
        stale: list[EventT[Any]] = []
        try:
            event = await get()  # waits while idle; a stop cancels it
            while True:
                admit(event, batch, stale)
                if processors and batch and batch[-1] is event:
                    await process(event, batch, stale)
                if len(batch) >= max_:
                    break
                if empty():
                    await asyncio.sleep(0)  # deliveries already under way land in this batch
                    if empty():
                        break
                event = get_nowait()
        except StopAsyncIteration:
            # the channel was closed (Faust throws this into the queue when the stream ends): what
            # was taken before is still handed over, then the batches end, as Faust's iteration does
            closed = True
        for event in stale:
            await stream.ack(event)
        if not batch:
            continue
        stream.events_total += len(batch)
        yield batch
        # Reached only when the caller asks for the next batch, i.e. its loop body completed. If
        # the body raised, the generator is closed at the yield instead and the batch stays
        # unacked: its offsets are not committed and it is redelivered.
        for event in batch:
            await stream.ack(event)


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
