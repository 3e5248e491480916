"""agents/batches.py: a poison message costs one message, transient failures hold the batch, and a
batch is acked only once the loop body that received it has completed."""

from __future__ import annotations

import asyncio
import gc
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import faust
import pytest
from faust.types import EventT, StreamT, TopicT

from agents.batches import greedy_batches, parse_items, process_batch
from agents.dead_letters import DeadLetters
from execution.retry import Backoff
from schemas import Fill
from tests.unit.fakes import Event, Message, RecordingTopic

TRANSIENT = (ConnectionError,)
#: retries without waiting: the tests count calls, not seconds
NO_WAIT = Backoff(attempts=1_000_000, base=0.0, cap=0.0, jitter=0.0)


def event(offset: int, value: bytes = b"{}", topic: str = "fills") -> EventT[Any]:
    return cast(EventT[Any], Event(Message(topic, 0, offset), b"k%d" % offset, value))


@dataclass
class Sink:
    """A batch call that refuses any batch holding one of ``bad`` (as a database refuses a whole
    INSERT for one bad row) and records every batch it accepted."""

    bad: frozenset[int] = frozenset()
    transient_failures: int = 0
    transient_size: int | None = None  # only batches of this size fail transiently (None: any)
    flaky_failures: int = 0
    calls: list[list[int]] = field(default_factory=list)
    processed: list[int] = field(default_factory=list)

    async def __call__(self, values: Sequence[int]) -> None:
        self.calls.append(list(values))
        if self.transient_failures and self.transient_size in (None, len(values)):
            self.transient_failures -= 1
            raise ConnectionError("database restarting")
        if self.flaky_failures:
            self.flaky_failures -= 1
            raise RuntimeError("flaky")
        poison = [v for v in values if v in self.bad]
        if poison:
            raise ValueError(f"cannot store {poison[0]}")
        self.processed.extend(values)


def setup(n: int) -> tuple[list[tuple[EventT[Any], int]], RecordingTopic, DeadLetters]:
    topic = RecordingTopic()
    return [(event(i), i) for i in range(n)], topic, DeadLetters(cast(TopicT, topic), "fills-db")


async def run(items: Sequence[tuple[EventT[Any], int]], sink: Sink, dead: DeadLetters) -> int:
    return await process_batch("fills-db", items, sink, dead, TRANSIENT, backoff=NO_WAIT)


@pytest.mark.parametrize("bad", [{0}, {7}, {63}, {3, 40}, {10, 11}, {0, 31, 32, 63}])
async def test_only_the_bad_messages_are_dead_lettered_and_the_rest_processed_once_in_order(
    bad: set[int],
) -> None:
    items, topic, dead = setup(64)
    sink = Sink(bad=frozenset(bad))
    assert await run(items, sink, dead) == len(bad)
    assert sink.processed == [i for i in range(64) if i not in bad]  # each once, order kept
    assert sorted(letter.offset or 0 for letter in topic.letters) == sorted(bad)
    for letter in topic.letters:
        assert letter.reason == f"fills-db failed: ValueError: cannot store {letter.offset}"
        assert (letter.source_topic, letter.agent, letter.key) == ("fills", "fills-db", f"k{letter.offset}")


async def test_splitting_costs_about_two_calls_per_halving() -> None:
    items, _topic, dead = setup(64)
    sink = Sink(bad=frozenset({13}))
    await run(items, sink, dead)
    # 3 tries of the whole batch, then per halving (64 -> 1: six of them) the failing half and
    # the good half once each; the last failing half is the bad message alone. Halves run in
    # order, so the good second half of the whole batch comes last.
    assert len(sink.calls) == 3 + 2 * 6
    assert sink.calls[:3] == [list(range(64))] * 3
    assert sink.calls[3:5] == [list(range(32)), list(range(16))]
    assert [13] in sink.calls and [12] in sink.calls
    assert sink.calls[-1] == list(range(32, 64))


async def test_transient_failures_retry_the_whole_batch_until_it_passes() -> None:
    items, topic, dead = setup(10)
    sink = Sink(transient_failures=5)
    assert await run(items, sink, dead) == 0
    assert sink.calls == [list(range(10))] * 6  # never split, never dead-lettered
    assert sink.processed == list(range(10))
    assert topic.letters == []


async def test_a_transient_failure_while_isolating_retries_that_part() -> None:
    items, topic, dead = setup(8)
    sink = Sink(bad=frozenset({5}), transient_failures=2, transient_size=4)
    assert await run(items, sink, dead) == 1
    assert sink.calls[3:6] == [[0, 1, 2, 3]] * 3  # the good half: two transient failures, then done
    assert sink.processed == [0, 1, 2, 3, 4, 6, 7]
    assert [letter.offset for letter in topic.letters] == [5]


async def test_a_flaky_error_retries_the_whole_batch_before_splitting_it() -> None:
    items, topic, dead = setup(10)
    sink = Sink(flaky_failures=2)
    assert await run(items, sink, dead) == 0
    assert sink.calls == [list(range(10))] * 3
    assert sink.processed == list(range(10)) and topic.letters == []


