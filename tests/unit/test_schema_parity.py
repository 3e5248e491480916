"""The exported JSON Schema refuses what the router refuses (issue 17, producers).

A corpus of raw signals, good and malformed, is judged twice: by the ``jsonschema`` library against
``Signal.schema.json`` (draft 2020-12, format checking on with its RFC 3339 checker), and by the
router's own parsing (``Signal.model_validate_json`` then the BrokerRouter with its ExchangeMapper,
exactly as agents/router.py does). Every entry must get the same verdict from both, so a producer in
any language that validates against the schema is never dead-lettered for a reason the schema could
express. Two short lists stand apart, each with its reason: what only the router can refuse, and what
the schema deliberately refuses although the router would take it (the safe direction).
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from pydantic import ValidationError

from execution.mapper import UnknownSymbol
from execution.router import BrokerRouter
from schemas import Broker, Position, Signal
from schemas.export import WIRE_MODELS, json_schema, write_json_schemas
from schemas.fields import DECIMAL_MAX_DIGITS, JSON_NUMBER_FLOOR
from streams.cli import main as cli_main

SCHEMA = json_schema(Signal)
VALIDATOR = Draft202012Validator(SCHEMA, format_checker=Draft202012Validator.FORMAT_CHECKER)
ROUTER = BrokerRouter(set(Broker))
BASE: dict[str, Any] = {"signal_id": "sig-1", "symbol": "BTC-USDT", "side": "BUY", "quantity": "1"}
OMIT = object()


def raw(**fields: Any) -> str:
    """A signal as JSON text: BASE with ``fields`` over it (``OMIT`` drops one)."""
    data = {k: v for k, v in {**BASE, **fields}.items() if v is not OMIT}
    return json.dumps(data)


def with_number(field: str, number: str, **fields: Any) -> str:
    """A signal whose ``field`` is the JSON number written exactly as ``number`` (json.dumps would
    round-trip it through a float first)."""
    text = raw(**{field: "@@", **fields})
    return text.replace('"@@"', number)


def schema_accepts(text: str) -> bool:
    return VALIDATOR.is_valid(json.loads(text))


def router_accepts(text: str) -> bool:
    """agents/router.py's judgement of one record: what it does not dead-letter."""
    try:
        ROUTER.route(Signal.model_validate_json(text))
    except (ValidationError, UnknownSymbol):
        return False
    return True


GOOD: dict[str, str] = {
    "minimal market": raw(),
    "limit, every field": raw(signal_id="momo:2026-11-25/0001", strategy="momo", order_type="LIMIT",
                              limit_price="64950.5", time_in_force="GTC", asset_class="CRYPTO",
                              reference_price="64951", group_id="g-1", ts="2026-11-25T14:30:00Z"),
    "stop": raw(order_type="STOP", stop_price="60000"),
    "bracket, no entry price": raw(symbol="SPY", order_type="BRACKET", stop_price="90", take_profit_price="110"),
    "bracket in order": raw(symbol="SPY", order_type="BRACKET", limit_price="100", stop_price="90",
                            take_profit_price="110"),
    "market with unused prices": raw(limit_price=None, stop_price=None, take_profit_price=None),
    "asset class null": raw(asset_class=None, group_id=None),
    "quantity number int": with_number("quantity", "5"),
    "quantity number fraction": with_number("quantity", "0.5"),
    "quantity number exponent": with_number("quantity", "1e-8"),
    "quantity number large": with_number("quantity", "9.999999999999999e39"),
    "quantity number at the floor": with_number("quantity", repr(JSON_NUMBER_FLOOR)),
    "quantity exponent string (str(Decimal))": raw(quantity=str(Decimal("0.00000001"))),
    "quantity exponent string upper": raw(quantity="1.5E+3"),
    "quantity exponent lower": raw(quantity="2.5e-7"),
    "quantity finest": raw(quantity="1E-100"),
    "quantity finest written out": raw(quantity="0." + "0" * 99 + "1"),
    "quantity largest": raw(quantity="9" * 40),
    "quantity trailing zeros": raw(quantity="1." + "0" * 99),
    "quantity 50 significant digits": raw(quantity="1." + "2" * 49),
    "quantity leading zeros": raw(quantity="0005.50"),
    "quantity plus sign": raw(quantity="+5"),
    "quantity point at the end": raw(quantity="5."),
    "quantity point at the start": raw(quantity=".5"),
    "symbol lower case, blanks around": raw(symbol=" btc-usdt "),
    "symbol alias": raw(symbol="btc/usdt"),
    "symbol class share": raw(symbol="BRK.B"),
    "symbol future": raw(symbol="/ESZ5"),
    "symbol padded OCC option": raw(symbol="AAPL  250117C00150000"),
    "symbol 64 characters": raw(symbol="A" * 64, asset_class="EQUITY"),
    "signal id 128 characters": raw(signal_id="s" * 128),
    "strategy unicode": raw(strategy="stratégie 😀"),
    "ts with +05:30": raw(ts="2026-11-25T20:00:00+05:30"),
    "ts with -00:00": raw(ts="2026-11-25T14:30:00-00:00"),
    "ts lower-case t and z": raw(ts="2026-11-25t14:30:00z"),
    "ts nanoseconds": raw(ts="2026-11-25T14:30:00.123456789Z"),
    "ts leap day": raw(ts="2024-02-29T23:59:59+01:00"),
}

