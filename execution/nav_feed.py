"""NavQuotes from market data: what ``superintel nav feed`` publishes on ``nav.quotes``.

A trust (GBTC) holds a fixed amount of the spot asset per share (its holdings per share, ~0.00089
BTC for GBTC, published by the sponsor), so its NAV per share is ``holdings_per_share x spot``:
the feeder asks the trust's venue for the trust price and the spot venue for the spot price, and
publishes the pair's quote with the spot price on it (the agent sizes the spot leg from it).

Pure except for the ports it is handed (``MarketDataPort``, the clock), so a replay or a test
drives it with recorded prices and a manual clock.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from execution.clock import Clock
from execution.mapper import ExchangeMapper
from execution.ports import MarketDataPort, Quote
from execution.prices import QuotesByAssetClass
from schemas import NavQuote

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class NavPairSpec:
    """One traded pair: the trust, the spot asset it holds, and how much of it per share."""

    pair: str
    trust_symbol: str
    spot_symbol: str
    holdings_per_share: Decimal

    def __post_init__(self) -> None:
        if self.holdings_per_share <= 0:
            raise ValueError("holdings per share must be positive")


def nav_quote(spec: NavPairSpec, trust: Quote | None, spot: Quote | None, ts: datetime) -> NavQuote | None:
    """The pair's quote at ``ts`` from the two venues' quotes (their mid, else last); None when
    either price is missing."""
    trust_price = trust.mid if trust is not None else None
    spot_price = spot.mid if spot is not None else None
    if trust_price is None or spot_price is None or trust_price <= 0 or spot_price <= 0:
        return None
    return NavQuote(pair=spec.pair, trust_symbol=spec.trust_symbol, spot_symbol=spec.spot_symbol,
                    trust_price=trust_price, nav_per_share=spec.holdings_per_share * spot_price,
                    spot_price=spot_price, ts=ts)


async def nav_quotes(
    spec: NavPairSpec,
    trust_prices: MarketDataPort,
    spot_prices: MarketDataPort,
    clock: Clock,
    interval: float,
    *,
    count: int | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> AsyncIterator[NavQuote]:
    """A quote every ``interval`` seconds (``count`` ticks, or for ever), stamped by ``clock``.
    Timestamps strictly increase (the agent drops a quote not after the pair's last one); a tick
    where a venue has no price, or fails, yields nothing and is logged."""
    last: datetime | None = None
    ticks = 0
    while count is None or ticks < count:
        ticks += 1
        try:
            trust, spot = await asyncio.gather(trust_prices.quote(spec.trust_symbol),
                                               spot_prices.quote(spec.spot_symbol))
        except Exception as exc:
            log.warning("nav feed %s: no prices this tick: %r", spec.pair, exc)
            trust = spot = None
        ts = clock.now()
        if last is not None and ts <= last:
            ts = last + timedelta(microseconds=1)
        quote = nav_quote(spec, trust, spot, ts)
        if quote is None:
            log.warning("nav feed %s: missing a price (trust %s, spot %s)", spec.pair, trust, spot)
        else:
            last = ts
            yield quote
        if count is None or ticks < count:
            await sleep(interval)


class PricesByClass:
    """A ``MarketDataPort`` over the composition's venues: a symbol is priced by the venue whose
    market data covers its asset class (ExchangeMapper): GBTC by the equity venue, BTC-USDT by
    the crypto venue."""

    def __init__(self, prices: QuotesByAssetClass, mapper: ExchangeMapper | None = None) -> None:
        self._prices = prices
        self._mapper = mapper or ExchangeMapper()

    async def quote(self, symbol: str) -> Quote | None:
        asset_class = self._mapper.asset_class(symbol)
        return await self._prices.quote_for(self._mapper.canonical(symbol, asset_class), asset_class)