async def test_a_lone_failing_message_gets_three_tries_then_the_dead_letter_topic() -> None:
    items, topic, dead = setup(1)
    sink = Sink(bad=frozenset({0}))
    assert await run(items, sink, dead) == 1
    assert sink.calls == [[0]] * 3
    assert [letter.offset for letter in topic.letters] == [0]


async def test_a_batch_that_fails_for_every_message_dead_letters_each_once() -> None:
    items, topic, dead = setup(8)
    sink = Sink(bad=frozenset(range(8)))
    assert await run(items, sink, dead) == 8
    assert sorted(letter.offset or 0 for letter in topic.letters) == list(range(8))
    assert sink.processed == []


async def test_an_empty_batch_makes_no_call() -> None:
    _items, topic, dead = setup(0)
    sink = Sink()
    assert await run([], sink, dead) == 0
    assert sink.calls == [] and topic.letters == []


def fill_json(exec_id: str, strategy: str = "momo") -> bytes:
    return json.dumps({
        "exec_id": exec_id, "cumulative_quantity": "1", "client_order_id": f"c-{exec_id}", "broker": "paper",
        "symbol": "BTC-USDT", "asset_class": "CRYPTO", "strategy": strategy, "side": "BUY",
        "quantity": "1", "price": "100", "ts": "2026-01-01T00:00:00Z",
    }).encode()


async def test_messages_that_fail_validation_are_dead_lettered_once_and_never_reach_the_call() -> None:
    topic = RecordingTopic()
    dead = DeadLetters(cast(TopicT, topic), "fills-db")
    events = [
        event(0, fill_json("e0")),
        event(1, b"not json"),
        event(2, fill_json("e2", strategy="mo\x00mo")),  # NUL: the database could not store it
        event(3, fill_json("e3")),
        event(4, fill_json("e4")),  # valid, but refused by the sink below
    ]
    items = await parse_items(events, Fill, dead)
    assert [(e.message.offset, fill.exec_id) for e, fill in items] == [(0, "e0"), (3, "e3"), (4, "e4")]

    stored: list[str] = []

    async def sink(fills: Sequence[Fill]) -> None:
        if any(f.exec_id == "e4" for f in fills):
            raise ValueError("refused e4")
        stored.extend(f.exec_id for f in fills)

    assert await process_batch("fills-db", items, sink, dead, TRANSIENT, backoff=NO_WAIT) == 1
    assert stored == ["e0", "e3"]
    offsets = [letter.offset or 0 for letter in topic.letters]
    assert sorted(offsets) == [1, 2, 4]  # each bad message exactly once
    reasons = {letter.offset: letter.reason for letter in topic.letters}
    assert "strategy: Value error, contains a NUL character" in reasons[2]
    assert reasons[4] == "fills-db failed: ValueError: refused e4"


# --- acks: only after the loop body completed ----------------------------------------------------


async def test_a_batch_is_acked_only_when_the_body_that_got_it_completed() -> None:
    """Through a real Faust agent (its test context feeds a channel, no broker): the first batch
    completes and is acked; the body raises on the second, which must stay unacked so its offset
    is never committed and the message is redelivered after the restart."""
    app = faust.App("test-batches-acks", broker="kafka://127.0.0.1:1", store="memory://")
    received: list[Sequence[EventT[Any]]] = []

    @app.agent()
    async def consume(stream: StreamT[bytes]) -> None:
        async for batch in greedy_batches(cast(faust.Stream[bytes], stream), 10, 0.01):
            received.append(batch)
            if len(received) == 2:
                raise RuntimeError("the body failed")

    async with consume.test_context() as agent:
        for value in (b"a", b"b", b"c"):
            await agent.put(value)
        await asyncio.sleep(0.05)
        await agent.put(b"d")
        await asyncio.sleep(0.05)
    gc.collect()  # finalise the abandoned batch generator, as the agent's exit would
    await asyncio.sleep(0.05)

    assert [[e.value for e in batch] for batch in received] == [[b"a", b"b", b"c"], [b"d"]]
    assert [e.message.acked for e in received[0]] == [True, True, True]
    assert [e.message.acked for e in received[1]] == [False]


async def test_the_batches_end_when_the_channel_is_closed() -> None:
    """Faust ends a stream by throwing StopAsyncIteration into its channel's queue; the batches
    end there (the agent's loop returns) instead of the generator crashing with a RuntimeError."""
    app = faust.App("test-batches-end", broker="kafka://127.0.0.1:1", store="memory://")
    received: list[list[bytes]] = []
    ended = asyncio.Event()

    @app.agent()
    async def consume(stream: StreamT[bytes]) -> None:
        async for batch in greedy_batches(cast(faust.Stream[bytes], stream), 10, 0.01):
            received.append([e.value for e in batch])
        ended.set()

    async with consume.test_context() as agent:
        await agent.put(b"a")
        agent.stream().channel._throw(StopAsyncIteration())
        await asyncio.wait_for(ended.wait(), timeout=10)

    assert received == [[b"a"]]
