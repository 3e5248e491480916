"""The wire contract: Signal validation, Decimal fidelity, client order ids, the state machine, and
only what the database can store (no NUL, decimals within NUMERIC's range, timestamps with a zone)."""

from __future__ import annotations

import itertools
import json
import re
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, get_args, get_origin

import pytest
from pydantic import BaseModel, ValidationError

from agents.dead_letters import describe
from execution.fills import DECIMAL_PRECISION, average_after
from schemas import (
    ALLOWED_TRANSITIONS,
    TERMINAL_STATES,
    AssetClass,
    Broker,
    DeadLetter,
    Fill,
    IllegalTransition,
    NavQuote,
    Order,
    OrderEvent,
    OrderRequest,
    OrderState,
    OrderType,
    Position,
    Side,
    Signal,
    client_order_id_for,
)
from schemas.export import WIRE_MODELS
from schemas.fields import DECIMAL_MAX_DIGITS
from tests.unit.fakes import make_order

BINANCE_CLIENT_ID = re.compile(r"^[.A-Z:/a-z0-9_-]{1,36}$")


def base(**overrides: object) -> dict[str, object]:
    data: dict[str, object] = {"signal_id": "sig-1", "symbol": "BTC-USDT", "side": "BUY", "quantity": "1"}
    data.update(overrides)
    return data


def error_fields(exc: ValidationError) -> set[str]:
    return {".".join(str(p) for p in e["loc"]) for e in exc.errors()}


# --- Signal validation -------------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["NaN", "Infinity", "-Infinity", "sNaN", float("nan"), float("inf"),
                                 Decimal("NaN"), Decimal("Infinity")])
@pytest.mark.parametrize("field", ["quantity", "limit_price", "reference_price"])
def test_non_finite_numbers_are_rejected(field: str, bad: object) -> None:
    with pytest.raises(ValidationError) as info:
        Signal.model_validate(base(**{field: bad}))
    assert field in error_fields(info.value)


def test_nan_in_json_is_rejected() -> None:
    raw = '{"signal_id": "s", "symbol": "SPY", "side": "BUY", "quantity": NaN}'
    with pytest.raises(ValidationError) as info:
        Signal.model_validate_json(raw)
    assert error_fields(info.value) == {"quantity"}


@pytest.mark.parametrize("quantity", ["0", "-1", "-0.0001", 0, -5])
def test_non_positive_quantity_is_rejected(quantity: object) -> None:
    with pytest.raises(ValidationError) as info:
        Signal.model_validate(base(quantity=quantity))
    assert error_fields(info.value) == {"quantity"}


@pytest.mark.parametrize("price_field", ["limit_price", "stop_price", "take_profit_price", "reference_price"])
def test_non_positive_prices_are_rejected(price_field: str) -> None:
    with pytest.raises(ValidationError) as info:
        Signal.model_validate(base(**{price_field: "0"}))
    assert price_field in error_fields(info.value)


@pytest.mark.parametrize("side", ["HOLD", "buy ", "LONG", "", None])
def test_unknown_side_is_rejected(side: object) -> None:
    with pytest.raises(ValidationError) as info:
        Signal.model_validate(base(side=side))
    assert error_fields(info.value) == {"side"}


def test_missing_symbol_is_rejected() -> None:
    data = base()
    del data["symbol"]
    with pytest.raises(ValidationError) as info:
        Signal.model_validate(data)
    assert error_fields(info.value) == {"symbol"}
    assert "symbol: Field required" in describe(info.value)


@pytest.mark.parametrize("symbol", ["", "   ", "BTC$USDT", "x" * 65])
def test_empty_or_malformed_symbol_is_rejected(symbol: str) -> None:
    with pytest.raises(ValidationError) as info:
        Signal.model_validate(base(symbol=symbol))
    assert error_fields(info.value) == {"symbol"}


def test_symbol_is_stripped_and_upper_cased() -> None:
    assert Signal.model_validate(base(symbol="  eth/usdt ")).symbol == "ETH/USDT"


