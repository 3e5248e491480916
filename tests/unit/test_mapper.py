"""ExchangeMapper: the seed's table, the written rules, explicit classes, unknown symbols."""

from __future__ import annotations

import pytest

from execution.mapper import KNOWN_SYMBOLS, ExchangeMapper, UnknownSymbol
from schemas import AssetClass

SEED_TABLE = {
    "BTC-USDT": AssetClass.CRYPTO,
    "GBTC": AssetClass.EQUITY,
    "SPY": AssetClass.EQUITY,
    "EURUSD": AssetClass.FX,
}


@pytest.fixture
def mapper() -> ExchangeMapper:
    return ExchangeMapper()


@pytest.mark.parametrize(("symbol", "expected"), SEED_TABLE.items())
def test_seed_table_exactly(mapper: ExchangeMapper, symbol: str, expected: AssetClass) -> None:
    assert mapper.asset_class(symbol) is expected
    assert KNOWN_SYMBOLS[symbol] is expected


def test_gbtc_is_an_equity_not_a_crypto_pair(mapper: ExchangeMapper) -> None:
    # the trust trades on NYSE Arca; its name starts with a crypto-looking "G" + "BTC"
    assert mapper.asset_class("GBTC") is AssetClass.EQUITY
    assert mapper.asset_class("gbtc") is AssetClass.EQUITY


@pytest.mark.parametrize(
    ("symbol", "expected"),
    [
        ("ETH/USDT", AssetClass.CRYPTO),
        ("SOLUSDT", AssetClass.CRYPTO),
        ("BTCUSD", AssetClass.CRYPTO),
        ("BTCUSDT", AssetClass.CRYPTO),
        ("ETH-BTC", AssetClass.CRYPTO),
        ("DOGE_USDC", AssetClass.CRYPTO),
        ("GBPJPY", AssetClass.FX),
        ("EUR/USD", AssetClass.FX),
        ("USD-JPY", AssetClass.FX),
        ("ESZ5", AssetClass.FUTURE),
        ("CLF26", AssetClass.FUTURE),
        ("/ESH6", AssetClass.FUTURE),
        ("AAPL  250117C00150000", AssetClass.OPTION),
        ("SPY250321P00400000", AssetClass.OPTION),
        ("AAPL", AssetClass.EQUITY),
        ("BRK.B", AssetClass.EQUITY),
        ("BRK-B", AssetClass.EQUITY),
        ("F", AssetClass.EQUITY),
        ("MSFT", AssetClass.EQUITY),
    ],
)
def test_general_rules(mapper: ExchangeMapper, symbol: str, expected: AssetClass) -> None:
    assert mapper.asset_class(symbol) is expected


def test_symbols_are_normalised(mapper: ExchangeMapper) -> None:
    assert mapper.asset_class("  eurusd ") is AssetClass.FX
    assert mapper.asset_class("eth/usdt") is AssetClass.CRYPTO
    assert mapper.asset_class("aapl") is AssetClass.EQUITY


@pytest.mark.parametrize("explicit", list(AssetClass))
def test_explicit_asset_class_wins(mapper: ExchangeMapper, explicit: AssetClass) -> None:
    assert mapper.asset_class("BTC-USDT", explicit) is explicit
    assert mapper.asset_class("SPY", explicit) is explicit
    # even a symbol no rule knows is accepted when the signal says what it is
    assert mapper.asset_class("NOT A SYMBOL 123456", explicit) is explicit


def test_overrides_extend_and_replace_the_table() -> None:
    mapper = ExchangeMapper({"XYZ123": AssetClass.FUTURE, "SPY": AssetClass.OPTION})
    assert mapper.asset_class("XYZ123") is AssetClass.FUTURE
    assert mapper.asset_class("SPY") is AssetClass.OPTION
    assert ExchangeMapper().asset_class("SPY") is AssetClass.EQUITY  # the default is untouched


@pytest.mark.parametrize(
    "symbol",
    ["", "12345", "ABCDEFG", "XYZ/ABC", "FOO-BAR-BAZ", "AAPL 2501C150", "BTC$USDT", "TOOLONGTICKER"],
)
def test_unknown_shapes_raise(mapper: ExchangeMapper, symbol: str) -> None:
    with pytest.raises(UnknownSymbol, match="cannot infer asset class") as info:
        mapper.asset_class(symbol)
    assert repr(symbol) in str(info.value)
    assert isinstance(info.value, ValueError)


def test_mapping_is_deterministic(mapper: ExchangeMapper) -> None:
    symbols = ["BTC-USDT", "GBTC", "ESZ5", "EUR/USD", "SPY250321P00400000", "BRK.B"]
    first = [mapper.asset_class(s) for s in symbols]
    for _ in range(200):
        assert [ExchangeMapper().asset_class(s) for s in symbols] == first
