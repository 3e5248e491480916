"""One canonical symbol per instrument: the spelling orders, fills and positions use.

Why: strategies write the same market several ways (``BTC-USDT``, ``BTCUSDT``, ``BTC/USDT``,
``btc_usdt``). Positions are kept per ``(broker, symbol)``, so three spellings used to be three
positions for one market, and the ``orders.<broker>`` topics (keyed by symbol) spread one market
over several partitions. The spelling is fixed here, once, when an ``OrderRequest`` is built (the
router resolves the asset class, ``OrderRequest.from_signal``); every model that carries both a
symbol and an asset class (``Signal`` with an explicit class, ``OrderRequest``, ``Order``,
``Fill``) is brought to it when validated, so an older producer's alias is folded in too.

The canonical form, by asset class (always stripped and upper case):

* ``CRYPTO``: ``BASE-QUOTE`` (``BTC-USDT``). A separated pair (``-``, ``/``, ``_``, ``.``, ``:``,
  space) is re-joined with ``-``; a concatenated one (``BTCUSDT``, Binance's id form) is split on
  the *longest* suffix in ``KNOWN_QUOTES`` that leaves a base of at least two characters
  (``BNBFDUSD`` -> ``BNB-FDUSD``, not ``BNBFD-USD``; ``ETHBTC`` -> ``ETH-BTC``). A symbol that
  matches neither shape (an unknown quote, ``BTC/USDT:USDT``) is kept as written, upper case:
  guessing a split could name another market.
* ``FX``: the six-letter (or longer, for metals like ``XAUUSD``) concatenated pair, separators
  removed: ``EUR/USD``, ``EUR-USD``, ``EUR.USD`` -> ``EURUSD``.
* ``EQUITY``: as written, upper case (``BRK.B`` and ``BRK-B`` stay as they are: share-class
  punctuation differs by venue and data vendor, and neither is wrong).
* ``OPTION``: an OCC symbol loses the root's padding spaces (``AAPL  250117C00150000`` ->
  ``AAPL250117C00150000``); any other option symbol is kept as written, upper case.
* ``FUTURE``: a leading ``/`` (CME/thinkorswim style, ``/ESZ5``) is dropped; otherwise as
  written (``ESZ5`` and ``ESZ25`` are not folded: a one-digit year is ambiguous across decades).

The venue's own symbol (Binance ``BTCUSDT`` / ccxt ``BTC/USDT``) never leaves its adapter
(``adapters/binance/parsing.py`` maps the canonical symbol to the market).
"""

from __future__ import annotations

import re
from functools import lru_cache

from schemas.enums import AssetClass

#: Quote assets a concatenated crypto pair may end with. Longest match wins, so FDUSD and TUSD
#: are tried before USD. Fiat quotes are listed because venues quote crypto in them (BTCEUR,
#: USDTTRY); the asset class, not this list, decides that a symbol is crypto.
KNOWN_QUOTES: tuple[str, ...] = (
    "USDT", "USDC", "FDUSD", "BUSD", "TUSD", "USDP", "DAI",
    "BTC", "ETH", "BNB",
    "EUR", "USD", "TRY", "BRL", "GBP", "JPY", "AUD", "ARS", "MXN", "PLN", "RON", "UAH", "ZAR",
)
_QUOTES_LONGEST_FIRST: tuple[str, ...] = tuple(sorted(KNOWN_QUOTES, key=lambda q: (-len(q), q)))

#: a pair written with a separator, both sides alphanumeric
_SEPARATED = re.compile(r"^([A-Z0-9]+)\s*[-/_.:\s]\s*([A-Z0-9]+)$")
_OCC_OPTION = re.compile(r"^([A-Z]{1,6})\s*(\d{6}[CP]\d{8})$")
#: a concatenated crypto base must be at least this long (``GBTC`` is not ``G`` + ``BTC``)
_MIN_BASE = 2
#: raw values longer than this are left to validation (``Symbol`` allows 64 characters)
_MAX_RAW = 128


def split_crypto_pair(symbol: str) -> tuple[str, str] | None:
    """``(BASE, QUOTE)`` of a crypto pair in any of the accepted spellings, or None.

    ``symbol`` is upper case. Separated forms split on their separator; concatenated ones on the
    longest ``KNOWN_QUOTES`` suffix leaving a base of at least two characters."""
    match = _SEPARATED.match(symbol)
    if match:
        return match.group(1), match.group(2)
    if not symbol.isalnum():
        return None
    for quote in _QUOTES_LONGEST_FIRST:
        if symbol.endswith(quote) and len(symbol) - len(quote) >= _MIN_BASE:
            return symbol[: -len(quote)], quote
    return None


@lru_cache(maxsize=8192)
def canonical_symbol(symbol: str, asset_class: AssetClass | None) -> str:
    """The canonical spelling of ``symbol`` for its asset class (see the module docstring).

    Without an asset class only the case and surrounding space are normalised: the shape alone
    cannot tell ``ETHE`` (an equity) from a pair. Pure and cached: it runs on every validated
    message carrying a symbol."""
    sym = symbol.strip().upper()
    if asset_class is AssetClass.CRYPTO:
        pair = split_crypto_pair(sym)
        return f"{pair[0]}-{pair[1]}" if pair else sym
    if asset_class is AssetClass.FX:
        match = _SEPARATED.match(sym)
        return f"{match.group(1)}{match.group(2)}" if match else sym
    if asset_class is AssetClass.OPTION:
        match = _OCC_OPTION.match(sym)
        return f"{match.group(1)}{match.group(2)}" if match else sym
    if asset_class is AssetClass.FUTURE:
        return sym[1:] if sym.startswith("/") and len(sym) > 1 else sym
    return sym


def canonical_or_raw(symbol: object, asset_class: object) -> object:
    """``canonical_symbol`` for raw (not yet validated) message values; anything that is not a
    string symbol with a valid asset class is returned as it came, for validation to judge."""
    if not isinstance(symbol, str) or len(symbol) > _MAX_RAW:
        return symbol  # too long to be a symbol: validation refuses it, nothing to cache
    if isinstance(asset_class, AssetClass):
        kind: AssetClass | None = asset_class
    elif isinstance(asset_class, str):
        try:
            kind = AssetClass(asset_class)
        except ValueError:
            return symbol
    else:
        kind = None
    return canonical_symbol(symbol, kind)