BAD: dict[str, str] = {
    # quantities the issue names, and their kin
    **{f"quantity {v!r}": raw(quantity=v) for v in
       ["-5", "0", "NaN", "Infinity", "-Infinity", "sNaN", "abc", "1,000", " ", "", "0.0", "-0", "1 000",
        "0x10", "1e", "e5", ".", "+", "--5", "5-", "1.2.3"]},
    "quantity magnitude 1E+40": raw(quantity="1E+40"),
    "quantity 41 integer digits": raw(quantity="1" + "0" * 40),
    "quantity 101 places": raw(quantity="0." + "0" * 100 + "1"),
    "quantity 101 places by exponent": raw(quantity="1.5E-100"),
    "quantity 51 significant digits": raw(quantity="1." + "2" * 50),
    "quantity 51 significant integer digits": raw(quantity="1" + "2" * 39 + "." + "3" * 11),
    "quantity absurd exponent": raw(quantity="1e-200000"),
    "quantity number negative": with_number("quantity", "-5"),
    "quantity number zero": with_number("quantity", "0"),
    "quantity number 0.0": with_number("quantity", "0.0"),
    "quantity number NaN token": with_number("quantity", "NaN"),
    "quantity number Infinity token": with_number("quantity", "Infinity"),
    "quantity number overflow": with_number("quantity", "1e400"),
    "quantity number 1e40": with_number("quantity", "1e40"),
    "quantity number integer 10**40": with_number("quantity", str(10**40)),
    "quantity number 1e-300": with_number("quantity", "1e-300"),
    "quantity true": raw(quantity=True),
    "quantity null": raw(quantity=None),
    "quantity list": raw(quantity=[1]),
    "quantity object": raw(quantity={"value": "1"}),
    # prices
    **{f"{field} {v!r}": raw(**{"order_type": "LIMIT", "limit_price": "100", field: v})
       for field in ("limit_price", "stop_price", "take_profit_price", "reference_price")
       for v in ("-1", "0", "NaN", "abc", "1,5", "Infinity", " ")},
    "limit price number negative": with_number("limit_price", "-100", order_type="LIMIT"),
    # order types and their prices
    "LIMIT without limit_price": raw(order_type="LIMIT"),
    "LIMIT with limit_price null": raw(order_type="LIMIT", limit_price=None),
    "LIMIT with only a stop_price": raw(order_type="LIMIT", stop_price="100"),
    "STOP without stop_price": raw(order_type="STOP"),
    "STOP with stop_price null": raw(order_type="STOP", stop_price=None, limit_price="1"),
    "BRACKET without take_profit_price": raw(order_type="BRACKET", stop_price="90"),
    "BRACKET without stop_price": raw(order_type="BRACKET", take_profit_price="110"),
    "BRACKET with neither": raw(order_type="BRACKET", limit_price="100"),
    # timestamps: RFC 3339 date-time with an offset, nothing else
    "ts naive": raw(ts="2026-11-25T14:30:00"),
    "ts naive with fraction": raw(ts="2026-11-25T14:30:00.123456"),
    "ts date only": raw(ts="2026-11-25"),
    "ts epoch number": with_number("ts", "1764081000"),
    "ts epoch number fraction": with_number("ts", "1764081000.5"),
    "ts epoch string": raw(ts="1764081000"),
    "ts space for T": raw(ts="2026-11-25 14:30:00Z"),
    "ts offset without colon": raw(ts="2026-11-25T14:30:00+0100"),
    "ts offset hours only": raw(ts="2026-11-25T14:30:00+01"),
    "ts offset 24 hours": raw(ts="2026-11-25T14:30:00+24:00"),
    "ts without seconds": raw(ts="2026-11-25T14:30Z"),
    "ts comma fraction": raw(ts="2026-11-25T14:30:00,5Z"),
    "ts empty fraction": raw(ts="2026-11-25T14:30:00.Z"),
    "ts February 29th 2026": raw(ts="2026-02-29T00:00:00Z"),
    "ts April 31st": raw(ts="2026-04-31T00:00:00Z"),
    "ts month 13": raw(ts="2026-13-01T00:00:00Z"),
    "ts hour 24": raw(ts="2026-11-25T24:00:00Z"),
    "ts leap second": raw(ts="2026-12-31T23:59:60Z"),
    "ts year 0": raw(ts="0000-01-01T00:00:00Z"),
    "ts trailing newline": raw(ts="2026-11-25T14:30:00Z\n"),
    "ts blank around": raw(ts=" 2026-11-25T14:30:00Z"),
    "ts basic format": raw(ts="20261125T143000Z"),
    "ts week date": raw(ts="2026-W48-3T14:30:00Z"),
    "ts null": raw(ts=None),
    # identifiers and text
    "signal_id empty": raw(signal_id=""),
    "signal_id with a space": raw(signal_id="sig 1"),
    "signal_id trailing newline": raw(signal_id="sig-1\n"),
    "signal_id 129 characters": raw(signal_id="s" * 129),
    "signal_id non-ASCII": raw(signal_id="sïg"),
    "signal_id NUL": raw(signal_id="sig\x001"),
    "signal_id number": raw(signal_id=5),
    "group_id empty": raw(group_id=""),
    "group_id with a dollar": raw(group_id="g$1"),
    "symbol empty": raw(symbol=""),
    "symbol blanks": raw(symbol="   "),
    "symbol with a dollar": raw(symbol="BTC$USDT"),
    "symbol 65 characters": raw(symbol="A" * 65, asset_class="EQUITY"),
    "symbol NUL": raw(symbol="BTC\x00USDT"),
    "symbol tab inside": raw(symbol="BTC\tUSDT"),
    "symbol null": raw(symbol=None),
    "strategy empty": raw(strategy=""),
    "strategy 65 characters": raw(strategy="m" * 65),
    "strategy NUL": raw(strategy="mo\x00mo"),
    "strategy null": raw(strategy=None),
    # closed vocabularies
    "side lower case": raw(side="buy"),
    "side HOLD": raw(side="HOLD"),
    "order_type lower case": raw(order_type="limit", limit_price="1"),
    "order_type OCO": raw(order_type="OCO"),
    "order_type null": raw(order_type=None),
    "time_in_force GTD": raw(time_in_force="GTD"),
    "time_in_force null": raw(time_in_force=None),
    "asset_class STOCK": raw(asset_class="STOCK"),
    "asset_class lower case": raw(asset_class="equity"),
    # shape
    **{f"missing {field}": raw(**{field: OMIT}) for field in ("signal_id", "symbol", "side", "quantity")},
    "unknown field": raw(venue="binance"),
    "an array": "[]",
    "a string": '"BTC-USDT"',
    "null": "null",
}

