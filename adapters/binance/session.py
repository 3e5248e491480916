"""One connection to Binance: the ccxt client's lifecycle and the one way every request is made.

Market data (``market_data.py``) and execution (``execution.py``) are built on this base, so both
go through the same client (one rate limiter), the same -1021 clock-resync rule, the same retry
with backoff for transport trouble and the same translation of what is left (``errors.py``).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from ccxt.base import errors as ccxt_errors

from adapters.binance.client import CLIENTS, REDACTOR, make_client
from adapters.binance.config import PRODUCTION_URL, BinanceConfig
from adapters.binance.errors import (
    TRANSIENT,
    ClockSkew,
    is_authentication_failure,
    translate,
    venue_message,
)
from adapters.binance.parsing import to_ccxt_symbol
from execution.clock import SYSTEM_CLOCK, Clock
from execution.ports import BrokerError, BrokerUnavailable, OrderRejected
from execution.retry import retry_async

T = TypeVar("T")
log = logging.getLogger(__name__)


class BinanceSession:
    """A connected ccxt Binance client and the discipline of calling it.

    ``client`` injects a ready ccxt instance (not closed by ``close()``); otherwise the
    process-wide pooled one is used, or a private one with ``shared=False`` (e.g. a test that
    wants two independent 'processes'). ``clock`` schedules the credential re-checks.
    """

    def __init__(
        self,
        config: BinanceConfig,
        *,
        client: Any | None = None,
        shared: bool = True,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.config = config
        self._clock = clock
        self._client: Any | None = client
        self._owned = client is None
        self._shared = shared
        #: why the venue refused our credentials, while it does (None: not known bad)
        self._auth_error: str | None = None

    @property
    def client(self) -> Any:
        if self._client is None:
            raise BrokerUnavailable("Binance adapter is not connected")
        return self._client

    async def connect(self) -> None:
        """Open the client, load markets and sync the clock; a network failure raises ``BrokerUnavailable``."""
        if self._client is None:
            self._client = CLIENTS.acquire(self.config) if self._shared else make_client(self.config)
        client = self._client
        await self._call("load markets", lambda: client.load_markets())
        if self.config.adjust_for_time_difference:
            await self._call("time sync", lambda: client.load_time_difference())

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is None or not self._owned:
            return
        if self._shared:
            await CLIENTS.release(client)
        else:
            await client.close()

    @property
    def endpoint(self) -> str:
        return self.config.base_url or PRODUCTION_URL

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

    async def _invoke(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        """One attempt, with the -1021 rule: resync the clock from ``/api/v3/time`` and retry once."""
        try:
            return await call()
        except ccxt_errors.InvalidNonce as exc:
            log.warning("binance %s: timestamp rejected (%s); resyncing clock", what, venue_message(exc))
            await self.client.load_time_difference()
            try:
                return await call()
            except ccxt_errors.InvalidNonce as again:
                raise ClockSkew(venue_message(again)) from again

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
        """``_invoke`` under retry/backoff, then one translation of whatever is left.

        ``not_found_ok``: an unknown order (-2013/-2011) answers None instead of raising.
        """
        try:
            return await retry_async(
                lambda: self._invoke(what, call),
                transient=TRANSIENT,
                backoff=self.config.backoff,
                retry_after=self._retry_after,
                what=f"binance {what}",
            )
        except ccxt_errors.OrderNotFound as exc:
            if not_found_ok:
                return None
            raise self._translate(what, client_order_id, exc) from None
        except (ccxt_errors.BaseError, ClockSkew) as exc:
            raise self._translate(what, client_order_id, exc) from None

    def _translate(self, what: str, client_order_id: str | None, exc: BaseException) -> BrokerError:
        if is_authentication_failure(exc):
            self._auth_error = REDACTOR.redact(venue_message(exc))
        return translate(what, client_order_id, exc, attempts=self.config.backoff.attempts)
