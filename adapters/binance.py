"""Binance spot through ccxt: execution (BrokerPort) and market data (MarketDataPort).

Config, client and parsing live together here, NautilusTrader-style, and this is the only module
that imports ccxt. What it guarantees to the core:

* **No order placed twice.** The order's ``client_order_id`` goes out as Binance's
  ``newClientOrderId``. If a placement may have reached the venue (timeout, dropped connection,
  5xx, "Duplicate order sent.") the adapter asks Binance about that client order id before it
  tries again, because Binance only refuses a reused id while the first order is still *open*:
  a filled market order would otherwise be bought twice.
* **Every failure has one meaning.** ccxt exceptions are translated in one place
  (``_translate``): the venue refusing the order (funds, filters, symbol, credentials) raises
  ``OrderRejected`` with Binance's own message; transport trouble (network, 5xx, 429/418) is
  retried with ``execution.retry`` backoff, honouring ``Retry-After``, and then raises
  ``BrokerUnavailable`` for the circuit breaker; a -1021 timestamp error resyncs the clock once.
* **The mapping holds off production too.** ccxt picks Binance's *spot* error table by URL
  prefix (``https://api.binance.com/``), so against a simulator or proxy it would silently use
  only the generic table. ``_BinanceClient`` applies the spot table to the configured base URL,
  and annotates every exception with the Binance ``code``/``msg`` and ``Retry-After``.
* **Secrets stay secret.** Key and secret are ``SecretStr`` until handed to ccxt; ccxt's own
  logger is given a filter that masks both, and every message this module builds is redacted.
* **One ccxt instance per process and credentials** (``_ClientPool``), so its rate limiter
  sees all traffic, as Binance's weight limit does.

Fills are not pushed: the generic fill tracker polls ``query()`` every ``poll_interval`` seconds
and turns the growth of cumulative ``executedQty`` / average price / commission into Fill messages.
``query()`` costs one ``GET /api/v3/order`` (weight 4) and, only when the filled quantity grew,
one ``GET /api/v3/myTrades`` (weight 20) for the commission, which ``/order`` does not report.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar

import aiohttp
import ccxt.async_support as ccxt_async
from ccxt.base import errors as ccxt_errors
from pydantic import SecretStr

from execution.ports import (
    BrokerError,
    BrokerUnavailable,
    OrderRejected,
    PlacementUnknown,
    Quote,
    VenueOrderStatus,
)
from execution.retry import Backoff, retry_async
from schemas import Broker, Order, OrderState, OrderType, Side, TimeInForce

T = TypeVar("T")
log = logging.getLogger(__name__)

PRODUCTION_URL = "https://api.binance.com"
TESTNET_URL = "https://testnet.binance.vision"

# ---------------------------------------------------------------------------------------------
# Config
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BinanceConfig:
    """Everything the adapter needs, as plain values (the adapter never imports ``streams``).

    ``base_url`` None means production; set it to ``TESTNET_URL`` or a simulator's
    ``http://host:port``. ``rate_limit_ms`` overrides ccxt's client-side pacing (50 ms per
    weight unit by default). ``max_retry_after`` caps how long one retry may wait on a
    ``Retry-After`` hint, so a long ban turns into ``BrokerUnavailable`` instead of a stuck partition.
    """

    api_key: SecretStr = field(default_factory=lambda: SecretStr(""))
    api_secret: SecretStr = field(default_factory=lambda: SecretStr(""))
    base_url: str | None = None
    poll_interval: float = 3.0
    recv_window_ms: int = 5000
    timeout_ms: int = 10_000
    rate_limit_ms: float | None = None
    backoff: Backoff = field(default_factory=Backoff)
    max_retry_after: float = 10.0
    adjust_for_time_difference: bool = True
    #: while credentials are known bad, health_check re-verifies them at most this often
    auth_recheck_interval: float = 30.0

    @property
    def has_credentials(self) -> bool:
        return bool(self.api_key.get_secret_value() and self.api_secret.get_secret_value())

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> BinanceConfig:
        """Read ``BINANCE_API_KEY``, ``BINANCE_API_SECRET``, ``BINANCE_BASE_URL``, ``BINANCE_POLL_INTERVAL``,
        ``BINANCE_RECV_WINDOW_MS`` and ``BINANCE_TIMEOUT_MS`` (the same names as ``BinanceSettings``)."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {
            "api_key": SecretStr(env.get("BINANCE_API_KEY", "")),
            "api_secret": SecretStr(env.get("BINANCE_API_SECRET", "")),
            "base_url": env.get("BINANCE_BASE_URL") or None,
        }
        if env.get("BINANCE_POLL_INTERVAL"):
            values["poll_interval"] = float(env["BINANCE_POLL_INTERVAL"])
        if env.get("BINANCE_RECV_WINDOW_MS"):
            values["recv_window_ms"] = int(env["BINANCE_RECV_WINDOW_MS"])
        if env.get("BINANCE_TIMEOUT_MS"):
            values["timeout_ms"] = int(env["BINANCE_TIMEOUT_MS"])
        return cls(**{**values, **overrides})

    @classmethod
    def from_settings(cls, settings: Any, **overrides: Any) -> BinanceConfig:
        """Build from ``streams.settings.BinanceSettings`` (duck-typed, so no import of ``streams``)."""
        values: dict[str, Any] = {
            "api_key": settings.api_key,
            "api_secret": settings.api_secret,
            "base_url": settings.base_url,
            "poll_interval": settings.poll_interval,
            "recv_window_ms": settings.recv_window_ms,
            "timeout_ms": settings.timeout_ms,
            "rate_limit_ms": getattr(settings, "rate_limit_ms", None),
        }
        return cls(**{**values, **overrides})


