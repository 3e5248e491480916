"""The HTTP face of the simulated MT4 REST bridge: the contract's endpoints (README "MT4 bridge
contract") in front of an ``Mt4Engine``, behind the shared faults, stats and ``/_sim`` control
endpoints of ``venues/common/``.

Endpoints: ``GET /account``, ``POST /order/place``, ``POST /order/modify``, ``POST /order/close``,
``GET /order/{ticket}``, ``GET /orders?client_id=&state=``, ``GET /quote/{symbol}``. With an
``api_token`` every one of them wants ``Authorization: Bearer <token>`` (401 otherwise). Control,
never faulted or counted: the shared ``/_sim/faults`` and ``/_sim/stats``, plus
``GET/POST /_sim/mt4`` (MT4's own refusals, ``venues/mt4/knobs.py``, and the account and quotes)
and ``POST /_sim/price {"symbol", "bid" | "price" | "ask", "hold"?}`` (``price`` is the bid, as on
an MT4 chart), which moves the quote and runs the triggers.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

from aiohttp import web

from venues.common.control import PREFIX, bad_request, json_body
from venues.common.faults import Faults, Op
from venues.common.http_server import HttpVenueServer, Route
from venues.common.prices import PricePath
from venues.common.stats import SimStats
from venues.mt4.engine import (
    DEFAULT_BALANCE,
    DEFAULT_COMMISSION_PER_LOT,
    DEFAULT_LEVERAGE,
    DEFAULT_LOGIN,
    Mt4Engine,
)
from venues.mt4.knobs import TradeKnobs
from venues.mt4.symbols import DEFAULT_SYMBOLS, SymbolSpec
from venues.mt4.wire import (
    INVALID_TICKET,
    INVALID_TRADE_PARAMETERS,
    NOT_FOUND,
    STATES,
    UNAUTHORIZED,
    UNKNOWN_SYMBOL,
    CloseRequest,
    JsonObj,
    ModifyRequest,
    Mt4Error,
    PlaceRequest,
)

log = logging.getLogger(__name__)

_PLACE, _TRADE, _MD = Op.PLACEMENT, Op.TRADING, Op.MARKET_DATA

#: (method, path or path prefix ending in "/") -> the endpoint's name in the stats and its fault class
ENDPOINTS: dict[tuple[str, str], Route] = {
    ("GET", "/account"): Route("GET /account", _TRADE),
    ("POST", "/order/place"): Route("POST /order/place", _PLACE),
    ("POST", "/order/modify"): Route("POST /order/modify", _TRADE),
    ("POST", "/order/close"): Route("POST /order/close", _TRADE),
    ("GET", "/order/"): Route("GET /order/{ticket}", _TRADE),
    ("GET", "/orders"): Route("GET /orders", _TRADE),
    ("GET", "/quote/"): Route("GET /quote/{symbol}", _MD),
}


def _endpoint(method: str, path: str) -> tuple[Route, str] | None:
    """The endpoint and the path parameter (``""`` for none) of a request, if it is one."""
    exact = ENDPOINTS.get((method, path))
    if exact is not None:
        return exact, ""
    head, sep, tail = path.rpartition("/")
    route = ENDPOINTS.get((method, head + sep))
    if route is not None and tail and head.count("/") == 1:
        return route, tail
    return None


def classify(method: str, path: str) -> Route:
    """The fault layer's view of a request (fault ``match`` keys use the real path:
    ``"POST /order/place"``, ``"GET /order/123"``); an unknown path counts as market data."""
    found = _endpoint(method, path)
    return found[0] if found is not None else Route(f"{method} {path}", _MD)


class Mt4Simulator:
    """The bridge simulator: ``base_url = await sim.start()``, then point the adapter at it.

    Every knob is a plain attribute tests may change while it runs: ``faults`` (the network),
    ``engine.knobs`` (MT4's refusals: ``requote_next``, ``busy_next``, ``market_closed``, ...),
    ``api_token``; ``set_price``/``tick`` move the market, ``engine.orders_for_client(cid)`` and
    ``engine.ticket(n)`` show what the terminal holds. A drill uses the ``/_sim`` endpoints instead.
    """

    def __init__(
        self,
        *,
        engine: Mt4Engine | None = None,
        symbols: Sequence[SymbolSpec] = DEFAULT_SYMBOLS,
        price_path: PricePath | None = None,
        balance: Decimal = DEFAULT_BALANCE,
        leverage: int = DEFAULT_LEVERAGE,
        login: int = DEFAULT_LOGIN,
        commission_per_lot: Decimal = DEFAULT_COMMISSION_PER_LOT,
        spread_points: int | None = None,
        stop_level_points: int | None = None,
        first_ticket: int | None = None,
        knobs: TradeKnobs | None = None,
        api_token: str | None = None,
        faults: Faults | None = None,
        tick_interval: float | None = None,
    ) -> None:
        self.engine = engine or Mt4Engine(
            symbols=symbols, price_path=price_path, balance=balance, leverage=leverage, login=login,
            commission_per_lot=commission_per_lot, spread_points=spread_points,
            stop_level_points=stop_level_points, first_ticket=first_ticket, knobs=knobs,
        )
        #: ``None``: no authentication; else every API request needs ``Authorization: Bearer <token>``
        self.api_token = api_token
        self.faults = faults or Faults()
        self.stats = SimStats()
        #: seconds between price steps (and trigger runs) while started; ``None``: prices move only when told
        self.tick_interval = tick_interval
        self._server = HttpVenueServer(self, self._dispatch, classify, extra_routes=self._add_routes)
        self._ticker: asyncio.Task[None] | None = None
        self.base_url = ""

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        self.base_url = await self._server.start(host, port)
        if self.tick_interval:
            self._ticker = asyncio.create_task(self._tick_forever(self.tick_interval))
        log.info("mt4 bridge simulator listening on %s", self.base_url)
        return self.base_url

    async def stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
            self._ticker = None
        await self._server.stop()

    async def _tick_forever(self, every: float) -> None:
        while True:
            await asyncio.sleep(every)
            self.engine.tick()

    # -- test conveniences -----------------------------------------------------------------------

    @property
    def knobs(self) -> TradeKnobs:
        return self.engine.knobs

    def tick(self) -> None:
        self.engine.tick()

    def set_price(
        self, symbol: str, bid: Decimal | None = None, *, ask: Decimal | None = None, hold: bool = True
    ) -> tuple[Decimal, Decimal]:
        """Move the quote (by its bid, or its ask) and run the triggers; returns (bid, ask)."""
        return self.engine.set_price(symbol, bid=bid, ask=ask, hold=hold)

    # -- the bridge's API ------------------------------------------------------------------------

    def _answer(self, status: int, body: Any) -> web.Response:
        return web.json_response(body, status=status)

    def _error(self, exc: Mt4Error) -> web.Response:
        self.stats.count_error(exc.code)
        return self._answer(exc.status, exc.body())

    def _authorized(self, request: web.Request) -> bool:
        if self.api_token is None:
            return True
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            token.strip().encode("utf-8", errors="surrogateescape"),
            self.api_token.encode("utf-8", errors="surrogateescape"),
        )

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        if not self._authorized(request):
            self.stats.auth_failures += 1
            return self._error(Mt4Error(UNAUTHORIZED))
        found = _endpoint(request.method, request.path)
        if found is None:
            return self._error(Mt4Error(NOT_FOUND, f"no endpoint {request.method} {request.path}"))
        route, param = found
        handler = self._handlers[route.name]
        try:
            return self._answer(200, await handler(self, request, param))
        except Mt4Error as exc:
            return self._error(exc)

    async def _body(self, request: web.Request) -> JsonObj:
        try:
            body = json.loads(await request.text() or "{}")
        except ValueError as exc:
            raise Mt4Error(INVALID_TRADE_PARAMETERS, f"body is not JSON: {exc}") from None
        if not isinstance(body, dict):
            raise Mt4Error(INVALID_TRADE_PARAMETERS, "body must be a JSON object")
        return body

    async def _account(self, _request: web.Request, _param: str) -> JsonObj:
        return self.engine.account()

    async def _place(self, request: web.Request, _param: str) -> JsonObj:
        ticket = self.engine.place(PlaceRequest.parse(await self._body(request)))
        return self.engine.order_json(ticket)

    async def _modify(self, request: web.Request, _param: str) -> JsonObj:
        ticket = self.engine.modify(ModifyRequest.parse(await self._body(request)))
        return self.engine.order_json(ticket)

    async def _close(self, request: web.Request, _param: str) -> JsonObj:
        closed, remainder = self.engine.close(CloseRequest.parse(await self._body(request)))
        return {"closed": self.engine.order_json(closed),
                "remainder": None if remainder is None else self.engine.order_json(remainder)}

    async def _order(self, _request: web.Request, param: str) -> JsonObj:
        if not param.isdecimal():
            raise Mt4Error(INVALID_TICKET, f"{param!r} is not a ticket number")
        return self.engine.order_json(self.engine.ticket(int(param)))

    async def _orders(self, request: web.Request, _param: str) -> JsonObj:
        client_id = request.query.get("client_id")
        state = request.query.get("state") or None
        tickets = self.engine.orders(client_id=client_id, state=state)
        return {"orders": [self.engine.order_json(t) for t in tickets]}

    async def _quote(self, _request: web.Request, param: str) -> JsonObj:
        try:
            return self.engine.quote(param)
        except Mt4Error as exc:
            if exc.code == UNKNOWN_SYMBOL:
                raise Mt4Error(UNKNOWN_SYMBOL, exc.detail, status=404) from None
            raise

    _handlers: dict[str, Callable[[Mt4Simulator, web.Request, str], Awaitable[JsonObj]]] = {
        "GET /account": _account,
        "POST /order/place": _place,
        "POST /order/modify": _modify,
        "POST /order/close": _close,
        "GET /order/{ticket}": _order,
        "GET /orders": _orders,
        "GET /quote/{symbol}": _quote,
    }

    # -- control endpoints -----------------------------------------------------------------------

    def _add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_get(f"{PREFIX}/mt4", self._http_state)
        router.add_post(f"{PREFIX}/mt4", self._http_knobs)
        router.add_post(f"{PREFIX}/price", self._http_price)

    def state(self) -> JsonObj:
        """``GET /_sim/mt4``: the knobs, the account, every quote and how many tickets per state."""
        engine = self.engine
        tickets = engine.orders()
        return {
            "knobs": engine.knobs.to_json(),
            "account": engine.account(),
            "quotes": {sym: engine.quote(sym) for sym in engine.symbols},
            "tickets": {state: sum(t.state == state for t in tickets) for state in STATES},
            "api_token": self.api_token is not None,
        }

    async def _http_state(self, _request: web.Request) -> web.Response:
        return web.json_response(self.state())

    async def _http_knobs(self, request: web.Request) -> web.Response:
        patch = await json_body(request)
        if isinstance(patch, web.Response):
            return patch
        try:
            self.engine.knobs.update(patch)
        except ValueError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response(self.engine.knobs.to_json())

    async def _http_price(self, request: web.Request) -> web.Response:
        body = await json_body(request)
        if isinstance(body, web.Response):
            return body
        symbol = body.get("symbol")
        if not isinstance(symbol, str) or symbol not in self.engine.symbols:
            return bad_request(f"symbol must be one of {', '.join(self.engine.symbols)}, got {symbol!r}")
        given = [name for name in ("bid", "price", "ask") if body.get(name) is not None]
        if len(given) != 1:
            return bad_request("give exactly one of bid, price (the bid) and ask, as a decimal string")
        try:
            value = Decimal(str(body[given[0]]))
        except InvalidOperation:
            return bad_request(f"{given[0]} must be a decimal, got {body[given[0]]!r}")
        hold = body.get("hold", True)
        if not isinstance(hold, bool):
            return bad_request(f"hold must be true or false, got {hold!r}")
        try:
            if given[0] == "ask":
                self.engine.set_price(symbol, ask=value, hold=hold)
            else:
                self.engine.set_price(symbol, bid=value, hold=hold)
        except (ValueError, ArithmeticError) as exc:
            return bad_request(str(exc))
        return web.json_response(self.engine.quote(symbol))
