"""Recorded prices for paper fills in a replay: a ``MarketDataPort`` over a CSV price file.

Live, paper asks the market data of the venue that prices the order's asset class and falls back
to the signal's ``reference_price``. A replay follows the same rule with recorded data: the quote
of a symbol is its last price *at or before the pipeline clock's now* (recorded time), so a fill
never sees a price from its future.

The file (``--prices FILE``), one header line then one row per price, in either shape:

    ts,symbol,price                      ts,symbol,bid,ask
    2026-03-02T09:30:00Z,BTC-USDT,64950  2026-03-02T09:30:00Z,EURUSD,1.0841,1.0843

``ts`` is an ISO 8601 date-time with an offset or ``Z`` (or epoch seconds); prices are positive
decimals, read exactly (never through a float). ``price`` is a last/mid; with ``bid,ask`` the mid
is their average. Symbols are taken in their canonical spelling (``BTCUSDT`` is ``BTC-USDT``), as
orders are. Rows need not be sorted; for two rows of one symbol at one instant the later row wins.
Extra columns are ignored.
"""

from __future__ import annotations

import bisect
import csv
import hashlib
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path

from execution.clock import Clock
from execution.mapper import ExchangeMapper, UnknownSymbol
from execution.ports import Quote
from replay.window import EPOCH, parse_instant


class PriceFileError(ValueError):
    """The price file cannot be read as documented; the message names the line."""


@dataclass(frozen=True, slots=True)
class _Series:
    times: list[datetime]
    quotes: list[Quote]


class RecordedPrices:
    """Quotes by symbol and time; ``quote`` answers at the clock's now (``MarketDataPort``)."""

    def __init__(self, rows: dict[str, list[tuple[datetime, Quote]]], clock: Clock, *, digest: str = "") -> None:
        self._clock = clock
        self._series: dict[str, _Series] = {}
        for symbol, points in rows.items():
            ordered = sorted(points, key=lambda p: p[0])  # stable: of equal times the later row wins
            self._series[symbol] = _Series([t for t, _ in ordered], [q for _, q in ordered])
        self._ticks = sorted({t for s in self._series.values() for t in s.times})
        #: sha256 of the file's bytes (the run id and the report's meta name it)
        self.digest = digest

    @classmethod
    def from_csv(cls, path: Path, clock: Clock) -> RecordedPrices:
        data = path.read_bytes()
        rows: dict[str, list[tuple[datetime, Quote]]] = defaultdict(list)
        for symbol, ts, quote in parse_price_rows(data.decode("utf-8-sig").splitlines(), str(path)):
            rows[symbol].append((ts, quote))
        return cls(dict(rows), clock, digest=hashlib.sha256(data).hexdigest())

    @property
    def symbols(self) -> list[str]:
        return sorted(self._series)

    def __len__(self) -> int:
        return sum(len(s.times) for s in self._series.values())

    async def quote(self, symbol: str) -> Quote | None:
        """The last quote of ``symbol`` at or before the clock's now; None if there is none yet."""
        return self.quote_at(symbol, self._clock.now())

    def quote_at(self, symbol: str, when: datetime, *, inclusive: bool = True) -> Quote | None:
        """The last quote of ``symbol`` at (``inclusive``) or before ``when``."""
        series = self._series.get(symbol)
        if series is None:
            return None
        find = bisect.bisect_right if inclusive else bisect.bisect_left
        index = find(series.times, when) - 1
        return series.quotes[index] if index >= 0 else None

    def ticks(self, after: datetime, until: datetime, *, inclusive: bool = True) -> list[datetime]:
        """Instants with a price (any symbol) in ``(after, until]`` (``(after, until)`` if not ``inclusive``)."""
        low = bisect.bisect_right(self._ticks, after)
        high = (bisect.bisect_right if inclusive else bisect.bisect_left)(self._ticks, until)
        return self._ticks[low:high]


def parse_price_rows(lines: list[str], name: str = "prices") -> Iterator[tuple[str, datetime, Quote]]:
    """(canonical symbol, time, quote) of every row; ``PriceFileError`` names a bad line."""
    reader = csv.DictReader(lines)
    header = [h.strip().lower() for h in (reader.fieldnames or [])]
    reader.fieldnames = header
    if "ts" not in header or "symbol" not in header:
        raise PriceFileError(f"{name}: the header must name ts and symbol (then price, or bid and ask); got {header}")
    two_sided = "bid" in header and "ask" in header
    if not two_sided and "price" not in header:
        raise PriceFileError(f"{name}: the header needs a price column, or bid and ask; got {header}")
    mapper = ExchangeMapper()
    canonical: dict[str, str] = {}
    for line, row in enumerate(reader, start=2):
        if not any((v or "").strip() for v in row.values() if isinstance(v, str)):
            continue  # blank line
        where = f"{name} line {line}"
        raw_symbol = (row.get("symbol") or "").strip()
        if not raw_symbol:
            raise PriceFileError(f"{where}: no symbol")
        symbol = canonical.get(raw_symbol)
        if symbol is None:
            symbol = canonical[raw_symbol] = _canonical(mapper, raw_symbol)
        ts = _timestamp(row.get("ts") or "", where)
        if two_sided:
            bid, ask = _price(row.get("bid"), where, "bid"), _price(row.get("ask"), where, "ask")
            if bid > ask:
                raise PriceFileError(f"{where}: bid {bid} above ask {ask}")
            yield symbol, ts, Quote(symbol, bid, ask, None)
        else:
            yield symbol, ts, Quote(symbol, None, None, _price(row.get("price"), where, "price"))


def _canonical(mapper: ExchangeMapper, symbol: str) -> str:
    try:
        return mapper.canonical(symbol)
    except UnknownSymbol:
        return symbol.upper()  # no rule knows it: a signal naming its asset class may still match


def _timestamp(text: str, where: str) -> datetime:
    text = text.strip()
    try:
        return EPOCH + timedelta(microseconds=int(Decimal(text) * 1_000_000))  # epoch seconds
    except (InvalidOperation, ValueError, OverflowError):
        pass
    try:
        return parse_instant(text)
    except ValueError as exc:
        raise PriceFileError(f"{where}: ts {exc}") from None


def _price(text: str | None, where: str, column: str) -> Decimal:
    try:
        value = Decimal((text or "").strip())
    except InvalidOperation:
        raise PriceFileError(f"{where}: {column} {text!r} is not a decimal") from None
    if not value.is_finite() or value <= 0:
        raise PriceFileError(f"{where}: {column} {text!r} is not a positive finite price")
    return value
