"""Binance spot: the venue package (``adapters/venue.py`` describes the contract).

``config`` (``BINANCE_*`` settings), ``client`` (the ccxt client, shared and secret-safe),
``errors`` (one translation of ccxt exceptions), ``parsing`` (Binance values into ours),
``session`` (one connection and one retry discipline), ``market_data`` (MarketDataPort),
``execution`` (BrokerPort) and ``plugin`` (what the registry lists). Only the plug-in and its
settings are imported here, so importing the package never loads ccxt; the adapter lives in
``adapters.binance.execution``.
"""

from adapters.binance.config import BinanceConfig
from adapters.binance.plugin import PLUGIN

__all__ = ["PLUGIN", "BinanceConfig"]
