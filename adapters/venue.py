"""The venue plug-in contract: what one venue package exports so the composition root can use it.

A venue package (``adapters/binance/``, later ``adapters/ibkr/`` and ``adapters/mt4/``) exports one
``VenuePlugin``: its settings class (with its own environment prefix, e.g. ``BINANCE_``), a factory
that builds its ports from those settings, and its capabilities. ``adapters/registry.py`` lists the
plug-ins; nothing else in the code names a venue, apart from the seed's routing table
(``execution/router.py``) and the wire contract's broker names (``schemas/enums.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

from pydantic_settings import BaseSettings

from execution.clock import Clock
from execution.ports import BrokerPort, MarketDataPort
from schemas import AssetClass, Broker

#: how a venue reports order progress: polled by the FillTracker, or pushed by the venue
FillDelivery = Literal["poll", "push"]


class VenueSettings(BaseSettings):
    """Base of every venue's settings. A subclass sets ``model_config`` with its own env prefix.

    ``enabled`` says whether this deployment trades on the venue at all; a disabled venue's
    orders go to paper with the reason "no live adapter configured"."""

    enabled: bool = False


@dataclass(frozen=True, slots=True)
class VenueParts:
    """What a plug-in's factory builds: the execution port and, if the venue offers prices, its
    market-data port (often the same object)."""

    broker: BrokerPort
    market_data: MarketDataPort | None = None


S = TypeVar("S", bound=VenueSettings)


@dataclass(frozen=True, slots=True)
class VenuePlugin(Generic[S]):
    broker: Broker
    settings_type: type[S]
    #: builds the venue's ports from its settings; called only when the venue is enabled, and
    #: imports the venue's client library then (a router-only worker never loads ccxt)
    factory: Callable[[S, Clock], VenueParts]
    fill_delivery: FillDelivery
    #: asset classes this venue can price for paper fills (its market data)
    priced_classes: frozenset[AssetClass]
    description: str = ""
    #: asset classes this venue takes as the *secondary* live route when their primary venue
    #: (execution/router.py ROUTING_TABLE) is unavailable, given its settings (IBKR: FX with
    #: IBKR_FX_SECONDARY=true); the chain is then primary -> this venue -> paper
    secondary_for: Callable[[S], frozenset[AssetClass]] = lambda _settings: frozenset()

    def settings(self, **overrides: Any) -> S:
        """The venue's settings from the environment (its own prefix), with ``overrides``."""
        return self.settings_type(**overrides)

    def build(self, settings: S, clock: Clock) -> VenueParts:
        return self.factory(settings, clock)