# ---------------------------------------------------------------------------------------------
# Parsing: symbols, order states, amounts
# ---------------------------------------------------------------------------------------------

_QUOTE_ASSETS = ("FDUSD", "USDT", "USDC", "TUSD", "BUSD", "DAI", "BTC", "ETH", "BNB", "EUR", "TRY", "BRL",
                 "GBP", "JPY", "AUD")


def to_ccxt_symbol(symbol: str) -> str:
    """Our symbol (``BTC-USDT``, ``BTCUSDT``, ``BTC/USDT``, ``btc_usdt``) -> ccxt's ``BTC/USDT``.

    Separated forms split on the separator; the Binance id form (``BTCUSDT``) is split on the
    longest known quote asset suffix.
    """
    s = symbol.strip().upper()
    for sep in ("/", "-", "_"):
        if sep in s:
            base, _, quote = s.partition(sep)
            if base and quote:
                return f"{base}/{quote}"
    for quote in sorted(_QUOTE_ASSETS, key=len, reverse=True):
        if s.endswith(quote) and len(s) > len(quote):
            return f"{s[: -len(quote)]}/{quote}"
    raise ValueError(f"cannot map {symbol!r} to a Binance spot market; expected BASE-QUOTE such as BTC-USDT")


_STATE_BY_BINANCE_STATUS: dict[str, OrderState] = {
    "NEW": OrderState.SUBMITTED,
    "PENDING_NEW": OrderState.SUBMITTED,
    "PARTIALLY_FILLED": OrderState.PARTIALLY_FILLED,
    "FILLED": OrderState.FILLED,
    "CANCELED": OrderState.CANCELLED,
    "CANCELLED": OrderState.CANCELLED,
    "REJECTED": OrderState.REJECTED,
    "EXPIRED": OrderState.EXPIRED,
    "EXPIRED_IN_MATCH": OrderState.EXPIRED,
}


def order_state(status: str, filled: Decimal = Decimal(0)) -> OrderState:
    """Binance order ``status`` -> our OrderState. ``PENDING_CANCEL`` is still live: it keeps the
    state its fills imply until Binance reports the final CANCELED."""
    if status == "PENDING_CANCEL":
        return OrderState.PARTIALLY_FILLED if filled > 0 else OrderState.SUBMITTED
    try:
        return _STATE_BY_BINANCE_STATUS[status]
    except KeyError:
        raise BrokerError(f"unknown Binance order status {status!r}") from None


def _dec(value: Any, default: Decimal = Decimal(0)) -> Decimal:
    if value is None or value == "":
        return default
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return default


def _sum_commission(rows: Sequence[Mapping[str, Any]]) -> tuple[Decimal, str | None]:
    """Total commission of Binance fill/trade rows, in their (normally single) commission asset.

    Should rows ever mix assets (BNB discount switched on mid-order), the asset with the largest total wins
    and a warning is logged: VenueOrderStatus carries one asset.
    """
    by_asset: dict[str, Decimal] = {}
    for row in rows:
        asset = str(row.get("commissionAsset") or "")
        by_asset[asset] = by_asset.get(asset, Decimal(0)) + _dec(row.get("commission"))
    if not by_asset:
        return Decimal(0), None
    if len(by_asset) > 1:
        log.warning("commission in several assets %s; reporting the largest only", sorted(by_asset))
    asset, total = max(by_asset.items(), key=lambda item: item[1])
    return total, asset or None


@dataclass(frozen=True, slots=True)
class _CommissionMark:
    filled: Decimal
    commission: Decimal
    asset: str | None


