"""A Binance spot REST simulator that real ccxt can talk to, for tests, demos and replay.

Two layers, split on purpose:

* ``BinanceExchangeSim`` is the venue itself with no I/O: markets and their filters, accounts
  with free/locked balances, a price path (seeded random walk or a replayed series), order
  matching with optional partial fills, and Binance's error codes raised as ``BinanceApiError``.
  Unit tests drive it directly and deterministically.
* ``BinanceSimulator`` is a thin aiohttp server in front of it that speaks the subset of the
  Binance spot REST API ccxt uses (``/api/v3/...``), with the venue's *transport* rules: API key
  header, HMAC-SHA256 signature, ``timestamp``/``recvWindow``, request-weight limits answered with
  429 + ``Retry-After``, and fault injection (latency, 5xx, dropped connections, lost responses).

Response shapes follow Binance's documented/recorded payloads (ccxt's
``ts/src/test/static/response/binance.json`` was the oracle); numbers are strings with 8 decimals,
ids and times are integers. Money is ``Decimal`` throughout.

Run standalone with ``python -m venues.binance --port 8010`` (the ``superintel venue binance``
command wraps ``main``).
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import hashlib
import hmac
import itertools
import logging
import math
import os
import random
import re
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, Decimal
from typing import Any

from aiohttp import web

log = logging.getLogger(__name__)

JsonObj = dict[str, Any]

ZERO = Decimal(0)
EIGHT_DP = Decimal("0.00000001")
MAX_RECV_WINDOW_MS = 60_000
CLIENT_ORDER_ID_RE = re.compile(r"^[a-zA-Z0-9\-_]{1,36}$")
NUMBER_RE = re.compile(r"^([0-9]{1,20})(\.[0-9]{1,20})?$")

INTERVAL_MS: dict[str, int] = {
    "1s": 1_000,
    "1m": 60_000,
    "3m": 180_000,
    "5m": 300_000,
    "15m": 900_000,
    "30m": 1_800_000,
    "1h": 3_600_000,
    "2h": 7_200_000,
    "4h": 14_400_000,
    "6h": 21_600_000,
    "8h": 28_800_000,
    "12h": 43_200_000,
    "1d": 86_400_000,
    "3d": 259_200_000,
    "1w": 604_800_000,
}


class BinanceApiError(Exception):
    """A Binance error answer: HTTP status plus the ``{"code", "msg"}`` body."""

    def __init__(self, status: int, code: int, msg: str) -> None:
        super().__init__(f"{code}: {msg}")
        self.status = status
        self.code = code
        self.msg = msg

    def body(self) -> JsonObj:
        return {"code": self.code, "msg": self.msg}


def _fmt(value: Decimal) -> str:
    """Binance renders every price/quantity as a string with 8 decimals."""
    return f"{value.quantize(EIGHT_DP):f}"


def _floor_to(value: Decimal, step: Decimal) -> Decimal:
    return (value / step).to_integral_value(rounding=ROUND_DOWN) * step


def _mandatory(params: Mapping[str, str], name: str) -> str:
    value = params.get(name)
    if value is None or value == "":
        raise BinanceApiError(
            400, -1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed."
        )
    return value


def _decimal_param(params: Mapping[str, str], name: str, *, required: bool = True) -> Decimal | None:
    raw = params.get(name)
    if raw is None or raw == "":
        if required:
            _mandatory(params, name)
        return None
    if not NUMBER_RE.match(raw):
        raise BinanceApiError(
            400,
            -1100,
            f"Illegal characters found in parameter '{name}'; "
            "legal range is '^([0-9]{1,20})(\\.[0-9]{1,20})?$'.",
        )
    value = Decimal(raw)
    exponent = value.normalize().as_tuple().exponent
    if isinstance(exponent, int) and exponent < -8:
        raise BinanceApiError(400, -1111, f"Parameter '{name}' has too much precision.")
    return value


def _int_param(params: Mapping[str, str], name: str, default: int | None = None) -> int | None:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise BinanceApiError(
            400, -1100, f"Illegal characters found in parameter '{name}'; legal range is '^[0-9]{{1,20}}$'."
        ) from None


# ---------------------------------------------------------------------------------------------
# Markets, price path, orders
# ---------------------------------------------------------------------------------------------


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
                    "minPrice": _fmt(self.min_price),
                    "maxPrice": _fmt(self.max_price),
                    "tickSize": _fmt(self.tick_size),
                },
                {
                    "filterType": "LOT_SIZE",
                    "minQty": _fmt(self.min_qty),
                    "maxQty": _fmt(self.max_qty),
                    "stepSize": _fmt(self.step_size),
                },
                {
                    "filterType": "NOTIONAL",
                    "minNotional": _fmt(self.min_notional),
                    "applyMinToMarket": True,
                    "maxNotional": _fmt(self.max_notional),
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


@dataclass(frozen=True, slots=True)
class PricePath:
    """How prices move on each tick: a seeded random walk, or a replayed series per symbol.

    ``volatility`` is the standard deviation of the relative move per tick. A replayed series
    is consumed one element per tick and then holds its last value, so a replay is exact.
    """

    seed: int = 7
    start: Mapping[str, Decimal] = field(default_factory=lambda: dict(DEFAULT_START_PRICES))
    volatility: Decimal = Decimal("0.0005")
    series: Mapping[str, Sequence[Decimal]] | None = None


@dataclass(slots=True)
class _Trade:
    id: int
    order_id: int
    order_list_id: int
    symbol: str
    price: Decimal
    qty: Decimal
    commission: Decimal
    commission_asset: str
    time: int
    is_buyer: bool
    is_maker: bool

    def fill(self) -> JsonObj:
        return {
            "price": _fmt(self.price),
            "qty": _fmt(self.qty),
            "commission": _fmt(self.commission),
            "commissionAsset": self.commission_asset,
            "tradeId": self.id,
        }

    def my_trade(self) -> JsonObj:
        return {
            "symbol": self.symbol,
            "id": self.id,
            "orderId": self.order_id,
            "orderListId": self.order_list_id,
            "price": _fmt(self.price),
            "qty": _fmt(self.qty),
            "quoteQty": _fmt(self.price * self.qty),
            "commission": _fmt(self.commission),
            "commissionAsset": self.commission_asset,
            "time": self.time,
            "isBuyer": self.is_buyer,
            "isMaker": self.is_maker,
            "isBestMatch": True,
        }


@dataclass(slots=True)
class _Order:
    order_id: int
    client_order_id: str
    symbol: str
    side: str
    type: str
    time_in_force: str
    price: Decimal
    stop_price: Decimal
    orig_qty: Decimal
    time: int
    locked_asset: str
    locked: Decimal = ZERO
    lock_per_unit: Decimal = ZERO
    executed_qty: Decimal = ZERO
    cum_quote: Decimal = ZERO
    status: str = "NEW"
    update_time: int = 0
    is_working: bool = True
    working_time: int = -1
    trades: list[_Trade] = field(default_factory=list)

    @property
    def remaining(self) -> Decimal:
        return self.orig_qty - self.executed_qty

    @property
    def is_open(self) -> bool:
        return self.status in ("NEW", "PARTIALLY_FILLED")

    def base_fields(self) -> JsonObj:
        return {
            "symbol": self.symbol,
            "orderId": self.order_id,
            "orderListId": -1,
            "clientOrderId": self.client_order_id,
            "price": _fmt(self.price),
            "origQty": _fmt(self.orig_qty),
            "executedQty": _fmt(self.executed_qty),
            "origQuoteOrderQty": _fmt(ZERO),
            "cummulativeQuoteQty": _fmt(self.cum_quote),
            "status": self.status,
            "timeInForce": self.time_in_force,
            "type": self.type,
            "side": self.side,
        }

    def query_view(self) -> JsonObj:
        """Shape of ``GET /api/v3/order`` and ``/openOrders`` rows."""
        return {
            **self.base_fields(),
            "stopPrice": _fmt(self.stop_price),
            "icebergQty": _fmt(ZERO),
            "time": self.time,
            "updateTime": self.update_time,
            "isWorking": self.is_working,
            "workingTime": self.working_time,
            "selfTradePreventionMode": "EXPIRE_MAKER",
        }


# ---------------------------------------------------------------------------------------------
# The pure engine
# ---------------------------------------------------------------------------------------------


class BinanceExchangeSim:
    """The simulated venue: markets, balances, price path and matching, with no I/O.

    Methods take Binance's request parameters as strings (exactly what arrives over HTTP) and
    return the JSON-ready response, or raise ``BinanceApiError`` with Binance's code. Liquidity is
    unlimited at the touch, except that ``partial_fill_steps`` > 1 splits every fill into that many
    chunks: a resting limit order fills one chunk per tick while the price crosses it, a
    marketable GTC limit fills one chunk on arrival and rests with the remainder, an IOC keeps one
    chunk and expires the rest, and a FOK expires. Market orders always fill in full.
    """

    def __init__(
        self,
        *,
        symbols: Sequence[SymbolSpec] = DEFAULT_SYMBOLS,
        balances: Mapping[str, Decimal] | None = None,
        price_path: PricePath | None = None,
        partial_fill_steps: int = 1,
        commission_rate: Decimal = Decimal("0.001"),
        spread_bps: Decimal = Decimal("2"),
        clock: Callable[[], float] = time.time,
    ) -> None:
        if partial_fill_steps < 1:
            raise ValueError("partial_fill_steps must be >= 1")
        self.symbols: dict[str, SymbolSpec] = {s.symbol: s for s in symbols}
        self.price_path = price_path or PricePath()
        self.partial_fill_steps = partial_fill_steps
        self.commission_rate = commission_rate
        self.spread_bps = spread_bps
        #: added to the wall clock: a negative offset makes the server lag (-1021 tests)
        self.clock_offset_ms = 0
        self._clock = clock
        self._rng = random.Random(self.price_path.seed)
        self._price: dict[str, Decimal] = {}
        self._series_pos: dict[str, int] = {}
        self._held: set[str] = set()
        for sym, spec in self.symbols.items():
            start = self.price_path.start.get(sym) or DEFAULT_START_PRICES.get(sym) or Decimal(100)
            series = (self.price_path.series or {}).get(sym)
            if series:
                start = Decimal(series[0])
                self._series_pos[sym] = 1
            self._price[sym] = _floor_to(start, spec.tick_size)
        self._free: dict[str, Decimal] = {}
        self._locked: dict[str, Decimal] = {}
        for asset, amount in (balances if balances is not None else DEFAULT_BALANCES).items():
            self._free[asset] = Decimal(amount)
        self._orders: dict[int, _Order] = {}
        self._by_client_id: dict[str, list[int]] = {}
        self._trades: dict[str, list[_Trade]] = {s: [] for s in self.symbols}
        #: (ts_ms, price) per symbol, appended on every price change, for klines and 24h stats
        self._history: dict[str, list[tuple[int, Decimal]]] = {}
        self._start_ms = self.now_ms()
        for sym, price in self._price.items():
            self._history[sym] = [(self._start_ms, price)]
        self._order_ids = itertools.count(1_000_001)
        self._trade_ids = itertools.count(5_000_001)
        self._update_ids = itertools.count(100_000)

    # -- clock and prices ----------------------------------------------------------------------

    def now_ms(self) -> int:
        return int(self._clock() * 1000) + self.clock_offset_ms

    def spec(self, symbol: str | None) -> SymbolSpec:
        if not symbol:
            raise BinanceApiError(
                400, -1102, "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed."
            )
        spec = self.symbols.get(symbol)
        if spec is None:
            raise BinanceApiError(400, -1121, "Invalid symbol.")
        return spec

    def price(self, symbol: str) -> Decimal:
        return self._price[self.spec(symbol).symbol]

    def bid_ask(self, symbol: str) -> tuple[Decimal, Decimal]:
        spec = self.spec(symbol)
        mid = self._price[symbol]
        half = max(spec.tick_size, _floor_to(mid * self.spread_bps / Decimal(20000), spec.tick_size))
        return max(spec.tick_size, mid - half), mid + half

    def set_price(self, symbol: str, price: Decimal, *, hold: bool = True) -> None:
        """Move a market to ``price`` now and match resting orders against it.

        With ``hold`` (the default) the random walk leaves this symbol alone afterwards, so a test
        can rely on the price it set; ``release(symbol)`` hands it back to the price path.
        """
        spec = self.spec(symbol)
        self._price[symbol] = _floor_to(Decimal(price), spec.tick_size)
        if hold:
            self._held.add(symbol)
        self._record(symbol)
        self._match(symbol)

    def release(self, symbol: str) -> None:
        self._held.discard(symbol)

    def tick(self) -> None:
        """Advance every un-held price one step along the path, then match resting orders."""
        for sym, spec in self.symbols.items():
            if sym not in self._held:
                self._price[sym] = self._next_price(sym, spec)
                self._record(sym)
            self._match(sym)

    def _next_price(self, sym: str, spec: SymbolSpec) -> Decimal:
        series = (self.price_path.series or {}).get(sym)
        if series:
            pos = self._series_pos.get(sym, 0)
            self._series_pos[sym] = pos + 1
            value = Decimal(series[min(pos, len(series) - 1)])
        else:
            move = Decimal(repr(self._rng.gauss(0.0, 1.0))) * self.price_path.volatility
            value = self._price[sym] * (1 + move)
        return max(spec.tick_size, _floor_to(value, spec.tick_size))

    def _record(self, sym: str) -> None:
        history = self._history[sym]
        history.append((self.now_ms(), self._price[sym]))
        if len(history) > 200_000:
            del history[: len(history) - 100_000]

    # -- balances ------------------------------------------------------------------------------

    def balance(self, asset: str) -> tuple[Decimal, Decimal]:
        """(free, locked) of ``asset``."""
        return self._free.get(asset, ZERO), self._locked.get(asset, ZERO)

    def set_balance(self, asset: str, free: Decimal) -> None:
        self._free[asset] = Decimal(free)

    def _lock(self, order: _Order, amount: Decimal) -> None:
        asset = order.locked_asset
        if self._free.get(asset, ZERO) < amount:
            raise BinanceApiError(400, -2010, "Account has insufficient balance for requested action.")
        self._free[asset] -= amount
        self._locked[asset] = self._locked.get(asset, ZERO) + amount
        order.locked = amount
        order.lock_per_unit = amount / order.orig_qty

    def _unlock(self, order: _Order, amount: Decimal) -> None:
        amount = min(amount, order.locked)
        if amount <= 0:
            return
        asset = order.locked_asset
        order.locked -= amount
        self._locked[asset] = self._locked.get(asset, ZERO) - amount
        self._free[asset] = self._free.get(asset, ZERO) + amount

    # -- orders --------------------------------------------------------------------------------

    def new_order(self, params: Mapping[str, str]) -> JsonObj:
        """``POST /api/v3/order``."""
        spec = self.spec(params.get("symbol"))
        side = _mandatory(params, "side")
        if side not in ("BUY", "SELL"):
            raise BinanceApiError(400, -1117, "Invalid side.")
        order_type = _mandatory(params, "type")
        if order_type not in ("LIMIT", "MARKET", "STOP_LOSS", "STOP_LOSS_LIMIT", "TAKE_PROFIT",
                              "TAKE_PROFIT_LIMIT", "LIMIT_MAKER"):
            raise BinanceApiError(400, -1116, "Invalid orderType.")
        if order_type not in spec.order_types:
            raise BinanceApiError(400, -1013, "Unsupported order combination.")
        quantity = _decimal_param(params, "quantity")
        assert quantity is not None
        is_limit = order_type in ("LIMIT", "STOP_LOSS_LIMIT")
        is_stop = order_type in ("STOP_LOSS", "STOP_LOSS_LIMIT")
        price = _decimal_param(params, "price", required=is_limit)
        if not is_limit and price is not None:
            raise BinanceApiError(400, -1106, "Parameter 'price' sent when not required.")
        stop_price = _decimal_param(params, "stopPrice", required=is_stop)
        tif = params.get("timeInForce") or ""
        if is_limit:
            tif = _mandatory(params, "timeInForce")
            if tif not in ("GTC", "IOC", "FOK"):
                raise BinanceApiError(400, -1115, "Invalid timeInForce.")
        elif tif:
            raise BinanceApiError(400, -1106, "Parameter 'timeInForce' sent when not required.")
        client_id = params.get("newClientOrderId") or f"sim{next(self._update_ids)}"
        if not CLIENT_ORDER_ID_RE.match(client_id):
            raise BinanceApiError(
                400, -1100,
                "Illegal characters found in parameter 'newClientOrderId'; legal range is "
                "'^[a-zA-Z0-9-_]{1,36}$'.",
            )
        if any(self._orders[i].is_open for i in self._by_client_id.get(client_id, [])):
            raise BinanceApiError(400, -2010, "Duplicate order sent.")

        bid, ask = self.bid_ask(spec.symbol)
        self._check_filters(spec, quantity, price, stop_price, reference=ask if side == "BUY" else bid)
        if is_stop:
            assert stop_price is not None
            if self._stop_triggered(side, stop_price, self._price[spec.symbol]):
                raise BinanceApiError(400, -2010, "Stop price would trigger immediately.")

        now = self.now_ms()
        order = _Order(
            order_id=next(self._order_ids),
            client_order_id=client_id,
            symbol=spec.symbol,
            side=side,
            type=order_type,
            time_in_force=tif or "GTC",
            price=price or ZERO,
            stop_price=stop_price or ZERO,
            orig_qty=quantity,
            time=now,
            update_time=now,
            working_time=now if not is_stop else -1,
            is_working=not is_stop,
            locked_asset=spec.quote if side == "BUY" else spec.base,
        )
        # Funds: limit and stop orders reserve what they may spend; a market order must be coverable now.
        if side == "BUY":
            per_unit = price if price is not None else (stop_price if stop_price is not None else ask)
            required = quantity * per_unit
        else:
            required = quantity
        if order_type == "MARKET":
            if self._free.get(order.locked_asset, ZERO) < required:
                raise BinanceApiError(400, -2010, "Account has insufficient balance for requested action.")
        else:
            self._lock(order, required)

        self._orders[order.order_id] = order
        self._by_client_id.setdefault(client_id, []).append(order.order_id)

        if order_type == "MARKET":
            self._fill_market(order)
        elif order_type == "LIMIT":
            self._arrive_limit(order)

        resp_type = params.get("newOrderRespType") or ("FULL" if order_type in ("LIMIT", "MARKET") else "ACK")
        ack: JsonObj = {
            "symbol": order.symbol,
            "orderId": order.order_id,
            "orderListId": -1,
            "clientOrderId": order.client_order_id,
            "transactTime": now,
        }
        if resp_type == "ACK":
            return ack
        result: JsonObj = {
            **order.base_fields(),
            "transactTime": now,
            "workingTime": order.working_time,
            "selfTradePreventionMode": "EXPIRE_MAKER",
        }
        if order.stop_price:
            result["stopPrice"] = _fmt(order.stop_price)
        if resp_type == "FULL":
            result["fills"] = [t.fill() for t in order.trades]
        return result

    def _check_filters(
        self,
        spec: SymbolSpec,
        quantity: Decimal,
        price: Decimal | None,
        stop_price: Decimal | None,
        *,
        reference: Decimal,
    ) -> None:
        for p in (price, stop_price):
            if p is not None and (p < spec.min_price or p > spec.max_price or p % spec.tick_size != 0):
                raise BinanceApiError(400, -1013, "Filter failure: PRICE_FILTER")
        if quantity <= 0:
            raise BinanceApiError(400, -1013, "Invalid quantity.")
        if quantity < spec.min_qty or quantity > spec.max_qty or quantity % spec.step_size != 0:
            raise BinanceApiError(400, -1013, "Filter failure: LOT_SIZE")
        notional = quantity * (price if price is not None else reference)
        if notional < spec.min_notional or (price is not None and notional > spec.max_notional):
            raise BinanceApiError(400, -1013, "Filter failure: NOTIONAL")

    @staticmethod
    def _stop_triggered(side: str, stop_price: Decimal, last: Decimal) -> bool:
        # Binance spot STOP_LOSS: a SELL stop fires when the price falls to it, a BUY stop when it rises.
        return last <= stop_price if side == "SELL" else last >= stop_price

    def _chunk(self, order: _Order) -> Decimal:
        step = self.symbols[order.symbol].step_size
        chunk = max(step, _floor_to(order.orig_qty / self.partial_fill_steps, step))
        if order.remaining - chunk < chunk:  # the last step takes the lot-size remainder too
            return order.remaining
        return chunk

    def _execute(self, order: _Order, qty: Decimal, price: Decimal, *, maker: bool) -> None:
        """Book one trade: move balances, charge commission in the received asset, update the order."""
        spec = self.symbols[order.symbol]
        now = self.now_ms()
        quote_qty = qty * price
        if order.side == "BUY":
            commission = (qty * self.commission_rate).quantize(EIGHT_DP)
            commission_asset = spec.base
            self._spend(order, spec.quote, quote_qty, qty)
            self._free[spec.base] = self._free.get(spec.base, ZERO) + qty - commission
        else:
            commission = (quote_qty * self.commission_rate).quantize(EIGHT_DP)
            commission_asset = spec.quote
            self._spend(order, spec.base, qty, qty)
            self._free[spec.quote] = self._free.get(spec.quote, ZERO) + quote_qty - commission
        trade = _Trade(
            id=next(self._trade_ids),
            order_id=order.order_id,
            order_list_id=-1,
            symbol=order.symbol,
            price=price,
            qty=qty,
            commission=commission,
            commission_asset=commission_asset,
            time=now,
            is_buyer=order.side == "BUY",
            is_maker=maker,
        )
        order.trades.append(trade)
        self._trades[order.symbol].append(trade)
        order.executed_qty += qty
        order.cum_quote += quote_qty
        order.update_time = now
        order.status = "FILLED" if order.remaining == 0 else "PARTIALLY_FILLED"
        if order.status == "FILLED":
            self._unlock(order, order.locked)

    def _spend(self, order: _Order, asset: str, amount: Decimal, qty: Decimal) -> None:
        """Pay ``amount`` of ``asset``: first from the order's reservation, then from free balance."""
        if order.locked > 0:
            release = min(order.locked, qty * order.lock_per_unit)
            order.locked -= release
            self._locked[asset] = self._locked.get(asset, ZERO) - release
            self._free[asset] = self._free.get(asset, ZERO) + release
        self._free[asset] = self._free.get(asset, ZERO) - amount

    def _fill_market(self, order: _Order) -> None:
        bid, ask = self.bid_ask(order.symbol)
        price = ask if order.side == "BUY" else bid
        while order.remaining > 0:
            self._execute(order, self._chunk(order), price, maker=False)

    def _crosses(self, order: _Order) -> bool:
        bid, ask = self.bid_ask(order.symbol)
        return ask <= order.price if order.side == "BUY" else bid >= order.price

    def _arrive_limit(self, order: _Order) -> None:
        """A new (or just-triggered) limit order: take what is marketable, then rest or expire."""
        if self._crosses(order):
            bid, ask = self.bid_ask(order.symbol)
            touch = ask if order.side == "BUY" else bid
            if order.time_in_force == "FOK" and self.partial_fill_steps > 1:
                self._finish(order, "EXPIRED")
                return
            if order.time_in_force == "FOK":
                self._execute(order, order.remaining, touch, maker=False)
                return
            self._execute(order, self._chunk(order), touch, maker=False)
        if order.remaining > 0 and order.time_in_force in ("IOC", "FOK"):
            self._finish(order, "EXPIRED")

    def _finish(self, order: _Order, status: str) -> None:
        order.status = status
        order.update_time = self.now_ms()
        self._unlock(order, order.locked)

    def _match(self, symbol: str) -> None:
        last = self._price[symbol]
        for order in [o for o in self._orders.values() if o.symbol == symbol and o.is_open]:
            if not order.is_working:
                if not self._stop_triggered(order.side, order.stop_price, last):
                    continue
                order.is_working = True
                order.working_time = order.update_time = self.now_ms()
                if order.type == "STOP_LOSS":
                    self._fill_market(order)
                    continue
                self._arrive_limit(order)
                continue
            if order.type in ("LIMIT", "STOP_LOSS_LIMIT") and self._crosses(order):
                self._execute(order, self._chunk(order), order.price, maker=True)

    def _find(self, params: Mapping[str, str], *, unknown_code: int, unknown_msg: str) -> _Order:
        spec = self.spec(params.get("symbol"))
        order_id = _int_param(params, "orderId")
        client_id = params.get("origClientOrderId") or None
        if order_id is None and client_id is None:
            raise BinanceApiError(
                400, -1102, "Param 'origClientOrderId' or 'orderId' must be sent, but both were empty/null!"
            )
        order: _Order | None = None
        if order_id is not None:
            order = self._orders.get(order_id)
            if order is not None and client_id is not None and order.client_order_id != client_id:
                order = None
        else:
            assert client_id is not None
            ids = self._by_client_id.get(client_id, [])
            order = self._orders[ids[-1]] if ids else None
        if order is None or order.symbol != spec.symbol:
            raise BinanceApiError(400, unknown_code, unknown_msg)
        return order

    def orders_for(self, client_order_id: str) -> list[JsonObj]:
        """Every order ever placed with ``client_order_id`` (tests assert "never placed twice")."""
        return [self._orders[i].query_view() for i in self._by_client_id.get(client_order_id, [])]

    def get_order(self, params: Mapping[str, str]) -> JsonObj:
        """``GET /api/v3/order`` by ``orderId`` or ``origClientOrderId``."""
        return self._find(params, unknown_code=-2013, unknown_msg="Order does not exist.").query_view()

    def cancel_order(self, params: Mapping[str, str]) -> JsonObj:
        """``DELETE /api/v3/order``: only an open order can be cancelled (-2011 otherwise)."""
        order = self._find(params, unknown_code=-2011, unknown_msg="Unknown order sent.")
        if not order.is_open:
            raise BinanceApiError(400, -2011, "Unknown order sent.")
        self._finish(order, "CANCELED")
        return {
            "symbol": order.symbol,
            "origClientOrderId": order.client_order_id,
            "orderId": order.order_id,
            "orderListId": -1,
            "clientOrderId": params.get("newClientOrderId") or f"cancel{next(self._update_ids)}",
            "transactTime": order.update_time,
            **{k: v for k, v in order.base_fields().items() if k not in ("symbol", "orderId", "orderListId",
                                                                         "clientOrderId")},
            "stopPrice": _fmt(order.stop_price),
            "selfTradePreventionMode": "EXPIRE_MAKER",
        }

    def open_orders(self, params: Mapping[str, str]) -> list[JsonObj]:
        symbol = params.get("symbol") or None
        if symbol is not None:
            self.spec(symbol)
        return [
            o.query_view()
            for o in self._orders.values()
            if o.is_open and (symbol is None or o.symbol == symbol)
        ]

    def my_trades(self, params: Mapping[str, str]) -> list[JsonObj]:
        spec = self.spec(params.get("symbol"))
        order_id = _int_param(params, "orderId")
        limit = min(_int_param(params, "limit", 500) or 500, 1000)
        trades = [t for t in self._trades[spec.symbol] if order_id is None or t.order_id == order_id]
        return [t.my_trade() for t in trades[-limit:]]

    def account(self) -> JsonObj:
        assets = sorted(set(self._free) | set(self._locked))
        return {
            "makerCommission": 10,
            "takerCommission": 10,
            "buyerCommission": 0,
            "sellerCommission": 0,
            "commissionRates": {
                "maker": _fmt(self.commission_rate),
                "taker": _fmt(self.commission_rate),
                "buyer": _fmt(ZERO),
                "seller": _fmt(ZERO),
            },
            "canTrade": True,
            "canWithdraw": False,
            "canDeposit": False,
            "brokered": False,
            "requireSelfTradePrevention": False,
            "preventSor": False,
            "updateTime": self.now_ms(),
            "accountType": "SPOT",
            "balances": [
                {"asset": a, "free": _fmt(self._free.get(a, ZERO)), "locked": _fmt(self._locked.get(a, ZERO))}
                for a in assets
            ],
            "permissions": ["SPOT"],
            "uid": 354937868,
        }

    # -- market data ---------------------------------------------------------------------------

    def exchange_info(self, params: Mapping[str, str]) -> JsonObj:
        symbol = params.get("symbol") or None
        specs = [self.spec(symbol)] if symbol else list(self.symbols.values())
        return {
            "timezone": "UTC",
            "serverTime": self.now_ms(),
            "rateLimits": [
                {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 6000},
                {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 100},
            ],
            "exchangeFilters": [],
            "symbols": [s.info() for s in specs],
        }

    def book_ticker(self, symbol: str) -> JsonObj:
        bid, ask = self.bid_ask(symbol)
        return {
            "symbol": symbol,
            "bidPrice": _fmt(bid),
            "bidQty": _fmt(self._depth_qty(symbol, 0)),
            "askPrice": _fmt(ask),
            "askQty": _fmt(self._depth_qty(symbol, 0)),
        }

    def _depth_qty(self, symbol: str, level: int) -> Decimal:
        spec = self.symbols[symbol]
        return max(spec.min_qty, _floor_to(Decimal(1000) / self._price[symbol] * (level + 1), spec.step_size))

    def depth(self, symbol: str, limit: int) -> JsonObj:
        spec = self.spec(symbol)
        if limit < 1 or limit > 5000:
            raise BinanceApiError(400, -1100, "Illegal characters found in parameter 'limit'.")
        bid, ask = self.bid_ask(symbol)
        levels = min(limit, 100)
        bids = [
            [_fmt(bid - spec.tick_size * i), _fmt(self._depth_qty(symbol, i))]
            for i in range(levels)
            if bid - spec.tick_size * i > 0
        ]
        asks = [[_fmt(ask + spec.tick_size * i), _fmt(self._depth_qty(symbol, i))] for i in range(levels)]
        return {"lastUpdateId": next(self._update_ids), "bids": bids, "asks": asks}

    def _price_at(self, symbol: str, ts: int) -> Decimal:
        """The last price at or before ``ts`` (the first known price if ``ts`` precedes history)."""
        history = self._history[symbol]
        idx = bisect.bisect_right(history, ts, key=lambda point: point[0])
        return history[max(0, idx - 1)][1]

    def klines(self, params: Mapping[str, str]) -> list[list[Any]]:
        """Candles built from the recorded price path and the simulator's own trades."""
        spec = self.spec(params.get("symbol"))
        interval = _mandatory(params, "interval")
        step = INTERVAL_MS.get(interval)
        if step is None:
            raise BinanceApiError(400, -1120, "Invalid interval.")
        limit = max(1, min(_int_param(params, "limit", 500) or 500, 1000))
        now = self.now_ms()
        start = _int_param(params, "startTime")
        end = _int_param(params, "endTime")
        if start is not None:
            first = start // step * step
        else:
            last_open = (min(end, now) if end is not None else now) // step * step
            first = last_open - (limit - 1) * step
        history = self._history[spec.symbol]
        trades = self._trades[spec.symbol]
        rows: list[list[Any]] = []
        for i in range(limit):
            open_time = first + i * step
            if open_time > now or (end is not None and open_time > end):
                break
            close_time = open_time + step - 1
            o = self._price_at(spec.symbol, open_time - 1)
            lo_idx = bisect.bisect_left(history, open_time, key=lambda point: point[0])
            hi_idx = bisect.bisect_right(history, close_time, key=lambda point: point[0])
            inside = [p for _, p in history[lo_idx:hi_idx]]
            if open_time <= history[0][0] <= close_time:
                o = history[0][1]
            prices = [o, *inside]
            bucket = [t for t in trades if open_time <= t.time <= close_time]
            volume = sum((t.qty for t in bucket), ZERO)
            quote_volume = sum((t.qty * t.price for t in bucket), ZERO)
            taker_buy = [t for t in bucket if t.is_buyer and not t.is_maker]
            rows.append([
                open_time,
                _fmt(o),
                _fmt(max(prices)),
                _fmt(min(prices)),
                _fmt(prices[-1]),
                _fmt(volume),
                close_time,
                _fmt(quote_volume),
                len(bucket),
                _fmt(sum((t.qty for t in taker_buy), ZERO)),
                _fmt(sum((t.qty * t.price for t in taker_buy), ZERO)),
                "0",
            ])
        return rows

    def ticker_24hr(self, symbol: str) -> JsonObj:
        spec = self.spec(symbol)
        now = self.now_ms()
        since = now - 86_400_000
        history = self._history[symbol]
        open_price = self._price_at(symbol, since)
        window = [p for ts, p in history if ts >= since] or [open_price]
        last = self._price[symbol]
        trades = [t for t in self._trades[symbol] if t.time >= since]
        volume = sum((t.qty for t in trades), ZERO)
        quote_volume = sum((t.qty * t.price for t in trades), ZERO)
        bid, ask = self.bid_ask(symbol)
        change = last - open_price
        return {
            "symbol": spec.symbol,
            "priceChange": _fmt(change),
            "priceChangePercent": f"{(change / open_price * 100).quantize(Decimal('0.001'))}",
            "weightedAvgPrice": _fmt(quote_volume / volume if volume else last),
            "prevClosePrice": _fmt(open_price),
            "lastPrice": _fmt(last),
            "lastQty": _fmt(trades[-1].qty if trades else ZERO),
            "bidPrice": _fmt(bid),
            "bidQty": _fmt(self._depth_qty(symbol, 0)),
            "askPrice": _fmt(ask),
            "askQty": _fmt(self._depth_qty(symbol, 0)),
            "openPrice": _fmt(open_price),
            "highPrice": _fmt(max(window)),
            "lowPrice": _fmt(min(window)),
            "volume": _fmt(volume),
            "quoteVolume": _fmt(quote_volume),
            "openTime": since,
            "closeTime": now,
            "firstId": trades[0].id if trades else -1,
            "lastId": trades[-1].id if trades else -1,
            "count": len(trades),
        }


