"""The HTTP face of the simulated Binance venue: the spot REST subset ccxt uses, with Binance's
transport rules.

``BinanceSimulator`` serves ``/api/v3/...`` in front of a ``BinanceExchangeSim``
(``venues/binance/engine.py``) and applies what Binance's gateway applies: the API key header,
the HMAC-SHA256 signature, ``timestamp``/``recvWindow``, and request-weight limits answered with
429 + ``Retry-After``. Faults, stats and the ``/_sim`` control endpoints come from the shared
toolkit (``venues/common/``), so this file knows only Binance.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import math
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from aiohttp import web

from venues.binance.engine import BinanceExchangeSim
from venues.binance.wire import BinanceApiError, fmt, int_param
from venues.common.faults import Faults, Op
from venues.common.http_server import HttpVenueServer, Route, drop
from venues.common.prices import PricePath
from venues.common.stats import SimStats

log = logging.getLogger(__name__)

MAX_RECV_WINDOW_MS = 60_000


@dataclass(frozen=True, slots=True)
class _Endpoint:
    handler: Callable[[BinanceExchangeSim, Mapping[str, str]], Any]
    weight: Callable[[Mapping[str, str]], int]
    op: Op
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
    rows = [{"symbol": s, "price": fmt(sim.price(s))} for s in symbols]
    return rows[0] if p.get("symbol") else rows


def _depth(sim: BinanceExchangeSim, p: Mapping[str, str]) -> Any:
    return sim.depth(p.get("symbol") or "", int_param(p, "limit", 100) or 100)


_MD, _TRADE, _PLACE = Op.MARKET_DATA, Op.TRADING, Op.PLACEMENT

#: (method, path) -> handler, Binance's request weight, fault class, and whether it is SIGNED
ENDPOINTS: dict[tuple[str, str], _Endpoint] = {
    ("GET", "/api/v3/ping"): _Endpoint(lambda _s, _p: {}, _const(1), _MD),
    ("GET", "/api/v3/time"): _Endpoint(lambda s, _p: {"serverTime": s.now_ms()}, _const(1), _MD),
    ("GET", "/api/v3/exchangeInfo"): _Endpoint(lambda s, p: s.exchange_info(p), _const(20), _MD),
    ("GET", "/api/v3/ticker/24hr"): _Endpoint(_ticker, _by_symbol(2, 80), _MD),
    ("GET", "/api/v3/ticker/bookTicker"): _Endpoint(_book_ticker, _by_symbol(2, 4), _MD),
    ("GET", "/api/v3/ticker/price"): _Endpoint(_price_ticker, _by_symbol(2, 4), _MD),
    ("GET", "/api/v3/depth"): _Endpoint(_depth, _depth_weight, _MD),
    ("GET", "/api/v3/klines"): _Endpoint(lambda s, p: s.klines(p), _const(2), _MD),
    ("GET", "/api/v3/uiKlines"): _Endpoint(lambda s, p: s.klines(p), _const(2), _MD),
    ("POST", "/api/v3/order"): _Endpoint(lambda s, p: s.new_order(p), _const(1), _PLACE, signed=True),
    ("GET", "/api/v3/order"): _Endpoint(lambda s, p: s.get_order(p), _const(4), _TRADE, signed=True),
    ("DELETE", "/api/v3/order"): _Endpoint(lambda s, p: s.cancel_order(p), _const(1), _TRADE, signed=True),
    ("GET", "/api/v3/openOrders"): _Endpoint(lambda s, p: s.open_orders(p), _by_symbol(6, 80), _TRADE,
                                             signed=True),
    ("GET", "/api/v3/allOrders"): _Endpoint(lambda s, p: s.all_orders(p), _const(20), _TRADE, signed=True),
    ("GET", "/api/v3/account"): _Endpoint(lambda s, _p: s.account(), _const(20), _TRADE, signed=True),
    ("GET", "/api/v3/myTrades"): _Endpoint(lambda s, p: s.my_trades(p), _const(20), _TRADE, signed=True),
}


def classify(method: str, path: str) -> Route:
    """The fault layer's view of a request; an unknown path counts as market data."""
    endpoint = ENDPOINTS.get((method, path))
    return Route(f"{method} {path}", endpoint.op if endpoint is not None else Op.MARKET_DATA)


def _strip_signature(raw: str) -> tuple[str, str | None]:
    """Split a raw urlencoded string into (the signed payload, the signature)."""
    kept: list[str] = []
    signature: str | None = None
    for part in raw.split("&") if raw else []:
        if part.startswith("signature="):
            signature = urllib.parse.unquote(part[len("signature="):], errors="surrogateescape")
        else:
            kept.append(part)
    return "&".join(kept), signature


def _raw(text: str) -> bytes:
    """The exact bytes a request carried (decoded with surrogateescape, so nothing is lost)."""
    return text.encode("utf-8", errors="surrogateescape")


