"""An executor checks that an OrderRequest's broker matches its topic (issue 12): an order for
another broker is dead-lettered with a clear reason and never reaches the ExecutionService."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, cast

from faust.types import EventT, TopicT

from agents.batches import parse_items, process_batch
from agents.dead_letters import DeadLetters
from agents.executor import topic_guard
from execution.retry import Backoff
from schemas import Broker, OrderRequest
from tests.unit.fakes import Event, Message, RecordingTopic


def on_binance_topic(offset: int, broker: str, asset_class: str = "CRYPTO", symbol: str = "BTC-USDT") -> EventT[Any]:
    data = {"signal_id": f"guard-{offset}", "client_order_id": f"guard-cid-{offset}", "strategy": "momo",
            "symbol": symbol, "side": "BUY", "quantity": "1", "asset_class": asset_class, "broker": broker,
            "ts": "2026-11-25T14:30:00Z"}
    return cast(EventT[Any], Event(Message("orders.binance", 2, offset), symbol.encode(), json.dumps(data).encode()))


async def test_an_order_for_another_broker_is_dead_lettered_not_executed() -> None:
    topic = RecordingTopic()
    dead = DeadLetters(cast(TopicT, topic), "executor-binance")
    events = [on_binance_topic(0, "binance"), on_binance_topic(1, "ibkr", "EQUITY", "AAPL"),
              on_binance_topic(2, "paper"), on_binance_topic(3, "binance")]
    executed: list[str] = []

    async def handle(requests: Sequence[OrderRequest]) -> None:
        executed.extend(r.client_order_id for r in requests)

    items = await parse_items(events, OrderRequest, dead, check=topic_guard(Broker.BINANCE, "orders.binance"))
    assert await process_batch("executor-binance", items, handle, dead, (ConnectionError,),
                               backoff=Backoff(attempts=10, base=0.0, cap=0.0, jitter=0.0)) == 0

    assert executed == ["guard-cid-0", "guard-cid-3"]
    assert [(letter.offset, letter.partition, letter.source_topic, letter.key) for letter in topic.letters] == [
        (1, 2, "orders.binance", "AAPL"), (2, 2, "orders.binance", "BTC-USDT")]
    assert topic.letters[0].reason == ("OrderRequest for broker ibkr arrived on orders.binance, whose executor "
                                       "places binance orders only; not executed")
    assert "broker paper" in topic.letters[1].reason
    assert json.loads(topic.letters[0].raw)["broker"] == "ibkr"  # kept whole for the operator


def test_the_guard_passes_the_executors_own_broker() -> None:
    guard = topic_guard(Broker.PAPER, "orders.paper")
    paper = OrderRequest.model_validate_json(on_binance_topic(0, "paper").value)
    binance = OrderRequest.model_validate_json(on_binance_topic(1, "binance").value)
    assert guard(paper) is None
    assert guard(binance) is not None