def test_extra_field_is_rejected() -> None:
    with pytest.raises(ValidationError) as info:
        Signal.model_validate(base(leverage=100))
    assert error_fields(info.value) == {"leverage"}
    assert info.value.errors()[0]["type"] == "extra_forbidden"


def test_signal_is_frozen() -> None:
    signal = Signal.model_validate(base())
    with pytest.raises(ValidationError):
        signal.quantity = Decimal(2)  # type: ignore[misc]


def test_limit_without_limit_price_is_rejected() -> None:
    with pytest.raises(ValidationError, match="LIMIT order needs limit_price"):
        Signal.model_validate(base(order_type="LIMIT"))
    assert Signal.model_validate(base(order_type="LIMIT", limit_price="10")).limit_price == Decimal("10")


def test_stop_without_stop_price_is_rejected() -> None:
    with pytest.raises(ValidationError, match="STOP order needs stop_price"):
        Signal.model_validate(base(order_type="STOP", limit_price="10"))
    assert Signal.model_validate(base(order_type="STOP", stop_price="10")).stop_price == Decimal("10")


def test_bracket_needs_both_exit_prices() -> None:
    with pytest.raises(ValidationError, match="BRACKET order needs stop_price and take_profit_price"):
        Signal.model_validate(base(order_type="BRACKET", stop_price="90"))
    with pytest.raises(ValidationError, match="BRACKET order needs stop_price and take_profit_price"):
        Signal.model_validate(base(order_type="BRACKET", take_profit_price="110"))


@pytest.mark.parametrize(
    ("side", "entry_field", "stop", "take_profit", "ok"),
    [
        ("BUY", "limit_price", "90", "110", True),
        ("BUY", "reference_price", "90", "110", True),
        ("BUY", "limit_price", "110", "90", False),   # exits swapped
        ("BUY", "limit_price", "100", "110", False),  # stop == entry
        ("BUY", "limit_price", "90", "100", False),   # take profit == entry
        ("BUY", "limit_price", "95", "99", False),    # both below entry
        ("SELL", "limit_price", "110", "90", True),
        ("SELL", "reference_price", "110", "90", True),
        ("SELL", "limit_price", "90", "110", False),  # the BUY ordering is wrong for a SELL
        ("SELL", "limit_price", "100", "90", False),
        ("SELL", "limit_price", "120", "105", False),
    ],
)
def test_bracket_price_ordering(side: str, entry_field: str, stop: str, take_profit: str, ok: bool) -> None:
    data = base(side=side, order_type="BRACKET", stop_price=stop, take_profit_price=take_profit,
                **{entry_field: "100"})
    if ok:
        signal = Signal.model_validate(data)
        assert (signal.stop_price, signal.take_profit_price) == (Decimal(stop), Decimal(take_profit))
    else:
        with pytest.raises(ValidationError, match="BRACKET prices out of order"):
            Signal.model_validate(data)


def test_bracket_without_entry_price_skips_ordering() -> None:
    signal = Signal.model_validate(base(order_type="BRACKET", stop_price="110", take_profit_price="90"))
    assert signal.order_type is OrderType.BRACKET


# --- Decimal fidelity --------------------------------------------------------------------------


def test_decimal_survives_json_round_trip() -> None:
    signal = Signal.model_validate(base(quantity="0.1", order_type="LIMIT", limit_price="0.1",
                                        reference_price="12345678901234567890.123456789"))
    wire = json.loads(signal.to_bytes())
    assert wire["quantity"] == "0.1" and wire["limit_price"] == "0.1"
    back = Signal.model_validate_json(signal.to_bytes())
    assert back == signal
    assert back.quantity == Decimal("0.1") and isinstance(back.quantity, Decimal)
    assert str(back.limit_price) == "0.1"
    assert back.reference_price == Decimal("12345678901234567890.123456789")
    assert back.quantity * 3 == Decimal("0.3")  # not 0.30000000000000004


def test_json_number_becomes_exact_decimal() -> None:
    back = Signal.model_validate_json(b'{"signal_id":"s","symbol":"SPY","side":"SELL","quantity":0.1}')
    assert back.quantity == Decimal("0.1")
    assert str(back.quantity) == "0.1"


