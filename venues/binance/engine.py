"""The simulated Binance spot venue with no I/O: markets, accounts, prices and matching.

``BinanceExchangeSim`` takes Binance's request parameters as strings (exactly what arrives over
HTTP, see ``venues/binance/http.py``) and returns the JSON-ready response, or raises
``BinanceApiError`` with Binance's code. Unit tests drive it directly and deterministically.
Response shapes follow Binance's documented and recorded payloads (ccxt's
``ts/src/test/static/response/binance.json`` was the oracle); numbers are strings with 8
decimals, ids and times are integers. Money is ``Decimal`` throughout. Prices move along the
shared ``PricePath`` (``venues/common/prices.py``).
"""

from __future__ import annotations

import bisect
import itertools
import time
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import Any

from venues.binance.markets import DEFAULT_BALANCES, DEFAULT_START_PRICES, DEFAULT_SYMBOLS, SymbolSpec
from venues.binance.orders import Order, Trade
from venues.binance.wire import (
    CLIENT_ORDER_ID_RE,
    EIGHT_DP,
    ZERO,
    BinanceApiError,
    JsonObj,
    decimal_param,
    fmt,
    int_param,
    mandatory,
)
from venues.common.prices import PriceBook, PricePath, floor_to

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
        #: prices per symbol moving along the path, with their history for klines and 24h stats
        self.prices = PriceBook(
            self.price_path,
            {sym: spec.tick_size for sym, spec in self.symbols.items()},
            now_ms=self.now_ms,
            default_start=DEFAULT_START_PRICES,
        )
        self._free: dict[str, Decimal] = {}
        self._locked: dict[str, Decimal] = {}
        for asset, amount in (balances if balances is not None else DEFAULT_BALANCES).items():
            self._free[asset] = Decimal(amount)
        self._orders: dict[int, Order] = {}
        self._by_client_id: dict[str, list[int]] = {}
        self._trades: dict[str, list[Trade]] = {s: [] for s in self.symbols}
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
        return self.prices.price(self.spec(symbol).symbol)

    def bid_ask(self, symbol: str) -> tuple[Decimal, Decimal]:
        spec = self.spec(symbol)
        mid = self.prices.price(symbol)
        half = max(spec.tick_size, floor_to(mid * self.spread_bps / Decimal(20000), spec.tick_size))
        return max(spec.tick_size, mid - half), mid + half

    def set_price(self, symbol: str, price: Decimal, *, hold: bool = True) -> None:
        """Move a market to ``price`` now and match resting orders against it.

        With ``hold`` (the default) the random walk leaves this symbol alone afterwards, so a test
        can rely on the price it set; ``release(symbol)`` hands it back to the price path.
        """
        self.prices.set(self.spec(symbol).symbol, Decimal(price), hold=hold)
        self._match(symbol)

    def release(self, symbol: str) -> None:
        self.prices.release(symbol)

    def tick(self) -> None:
        """Advance every un-held price one step along the path, then match resting orders."""
        self.prices.step()
        for sym in self.symbols:
            self._match(sym)

    # -- balances ------------------------------------------------------------------------------

    def balance(self, asset: str) -> tuple[Decimal, Decimal]:
        """(free, locked) of ``asset``."""
        return self._free.get(asset, ZERO), self._locked.get(asset, ZERO)

    def set_balance(self, asset: str, free: Decimal) -> None:
        self._free[asset] = Decimal(free)

    def _lock(self, order: Order, amount: Decimal) -> None:
        asset = order.locked_asset
        if self._free.get(asset, ZERO) < amount:
            raise BinanceApiError(400, -2010, "Account has insufficient balance for requested action.")
        self._free[asset] -= amount
        self._locked[asset] = self._locked.get(asset, ZERO) + amount
        order.locked = amount
        order.lock_per_unit = amount / order.orig_qty

    def _unlock(self, order: Order, amount: Decimal) -> None:
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
        side = mandatory(params, "side")
        if side not in ("BUY", "SELL"):
            raise BinanceApiError(400, -1117, "Invalid side.")
        order_type = mandatory(params, "type")
        if order_type not in ("LIMIT", "MARKET", "STOP_LOSS", "STOP_LOSS_LIMIT", "TAKE_PROFIT",
                              "TAKE_PROFIT_LIMIT", "LIMIT_MAKER"):
            raise BinanceApiError(400, -1116, "Invalid orderType.")
        if order_type not in spec.order_types:
            raise BinanceApiError(400, -1013, "Unsupported order combination.")
        quantity = decimal_param(params, "quantity")
        assert quantity is not None
        is_limit = order_type in ("LIMIT", "STOP_LOSS_LIMIT")
        is_stop = order_type in ("STOP_LOSS", "STOP_LOSS_LIMIT")
        price = decimal_param(params, "price", required=is_limit)
        if not is_limit and price is not None:
            raise BinanceApiError(400, -1106, "Parameter 'price' sent when not required.")
        stop_price = decimal_param(params, "stopPrice", required=is_stop)
        tif = params.get("timeInForce") or ""
        if is_limit:
            tif = mandatory(params, "timeInForce")
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
            if self._stop_triggered(side, stop_price, self.prices.price(spec.symbol)):
                raise BinanceApiError(400, -2010, "Stop price would trigger immediately.")

        now = self.now_ms()
        order = Order(
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
            result["stopPrice"] = fmt(order.stop_price)
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

    def _chunk(self, order: Order) -> Decimal:
        step = self.symbols[order.symbol].step_size
        chunk = max(step, floor_to(order.orig_qty / self.partial_fill_steps, step))
        if order.remaining - chunk < chunk:  # the last step takes the lot-size remainder too
            return order.remaining
        return chunk

    def _execute(self, order: Order, qty: Decimal, price: Decimal, *, maker: bool) -> None:
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
        trade = Trade(
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

    def _spend(self, order: Order, asset: str, amount: Decimal, qty: Decimal) -> None:
        """Pay ``amount`` of ``asset``: first from the order's reservation, then from free balance."""
        if order.locked > 0:
            release = min(order.locked, qty * order.lock_per_unit)
            order.locked -= release
            self._locked[asset] = self._locked.get(asset, ZERO) - release
            self._free[asset] = self._free.get(asset, ZERO) + release
        self._free[asset] = self._free.get(asset, ZERO) - amount

    def _fill_market(self, order: Order) -> None:
        bid, ask = self.bid_ask(order.symbol)
        price = ask if order.side == "BUY" else bid
        while order.remaining > 0:
            self._execute(order, self._chunk(order), price, maker=False)

    def _crosses(self, order: Order) -> bool:
        bid, ask = self.bid_ask(order.symbol)
        return ask <= order.price if order.side == "BUY" else bid >= order.price

    def _arrive_limit(self, order: Order) -> None:
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

    def _finish(self, order: Order, status: str) -> None:
        order.status = status
        order.update_time = self.now_ms()
        self._unlock(order, order.locked)

    def _match(self, symbol: str) -> None:
        last = self.prices.price(symbol)
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

    def _find(self, params: Mapping[str, str], *, unknown_code: int, unknown_msg: str) -> Order:
        spec = self.spec(params.get("symbol"))
        order_id = int_param(params, "orderId")
        client_id = params.get("origClientOrderId") or None
        if order_id is None and client_id is None:
            raise BinanceApiError(
                400, -1102, "Param 'origClientOrderId' or 'orderId' must be sent, but both were empty/null!"
            )
        order: Order | None = None
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
            "stopPrice": fmt(order.stop_price),
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

    def all_orders(self, params: Mapping[str, str]) -> list[JsonObj]:
        """``GET /api/v3/allOrders``: a symbol's orders, open or closed, oldest first.

        Binance's rules: with ``orderId`` the orders from that id on; with ``startTime`` the
        orders from that time on; otherwise the most recent ones; ``endTime`` bounds from above,
        at most 24 hours after ``startTime``; ``limit`` defaults to 500 (kept within 1..1000).
        """
        spec = self.spec(params.get("symbol"))
        order_id = int_param(params, "orderId")
        start = int_param(params, "startTime")
        end = int_param(params, "endTime")
        limit = max(1, min(int_param(params, "limit", 500) or 500, 1000))
        if start is not None and end is not None and end - start > 86_400_000:
            raise BinanceApiError(400, -1127, "More than 24 hours between startTime and endTime.")
        rows = [
            o for o in self._orders.values()  # insertion order is orderId order
            if o.symbol == spec.symbol
            and (order_id is None or o.order_id >= order_id)
            and (start is None or o.time >= start)
            and (end is None or o.time <= end)
        ]
        chosen = rows[:limit] if order_id is not None or start is not None else rows[-limit:]
        return [o.query_view() for o in chosen]

    def my_trades(self, params: Mapping[str, str]) -> list[JsonObj]:
        spec = self.spec(params.get("symbol"))
        order_id = int_param(params, "orderId")
        limit = min(int_param(params, "limit", 500) or 500, 1000)
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
                "maker": fmt(self.commission_rate),
                "taker": fmt(self.commission_rate),
                "buyer": fmt(ZERO),
                "seller": fmt(ZERO),
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
                {"asset": a, "free": fmt(self._free.get(a, ZERO)), "locked": fmt(self._locked.get(a, ZERO))}
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
            "bidPrice": fmt(bid),
            "bidQty": fmt(self._depth_qty(symbol, 0)),
            "askPrice": fmt(ask),
            "askQty": fmt(self._depth_qty(symbol, 0)),
        }

    def _depth_qty(self, symbol: str, level: int) -> Decimal:
        spec = self.symbols[symbol]
        return max(spec.min_qty, floor_to(Decimal(1000) / self.prices.price(symbol) * (level + 1), spec.step_size))

    def depth(self, symbol: str, limit: int) -> JsonObj:
        spec = self.spec(symbol)
        if limit < 1 or limit > 5000:
            raise BinanceApiError(400, -1100, "Illegal characters found in parameter 'limit'.")
        bid, ask = self.bid_ask(symbol)
        levels = min(limit, 100)
        bids = [
            [fmt(bid - spec.tick_size * i), fmt(self._depth_qty(symbol, i))]
            for i in range(levels)
            if bid - spec.tick_size * i > 0
        ]
        asks = [[fmt(ask + spec.tick_size * i), fmt(self._depth_qty(symbol, i))] for i in range(levels)]
        return {"lastUpdateId": next(self._update_ids), "bids": bids, "asks": asks}

    def klines(self, params: Mapping[str, str]) -> list[list[Any]]:
        """Candles built from the recorded price path and the simulator's own trades."""
        spec = self.spec(params.get("symbol"))
        interval = mandatory(params, "interval")
        step = INTERVAL_MS.get(interval)
        if step is None:
            raise BinanceApiError(400, -1120, "Invalid interval.")
        limit = max(1, min(int_param(params, "limit", 500) or 500, 1000))
        now = self.now_ms()
        start = int_param(params, "startTime")
        end = int_param(params, "endTime")
        if start is not None:
            first = start // step * step
        else:
            last_open = (min(end, now) if end is not None else now) // step * step
            first = last_open - (limit - 1) * step
        history = self.prices.history(spec.symbol)
        trades = self._trades[spec.symbol]
        rows: list[list[Any]] = []
        for i in range(limit):
            open_time = first + i * step
            if open_time > now or (end is not None and open_time > end):
                break
            close_time = open_time + step - 1
            o = self.prices.price_at(spec.symbol, open_time - 1)
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
                fmt(o),
                fmt(max(prices)),
                fmt(min(prices)),
                fmt(prices[-1]),
                fmt(volume),
                close_time,
                fmt(quote_volume),
                len(bucket),
                fmt(sum((t.qty for t in taker_buy), ZERO)),
                fmt(sum((t.qty * t.price for t in taker_buy), ZERO)),
                "0",
            ])
        return rows

    def ticker_24hr(self, symbol: str) -> JsonObj:
        spec = self.spec(symbol)
        now = self.now_ms()
        since = now - 86_400_000
        history = self.prices.history(symbol)
        open_price = self.prices.price_at(symbol, since)
        window = [p for ts, p in history if ts >= since] or [open_price]
        last = self.prices.price(symbol)
        trades = [t for t in self._trades[symbol] if t.time >= since]
        volume = sum((t.qty for t in trades), ZERO)
        quote_volume = sum((t.qty * t.price for t in trades), ZERO)
        bid, ask = self.bid_ask(symbol)
        change = last - open_price
        return {
            "symbol": spec.symbol,
            "priceChange": fmt(change),
            "priceChangePercent": f"{(change / open_price * 100).quantize(Decimal('0.001'))}",
            "weightedAvgPrice": fmt(quote_volume / volume if volume else last),
            "prevClosePrice": fmt(open_price),
            "lastPrice": fmt(last),
            "lastQty": fmt(trades[-1].qty if trades else ZERO),
            "bidPrice": fmt(bid),
            "bidQty": fmt(self._depth_qty(symbol, 0)),
            "askPrice": fmt(ask),
            "askQty": fmt(self._depth_qty(symbol, 0)),
            "openPrice": fmt(open_price),
            "highPrice": fmt(max(window)),
            "lowPrice": fmt(min(window)),
            "volume": fmt(volume),
            "quoteVolume": fmt(quote_volume),
            "openTime": since,
            "closeTime": now,
            "firstId": trades[0].id if trades else -1,
            "lastId": trades[-1].id if trades else -1,
            "count": len(trades),
        }