class BinanceSimulator:
    """The HTTP face of ``BinanceExchangeSim``: ``await start()`` returns the base URL to give ccxt.

    Every knob is a plain attribute that tests may change while it runs (``faults``,
    ``weight_limit_per_minute``, ``engine.clock_offset_ms``, ...); a drill changes the faults
    over HTTP (``/_sim/faults``) instead.
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
        commission_rate: Decimal = Decimal("0.001"),
        spread_bps: Decimal = Decimal("2"),
        weight_limit_per_minute: int = 6000,
        weight_window_seconds: float = 60.0,
        faults: Faults | None = None,
        tick_interval_ms: int | None = None,
    ) -> None:
        self.api_key = api_key
        self._api_secret = api_secret.encode()
        self.engine = engine or BinanceExchangeSim(
            price_path=price_path,
            partial_fill_steps=partial_fill_steps,
            balances=balances,
            commission_rate=commission_rate,
            spread_bps=spread_bps,
        )
        self.weight_limit_per_minute = weight_limit_per_minute
        #: length of the weight window; 60 s like Binance, shorter in tests so a 429 clears fast
        self.weight_window_seconds = weight_window_seconds
        self.faults = faults or Faults()
        self.tick_interval_ms = tick_interval_ms
        self.stats = SimStats()
        self._window_start = 0.0
        self._window_weight = 0
        #: the next ``late_next`` order placements reach the matching engine only ``late_delay``
        #: seconds after the gateway took them, and their answer is lost: Binance's "execution
        #: status unknown" (-1006/-1007) where the order executes after the client gave up. The
        #: recvWindow is checked again when the engine gets it (Binance: -5028), as on Binance.
        self.late_next = 0
        self.late_delay = 0.5
        self._late: set[asyncio.Task[None]] = set()
        self._server = HttpVenueServer(self, self._dispatch, classify)
        self._ticker: asyncio.Task[None] | None = None
        self.base_url = ""

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        self.base_url = await self._server.start(host, port)
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
        for task in list(self._late):
            task.cancel()
        await self._server.stop()

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
        endpoint = ENDPOINTS.get((request.method, request.path))
        if endpoint is None:
            return self._json(404, {"code": -1020, "msg": "This operation is not supported."})
        # The raw bytes as sent: the signature covers them exactly, whatever they contain.
        raw_query = request.raw_path.partition("?")[2]
        raw_body = (await request.read()).decode("utf-8", errors="surrogateescape") if request.can_read_body else ""
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
        if endpoint.op is Op.PLACEMENT and self.late_next > 0:
            self.late_next -= 1
            self.stats.count_fault("late")
            task = asyncio.create_task(self._execute_late(endpoint, request, raw_query, raw_body, params))
            self._late.add(task)
            task.add_done_callback(self._late.discard)
            return drop(request)
        try:
            if endpoint.signed:
                self._authenticate(request, raw_query, raw_body, params)
            result = endpoint.handler(self.engine, params)
        except BinanceApiError as exc:
            self.stats.count_error(exc.code)
            return self._json(exc.status, exc.body())
        return self._json(200, result)

    async def _execute_late(
        self, endpoint: _Endpoint, request: web.Request, raw_query: str, raw_body: str, params: Mapping[str, str]
    ) -> None:
        """A placement the matching engine gets ``late_delay`` seconds after the gateway took it."""
        await asyncio.sleep(self.late_delay)
        try:
            self._authenticate(request, raw_query, raw_body, params)
            endpoint.handler(self.engine, params)
        except BinanceApiError as exc:
            self.stats.count_error(exc.code)
            return
        self.stats.orders_placed += 1

    def _authenticate(
        self, request: web.Request, raw_query: str, raw_body: str, params: Mapping[str, str]
    ) -> None:
        """Binance's SIGNED rules: key header, timestamp within recvWindow, HMAC over the payload."""
        key = request.headers.get("X-MBX-APIKEY")
        if not key:
            self.stats.auth_failures += 1
            raise BinanceApiError(401, -2014, "API-key format invalid.")
        if not hmac.compare_digest(_raw(key), self.api_key.encode()):
            self.stats.auth_failures += 1
            raise BinanceApiError(401, -2015, "Invalid API-key, IP, or permissions for action.")
        timestamp = int_param(params, "timestamp")
        if timestamp is None:
            raise BinanceApiError(
                400, -1102, "Mandatory parameter 'timestamp' was not sent, was empty/null, or malformed."
            )
        recv_window = int_param(params, "recvWindow", 5000) or 5000
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
        expected = hmac.new(self._api_secret, _raw(query_payload + body_payload), hashlib.sha256).hexdigest()
        # Compared as bytes: a malformed signature (not hex, not ASCII, not UTF-8) is just wrong.
        if not hmac.compare_digest(expected.encode(), _raw(signature)):
            self.stats.auth_failures += 1
            raise BinanceApiError(400, -1022, "Signature for this request is not valid.")