def test_order_and_fill_round_trip_through_json() -> None:
    order = make_order(quantity=Decimal("0.1"), reference_price=Decimal("0.3"))
    again = Order.model_validate_json(order.to_bytes())
    assert again == order
    fill = Fill(exec_id="e-1", cumulative_quantity=Decimal("0.1"), client_order_id=order.client_order_id,
                broker=Broker.PAPER, symbol="BTC-USDT", asset_class=AssetClass.CRYPTO, side=Side.SELL,
                quantity=Decimal("0.1"), price=Decimal("0.3"))
    back = Fill.model_validate_json(fill.to_bytes())
    assert back.price == Decimal("0.3") and back.signed_quantity == Decimal("-0.1")


# --- client order id ---------------------------------------------------------------------------


@pytest.mark.parametrize("signal_id", ["a", "sig-1", "x" * 128, "strategy:2026-01-01T00:00:00/42", "ünï"])
def test_client_order_id_is_deterministic_short_and_binance_safe(signal_id: str) -> None:
    cid = client_order_id_for(signal_id)
    assert cid == client_order_id_for(signal_id)
    assert len(cid) <= 36
    assert BINANCE_CLIENT_ID.match(cid), cid


def test_client_order_ids_differ_per_signal_and_match_the_signal_property() -> None:
    cids = {client_order_id_for(f"sig-{i}") for i in range(2000)}
    assert len(cids) == 2000
    signal = Signal.model_validate(base(signal_id="abc"))
    assert signal.client_order_id == client_order_id_for("abc")
    request = OrderRequest.from_signal(signal, asset_class=AssetClass.CRYPTO, broker=Broker.BINANCE,
                                       reason="r")
    assert request.client_order_id == signal.client_order_id
    assert Order.from_request(request).client_order_id == signal.client_order_id


def test_client_order_id_known_value() -> None:
    # pinned: changing the derivation would make every in-flight order look new after a deploy
    assert client_order_id_for("sig-1") == "si" + __import__("hashlib").blake2b(
        b"sig-1", digest_size=12).hexdigest()
    assert len(client_order_id_for("sig-1")) == 26


# --- order state machine -----------------------------------------------------------------------

ALLOWED_PAIRS = [(src, dst) for src, dsts in ALLOWED_TRANSITIONS.items() for dst in sorted(dsts)]
ILLEGAL_PAIRS = [(src, dst) for src, dst in itertools.product(OrderState, OrderState)
                 if dst not in ALLOWED_TRANSITIONS[src]]


def test_transition_table_covers_every_state() -> None:
    assert set(ALLOWED_TRANSITIONS) == set(OrderState)
    assert {s for s in OrderState if s.is_terminal} == set(TERMINAL_STATES) == {
        OrderState.FILLED, OrderState.CANCELLED, OrderState.REJECTED, OrderState.EXPIRED}


@pytest.mark.parametrize(("src", "dst"), ALLOWED_PAIRS, ids=[f"{a}->{b}" for a, b in ALLOWED_PAIRS])
def test_every_allowed_transition_works(src: OrderState, dst: OrderState) -> None:
    order = make_order(state=src)
    moved = order.transition(dst, "because", filled_quantity=Decimal("0.5"))
    assert moved.state is dst
    assert moved.reason == "because"
    assert moved.filled_quantity == Decimal("0.5")
    assert moved.updated_at >= order.updated_at
    assert order.state is src  # the original is untouched (frozen)


@pytest.mark.parametrize(
    ("src", "dst"),
    [
        (OrderState.FILLED, OrderState.SUBMITTED),
        (OrderState.CANCELLED, OrderState.FILLED),
        (OrderState.PENDING, OrderState.PENDING),
        (OrderState.SUBMITTED, OrderState.SUBMITTED),
        (OrderState.SUBMITTED, OrderState.PENDING),
        (OrderState.PARTIALLY_FILLED, OrderState.SUBMITTED),
        (OrderState.PARTIALLY_FILLED, OrderState.REJECTED),
        (OrderState.REJECTED, OrderState.SUBMITTED),
        (OrderState.EXPIRED, OrderState.FILLED),
        (OrderState.FILLED, OrderState.FILLED),
    ],
)
def test_illegal_transitions_raise(src: OrderState, dst: OrderState) -> None:
    order = make_order(state=src)
    with pytest.raises(IllegalTransition) as info:
        order.transition(dst)
    assert (info.value.current, info.value.wanted) == (src, dst)
    assert order.client_order_id in str(info.value)