# ---------------------------------------------------------------------------------------------
# The HTTP layer
# ---------------------------------------------------------------------------------------------


@dataclass(slots=True)
class Faults:
    """Transport faults to inject, mutable while the simulator runs.

    ``fail_next`` answers the next N matching requests with HTTP 503 before they reach the
    venue; ``drop_next`` closes the connection without processing; ``lose_response_next``
    *processes* the request and then drops the connection, the nasty case where an order exists
    but the client never heard about it. ``match`` limits the counters to requests whose
    ``"METHOD /path"`` starts with it (e.g. ``"POST /api/v3/order"``); latency applies to all.
    aiohttp clients (ccxt among them) resend an idempotent GET/DELETE once after a dropped
    connection, so it takes ``drop_next=2`` to make one GET fail; a POST fails on the first.
    """

    latency: float = 0.0
    fail_next: int = 0
    drop_next: int = 0
    lose_response_next: int = 0
    match: str | None = None

    def applies(self, method: str, path: str) -> bool:
        return self.match is None or f"{method} {path}".startswith(self.match)


@dataclass(slots=True)
class SimStats:
    requests: int = 0
    throttled: int = 0
    auth_failures: int = 0
    faults_injected: int = 0
    by_endpoint: dict[str, int] = field(default_factory=dict)
    #: Binance error code -> how many times it was answered
    errors: dict[int, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Endpoint:
    handler: Callable[[BinanceExchangeSim, Mapping[str, str]], Any]
    weight: Callable[[Mapping[str, str]], int]
    signed: bool = False


def _depth_weight(params: Mapping[str, str]) -> int:
    try:
        limit = int(params.get("limit") or 100)
    except ValueError:
        return 5
    return 5 if limit <= 100 else 25 if limit <= 500 else 50 if limit <= 1000 else 250


def _const(weight: int) -> Callable[[Mapping[str, str]], int]:
    return lambda _params: weight


def _by_symbol(with_symbol: int, without: int) -> Callable[[Mapping[str, str]], int]:
    return lambda params: with_symbol if params.get("symbol") else without


def _ticker(sim: BinanceExchangeSim, p: Mapping[str, str]) -> Any:
    if p.get("symbol"):
        return sim.ticker_24hr(p["symbol"])
    return [sim.ticker_24hr(s) for s in sim.symbols]


def _book_ticker(sim: BinanceExchangeSim, p: Mapping[str, str]) -> Any:
    if p.get("symbol"):
        return sim.book_ticker(p["symbol"])
    return [sim.book_ticker(s) for s in sim.symbols]


def _price_ticker(sim: BinanceExchangeSim, p: Mapping[str, str]) -> Any:
    symbols = [p["symbol"]] if p.get("symbol") else list(sim.symbols)
    rows = [{"symbol": s, "price": _fmt(sim.price(s))} for s in symbols]
    return rows[0] if p.get("symbol") else rows


def _depth(sim: BinanceExchangeSim, p: Mapping[str, str]) -> Any:
    return sim.depth(p.get("symbol") or "", _int_param(p, "limit", 100) or 100)


ENDPOINTS: dict[tuple[str, str], _Endpoint] = {
    ("GET", "/api/v3/ping"): _Endpoint(lambda _s, _p: {}, _const(1)),
    ("GET", "/api/v3/time"): _Endpoint(lambda s, _p: {"serverTime": s.now_ms()}, _const(1)),
    ("GET", "/api/v3/exchangeInfo"): _Endpoint(lambda s, p: s.exchange_info(p), _const(20)),
    ("GET", "/api/v3/ticker/24hr"): _Endpoint(_ticker, _by_symbol(2, 80)),
    ("GET", "/api/v3/ticker/bookTicker"): _Endpoint(_book_ticker, _by_symbol(2, 4)),
    ("GET", "/api/v3/ticker/price"): _Endpoint(_price_ticker, _by_symbol(2, 4)),
    ("GET", "/api/v3/depth"): _Endpoint(_depth, _depth_weight),
    ("GET", "/api/v3/klines"): _Endpoint(lambda s, p: s.klines(p), _const(2)),
    ("GET", "/api/v3/uiKlines"): _Endpoint(lambda s, p: s.klines(p), _const(2)),
    ("POST", "/api/v3/order"): _Endpoint(lambda s, p: s.new_order(p), _const(1), signed=True),
    ("GET", "/api/v3/order"): _Endpoint(lambda s, p: s.get_order(p), _const(4), signed=True),
    ("DELETE", "/api/v3/order"): _Endpoint(lambda s, p: s.cancel_order(p), _const(1), signed=True),
    ("GET", "/api/v3/openOrders"): _Endpoint(lambda s, p: s.open_orders(p), _by_symbol(6, 80), signed=True),
    ("GET", "/api/v3/account"): _Endpoint(lambda s, _p: s.account(), _const(20), signed=True),
    ("GET", "/api/v3/myTrades"): _Endpoint(lambda s, p: s.my_trades(p), _const(20), signed=True),
}


def _strip_signature(raw: str) -> tuple[str, str | None]:
    """Split a raw urlencoded string into (the signed payload, the signature)."""
    kept: list[str] = []
    signature: str | None = None
    for part in raw.split("&") if raw else []:
        if part.startswith("signature="):
            signature = urllib.parse.unquote(part[len("signature="):])
        else:
            kept.append(part)
    return "&".join(kept), signature


class BinanceSimulator:
    """The HTTP face of ``BinanceExchangeSim``: ``await start()`` returns the base URL to give ccxt.

    Every knob is a plain attribute that tests may change while it runs (``faults``,
    ``weight_limit_per_minute``, ``engine.clock_offset_ms``, ...).
    """

    def __init__(
        self,
        *,
        api_key: str = "sim-api-key",
        api_secret: str = "sim-api-secret",
        engine: BinanceExchangeSim | None = None,
        price_path: PricePath | None = None,
        partial_fill_steps: int = 1,
        balances: Mapping[str, Decimal] | None = None,
        weight_limit_per_minute: int = 6000,
        weight_window_seconds: float = 60.0,
        faults: Faults | None = None,
        tick_interval_ms: int | None = None,
    ) -> None:
        self.api_key = api_key
        self._api_secret = api_secret.encode()
        self.engine = engine or BinanceExchangeSim(
            price_path=price_path, partial_fill_steps=partial_fill_steps, balances=balances
        )
        self.weight_limit_per_minute = weight_limit_per_minute
        #: length of the weight window; 60 s like Binance, shorter in tests so a 429 clears fast
        self.weight_window_seconds = weight_window_seconds
        self.faults = faults or Faults()
        self.tick_interval_ms = tick_interval_ms
        self.stats = SimStats()
        self._window_start = 0.0
        self._window_weight = 0
        self._runner: web.AppRunner | None = None
        self._ticker: asyncio.Task[None] | None = None
        self.base_url = ""

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        app = web.Application(middlewares=[self._middleware])
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        bound = self._runner.addresses[0]
        self.base_url = f"http://{host}:{bound[1]}"
        if self.tick_interval_ms:
            self._ticker = asyncio.create_task(self._tick_forever(self.tick_interval_ms / 1000))
        log.info("binance simulator listening on %s", self.base_url)
        return self.base_url

    async def stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
            self._ticker = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _tick_forever(self, every: float) -> None:
        while True:
            await asyncio.sleep(every)
            self.engine.tick()

    # -- test conveniences ---------------------------------------------------------------------

    def tick(self) -> None:
        self.engine.tick()

    def set_price(self, symbol: str, price: Decimal, *, hold: bool = True) -> None:
        self.engine.set_price(symbol, price, hold=hold)

    # -- request handling ----------------------------------------------------------------------

    @web.middleware
    async def _middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        """Transport faults first, as a flaky network or gateway would apply them."""
        self.stats.requests += 1
        faults = self.faults
        if faults.latency > 0:
            await asyncio.sleep(faults.latency)
        if faults.applies(request.method, request.path):
            if faults.drop_next > 0:
                faults.drop_next -= 1
                self.stats.faults_injected += 1
                return self._drop(request)
            if faults.fail_next > 0:
                faults.fail_next -= 1
                self.stats.faults_injected += 1
                return web.Response(status=503, text="Service Unavailable", content_type="text/plain")
            if faults.lose_response_next > 0:
                faults.lose_response_next -= 1
                self.stats.faults_injected += 1
                await handler(request)
                return self._drop(request)
        return await handler(request)

    @staticmethod
    def _drop(request: web.Request) -> web.StreamResponse:
        if request.transport is not None:
            request.transport.abort()
        return web.Response(status=500)

    def _charge(self, weight: int) -> float | None:
        """Count request weight in a fixed window; return seconds to wait if over the limit."""
        now = time.monotonic()
        if now - self._window_start >= self.weight_window_seconds:
            self._window_start = now
            self._window_weight = 0
        if self._window_weight + weight > self.weight_limit_per_minute:
            return self._window_start + self.weight_window_seconds - now
        self._window_weight += weight
        return None

    def _json(self, status: int, body: Any) -> web.Response:
        resp = web.json_response(body, status=status)
        resp.headers["X-MBX-USED-WEIGHT-1M"] = str(self._window_weight)
        return resp

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        key = (request.method, request.path)
        endpoint = ENDPOINTS.get(key)
        if endpoint is None:
            return self._json(404, {"code": -1020, "msg": "This operation is not supported."})
        self.stats.by_endpoint[f"{request.method} {request.path}"] = (
            self.stats.by_endpoint.get(f"{request.method} {request.path}", 0) + 1
        )
        raw_query = request.query_string
        raw_body = await request.text() if request.can_read_body else ""
        params: dict[str, str] = dict(urllib.parse.parse_qsl(raw_query, keep_blank_values=True))
        params.update(urllib.parse.parse_qsl(raw_body, keep_blank_values=True))

        wait = self._charge(endpoint.weight(params))
        if wait is not None:
            self.stats.throttled += 1
            resp = self._json(
                429,
                {
                    "code": -1003,
                    "msg": f"Too much request weight used; current limit is {self.weight_limit_per_minute} "
                    "request weight per 1 MINUTE. Please use WebSocket Streams for live updates to avoid "
                    "polling the API.",
                },
            )
            resp.headers["Retry-After"] = str(max(1, math.ceil(wait)))
            return resp
        try:
            if endpoint.signed:
                self._authenticate(request, raw_query, raw_body, params)
            result = endpoint.handler(self.engine, params)
        except BinanceApiError as exc:
            self.stats.errors[exc.code] = self.stats.errors.get(exc.code, 0) + 1
            return self._json(exc.status, exc.body())
        return self._json(200, result)

    def _authenticate(
        self, request: web.Request, raw_query: str, raw_body: str, params: Mapping[str, str]
    ) -> None:
        """Binance's SIGNED rules: key header, timestamp within recvWindow, HMAC over the payload."""
        key = request.headers.get("X-MBX-APIKEY")
        if not key:
            self.stats.auth_failures += 1
            raise BinanceApiError(401, -2014, "API-key format invalid.")
        if not hmac.compare_digest(key.encode(), self.api_key.encode()):
            self.stats.auth_failures += 1
            raise BinanceApiError(401, -2015, "Invalid API-key, IP, or permissions for action.")
        timestamp = _int_param(params, "timestamp")
        if timestamp is None:
            raise BinanceApiError(
                400, -1102, "Mandatory parameter 'timestamp' was not sent, was empty/null, or malformed."
            )
        recv_window = _int_param(params, "recvWindow", 5000) or 5000
        if recv_window > MAX_RECV_WINDOW_MS:
            raise BinanceApiError(400, -1131, "recvWindow must be less than 60000")
        server_time = self.engine.now_ms()
        if timestamp >= server_time + 1000:
            raise BinanceApiError(
                400, -1021, "Timestamp for this request was 1000ms ahead of the server's time."
            )
        if server_time - timestamp > recv_window:
            raise BinanceApiError(400, -1021, "Timestamp for this request is outside of the recvWindow.")
        query_payload, query_sig = _strip_signature(raw_query)
        body_payload, body_sig = _strip_signature(raw_body)
        signature = query_sig or body_sig
        if not signature:
            raise BinanceApiError(
                400, -1102, "Mandatory parameter 'signature' was not sent, was empty/null, or malformed."
            )
        payload = (query_payload + body_payload).encode()
        expected = hmac.new(self._api_secret, payload, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, signature):
            self.stats.auth_failures += 1
            raise BinanceApiError(400, -1022, "Signature for this request is not valid.")


# ---------------------------------------------------------------------------------------------
# Standalone
# ---------------------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="superintel venue binance", description="Binance spot REST simulator")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8010)
    p.add_argument("--api-key", default=os.environ.get("BINANCE_API_KEY") or "sim-api-key")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--volatility", type=Decimal, default=Decimal("0.0005"))
    p.add_argument("--tick-ms", type=int, default=500, help="price step and matching interval")
    p.add_argument("--partial-fill-steps", type=int, default=1)
    p.add_argument("--weight-limit", type=int, default=6000, help="request weight per minute")
    p.add_argument("--latency", type=float, default=0.0, help="seconds added to every request")
    return p


async def serve(args: argparse.Namespace, *, api_secret: str) -> None:
    sim = BinanceSimulator(
        api_key=args.api_key,
        api_secret=api_secret,
        price_path=PricePath(seed=args.seed, volatility=args.volatility),
        partial_fill_steps=args.partial_fill_steps,
        weight_limit_per_minute=args.weight_limit,
        faults=Faults(latency=args.latency),
        tick_interval_ms=args.tick_ms,
    )
    url = await sim.start(args.host, args.port)
    print(f"binance simulator on {url} (api key {args.api_key!r}; secret: BINANCE_API_SECRET)", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await sim.stop()


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m venues.binance --port N``. The secret comes only from ``BINANCE_API_SECRET``
    (never a flag: command lines are visible in process listings)."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    secret = os.environ.get("BINANCE_API_SECRET") or "sim-api-secret"
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args, api_secret=secret))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
