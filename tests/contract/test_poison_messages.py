"""A poison message costs one message, against the real PostgreSQL (issue 12, item 6).

Step 2 inserts a whole batch in one statement, so one value PostgreSQL refuses used to fail the
batch and, after retries, dead-letter every message in it. Now the edge refuses such values
(schemas/fields.py) and ``process_batch`` isolates anything that still fails (agents/batches.py).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from decimal import Decimal
from typing import Any, cast

import asyncpg
import pytest
from faust.types import EventT, TopicT
from pydantic import ValidationError

from adapters.timescale import TRANSIENT_ERRORS, TimescaleStore
from agents.batches import parse_items, process_batch
from agents.dead_letters import DeadLetters
from execution.retry import Backoff
from schemas import Order, OrderRequest
from tests.unit.fakes import Event, Message, RecordingTopic

NO_WAIT = Backoff(attempts=1_000_000, base=0.0, cap=0.0, jitter=0.0)
POISON: list[tuple[str, Any]] = [
    ("strategy", "mo\x00mo"),
    ("quantity", Decimal("1e-200000")),
    ("quantity", Decimal("1e400000")),
]


def request(n: int, **overrides: Any) -> dict[str, Any]:
    """An OrderRequest as the router publishes it on ``orders.paper`` (JSON-ready)."""
    data: dict[str, Any] = {
        "signal_id": f"poison-test-{n}", "client_order_id": f"poison-cid-{n}", "strategy": "momo",
        "symbol": "BTC-USDT", "side": "BUY", "quantity": "0.5", "asset_class": "CRYPTO", "broker": "paper",
        "ts": "2026-11-25T14:30:00Z",
    }
    data.update(overrides)
    return data


def event(offset: int, data: dict[str, Any]) -> EventT[Any]:
    value = json.dumps(data, default=str).encode()
    return cast(EventT[Any], Event(Message("orders.paper", 0, offset), b"BTC-USDT", value))


def step2(store: TimescaleStore) -> Any:
    async def insert(requests: Sequence[OrderRequest]) -> None:
        await store.insert_orders([Order.from_request(r) for r in requests])
    return insert


@pytest.mark.parametrize(("name", "value"), POISON, ids=["nul", "tiny-exponent", "huge-exponent"])
async def test_the_database_refuses_these_values_and_validation_now_stops_them(
    store: TimescaleStore, name: str, value: Any
) -> None:
    good = Order.from_request(OrderRequest.model_validate(request(1)))
    # as it was: the value passed validation and failed the INSERT of the whole batch
    bad = Order.from_request(OrderRequest.model_validate(request(2))).model_copy(update={name: value})
    with pytest.raises(asyncpg.DataError):
        await store.insert_orders([good, bad])
    assert await store.get_orders([good.client_order_id]) == {}
    # now: the message carrying it never gets past the edge
    with pytest.raises(ValidationError) as info:
        OrderRequest.model_validate_json(json.dumps(request(2, **{name: value}), default=str))
    assert {".".join(map(str, e["loc"])) for e in info.value.errors()} == {name}


async def test_poison_signals_in_a_burst_cost_one_dead_letter_each(store: TimescaleStore) -> None:
    """The issue's measurement: 60 paper orders in one batch, two poisoned, gave 2 orders and 58
    dead letters. Now: 58 orders, the 2 poisoned ones dead-lettered once each, with the reason."""
    poisoned = {17: {"strategy": "mo\x00mo"}, 42: {"quantity": "1e-200000"}}
    events = [event(i, request(i, **poisoned.get(i, {}))) for i in range(60)]
    topic = RecordingTopic()
    dead = DeadLetters(cast(TopicT, topic), "executor-paper")

    items = await parse_items(events, OrderRequest, dead)
    assert await process_batch("executor-paper", items, step2(store), dead, TRANSIENT_ERRORS,
                               backoff=NO_WAIT) == 0

    stored = await store.get_orders([f"poison-cid-{i}" for i in range(60)])
    assert sorted(stored) == sorted(f"poison-cid-{i}" for i in range(60) if i not in poisoned)
    assert sorted(letter.offset or 0 for letter in topic.letters) == [17, 42]
    reasons = {letter.offset: letter.reason for letter in topic.letters}
    assert "strategy: Value error, contains a NUL character" in reasons[17]
    assert "quantity: Value error, has 200000 digits after the decimal point" in reasons[42]


async def test_a_value_that_still_fails_the_insert_is_isolated_by_splitting(store: TimescaleStore) -> None:
    """Defence in depth: if a value the database refuses gets past validation (here forced in,
    as a future column or a missed case would), only its message is dead-lettered."""
    events = [event(i, request(100 + i)) for i in range(20)]
    topic = RecordingTopic()
    dead = DeadLetters(cast(TopicT, topic), "executor-paper")
    orders = [(e, Order.from_request(r)) for e, r in await parse_items(events, OrderRequest, dead)]
    assert len(orders) == 20
    orders[13] = (orders[13][0], orders[13][1].model_copy(update={"strategy": "mo\x00mo"}))

    assert await process_batch("executor-paper", orders, store.insert_orders, dead, TRANSIENT_ERRORS,
                               backoff=NO_WAIT) == 1

    stored = await store.get_orders([f"poison-cid-{100 + i}" for i in range(20)])
    assert sorted(stored) == sorted(f"poison-cid-{100 + i}" for i in range(20) if i != 13)
    assert [letter.offset for letter in topic.letters] == [13]
    assert topic.letters[0].reason.startswith("executor-paper failed: CharacterNotInRepertoireError")