@pytest.mark.parametrize("terminal", sorted(TERMINAL_STATES))
def test_terminal_states_have_no_exits(terminal: OrderState) -> None:
    assert ALLOWED_TRANSITIONS[terminal] == frozenset()
    order = make_order(state=terminal)
    for target in OrderState:
        with pytest.raises(IllegalTransition):
            order.transition(target)


def test_illegal_pairs_are_exactly_the_complement() -> None:
    # 7 states: 49 pairs; PENDING has 6 exits, SUBMITTED 5, PARTIALLY_FILLED 4, terminals 0
    assert len(ALLOWED_PAIRS) == 15
    assert len(ILLEGAL_PAIRS) == 49 - 15
    for src, dst in ILLEGAL_PAIRS:
        with pytest.raises(IllegalTransition):
            make_order(state=src).transition(dst)


def test_transition_keeps_reason_when_none_given() -> None:
    order = make_order().transition(OrderState.SUBMITTED, "accepted")
    assert order.transition(OrderState.PARTIALLY_FILLED).reason == "accepted"


def test_rerouted_keeps_state_and_records_origin() -> None:
    order = make_order(broker=Broker.BINANCE)
    moved = order.rerouted(Broker.PAPER, "binance unavailable: timeout")
    assert (moved.broker, moved.rerouted_from, moved.state) == (Broker.PAPER, Broker.BINANCE,
                                                                OrderState.PENDING)
    assert moved.reason == "binance unavailable: timeout"


def test_order_event_of_copies_order() -> None:
    order = make_order().transition(OrderState.REJECTED, "no funds")
    event = OrderEvent.of(order, OrderState.PENDING)
    assert (event.client_order_id, event.state, event.previous_state, event.reason, event.broker) == (
        order.client_order_id, OrderState.REJECTED, OrderState.PENDING, "no funds", Broker.BINANCE)
    assert event.ts == order.updated_at


def test_order_remaining() -> None:
    order = make_order(quantity=Decimal("1"), filled_quantity=Decimal("0.3"),
                       state=OrderState.PARTIALLY_FILLED)
    assert order.remaining == Decimal("0.7")


# --- only what the database can store (schemas/fields.py) --------------------------------------

ABSURD_DECIMALS = {
    "1e-200000": "200000 digits after the decimal point",
    "1e400000": "magnitude 1E+400000 is too large",
    "1E-101": "101 digits after the decimal point",
    "1E+40": "magnitude 1E+40 is too large",
    "0." + "0" * 100 + "1": "101 digits after the decimal point",
    "1" + "2" * 50: "51 significant digits",
    "1." + "2" * 50: "51 significant digits",
}
EDGE_DECIMALS = [
    "1E-100",                      # the finest accepted
    "0." + "0" * 99 + "1",         # the same, written out
    "9" * 40,                      # the largest magnitude accepted: just under 1E+40
    "1." + "0" * 99,               # trailing zeros count as places, not as significant digits
    "1." + "2" * 49,               # 50 significant digits
    "0.00000001",
]


def wire(**overrides: object) -> str:
    """A signal as a producer would publish it (json escapes NUL as \\u0000)."""
    return json.dumps(base(**overrides))