def parse_order(
    info: Mapping[str, Any], *, client_order_id: str | None = None, commission: _CommissionMark | None = None
) -> VenueOrderStatus:
    """A raw Binance order payload (new/query/cancel response) -> cumulative VenueOrderStatus.

    Reads Binance's strings, not ccxt's floats, so quantities and prices stay exact Decimals.
    Average price = ``cummulativeQuoteQty / executedQty`` (Binance's own spelling).
    """
    filled = _dec(info.get("executedQty"))
    quote = _dec(info.get("cummulativeQuoteQty"))
    status = str(info.get("status") or "NEW")
    state = order_state(status, filled)
    avg = (quote / filled).normalize() if filled > 0 and quote > 0 else None
    reason = ""
    if state is OrderState.EXPIRED:
        reason = f"expired at Binance ({info.get('type', '')} {info.get('timeInForce', '')})"
    elif state is OrderState.CANCELLED:
        reason = "cancelled at Binance"
    elif state is OrderState.REJECTED:
        reason = "rejected by Binance"
    order_id = info.get("orderId")
    # A cancel answer's clientOrderId is the cancel request's own id; the order's is origClientOrderId.
    own_id = client_order_id or info.get("origClientOrderId") or info.get("clientOrderId") or ""
    return VenueOrderStatus(
        client_order_id=str(own_id),
        venue_order_id=str(order_id) if order_id is not None else None,
        state=state,
        filled_quantity=filled,
        avg_fill_price=avg,
        commission=commission.commission if commission else Decimal(0),
        commission_asset=commission.asset if commission else None,
        reason=reason,
    )


# ---------------------------------------------------------------------------------------------
# Market data values
# ---------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------
# The ccxt client: exception table, error annotations, secret-safe logging, sharing
# ---------------------------------------------------------------------------------------------


class _RedactingFilter(logging.Filter):
    """Masks every registered secret in records of the logger it is attached to."""

    def __init__(self) -> None:
        super().__init__("ccxt-redact")
        self._secrets: set[str] = set()

    def register(self, *secrets: str) -> None:
        self._secrets.update(s for s in secrets if len(s) >= 4)

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if self._secrets:
            message = record.getMessage()
            redacted = self.redact(message)
            if redacted != message:
                record.msg, record.args = redacted, None
        return True


_REDACT = _RedactingFilter()
#: the logger ccxt instances made here write to; masked so request headers never leak the key
CCXT_LOGGER = logging.getLogger(f"{__name__}.ccxt")
CCXT_LOGGER.addFilter(_REDACT)


class _BinanceClient(ccxt_async.binance):  # type: ignore[misc]
    """ccxt's Binance with two corrections for non-production base URLs.

    1. ``get_exceptions_by_url``: the configured base URL gets the spot error table, exactly as
       ``https://api.binance.com/`` would.
    2. ``handle_errors``: each raised exception carries ``binance_code``, ``binance_msg`` and
       ``retry_after`` (seconds, from the header), so the adapter's mapping never parses messages.
    """

    def __init__(self, config: dict[str, Any], *, base_url: str | None) -> None:
        super().__init__(config)
        self.si_base_url = base_url.rstrip("/") + "/" if base_url else None

    def get_exceptions_by_url(self, url: str | None, exact_or_broad: str) -> dict[str, Any]:
        if url is not None and self.si_base_url is not None and url.startswith(self.si_base_url):
            spot = self.safe_dict(self.exceptions, "spot", {})
            return dict(self.safe_dict(spot, exact_or_broad, {}))
        return dict(super().get_exceptions_by_url(url, exact_or_broad))

    def handle_errors(
        self,
        code: int,
        reason: str,
        url: str,
        method: str,
        headers: dict[str, Any],
        body: str,
        response: Any,
        request_headers: Any,
        request_body: Any,
    ) -> Any:
        try:
            return super().handle_errors(code, reason, url, method, headers, body, response, request_headers,
                                         request_body)
        except ccxt_errors.BaseError as exc:
            if isinstance(response, dict):
                exc.binance_code = response.get("code")
                exc.binance_msg = response.get("msg")
            exc.http_status = code
            retry_after = (headers or {}).get("Retry-After") or (headers or {}).get("retry-after")
            try:
                exc.retry_after = float(retry_after) if retry_after is not None else None
            except ValueError:
                exc.retry_after = None
            raise


