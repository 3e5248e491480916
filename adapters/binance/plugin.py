"""Binance as a venue plug-in (``adapters/venue.py``), listed by ``adapters/registry.py``.

Reading this module imports only ``config.py``: the factory imports the adapter (and with it
ccxt) when the venue is built, so a worker that never builds Binance never loads ccxt.
"""

from __future__ import annotations

from adapters.binance.config import BinanceConfig
from adapters.venue import VenueParts, VenuePlugin
from execution.clock import Clock
from schemas import AssetClass, Broker


def build(settings: BinanceConfig, clock: Clock) -> VenueParts:
    """One ``BinanceAdapter``: the execution port, and the market-data port paper prices crypto with."""
    from adapters.binance.execution import BinanceAdapter

    adapter = BinanceAdapter(settings, clock=clock)
    return VenueParts(broker=adapter, market_data=adapter)


PLUGIN: VenuePlugin[BinanceConfig] = VenuePlugin(
    broker=Broker.BINANCE,
    settings_type=BinanceConfig,
    factory=build,
    fill_delivery="poll",
    priced_classes=frozenset({AssetClass.CRYPTO}),
    description="Binance spot over ccxt (REST; fills polled by client order id)",
)