def _sample_messages() -> dict[type[BaseModel], dict[str, Any]]:
    order = make_order(venue_order_id="v-1")
    return {
        Signal: base(group_id="g-1", strategy="momo"),
        OrderRequest: OrderRequest.from_signal(Signal.model_validate(base()), asset_class=AssetClass.CRYPTO,
                                               broker=Broker.BINANCE, reason="crypto").model_dump(mode="json"),
        Order: order.model_dump(mode="json"),
        Fill: {"exec_id": "e-1", "cumulative_quantity": "1", "client_order_id": order.client_order_id,
               "venue_order_id": "v-1", "broker": "binance", "symbol": "BTC-USDT", "asset_class": "CRYPTO",
               "side": "BUY", "quantity": "1", "price": "100", "commission_asset": "BNB",
               "signal_ts": "2026-01-01T00:00:00Z"},
        OrderEvent: OrderEvent.of(order, None).model_dump(mode="json"),
        Position: {"broker": "paper", "symbol": "BTC-USDT", "quantity": "-1", "avg_price": "100"},
        NavQuote: {"pair": "GBTC-BTC", "trust_symbol": "GBTC", "spot_symbol": "BTC-USD", "trust_price": "50",
                   "nav_per_share": "52", "ts": "2026-01-01T00:00:00Z", "spot_price": "58000"},
    }


SAMPLES = _sample_messages()


def stored_fields(kind: type) -> list[tuple[type[BaseModel], str]]:
    """Every (model, field) of the stored messages whose type is ``kind`` or ``kind | None``."""

    def bare(annotation: Any) -> Any:  # Annotated[str, ...] -> str
        return get_args(annotation)[0] if get_origin(annotation) is Annotated else annotation

    return [(model, name) for model in SAMPLES for name, info in model.model_fields.items()
            if bare(info.annotation) is kind or kind in map(bare, get_args(info.annotation))]


def field_ids(pairs: list[tuple[type[BaseModel], str]]) -> list[str]:
    return [f"{model.__name__}.{name}" for model, name in pairs]


def test_every_stored_message_has_a_valid_sample() -> None:
    for model, data in SAMPLES.items():
        model.model_validate(data)
    assert set(SAMPLES) | {DeadLetter} == set(WIRE_MODELS)  # DeadLetter keeps any text, raw


@pytest.mark.parametrize("field", ["strategy", "symbol", "signal_id", "group_id"])
@pytest.mark.parametrize("text", ["\x00momo", "mo\x00mo", "momo\x00"])
def test_nul_in_signal_text_is_rejected_with_a_readable_reason(field: str, text: str) -> None:
    with pytest.raises(ValidationError) as info:
        Signal.model_validate_json(wire(**{field: text}))
    assert error_fields(info.value) == {field}
    assert f"{field}: Value error, contains a NUL character (\\u0000)" in describe(info.value)


TEXT_FIELDS = stored_fields(str)