def _ccxt_options(config: BinanceConfig) -> dict[str, Any]:
    options: dict[str, Any] = {
        "apiKey": config.api_key.get_secret_value(),
        "secret": config.api_secret.get_secret_value(),
        "enableRateLimit": True,
        "timeout": config.timeout_ms,
        "verbose": False,
        "logger": CCXT_LOGGER,
        "options": {
            "defaultType": "spot",
            "fetchMarkets": {"types": ["spot"]},
            "fetchMargins": False,
            "fetchCurrencies": False,
            "recvWindow": config.recv_window_ms,
            "adjustForTimeDifference": False,  # done by connect() through load_time_difference
            "warnOnFetchOpenOrdersWithoutSymbol": False,
        },
    }
    if config.rate_limit_ms is not None:
        options["rateLimit"] = config.rate_limit_ms
    return options


def make_client(config: BinanceConfig) -> Any:
    """A new ccxt Binance client for ``config``, every API URL redirected to ``base_url``."""
    _REDACT.register(config.api_key.get_secret_value(), config.api_secret.get_secret_value())
    client = _BinanceClient(_ccxt_options(config), base_url=config.base_url)
    if config.base_url:
        base = config.base_url.rstrip("/")
        for name, url in list(client.urls["api"].items()):
            if isinstance(url, str):
                client.urls["api"][name] = base + urllib.parse.urlsplit(url).path
    return client


@dataclass(slots=True)
class _PoolEntry:
    client: Any
    users: int = 0


class _ClientPool:
    """One ccxt instance per (event loop, endpoint, credentials) in the process, reference counted.

    Binance meters request weight per IP and orders per account: one client, one rate limiter,
    one view of both, whichever adapters or agents use it.
    """

    def __init__(self) -> None:
        self._entries: dict[str, _PoolEntry] = {}

    @staticmethod
    def _key(config: BinanceConfig) -> str:
        loop_id = id(asyncio.get_running_loop())
        material = "\0".join(
            [
                str(loop_id),
                config.base_url or PRODUCTION_URL,
                config.api_key.get_secret_value(),
                config.api_secret.get_secret_value(),
                str(config.recv_window_ms),
                str(config.timeout_ms),
                str(config.rate_limit_ms),
            ]
        )
        return hashlib.sha256(material.encode()).hexdigest()

    def acquire(self, config: BinanceConfig) -> Any:
        key = self._key(config)
        entry = self._entries.get(key)
        if entry is None:
            entry = self._entries[key] = _PoolEntry(make_client(config))
        entry.users += 1
        return entry.client

    async def release(self, client: Any) -> None:
        for key, entry in list(self._entries.items()):
            if entry.client is client:
                entry.users -= 1
                if entry.users <= 0:
                    del self._entries[key]
                    await client.close()
                return
        await client.close()


CLIENTS = _ClientPool()

# ---------------------------------------------------------------------------------------------
# Error classification
# ---------------------------------------------------------------------------------------------

#: retried with backoff; after the last attempt -> BrokerUnavailable
_TRANSIENT: tuple[type[BaseException], ...] = (ccxt_errors.OperationFailed,)
#: the venue answered "no" to this request: final
_REFUSED: tuple[type[BaseException], ...] = (
    ccxt_errors.InsufficientFunds,
    ccxt_errors.InvalidOrder,
    ccxt_errors.BadRequest,  # includes BadSymbol
    ccxt_errors.AuthenticationError,  # includes PermissionDenied, AccountSuspended
    ccxt_errors.OperationRejected,
    ccxt_errors.NotSupported,
    ccxt_errors.ArgumentsRequired,
)
_DUPLICATE_MSG = "Duplicate order sent."


class _ClockSkew(Exception):
    """-1021 persisted after a time resync: not transient, not the order's fault."""


class OrderStateUnknown(PlacementUnknown):
    """The placement may have reached Binance but the venue could not be asked afterwards.

    A ``PlacementUnknown`` (so a ``BrokerUnavailable`` the breaker counts): the core keeps the
    order at Binance and reconciles it with ``query()`` instead of placing it elsewhere.
    """


def _binance_code(exc: BaseException) -> int | None:
    code = getattr(exc, "binance_code", None)
    try:
        return int(code) if code is not None else None
    except (TypeError, ValueError):
        return None


def _venue_message(exc: BaseException) -> str:
    msg = getattr(exc, "binance_msg", None)
    if msg:
        return str(msg)
    text = str(exc)
    return text[len("binance "):] if text.startswith("binance ") else text


def _maybe_reached_venue(exc: BaseException) -> bool:
    """False only when the request certainly did not execute: throttled (429/418, which Binance
    answers before processing) or the TCP connection was never established."""
    if isinstance(exc, ccxt_errors.DDoSProtection | ccxt_errors.RateLimitExceeded):
        return False
    return not isinstance(exc.__cause__, aiohttp.ClientConnectorError)


# ---------------------------------------------------------------------------------------------
# The adapter
# ---------------------------------------------------------------------------------------------