# Refused by the router only: the schema cannot express them, and says so in schemas/export.py.
ROUTER_ONLY: dict[str, str] = {
    # the ExchangeMapper infers the asset class from the symbol's shape and its tables; a symbol no
    # rule recognises is dead-lettered unless asset_class is set
    "symbol no rule recognises": raw(symbol="XYZ123"),
    "symbol with a space, no asset class": raw(symbol="A B"),
    # a BRACKET's stop < entry < take-profit (BUY) compares fields; JSON Schema has no such keyword
    "bracket BUY stop above entry": raw(symbol="SPY", order_type="BRACKET", limit_price="100", stop_price="105",
                                        take_profit_price="110"),
    "bracket SELL take-profit above entry": raw(symbol="SPY", side="SELL", order_type="BRACKET",
                                                reference_price="100", stop_price="110", take_profit_price="105"),
    # not I-JSON: a lone surrogate escape. The router's JSON parser refuses the text; a JSON Schema
    # validator only ever sees the parsed value
    "lone surrogate": raw()[:-1] + ', "strategy": "\\ud800"}',
}

# Refused by the schema although the router takes them: the schema is the stricter one, which never
# dead-letters a producer. Each is a spelling the schema does not promise rather than a value it
# cannot express.
SCHEMA_STRICTER: dict[str, str] = {
    "quantity with blanks (the router strips them)": raw(quantity=" 5 "),
    "quantity with underscores (Python's Decimal reads 1_000)": raw(quantity="1_000"),
    "quantity in Arabic-Indic digits": raw(quantity="\u0665"),
    # exponent notation: one mantissa bound per decade of exponents (schemas/fields.py _scientific)
    "quantity 0.099e-90 (93 places, bound per decade)": raw(quantity="0.099e-90"),
    # JSON numbers below the float floor may or may not have more than 100 places once read
    "quantity number 1e-90": with_number("quantity", "1e-90"),
    "symbol with a no-break space around": raw(symbol="\u00a0BTC-USDT"),
}