@pytest.mark.parametrize(("model", "field"), TEXT_FIELDS, ids=field_ids(TEXT_FIELDS))
def test_every_stored_text_field_rejects_nul(model: type[BaseModel], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        model.model_validate({**SAMPLES[model], field: "AB\x00CD"})
    assert error_fields(info.value) == {field}
    assert "NUL character" in describe(info.value)


def test_text_fields_cover_the_free_text_columns() -> None:
    names = {f"{m.__name__}.{f}" for m, f in TEXT_FIELDS}
    assert {"Signal.strategy", "Order.reason", "Order.route_reason", "Order.venue_order_id",
            "Fill.strategy", "Fill.commission_asset", "OrderEvent.reason", "NavQuote.pair"} <= names


@pytest.mark.parametrize("value", list(ABSURD_DECIMALS), ids=[v[:16] for v in ABSURD_DECIMALS])
@pytest.mark.parametrize("field", ["quantity", "limit_price", "reference_price"])
def test_decimals_the_database_cannot_store_are_rejected(field: str, value: str) -> None:
    with pytest.raises(ValidationError) as info:
        Signal.model_validate_json(wire(**{field: value}))
    assert error_fields(info.value) == {field}
    assert ABSURD_DECIMALS[value] in describe(info.value)


@pytest.mark.parametrize("number", ["1e-200000", "1e400000", "1e-300", "-1e-200000"])
def test_absurd_json_numbers_are_rejected(number: str) -> None:
    # a JSON number (not a string) goes through a float: 0, inf or 1E-300, all refused
    raw = '{"signal_id": "s", "symbol": "SPY", "side": "BUY", "quantity": ' + number + "}"
    with pytest.raises(ValidationError) as info:
        Signal.model_validate_json(raw)
    assert error_fields(info.value) == {"quantity"}


DECIMAL_FIELDS = stored_fields(Decimal)


@pytest.mark.parametrize(("model", "field"), DECIMAL_FIELDS, ids=field_ids(DECIMAL_FIELDS))
@pytest.mark.parametrize("value", ["1E-200000", "1E+400000", "-1E+400000"])
def test_every_stored_decimal_field_rejects_absurd_exponents(model: type[BaseModel], field: str,
                                                              value: str) -> None:
    with pytest.raises(ValidationError) as info:
        model.model_validate({**SAMPLES[model], field: value})
    assert error_fields(info.value) == {field}


@pytest.mark.parametrize("value", EDGE_DECIMALS, ids=[v[:16] for v in EDGE_DECIMALS])
@pytest.mark.parametrize("field", ["quantity", "limit_price", "reference_price"])
def test_edge_decimals_are_accepted_exactly(field: str, value: str) -> None:
    signal = Signal.model_validate_json(wire(**{field: value}))
    assert getattr(signal, field) == Decimal(value)
    assert getattr(Signal.model_validate_json(signal.to_bytes()), field) == Decimal(value)


@pytest.mark.parametrize("value", ["0", "0E-100", "0.000"])
def test_zero_in_any_notation_is_a_storable_non_negative(value: str) -> None:
    position = Position.model_validate({**SAMPLES[Position], "avg_price": value})
    assert position.avg_price == 0


def test_averages_of_the_fill_arithmetic_are_storable() -> None:
    # the store reads back what execution/fills.py computed at full precision; it must validate
    assert DECIMAL_PRECISION <= DECIMAL_MAX_DIGITS
    average = average_after(Decimal("1"), Decimal("1E-12"), Decimal("2"), Decimal("2.00000001E-12"))
    assert len(average.as_tuple().digits) == DECIMAL_PRECISION  # did not terminate: full precision
    order = Order.model_validate({**SAMPLES[Order], "avg_fill_price": average})
    assert order.avg_fill_price == average


@pytest.mark.parametrize("ts", ["2026-11-25T14:30:00", "2026-11-25 14:30:00", "2026-11-25T14:30:00.123456"])
def test_signal_ts_without_a_timezone_is_rejected_with_a_readable_reason(ts: str) -> None:
    with pytest.raises(ValidationError) as info:
        Signal.model_validate_json(wire(ts=ts))
    assert error_fields(info.value) == {"ts"}
    assert "ts: Value error, timestamp without a timezone" in describe(info.value)


def test_a_naive_datetime_is_rejected_in_python_too() -> None:
    with pytest.raises(ValidationError) as info:
        Signal.model_validate(base(ts=datetime(2026, 11, 25, 14, 30)))
    assert error_fields(info.value) == {"ts"}


@pytest.mark.parametrize(("ts", "utc"), [("2026-11-25T14:30:00Z", "2026-11-25T14:30:00+00:00"),
                                         ("2026-11-25T20:00:00+05:30", "2026-11-25T14:30:00+00:00"),
                                         ("2026-11-25T09:30:00-05:00", "2026-11-25T14:30:00+00:00")])
def test_signal_ts_with_an_offset_is_the_same_instant(ts: str, utc: str) -> None:
    assert Signal.model_validate_json(wire(ts=ts)).ts == datetime.fromisoformat(utc)


TIME_FIELDS = stored_fields(datetime)


@pytest.mark.parametrize(("model", "field"), TIME_FIELDS, ids=field_ids(TIME_FIELDS))
def test_every_stored_timestamp_needs_a_timezone(model: type[BaseModel], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        model.model_validate({**SAMPLES[model], field: "2026-11-25T14:30:00"})
    assert error_fields(info.value) == {field}
    model.model_validate({**SAMPLES[model], field: "2026-11-25T14:30:00Z"})
