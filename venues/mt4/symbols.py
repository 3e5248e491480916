"""The FX symbols the MT4 bridge simulator quotes, with MT4's per-symbol trading properties.

The values are those of an IC Markets-style MT4 account as the bridge contract
(README "MT4 bridge contract") fixes them: digits and point, a spread and a stop level in points,
contract size 100000, lot step 0.01 between 0.01 and 100 lots.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal


@dataclass(frozen=True, slots=True)
class SymbolSpec:
    """One MT4 symbol (``MarketInfo``): what validation, pricing and the account arithmetic need.

    ``base``/``quote`` say how profit (in ``quote``) and margin (in ``base``) convert into the
    account currency.
    """

    symbol: str
    base: str
    quote: str
    digits: int
    start: Decimal
    #: bid-to-ask distance, in points
    spread_points: int = 10
    #: MODE_STOPLEVEL: the closest a stop-loss, take-profit or pending price may be to the market, in points
    stop_level_points: int = 30
    contract_size: Decimal = Decimal(100_000)
    lot_step: Decimal = Decimal("0.01")
    min_lot: Decimal = Decimal("0.01")
    max_lot: Decimal = Decimal(100)

    @property
    def point(self) -> Decimal:
        return Decimal(1).scaleb(-self.digits)

    @property
    def spread(self) -> Decimal:
        return self.spread_points * self.point

    @property
    def stop_level(self) -> Decimal:
        return self.stop_level_points * self.point


DEFAULT_SYMBOLS: tuple[SymbolSpec, ...] = (
    SymbolSpec("EURUSD", "EUR", "USD", digits=5, start=Decimal("1.08500")),
    SymbolSpec("GBPUSD", "GBP", "USD", digits=5, start=Decimal("1.27000")),
    SymbolSpec("USDJPY", "USD", "JPY", digits=3, start=Decimal("150.000")),
    SymbolSpec("AUDUSD", "AUD", "USD", digits=5, start=Decimal("0.66000")),
)