def cases(corpus: dict[str, str]) -> list[Any]:
    return [pytest.param(text, id=name) for name, text in corpus.items()]


@pytest.mark.parametrize("text", [*cases(GOOD), *cases(BAD)])
def test_schema_and_router_give_the_same_verdict(text: str) -> None:
    assert schema_accepts(text) == router_accepts(text), (
        f"schema {'accepts' if schema_accepts(text) else 'rejects'}, router "
        f"{'accepts' if router_accepts(text) else 'rejects'}: {text}")


@pytest.mark.parametrize("text", cases(GOOD))
def test_good_signals_pass_both(text: str) -> None:
    assert schema_accepts(text)
    assert router_accepts(text)


@pytest.mark.parametrize("text", cases(BAD))
def test_malformed_signals_fail_both(text: str) -> None:
    assert not schema_accepts(text), text
    assert not router_accepts(text), text


@pytest.mark.parametrize("text", cases(ROUTER_ONLY))
def test_router_only_rejections_pass_the_schema(text: str) -> None:
    assert schema_accepts(text)
    assert not router_accepts(text)


@pytest.mark.parametrize("text", cases(SCHEMA_STRICTER))
def test_where_the_schema_is_stricter_the_router_accepts(text: str) -> None:
    assert not schema_accepts(text)
    assert router_accepts(text)


def test_the_format_checker_asserts_rfc3339() -> None:
    # the date-time checker exists only with rfc3339-validator installed; without it format is an
    # annotation and the calendar cases above would pass the schema on the pattern alone
    checker = Draft202012Validator.FORMAT_CHECKER
    assert "date-time" in checker.checkers
    assert not checker.conforms("2026-02-30T00:00:00Z", "date-time")
    assert re.search(SCHEMA["properties"]["ts"]["pattern"], "2026-02-30T00:00:00Z")


def test_every_exported_schema_is_a_valid_2020_12_schema(tmp_path: Path) -> None:
    for model in WIRE_MODELS:
        schema = json_schema(model)
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        Draft202012Validator.check_schema(schema)


def test_superintel_schema_writes_the_same_schema(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["schema", "--out", str(tmp_path)]) == 0
    written = json.loads((tmp_path / "Signal.schema.json").read_text())
    assert written == json.loads(json.dumps(SCHEMA))
    assert {p.name for p in tmp_path.iterdir()} == {f"{m.__name__}.schema.json" for m in WIRE_MODELS}
    assert write_json_schemas(tmp_path / "again")  # idempotent helper used by the CLI


def test_every_pattern_ends_at_the_end_of_the_string() -> None:
    # Python's re lets "$" match before a final newline; the export makes every pattern mean the end
    patterns = re.findall(r'"pattern": "((?:[^"\\]|\\.)*)"', json.dumps(SCHEMA))
    assert patterns
    for pattern in patterns:
        assert json.loads(f'"{pattern}"').endswith("(?!\\n)$")


