"""Binance prices: the MarketDataPort (``quote``) and the richer reads behind it (ticker, top of
book, candles), all public endpoints that work without credentials."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from adapters.binance.parsing import dec
from adapters.binance.session import BinanceSession
from execution.ports import OrderRejected, Quote


@dataclass(frozen=True, slots=True)
class OrderBookL1:
    symbol: str
    bid: Decimal | None
    bid_size: Decimal | None
    ask: Decimal | None
    ask_size: Decimal | None

    @property
    def mid(self) -> Decimal | None:
        return (self.bid + self.ask) / 2 if self.bid is not None and self.ask is not None else None


@dataclass(frozen=True, slots=True)
class Candle:
    ts: datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal


class BinanceMarketData(BinanceSession):
    """MarketDataPort for Binance spot over ccxt. ``BinanceAdapter`` (``execution.py``) extends it,
    so one object and one client serve both prices and orders."""

    async def quote(self, symbol: str) -> Quote | None:
        """MarketDataPort: bid/ask/last, or None if Binance has no such market."""
        try:
            return await self.fetch_ticker(symbol)
        except OrderRejected:
            return None

    async def fetch_ticker(self, symbol: str) -> Quote:
        """``GET /api/v3/ticker/24hr``: best bid/ask and last trade, as exact Decimals."""
        client = self.client
        market = self._market(symbol, "ticker")
        ticker = await self._call("fetch ticker", lambda: client.fetch_ticker(market))
        info = ticker.get("info", {})
        return Quote(
            symbol=symbol,
            bid=dec(info.get("bidPrice")) or None,
            ask=dec(info.get("askPrice")) or None,
            last=dec(info.get("lastPrice")) or None,
        )

    async def fetch_order_book_l1(self, symbol: str) -> OrderBookL1:
        """Top of book from ``GET /api/v3/depth?limit=5`` (weight 5, the smallest depth Binance serves)."""
        client = self.client
        market = self._market(symbol, "order book")
        book = await self._call("fetch order book", lambda: client.fetch_order_book(market, 5))
        bids, asks = book.get("bids") or [], book.get("asks") or []
        return OrderBookL1(
            symbol=symbol,
            bid=dec(bids[0][0]) if bids else None,
            bid_size=dec(bids[0][1]) if bids else None,
            ask=dec(asks[0][0]) if asks else None,
            ask_size=dec(asks[0][1]) if asks else None,
        )

    async def fetch_ohlcv(
        self, symbol: str, timeframe: str = "1m", *, limit: int = 100, since: datetime | None = None
    ) -> list[Candle]:
        """Candles from ``GET /api/v3/klines`` (ccxt floats -> Decimal via their shortest repr)."""
        client = self.client
        market = self._market(symbol, "ohlcv")
        since_ms = int(since.timestamp() * 1000) if since is not None else None
        rows = await self._call("fetch ohlcv", lambda: client.fetch_ohlcv(market, timeframe, since_ms, limit))
        return [
            Candle(
                ts=datetime.fromtimestamp(row[0] / 1000, tz=UTC),
                open=dec(row[1]),
                high=dec(row[2]),
                low=dec(row[3]),
                close=dec(row[4]),
                volume=dec(row[5]),
            )
            for row in rows
        ]
