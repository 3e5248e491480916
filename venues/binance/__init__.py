"""A Binance spot REST simulator that real ccxt can talk to, for tests, demos, drills and replay.

* ``engine``: ``BinanceExchangeSim``, the venue with no I/O (markets, accounts, matching);
* ``http``: ``BinanceSimulator``, the aiohttp layer with Binance's transport rules, behind the
  shared faults, stats and ``/_sim`` control endpoints of ``venues/common/``;
* ``cli``: ``main(argv)``, run standalone (``python -m venues.binance.cli --port 8010``).
"""

from typing import Any

from venues.binance.engine import BinanceExchangeSim
from venues.binance.http import ENDPOINTS, BinanceSimulator
from venues.binance.markets import DEFAULT_BALANCES, DEFAULT_START_PRICES, DEFAULT_SYMBOLS, SymbolSpec
from venues.binance.wire import BinanceApiError
from venues.common.faults import Fault, Faults, Op
from venues.common.prices import PricePath
from venues.common.stats import SimStats

__all__ = [
    "DEFAULT_BALANCES",
    "DEFAULT_START_PRICES",
    "DEFAULT_SYMBOLS",
    "ENDPOINTS",
    "BinanceApiError",
    "BinanceExchangeSim",
    "BinanceSimulator",
    "Fault",
    "Faults",
    "Op",
    "PricePath",
    "SimStats",
    "SymbolSpec",
    "main",
]


def __getattr__(name: str) -> Any:
    """``main`` is imported on first use: importing ``venues.binance.cli`` here would make
    ``python -m venues.binance.cli`` warn that the module was imported before it ran."""
    if name == "main":
        from venues.binance.cli import main

        return main
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
