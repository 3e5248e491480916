"""Interactive Brokers: the venue package (``adapters/venue.py`` describes the contract).

One layer per file, as in ib_async itself: ``config`` (``IBKR_*`` settings), ``contracts`` (our
symbols -> IB contracts, qualified once), ``parsing`` (IB statuses, error codes and order
tickets), ``connection`` (client ids, reconnect, resynchronisation), ``execution`` (BrokerPort,
push updates, market data) and ``plugin`` (what the registry lists). Only the plug-in and its
settings are imported here, so importing the package never loads ib_async.
"""

from adapters.ibkr.config import IbkrConfig
from adapters.ibkr.plugin import PLUGIN

__all__ = ["PLUGIN", "IbkrConfig"]
