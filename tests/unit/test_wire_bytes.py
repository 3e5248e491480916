"""WireModel.to_bytes writes exactly what pydantic's ``model_dump_json`` writes (issue 16, item 3:
orjson on the hot path must not change a byte on any topic), for random messages of every wire
model and random producer signals; values orjson refuses go through pydantic, errors included."""

from __future__ import annotations

import random
from decimal import Decimal

import pytest
from pydantic import field_serializer
from pydantic_core import PydanticSerializationError

from schemas import DeadLetter, Signal
from schemas.models import WireModel
from tests.unit import wire_random


def _wire_models() -> list[type[WireModel]]:
    found, todo = [], list(WireModel.__subclasses__())
    while todo:
        model = todo.pop()
        if model.__module__ == "schemas.models":
            found.append(model)
        todo.extend(model.__subclasses__())
    return sorted(found, key=lambda m: m.__name__)


WIRE_MODELS = _wire_models()


def test_every_wire_model_writes_its_fields_directly() -> None:
    assert {m.__name__ for m in WIRE_MODELS} >= {"Signal", "OrderRequest", "Order", "Fill", "OrderEvent",
                                                 "DeadLetter", "Position", "NavQuote"}
    assert all(m._plain_json_ok for m in WIRE_MODELS)


@pytest.mark.parametrize("model", WIRE_MODELS, ids=lambda m: m.__name__)
def test_random_messages_serialise_to_pydantics_bytes(model: type[WireModel]) -> None:
    rng = random.Random(f"wire-bytes-{model.__name__}")
    checked = 0
    for _ in range(300):
        message = wire_random.message(rng, model)
        if message is None:
            continue
        assert isinstance(message, WireModel)
        assert message.to_bytes() == message.model_dump_json().encode(), message
        checked += 1
    assert checked >= 150  # the generator reaches valid messages of this model


def test_random_producer_signals_serialise_to_pydantics_bytes() -> None:
    valid = [s for _, s in wire_random.signals(seed=16, n=3000) if s is not None]
    assert len(valid) > 1000
    for signal in valid:
        assert signal.to_bytes() == signal.model_dump_json().encode()
        copied = signal.model_copy(update={"quantity": Decimal("0.5")})  # as replays and benches do
        assert copied.to_bytes() == copied.model_dump_json().encode()


def test_values_orjson_refuses_take_pydantics_path() -> None:
    huge = DeadLetter(source_topic="signals", offset=2**70, raw="x", reason="r", agent="router")
    assert huge.to_bytes() == huge.model_dump_json().encode()
    surrogate = DeadLetter(source_topic="signals", raw="\ud800", reason="r", agent="router")
    with pytest.raises(PydanticSerializationError):
        surrogate.to_bytes()


class _Renamed(WireModel):
    price: Decimal

    @field_serializer("price")
    def _as_float(self, value: Decimal) -> float:
        return float(value)


def test_a_model_with_its_own_serialisation_rules_is_written_by_pydantic() -> None:
    assert not _Renamed._plain_json_ok
    message = _Renamed(price=Decimal("1.50"))
    assert message.to_bytes() == b'{"price":1.5}' == message.model_dump_json().encode()


def test_a_signal_read_back_from_its_bytes_is_the_same_signal() -> None:
    for raw, signal in wire_random.signals(seed=17, n=500):
        if signal is not None:
            assert Signal.model_validate_json(signal.to_bytes()) == signal, raw
