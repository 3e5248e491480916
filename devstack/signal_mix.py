"""A reproducible mixed-asset signal stream for the demo, the pipeline tests and the benchmarks.

Seeded, so a failing run can be replayed exactly. Every asset class of the seed's routing table
appears, with market, limit and stop orders; prices follow a small random walk per symbol.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal

from schemas import OrderType, Side, Signal, TimeInForce

#: symbol -> (start price, quantity step, price tick); the seed's table plus one of each rule.
#: Prices are rounded to the tick as a real strategy must (venues reject off-tick prices). The
#: start prices are the venue simulators' own (venues/binance, venues/tws/contracts.py), so the
#: limits and stops below sit where they mean to against the embedded stack's markets; the
#: option is the one the TWS simulator lists (SPY 2027-01-15 500 call).
UNIVERSE: dict[str, tuple[Decimal, Decimal, Decimal]] = {
    "BTC-USDT": (Decimal("60000"), Decimal("0.01"), Decimal("0.01")),
    "ETH-USDT": (Decimal("3000"), Decimal("0.1"), Decimal("0.01")),
    "SOLUSDT": (Decimal("150"), Decimal("1"), Decimal("0.01")),
    "GBTC": (Decimal("75"), Decimal("10"), Decimal("0.01")),
    "SPY": (Decimal("600"), Decimal("5"), Decimal("0.01")),
    "AAPL": (Decimal("230"), Decimal("5"), Decimal("0.01")),
    "EURUSD": (Decimal("1.0850"), Decimal("10000"), Decimal("0.00001")),
    "GBPUSD": (Decimal("1.2700"), Decimal("10000"), Decimal("0.00001")),
    "ESZ6": (Decimal("6000"), Decimal("1"), Decimal("0.25")),
    "SPY270115C00500000": (Decimal("120"), Decimal("1"), Decimal("0.01")),
}


#: FX trades on MT4, which refuses a limit or stop on the wrong side of the market (130 "invalid
#: stops") and has no IOC for a resting order: FX strategies there send market orders, and so does
#: the mix (the random draws stay the same, so every other symbol's stream is unchanged)
MARKET_ONLY: frozenset[str] = frozenset({"EURUSD", "GBPUSD"})


@dataclass(frozen=True, slots=True)
class Malformed:
    key: bytes | None
    value: bytes
    why: str


MALFORMED: tuple[Malformed, ...] = (
    Malformed(b"BTC-USDT", b'{"signal_id": "bad-json", "symbol": "BTC-USDT", ', "bad JSON"),
    Malformed(b"SPY", b'{"signal_id":"bad-side","symbol":"SPY","side":"HOLD","quantity":"1"}', "unknown side"),
    Malformed(b"SPY", b'{"signal_id":"bad-qty","symbol":"SPY","side":"BUY","quantity":"-5"}', "negative quantity"),
    Malformed(b"EURUSD", b'{"signal_id":"bad-px","symbol":"EURUSD","side":"BUY","quantity":"1",'
              b'"order_type":"LIMIT","limit_price":"NaN"}', "NaN price"),
    Malformed(None, b'{"signal_id":"no-sym","side":"BUY","quantity":"1"}', "missing symbol"),
    Malformed(b"ZZZZZZZZ9", b'{"signal_id":"unknown-sym","symbol":"XQZW123456","side":"BUY","quantity":"1"}',
              "unknown symbol"),
    Malformed(b"bin", b"\xff\xfe\x00binary", "not UTF-8"),
)


def _on_tick(price: Decimal, tick: Decimal) -> Decimal:
    return (price / tick).quantize(Decimal(1)) * tick


class SignalMix:
    def __init__(self, seed: int = 7, prefix: str = "mix") -> None:
        self._rng = random.Random(seed)
        self._prefix = prefix
        self._prices = {s: p for s, (p, _, _) in UNIVERSE.items()}
        self._n = 0

    def _walk(self, symbol: str) -> Decimal:
        step = Decimal(str(round(self._rng.gauss(0, 0.001), 6)))
        price = self._prices[symbol] * (1 + step)
        self._prices[symbol] = price
        return _on_tick(price, UNIVERSE[symbol][2])

    def next(self) -> Signal:
        self._n += 1
        symbol = self._rng.choice(list(UNIVERSE))
        ref = self._walk(symbol)
        lot, tick = UNIVERSE[symbol][1] * self._rng.randint(1, 5), UNIVERSE[symbol][2]
        side = self._rng.choice((Side.BUY, Side.SELL))
        roll = self._rng.random()
        kwargs: dict[str, object] = {}
        if roll < 0.6:
            kind = OrderType.MARKET
        elif roll < 0.85:  # marketable limit: 1% through the mid
            kind = OrderType.LIMIT
            kwargs["limit_price"] = _on_tick(ref * (Decimal("1.01") if side is Side.BUY else Decimal("0.99")), tick)
        elif roll < 0.95:  # IOC limit 5% away: expires unfilled
            kind = OrderType.LIMIT
            kwargs["limit_price"] = _on_tick(ref * (Decimal("0.95") if side is Side.BUY else Decimal("1.05")), tick)
            kwargs["time_in_force"] = TimeInForce.IOC
        else:  # stop already through the market: triggers at once
            kind = OrderType.STOP
            kwargs["stop_price"] = _on_tick(ref * (Decimal("0.99") if side is Side.BUY else Decimal("1.01")), tick)
        if symbol in MARKET_ONLY:
            kind, kwargs = OrderType.MARKET, {}
        return Signal(
            signal_id=f"{self._prefix}-{self._n:06d}",
            strategy="demo-mix",
            symbol=symbol,
            side=side,
            quantity=lot,
            order_type=kind,
            reference_price=ref,
            **kwargs,
        )

    def take(self, n: int) -> list[Signal]:
        return [self.next() for _ in range(n)]

    def __iter__(self) -> Iterator[Signal]:
        while True:
            yield self.next()