def _decimal_strings(rng: random.Random) -> Iterator[str]:
    """Strings near every bound of the decimal grammar: signs, leading zeros, 39-41 integer digits,
    49-51 significant digits, 99-101 places, exponents around each decade."""
    for _ in range(4000):
        sign = rng.choice(["", "", "+", "-"])
        whole = "0" * rng.choice([0, 0, 1, 3]) + "".join(
            rng.choice("0123456789") for _ in range(rng.choice([0, 1, 2, 39, 40, 41])))
        places = "".join(rng.choice("000123456789") for _ in range(rng.choice([0, 1, 3, 49, 50, 51, 99, 100, 101])))
        text = sign + whole + ("." + places if rng.random() < 0.7 else "")
        if rng.random() < 0.4:
            exponent = rng.choice([0, 1, 9, 10, 29, 30, 39, 40, 41, 89, 90, 99, 100, 101])
            text += rng.choice("eE") + rng.choice(["", "+", "-"]) + rng.choice(["", "0"]) + str(exponent)
        yield text


def test_decimal_strings_the_schema_accepts_are_storable() -> None:
    """Fuzzed around the bounds: never a string the schema takes and the router refuses; and in
    plain notation (what most producers write) exactly the same verdicts."""
    rng = random.Random(17)
    loose, plain_disagree = [], []
    for text in _decimal_strings(rng):
        schema, router = schema_accepts(raw(quantity=text)), router_accepts(raw(quantity=text))
        if schema and not router:
            loose.append(text)
        if "e" not in text.lower() and schema != router:
            plain_disagree.append(text)
    assert loose == []
    assert plain_disagree == []


@pytest.mark.parametrize(("kind", "field"), [("non-negative", "avg_price"), ("signed", "quantity"),
                                             ("signed", "realized_pnl")])
def test_non_negative_and_signed_decimals_agree_too(kind: str, field: str) -> None:
    validator = Draft202012Validator(json_schema(Position), format_checker=Draft202012Validator.FORMAT_CHECKER)
    sample = {"broker": "paper", "symbol": "BTC-USDT", "quantity": "1", "avg_price": "100"}
    rng = random.Random(kind)
    for text in [*(t for t in _decimal_strings(rng) if "e" not in t.lower()), "-0", "-0.000", "0", "-5"]:
        data = {**sample, field: text}
        try:
            Position.model_validate_json(json.dumps(data))
            router = True
        except ValidationError:
            router = False
        assert validator.is_valid(data) == router, (kind, text)


def test_significant_digit_bound_is_the_runtime_one() -> None:
    at_bound = "9" * DECIMAL_MAX_DIGITS
    assert schema_accepts(raw(quantity="0." + at_bound)) and router_accepts(raw(quantity="0." + at_bound))
    assert not schema_accepts(raw(quantity="0." + at_bound + "1"))
    assert not router_accepts(raw(quantity="0." + at_bound + "1"))


@pytest.mark.parametrize("ts", ["2026-11-25T14:30:00", "2026-11-25", "1764081000"])
def test_the_router_names_what_is_wrong_with_a_timestamp(ts: str) -> None:
    with pytest.raises(ValidationError) as info:
        Signal.model_validate_json(raw(ts=ts))
    message = str(info.value)
    expected = {"2026-11-25T14:30:00": "timestamp without a timezone", "2026-11-25": "a date without a time",
                "1764081000": "epoch numbers are not accepted"}[ts]
    assert expected in message


def test_an_epoch_number_ts_is_refused_with_its_reason() -> None:
    with pytest.raises(ValidationError) as info:
        Signal.model_validate_json(with_number("ts", "1764081000"))
    assert "epoch numbers are not accepted" in str(info.value)


@pytest.mark.parametrize("number", [float("nan"), float("inf"), float("-inf")], ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize("field", ["quantity", "avg_price", "realized_pnl"])
def test_non_finite_floats_fail_the_schema(field: str, number: float) -> None:
    """A Python producer validating its dict before ``json.dumps`` (which writes NaN and Infinity)."""
    if field == "quantity":
        assert not VALIDATOR.is_valid({**BASE, field: number})
    else:
        position = {"broker": "paper", "symbol": "BTC-USDT", "quantity": "1", "avg_price": "100", field: number}
        assert not Draft202012Validator(json_schema(Position)).is_valid(position)
