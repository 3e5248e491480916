"""MT4 prices for paper: the MarketDataPort (``quote``) over the bridge's ``GET /quote/{symbol}``."""

from __future__ import annotations

import logging

from adapters.mt4.parsing import parse_quote
from adapters.mt4.session import Mt4Session
from execution.ports import BrokerError, Quote

log = logging.getLogger(__name__)


class Mt4MarketData(Mt4Session):
    """MarketDataPort for FX from the bridge. ``Mt4Adapter`` (``execution.py``) extends it, so one
    object and one pooled client serve both prices and orders."""

    async def quote(self, symbol: str) -> Quote | None:
        """Bid/ask of ``symbol`` (``EURUSD``), or None if the bridge does not list it or cannot be
        asked now. One attempt: paper asks while MT4 may be down, and falls back to the signal's
        reference price rather than wait out a backoff."""
        try:
            raw = await self.read("quote", f"/quote/{symbol.strip().upper()}", attempts=1, not_found_ok=True)
        except BrokerError as exc:
            log.debug("mt4 quote %s unavailable: %s", symbol, exc)
            return None
        return parse_quote(symbol, raw) if raw is not None else None