_TIF: dict[TimeInForce, str] = {
    # Binance spot has no DAY: crypto never closes, so a day order is good-till-cancelled.
    TimeInForce.DAY: "GTC",
    TimeInForce.GTC: "GTC",
    TimeInForce.IOC: "IOC",
    TimeInForce.FOK: "FOK",
}


class BinanceAdapter:
    """BrokerPort + MarketDataPort for Binance spot over ccxt."""

    name = Broker.BINANCE

    def __init__(self, config: BinanceConfig, *, client: Any | None = None, shared: bool = True) -> None:
        """``client`` injects a ready ccxt instance (not closed by ``close()``); otherwise the
        process-wide pooled one is used, or a private one with ``shared=False`` (e.g. a test that
        wants two independent 'processes')."""
        self.config = config
        self.poll_interval: float | None = config.poll_interval
        self._client: Any | None = client
        self._owned = client is None
        self._shared = shared
        self._auth_error: str | None = None
        self._auth_checked_at = 0.0
        self._commission: dict[str, _CommissionMark] = {}

    # -- lifecycle -----------------------------------------------------------------------------

    @property
    def client(self) -> Any:
        if self._client is None:
            raise BrokerUnavailable("Binance adapter is not connected")
        return self._client

    async def connect(self) -> None:
        """Open the client, load markets, sync the clock and verify the credentials (once).

        A network failure raises ``BrokerUnavailable``. Bad credentials do not raise here (market
        data still works); they make ``health_check`` False and every ``place`` a clear rejection.
        """
        if self._client is None:
            self._client = CLIENTS.acquire(self.config) if self._shared else make_client(self.config)
        client = self._client
        await self._call("load markets", lambda: client.load_markets())
        if self.config.adjust_for_time_difference:
            await self._call("time sync", lambda: client.load_time_difference())
        if self.config.has_credentials:
            await self._verify_credentials()
        else:
            self._auth_error = "Binance API key/secret not configured (BINANCE_API_KEY, BINANCE_API_SECRET)"
            log.warning("binance: %s; market data only", self._auth_error)
        log.info("binance connected to %s (%d markets)", self.config.base_url or PRODUCTION_URL,
                 len(client.markets or {}))

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is None or not self._owned:
            return
        if self._shared:
            await CLIENTS.release(client)
        else:
            await client.close()

    async def health_check(self) -> bool:
        """Reachable (``GET /api/v3/time``, weight 1, one attempt) and credentials not known bad."""
        if self._client is None:
            return False
        client = self._client
        try:
            await self._invoke("health check", lambda: client.fetch_time())
        except Exception as exc:  # any failure means unhealthy; the reason is logged, not raised
            log.warning("binance health check failed: %s", self._redact(f"{type(exc).__name__}: {exc}"))
            return False
        recheck_due = time.monotonic() - self._auth_checked_at >= self.config.auth_recheck_interval
        if self._auth_error is not None and self.config.has_credentials and recheck_due:
            try:
                await self._verify_credentials()
            except BrokerError:
                return False
        return self._auth_error is None

    async def _verify_credentials(self) -> None:
        """One signed call (``GET /api/v3/account``) to learn whether key and secret work."""
        client = self.client
        self._auth_checked_at = time.monotonic()
        try:
            await self._call("verify credentials", lambda: client.fetch_balance())
        except OrderRejected as exc:
            log.error("binance rejected the API credentials: %s", exc)
            return
        self._auth_error = None

    # -- execution -----------------------------------------------------------------------------

    async def place(self, order: Order) -> VenueOrderStatus:
        """Send ``order`` once, idempotently; return Binance's first answer as cumulative status."""
        client = self.client
        symbol = self._market(order.symbol, order.client_order_id)
        amount = self._check_precision(symbol, order.quantity, "quantity", order.client_order_id)
        side = "buy" if order.side is Side.BUY else "sell"
        params: dict[str, Any] = {"newClientOrderId": order.client_order_id}
        create: Callable[[], Awaitable[Any]]
        kind = order.order_type
        if kind is OrderType.MARKET:
            create = lambda: client.create_market_order(symbol, side, amount, None, params)  # noqa: E731
        elif kind is OrderType.LIMIT:
            assert order.limit_price is not None
            price = self._check_precision(symbol, order.limit_price, "limit price", order.client_order_id)
            params["timeInForce"] = _TIF[order.time_in_force]
            create = lambda: client.create_limit_order(symbol, side, amount, price, params)  # noqa: E731
        elif kind is OrderType.STOP:
            create = self._stop_order(order, symbol, side, amount, params)
        else:
            raise OrderRejected(
                f"BRACKET not supported on Binance spot: order {order.client_order_id} needs an entry with "
                "linked stop-loss and take-profit (OTOCO), which this adapter does not emulate; send the "
                "entry and protective orders as separate signals"
            )

        log.info("binance place %s %s %s %s qty=%s", order.client_order_id, kind.value, side, symbol, amount)
        maybe_sent = False

        async def attempt() -> Any:
            nonlocal maybe_sent
            if maybe_sent:
                # A previous attempt may have executed: Binance would accept the same client id
                # again once that order is filled, so look before placing a second time.
                found = await self._fetch_raw(symbol, order.client_order_id)
                if found is not None:
                    log.info("binance %s found at venue after an uncertain attempt", order.client_order_id)
                    return found
            try:
                return await self._invoke("place order", create)
            except ccxt_errors.InvalidOrder as exc:
                if _venue_message(exc) != _DUPLICATE_MSG:
                    raise
                maybe_sent = True
                found = await self._fetch_raw(symbol, order.client_order_id)
                if found is None:
                    raise
                return found
            except _TRANSIENT as exc:
                maybe_sent = maybe_sent or _maybe_reached_venue(exc)
                raise

        try:
            result = await self._call("place order", attempt, client_order_id=order.client_order_id)
        except BrokerUnavailable as exc:
            if maybe_sent:
                raise OrderStateUnknown(
                    f"{exc}; order {order.client_order_id} may exist at Binance, reconcile with query()",
                    code="state-unknown",
                ) from exc
            raise
        info: Mapping[str, Any] = result.get("info", result) if isinstance(result, dict) else {}
        fills = info.get("fills")
        if isinstance(fills, list):  # a FULL answer carries its fills: no trade lookup needed
            commission, asset = _sum_commission(fills)
            self._commission[order.client_order_id] = _CommissionMark(
                _dec(info.get("executedQty")), commission, asset
            )
        status = await self._status(symbol, info, order.client_order_id)
        log.info("binance %s -> %s filled=%s avg=%s", order.client_order_id, status.state.value,
                 status.filled_quantity, status.avg_fill_price)
        return status

    def _stop_order(
        self, order: Order, symbol: str, side: str, amount: str, params: dict[str, Any]
    ) -> Callable[[], Awaitable[Any]]:
        """STOP -> Binance STOP_LOSS (market once triggered) or, with a limit price, STOP_LOSS_LIMIT."""
        client = self.client
        assert order.stop_price is not None
        binance_type = "STOP_LOSS_LIMIT" if order.limit_price is not None else "STOP_LOSS"
        allowed = client.markets[symbol]["info"].get("orderTypes", [])
        if binance_type not in allowed:
            raise OrderRejected(
                f"STOP order {order.client_order_id}: {symbol} does not offer {binance_type} on Binance spot "
                f"(order types: {', '.join(allowed)})"
            )
        stop = self._check_precision(symbol, order.stop_price, "stop price", order.client_order_id)
        stop_params = {**params, "triggerPrice": stop}
        if order.limit_price is None:
            return lambda: client.create_order(symbol, "market", side, amount, None, stop_params)
        price = self._check_precision(symbol, order.limit_price, "limit price", order.client_order_id)
        stop_params["timeInForce"] = _TIF[order.time_in_force]
        return lambda: client.create_order(symbol, "limit", side, amount, price, stop_params)

    async def cancel(self, order: Order) -> VenueOrderStatus:
        """Cancel by client order id. An order that is no longer open answers with its final state
        (e.g. FILLED); one Binance never saw raises ``OrderRejected`` (code -2011)."""
        client = self.client
        symbol = self._market(order.symbol, order.client_order_id)
        coid = order.client_order_id
        result = await self._call(
            "cancel order",
            lambda: client.cancel_order(None, symbol, {"origClientOrderId": coid}),
            client_order_id=coid,
            not_found_ok=True,
        )
        if result is None:
            current = await self.query(order)
            if current is None:
                raise OrderRejected(f"cannot cancel {coid}: Binance has no such order", code=-2011)
            return current
        return await self._status(symbol, result.get("info", result), coid)

    async def query(self, order: Order) -> VenueOrderStatus | None:
        """Binance's view of ``order`` by client order id (``origClientOrderId``), or None if the
        venue never saw it (-2013). Used by the fill tracker's polls and by reconcile on start."""
        symbol = self._market(order.symbol, order.client_order_id)
        info = await self._fetch_order_info(symbol, order.client_order_id)
        if info is None:
            return None
        return await self._status(symbol, info, order.client_order_id)

    async def fetch_open_orders(self, symbol: str | None = None) -> list[VenueOrderStatus]:
        """Open orders (of one market, or all: weight 80 instead of 6) without commission lookups."""
        client = self.client
        market = self._market(symbol, "open orders") if symbol else None
        rows = await self._call("fetch open orders", lambda: client.fetch_open_orders(market))
        return [parse_order(row["info"]) for row in rows]

    async def _fetch_raw(self, symbol: str, client_order_id: str) -> Any | None:
        """One lookup attempt by client order id: the ccxt order, or None on -2013."""
        client = self.client
        try:
            return await self._invoke(
                "look up order",
                lambda: client.fetch_order(None, symbol, {"origClientOrderId": client_order_id}),
            )
        except ccxt_errors.OrderNotFound:
            return None

    async def _fetch_order_info(self, symbol: str, client_order_id: str) -> Mapping[str, Any] | None:
        client = self.client
        result = await self._call(
            "fetch order",
            lambda: client.fetch_order(None, symbol, {"origClientOrderId": client_order_id}),
            client_order_id=client_order_id,
            not_found_ok=True,
        )
        if result is None:
            return None
        info: Mapping[str, Any] = result.get("info", result)
        return info

    async def _status(self, symbol: str, info: Mapping[str, Any], client_order_id: str) -> VenueOrderStatus:
        """Parse with the order's cumulative commission; forget the cache once the order is final."""
        mark = await self._commission_for(symbol, info, client_order_id)
        status = parse_order(info, client_order_id=client_order_id, commission=mark)
        if status.state.is_terminal:
            self._commission.pop(client_order_id, None)
        return status

    async def _commission_for(
        self, symbol: str, info: Mapping[str, Any], client_order_id: str
    ) -> _CommissionMark | None:
        """Cumulative commission of an order, asking ``myTrades`` only when its fills grew.

        ``GET /order`` has no commission field; trades do. The mark is cached per client order id,
        so a poll of an unchanged order costs nothing extra and the value never goes backwards.
        """
        filled = _dec(info.get("executedQty"))
        mark = self._commission.get(client_order_id)
        if filled <= 0 or (mark is not None and mark.filled >= filled):
            return mark
        client = self.client
        order_id = str(info.get("orderId"))
        trades = await self._call(
            "fetch order trades",
            lambda: client.fetch_order_trades(order_id, symbol),
            client_order_id=client_order_id,
        )
        commission, asset = _sum_commission([t.get("info", t) for t in trades])
        if mark is not None and commission < mark.commission:
            commission = mark.commission
        new_mark = _CommissionMark(filled, commission, asset or (mark.asset if mark else None))
        self._commission[client_order_id] = new_mark
        return new_mark

    # -- market data ---------------------------------------------------------------------------

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
            bid=_dec(info.get("bidPrice"), Decimal(0)) or None,
            ask=_dec(info.get("askPrice"), Decimal(0)) or None,
            last=_dec(info.get("lastPrice"), Decimal(0)) or None,
        )

    async def fetch_order_book_l1(self, symbol: str) -> OrderBookL1:
        """Top of book from ``GET /api/v3/depth?limit=5`` (weight 5, the smallest depth Binance serves)."""
        client = self.client
        market = self._market(symbol, "order book")
        book = await self._call("fetch order book", lambda: client.fetch_order_book(market, 5))
        bids, asks = book.get("bids") or [], book.get("asks") or []
        return OrderBookL1(
            symbol=symbol,
            bid=_dec(bids[0][0]) if bids else None,
            bid_size=_dec(bids[0][1]) if bids else None,
            ask=_dec(asks[0][0]) if asks else None,
            ask_size=_dec(asks[0][1]) if asks else None,
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
                open=_dec(row[1]),
                high=_dec(row[2]),
                low=_dec(row[3]),
                close=_dec(row[4]),
                volume=_dec(row[5]),
            )
            for row in rows
        ]

    # -- helpers -------------------------------------------------------------------------------

    def _market(self, symbol: str, context: str) -> str:
        """Our symbol -> a loaded ccxt market symbol, or OrderRejected naming the symbol."""
        client = self.client
        markets = client.markets or {}
        by_id = client.markets_by_id or {}
        compact = symbol.strip().upper()
        if by_id.get(compact):
            return str(by_id[compact][0]["symbol"])
        try:
            mapped = to_ccxt_symbol(symbol)
        except ValueError as exc:
            raise OrderRejected(f"{context}: {exc}", code=-1121) from None
        if mapped not in markets:
            raise OrderRejected(f"{context}: {symbol} is not a Binance spot market ({mapped})", code=-1121)
        return mapped

    def _check_precision(self, symbol: str, value: Decimal, what: str, context: str) -> str:
        """Refuse a value ccxt would silently round to the market's step/tick.

        ccxt truncates quantities to LOT_SIZE.stepSize and rounds prices to the tick before
        sending; an order for 0.123456 would become 0.12345 and could then never be FILLED in full.
        """
        client = self.client
        try:
            if what == "quantity":
                sent = client.amount_to_precision(symbol, format(value, "f"))
            else:
                sent = client.price_to_precision(symbol, format(value, "f"))
        except ccxt_errors.BaseError as exc:
            raise OrderRejected(
                f"{context}: {what} {value} invalid for {symbol}: {_venue_message(exc)}"
            ) from None
        if Decimal(sent) != value:
            step = client.markets[symbol]["precision"]["amount" if what == "quantity" else "price"]
            raise OrderRejected(
                f"{context}: {what} {value} is not a multiple of {symbol}'s "
                f"{'LOT_SIZE stepSize' if what == 'quantity' else 'PRICE_FILTER tickSize'} "
                f"{_dec(step).normalize()} (Binance would get {sent})",
                code=-1013,
            )
        return str(sent)

    def _redact(self, text: str) -> str:
        return _REDACT.redact(text)

    async def _invoke(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        """One attempt, with the -1021 rule: resync the clock from ``/api/v3/time`` and retry once."""
        try:
            return await call()
        except ccxt_errors.InvalidNonce as exc:
            log.warning("binance %s: timestamp rejected (%s); resyncing clock", what, _venue_message(exc))
            await self.client.load_time_difference()
            try:
                return await call()
            except ccxt_errors.InvalidNonce as again:
                raise _ClockSkew(_venue_message(again)) from again

    def _retry_after(self, exc: BaseException) -> float | None:
        hint = getattr(exc, "retry_after", None)
        if hint is None:
            return None
        return min(float(hint), self.config.max_retry_after)

    async def _call(
        self,
        what: str,
        call: Callable[[], Awaitable[Any]],
        *,
        client_order_id: str | None = None,
        not_found_ok: bool = False,
    ) -> Any:
        """``_invoke`` under retry/backoff, then one translation of whatever is left."""
        try:
            return await retry_async(
                lambda: self._invoke(what, call),
                transient=_TRANSIENT,
                backoff=self.config.backoff,
                retry_after=self._retry_after,
                what=f"binance {what}",
            )
        except ccxt_errors.OrderNotFound as exc:
            if not_found_ok:
                return None
            raise self._translate(what, client_order_id, exc) from None
        except (ccxt_errors.BaseError, _ClockSkew) as exc:
            raise self._translate(what, client_order_id, exc) from None

    def _translate(self, what: str, client_order_id: str | None, exc: BaseException) -> BrokerError:
        """The one mapping from ccxt exceptions to what the core does with them."""
        subject = f"order {client_order_id}" if client_order_id else what
        code = _binance_code(exc)
        detail = self._redact(_venue_message(exc))
        suffix = f" (code {code})" if code is not None else ""
        if isinstance(exc, _ClockSkew):
            return BrokerUnavailable(
                f"binance {what}: clock still outside recvWindow after resync: {detail}", code=-1021
            )
        if isinstance(exc, _TRANSIENT):
            return BrokerUnavailable(
                f"binance unavailable during {what} after {self.config.backoff.attempts} attempts: "
                f"{type(exc).__name__}: {detail}{suffix}",
                code=code,
            )
        if isinstance(exc, ccxt_errors.AuthenticationError):
            self._auth_error = detail
            return OrderRejected(
                f"Binance authentication failed for {subject}: {detail}{suffix}. Check BINANCE_API_KEY / "
                "BINANCE_API_SECRET and the key's permissions and IP whitelist",
                code=code,
            )
        if isinstance(exc, ccxt_errors.InsufficientFunds):
            return OrderRejected(
                f"Binance rejected {subject}: insufficient funds: {detail}{suffix}", code=code
            )
        if isinstance(exc, _REFUSED):
            return OrderRejected(f"Binance rejected {subject}: {detail}{suffix}", code=code)
        if code is not None:
            # An answer with a Binance code ccxt does not know: the venue said no.
            return OrderRejected(f"Binance rejected {subject}: {detail}{suffix}", code=code)
        return BrokerError(f"binance {what} failed: {type(exc).__name__}: {detail}")


__all__ = [
    "CLIENTS",
    "PRODUCTION_URL",
    "TESTNET_URL",
    "BinanceAdapter",
    "BinanceConfig",
    "Candle",
    "OrderBookL1",
    "OrderStateUnknown",
    "make_client",
    "order_state",
    "parse_order",
    "to_ccxt_symbol",
]
