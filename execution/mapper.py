"""ExchangeMapper: symbol -> asset class, by fixed table first and then by written rules.

Deterministic on purpose: the same symbol maps to the same class on every worker, every replay.
A symbol no rule recognises is an error (the signal goes to the dead-letter topic with the
reason) rather than a guess that might send an order to the wrong venue.

Once the class is known the symbol has one canonical spelling (``BTC-USDT`` for every way of
writing that pair, ``EURUSD``, equities as written): the rules are in ``schemas/symbols.py``,
applied when the router builds the OrderRequest, and ``ExchangeMapper.canonical`` answers it
for a raw symbol.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from schemas import AssetClass
from schemas.symbols import canonical_symbol

#: The seed's table, plus a few unambiguous names whose shape would mislead the rules
#: (GBTC is a trust traded as an equity, not a crypto pair).
KNOWN_SYMBOLS: Mapping[str, AssetClass] = {
    "BTC-USDT": AssetClass.CRYPTO,
    "GBTC": AssetClass.EQUITY,
    "SPY": AssetClass.EQUITY,
    "EURUSD": AssetClass.FX,
    "ETHE": AssetClass.EQUITY,
    "IBIT": AssetClass.EQUITY,
}

ISO_CURRENCIES = frozenset(
    "USD EUR JPY GBP CHF AUD NZD CAD SEK NOK DKK PLN CZK HUF TRY ZAR MXN SGD HKD CNH ILS".split()
)
CRYPTO_ASSETS = frozenset(
    "BTC ETH SOL BNB XRP ADA DOGE DOT LTC AVAX LINK MATIC TRX ATOM XLM BCH UNI".split()
)
CRYPTO_QUOTES = frozenset("USDT USDC FDUSD BUSD TUSD DAI BTC ETH BNB".split())

#: OCC option symbol: root (1-6), YYMMDD, C/P, strike x1000 in 8 digits; the root may be padded.
_OCC_OPTION = re.compile(r"^[A-Z]{1,6}\s*\d{6}[CP]\d{8}$")
#: Futures: root + month code + 1-2 digit year (ESZ5, CLF26), optionally with a leading slash.
_FUTURE = re.compile(r"^/?[A-Z0-9]{1,3}[FGHJKMNQUVXZ]\d{1,2}$")
_PAIR = re.compile(r"^([A-Z0-9]{2,10})[-/._]([A-Z0-9]{2,10})$")
_EQUITY = re.compile(r"^[A-Z]{1,5}([.-][A-Z])?$")


class UnknownSymbol(ValueError):
    """No table entry and no rule recognises the symbol."""


class ExchangeMapper:
    def __init__(self, overrides: Mapping[str, AssetClass] | None = None) -> None:
        self._table = {**KNOWN_SYMBOLS, **(overrides or {})}

    def asset_class(self, symbol: str, explicit: AssetClass | None = None) -> AssetClass:
        """The asset class of ``symbol``; an explicit class from the signal always wins."""
        if explicit is not None:
            return explicit
        sym = symbol.strip().upper()
        if sym in self._table:
            return self._table[sym]
        for rule in (_occ_option, _pair, _concatenated_pair, _future, _equity):
            found = rule(sym)
            if found is not None:
                return found
        raise UnknownSymbol(f"cannot infer asset class of symbol {symbol!r}; set asset_class explicitly")

    def canonical(self, symbol: str, explicit: AssetClass | None = None) -> str:
        """The canonical spelling of ``symbol`` (schemas/symbols.py) for its asset class, as
        ``asset_class`` resolves it; raises ``UnknownSymbol`` like it."""
        return canonical_symbol(symbol, self.asset_class(symbol, explicit))


def _occ_option(sym: str) -> AssetClass | None:
    return AssetClass.OPTION if _OCC_OPTION.match(sym) else None


def _classify_pair(base: str, quote: str) -> AssetClass | None:
    if base in ISO_CURRENCIES and quote in ISO_CURRENCIES:
        return AssetClass.FX
    if base in CRYPTO_ASSETS or quote in CRYPTO_QUOTES:
        return AssetClass.CRYPTO
    return None


def _pair(sym: str) -> AssetClass | None:
    match = _PAIR.match(sym)
    return _classify_pair(match.group(1), match.group(2)) if match else None


def _concatenated_pair(sym: str) -> AssetClass | None:
    """EURUSD, BTCUSDT: try each known quote as a suffix."""
    if len(sym) == 6 and sym[:3] in ISO_CURRENCIES and sym[3:] in ISO_CURRENCIES:
        return AssetClass.FX
    for quote in CRYPTO_QUOTES:
        base = sym[: -len(quote)]
        if sym.endswith(quote) and len(base) >= 2 and base in CRYPTO_ASSETS:
            return AssetClass.CRYPTO
    if len(sym) >= 6 and sym[:3] in CRYPTO_ASSETS and sym[3:] in ISO_CURRENCIES:
        return AssetClass.CRYPTO
    return None


def _future(sym: str) -> AssetClass | None:
    return AssetClass.FUTURE if _FUTURE.match(sym) else None


def _equity(sym: str) -> AssetClass | None:
    return AssetClass.EQUITY if _EQUITY.match(sym) else None
