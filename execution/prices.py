"""Prices for paper fills, by asset class, from whichever venues of the composition offer them.

Each venue plug-in says which asset classes its market data can price (adapters/venue.py). The
composition root hands paper one ``QuotesByAssetClass`` over those sources (Binance for crypto
today; IBKR and MT4 when they land; a recorded price series in a replay), so paper asks only a
venue that lists the class: an equity never costs a doomed round trip to a crypto exchange.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from execution.ports import MarketDataPort, Quote
from schemas import AssetClass

log = logging.getLogger(__name__)


class QuotesByAssetClass:
    def __init__(self, sources: Sequence[tuple[frozenset[AssetClass], MarketDataPort]]) -> None:
        self._sources = list(sources)

    @property
    def classes(self) -> frozenset[AssetClass]:
        return frozenset().union(*(classes for classes, _ in self._sources))

    def __bool__(self) -> bool:
        return bool(self._sources)

    async def quote_for(self, symbol: str, asset_class: AssetClass) -> Quote | None:
        """The first quote with a price from a source that prices ``asset_class``; None if none."""
        for classes, source in self._sources:
            if asset_class not in classes:
                continue
            try:
                quote = await source.quote(symbol)
            except Exception as exc:  # a symbol this source doesn't list, or it is down
                log.debug("no quote for %s from %r: %r", symbol, source, exc)
                continue
            if quote is not None and quote.mid is not None:
                return quote
        return None
