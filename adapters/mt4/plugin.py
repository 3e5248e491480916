"""MT4 (IC Markets, through the REST bridge) as a venue plug-in (``adapters/venue.py``), listed by
``adapters/registry.py``.

Reading this module imports only ``config.py``: the factory imports the adapter (and with it
httpx) when the venue is built, so a worker that never builds MT4 never loads httpx.
"""

from __future__ import annotations

from adapters.mt4.config import Mt4Config
from adapters.venue import VenueParts, VenuePlugin
from execution.clock import Clock
from schemas import AssetClass, Broker


def build(settings: Mt4Config, clock: Clock) -> VenueParts:
    """One ``Mt4Adapter``: the execution port, and the market-data port paper prices FX with."""
    from adapters.mt4.execution import Mt4Adapter

    adapter = Mt4Adapter(settings, clock=clock)
    return VenueParts(broker=adapter, market_data=adapter)


PLUGIN: VenuePlugin[Mt4Config] = VenuePlugin(
    broker=Broker.MT4,
    settings_type=Mt4Config,
    factory=build,
    fill_delivery="poll",
    priced_classes=frozenset({AssetClass.FX}),
    description="MT4 (IC Markets) over its REST bridge with httpx (tickets polled by client id)",
)
