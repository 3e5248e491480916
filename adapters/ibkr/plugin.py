"""Interactive Brokers as a venue plug-in (``adapters/venue.py``), listed by ``adapters/registry.py``.

Reading this module imports only ``config.py``: the factory imports the adapter (and with it
ib_async) when the venue is built, so a worker that never builds IBKR never loads ib_async.
"""

from __future__ import annotations

from adapters.ibkr.config import IbkrConfig
from adapters.venue import VenueParts, VenuePlugin
from execution.clock import Clock
from schemas import AssetClass, Broker


def build(settings: IbkrConfig, clock: Clock) -> VenueParts:
    """One ``IbkrAdapter``: the execution port, and the market-data port paper prices IB's classes with."""
    from adapters.ibkr.execution import IbkrAdapter

    adapter = IbkrAdapter(settings, clock=clock)
    return VenueParts(broker=adapter, market_data=adapter)


def secondary_for(settings: IbkrConfig) -> frozenset[AssetClass]:
    """FX as CASH on IDEALPRO when MT4 (FX's primary venue) is unavailable, if enabled."""
    return frozenset({AssetClass.FX}) if settings.fx_secondary else frozenset()


PLUGIN: VenuePlugin[IbkrConfig] = VenuePlugin(
    broker=Broker.IBKR,
    settings_type=IbkrConfig,
    factory=build,
    fill_delivery="push",
    priced_classes=frozenset({AssetClass.EQUITY, AssetClass.OPTION, AssetClass.FUTURE}),
    description="Interactive Brokers over ib_async (TWS API socket; fills pushed, execId per fill)",
    secondary_for=secondary_for,
)
