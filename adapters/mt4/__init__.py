"""MT4 (IC Markets) through the REST bridge: the venue package (``adapters/venue.py`` describes
the contract; README "MT4 bridge contract" the bridge's).

``config`` (``MT4_*`` settings), ``client`` (the pooled httpx client, the only httpx import),
``errors`` (one translation of bridge failures), ``parsing`` (tickets, lots and cumulative
status), ``session`` (one connection and one retry discipline), ``market_data`` (MarketDataPort),
``execution`` (BrokerPort and the MT4 operations) and ``plugin`` (what the registry lists). Only
the plug-in and its settings are imported here, so importing the package never loads httpx; the
adapter lives in ``adapters.mt4.execution``.
"""

from adapters.mt4.config import Mt4Config
from adapters.mt4.plugin import PLUGIN

__all__ = ["PLUGIN", "Mt4Config"]
