"""The venue registry: the one list of venue plug-ins (adapters/venue.py).

Adding a venue is one package exporting a ``VenuePlugin`` and one line in ``default_registry``.
The composition root (``streams/bootstrap.py``) asks the registry which venues are enabled and
builds their ports; tests and replays hand the composition a registry of their own.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from adapters.venue import VenuePlugin
from schemas import Broker


class VenueRegistry:
    def __init__(self, plugins: tuple[VenuePlugin[Any], ...] = ()) -> None:
        self._plugins: dict[Broker, VenuePlugin[Any]] = {}
        for plugin in plugins:
            self.register(plugin)

    def register(self, plugin: VenuePlugin[Any]) -> None:
        if plugin.broker is Broker.PAPER:
            raise ValueError("paper is the fallback of every venue, not a plug-in")
        if plugin.broker in self._plugins:
            raise ValueError(f"a plug-in for {plugin.broker} is already registered")
        self._plugins[plugin.broker] = plugin

    def get(self, broker: Broker) -> VenuePlugin[Any] | None:
        return self._plugins.get(broker)

    def __iter__(self) -> Iterator[VenuePlugin[Any]]:
        return iter(self._plugins.values())

    def __len__(self) -> int:
        return len(self._plugins)


def default_registry() -> VenueRegistry:
    """Every venue this build knows (settings decide which are enabled)."""
    from adapters.binance.plugin import PLUGIN as BINANCE
    from adapters.ibkr.plugin import PLUGIN as IBKR
    from adapters.mt4.plugin import PLUGIN as MT4

    return VenueRegistry((BINANCE, IBKR, MT4))
