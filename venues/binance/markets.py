"""The spot markets the simulator lists, with the filters ccxt and the venue check, and the
account it opens with."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from venues.binance.wire import JsonObj, fmt


@dataclass(frozen=True, slots=True)
class SymbolSpec:
    """One spot market with the three filters ccxt and the venue check."""

    symbol: str
    base: str
    quote: str
    tick_size: Decimal
    step_size: Decimal
    min_qty: Decimal
    max_qty: Decimal
    min_price: Decimal = Decimal("0.01")
    max_price: Decimal = Decimal("1000000")
    min_notional: Decimal = Decimal("5")
    max_notional: Decimal = Decimal("9000000")
    order_types: tuple[str, ...] = ("LIMIT", "MARKET", "STOP_LOSS", "STOP_LOSS_LIMIT")

    def info(self) -> JsonObj:
        return {
            "symbol": self.symbol,
            "status": "TRADING",
            "baseAsset": self.base,
            "baseAssetPrecision": 8,
            "quoteAsset": self.quote,
            "quotePrecision": 8,
            "quoteAssetPrecision": 8,
            "baseCommissionPrecision": 8,
            "quoteCommissionPrecision": 8,
            "orderTypes": list(self.order_types),
            "icebergAllowed": False,
            "ocoAllowed": False,
            "otoAllowed": False,
            "quoteOrderQtyMarketAllowed": False,
            "allowTrailingStop": False,
            "cancelReplaceAllowed": False,
            "isSpotTradingAllowed": True,
            "isMarginTradingAllowed": False,
            "filters": [
                {
                    "filterType": "PRICE_FILTER",
                    "minPrice": fmt(self.min_price),
                    "maxPrice": fmt(self.max_price),
                    "tickSize": fmt(self.tick_size),
                },
                {
                    "filterType": "LOT_SIZE",
                    "minQty": fmt(self.min_qty),
                    "maxQty": fmt(self.max_qty),
                    "stepSize": fmt(self.step_size),
                },
                {
                    "filterType": "NOTIONAL",
                    "minNotional": fmt(self.min_notional),
                    "applyMinToMarket": True,
                    "maxNotional": fmt(self.max_notional),
                    "applyMaxToMarket": False,
                    "avgPriceMins": 5,
                },
            ],
            "permissions": [],
            "permissionSets": [["SPOT"]],
            "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
            "allowedSelfTradePreventionModes": ["EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH"],
        }


DEFAULT_SYMBOLS: tuple[SymbolSpec, ...] = (
    SymbolSpec("BTCUSDT", "BTC", "USDT", tick_size=Decimal("0.01"), step_size=Decimal("0.00001"),
               min_qty=Decimal("0.00001"), max_qty=Decimal("9000")),
    SymbolSpec("ETHUSDT", "ETH", "USDT", tick_size=Decimal("0.01"), step_size=Decimal("0.0001"),
               min_qty=Decimal("0.0001"), max_qty=Decimal("9000")),
    SymbolSpec("SOLUSDT", "SOL", "USDT", tick_size=Decimal("0.01"), step_size=Decimal("0.001"),
               min_qty=Decimal("0.001"), max_qty=Decimal("90000")),
)
DEFAULT_START_PRICES: dict[str, Decimal] = {
    "BTCUSDT": Decimal("60000.00"),
    "ETHUSDT": Decimal("3000.00"),
    "SOLUSDT": Decimal("150.00"),
}
DEFAULT_BALANCES: dict[str, Decimal] = {
    "USDT": Decimal("1000000"),
    "BTC": Decimal("10"),
    "ETH": Decimal("100"),
    "SOL": Decimal("1000"),
}

