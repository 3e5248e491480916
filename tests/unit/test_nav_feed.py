"""The NAV feeder (execution/nav_feed.py): quotes from two market-data ports and a clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

from execution.clock import ManualClock
from execution.nav_feed import NavPairSpec, PricesByClass, nav_quotes
from execution.ports import Quote
from execution.prices import QuotesByAssetClass
from schemas import AssetClass

SPEC = NavPairSpec("GBTC-BTC", "GBTC", "BTC-USDT", D("0.00089"))


class Prices:
    """A venue's market data: a script of quotes per symbol, one per call."""

    def __init__(self, **script: list[Quote | Exception | None]) -> None:
        self.script = {symbol.replace("_", "-"): list(quotes) for symbol, quotes in script.items()}
        self.asked: list[str] = []

    async def quote(self, symbol: str) -> Quote | None:
        self.asked.append(symbol)
        item = self.script[symbol].pop(0)
        if isinstance(item, Exception):
            raise item
        return item


def q(symbol: str, bid: str, ask: str) -> Quote:
    return Quote(symbol, D(bid), D(ask), None)


async def test_quotes_are_built_from_both_venues_every_interval() -> None:
    start = datetime(2026, 11, 30, 14, 30, tzinfo=UTC)
    clock = ManualClock(start)
    trust = Prices(GBTC=[q("GBTC", "52.9", "53.1"), None, q("GBTC", "53.0", "53.2"), q("GBTC", "53", "53")])
    spot = Prices(BTC_USDT=[q("BTC-USDT", "59999", "60001"), q("BTC-USDT", "1", "1"), RuntimeError("down"),
                            Quote("BTC-USDT", None, None, D("61000"))])
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock.advance(seconds)

    out = [quote async for quote in nav_quotes(SPEC, trust, spot, clock, 2.0, count=4, sleep=sleep)]
    assert [(o.trust_price, o.spot_price, o.nav_per_share) for o in out] == [
        (D("53.0"), D("60000"), D("53.40000")), (D("53"), D("61000"), D("54.29000"))]
    assert [o.ts for o in out] == [start, start + timedelta(seconds=6)]  # the times of ticks 1 and 4
    assert all((o.pair, o.trust_symbol, o.spot_symbol) == ("GBTC-BTC", "GBTC", "BTC-USDT") for o in out)
    assert slept == [2.0, 2.0, 2.0]  # no sleep after the last tick


async def test_timestamps_strictly_increase_on_a_clock_that_stands_still() -> None:
    clock = ManualClock(datetime(2026, 11, 30, 14, 30, tzinfo=UTC))
    trust = Prices(GBTC=[q("GBTC", "53", "53")] * 3)
    spot = Prices(BTC_USDT=[q("BTC-USDT", "60000", "60000")] * 3)

    async def no_sleep(seconds: float) -> None:
        return None

    out = [x async for x in nav_quotes(SPEC, trust, spot, clock, 0.0, count=3, sleep=no_sleep)]
    assert len({o.ts for o in out}) == 3 and [o.ts for o in out] == sorted(o.ts for o in out)


async def test_prices_by_class_asks_the_venue_of_the_symbols_asset_class() -> None:
    equity = Prices(GBTC=[q("GBTC", "53", "53")])
    crypto = Prices(BTC_USDT=[q("BTC-USDT", "60000", "60000")])
    prices = PricesByClass(QuotesByAssetClass([(frozenset({AssetClass.EQUITY}), equity),
                                               (frozenset({AssetClass.CRYPTO}), crypto)]))
    assert (await prices.quote("GBTC")).mid == D(53)  # type: ignore[union-attr]
    assert (await prices.quote("btcusdt")).mid == D(60000)  # type: ignore[union-attr]
    assert (equity.asked, crypto.asked) == (["GBTC"], ["BTC-USDT"])
