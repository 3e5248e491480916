"""One connection to the MT4 bridge and the one way every request is made.

Market data (``market_data.py``) and execution (``execution.py``) are built on this base, so both
go through the same pooled client, the same retry discipline (``execution.retry``: exponential
backoff with jitter, capped, ``MT4_BACKOFF``) and the same translation of what is left
(``errors.py``). Two kinds of request:

* **reads** (``GET``) are idempotent: every failure but a refusal is retried, then translated;
* **trade requests** (``POST /order/...``) are retried only when they certainly did not execute
  (never sent, or MT4's 136/138/146) and, for an order, only while its signal is fresh. One that
  may have reached the bridge (timeout, dropped connection, 5xx) raises ``MaybeExecuted`` to the
  caller, which must find out by asking, never by sending it again.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any, NoReturn

from adapters.mt4.client import BridgeClient
from adapters.mt4.config import Mt4Config
from adapters.mt4.errors import UNAUTHORIZED, BridgeError, BridgeUnreachable, retried, translate
from adapters.mt4.parsing import Account, parse_account
from execution.clock import SYSTEM_CLOCK, Clock
from execution.ports import BrokerUnavailable
from execution.retry import Backoff, retry_async

log = logging.getLogger(__name__)


class MaybeExecuted(Exception):
    """A trade request that may have reached the bridge without an answer we can trust. Not a
    ``BrokerError``: the caller resolves it by lookup, it never reaches the core as it is."""

    def __init__(self, cause: BridgeError | BridgeUnreachable) -> None:
        super().__init__(str(cause))
        self.cause = cause


class _Again(Exception):
    """A failure ``retry_async`` may retry (wraps the bridge's exception)."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


class _Stale(Exception):
    """The order's freshness ran out between retries of a requote/busy answer."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


class Mt4Session:
    """A bridge client and the discipline of calling it.

    ``transport`` injects an httpx transport (tests); ``clock`` decides the orders' freshness."""

    def __init__(self, config: Mt4Config, *, clock: Clock = SYSTEM_CLOCK, transport: Any | None = None) -> None:
        self.config = config
        self._clock = clock
        self._transport = transport
        self._client: BridgeClient | None = None
        #: why the bridge refused our token, while it does (None: not known bad)
        self._auth_error: str | None = None
        #: the account currency (commission asset), learnt from ``GET /account``
        self.currency: str | None = None

    @property
    def client(self) -> BridgeClient:
        if self._client is None:
            raise BrokerUnavailable("MT4 adapter is not connected")
        return self._client

    @property
    def endpoint(self) -> str:
        return self.config.base_url

    async def connect(self) -> None:
        """Open the pooled client and read the account once (the currency of commissions).

        The client stays open when the bridge is down (``BrokerUnavailable`` is raised): the
        health check brings the venue back as soon as the bridge answers."""
        if self._client is None or self._client.closed:
            self._client = BridgeClient(self.config, transport=self._transport)
        account = await self.account()
        log.info("mt4 connected to %s: account %s, %s %s, leverage 1:%s, %s mode", self.endpoint, account.login,
                 account.balance, account.currency, account.leverage,
                 "netting (MT4_CLOSE_OPPOSITE)" if self.config.close_opposite else "hedging")

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.close()

    async def health_check(self) -> bool:
        """``GET /account`` answers (one attempt) and the token is not refused."""
        if self._client is None:
            return False
        try:
            await self._account(attempts=1)
        except Exception as exc:  # any failure means unhealthy; the reason is logged, not raised
            log.warning("mt4 health check failed: %s", exc)
            return False
        return True

    async def account(self) -> Account:
        """The account view: balance, equity, margin, free margin, currency, leverage."""
        return await self._account()

    async def _account(self, attempts: int | None = None) -> Account:
        account = parse_account(await self.read("account", "/account", attempts=attempts))
        self.currency = account.currency or self.currency
        self._auth_error = None
        return account

    # -- the discipline -------------------------------------------------------------------------

    def _backoff(self, attempts: int | None) -> Backoff:
        backoff = self.config.backoff
        if attempts is None:
            return backoff
        return Backoff(attempts=attempts, base=backoff.base, factor=backoff.factor, cap=backoff.cap,
                       jitter=backoff.jitter)

    async def read(
        self,
        what: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        attempts: int | None = None,
        not_found_ok: bool = False,
    ) -> Any:
        """``GET path``: retried on anything but a refusal; ``not_found_ok`` answers None to 404."""
        client = self.client

        async def attempt() -> Any:
            try:
                return await client.call("GET", path, params=params)
            except BridgeError as exc:
                if exc.status == 404 and not_found_ok:
                    return None
                if exc.server_error or exc.retryable:
                    raise _Again(exc) from exc
                raise
            except BridgeUnreachable as exc:
                raise _Again(exc) from exc

        backoff = self._backoff(attempts)
        try:
            return await retry_async(attempt, transient=(_Again,), backoff=backoff, what=f"mt4 {what}")
        except _Again as again:
            self._fail(what, None, again.cause, backoff.attempts)
        except BridgeError as exc:
            self._fail(what, None, exc, backoff.attempts)

    async def trade(
        self,
        what: str,
        path: str,
        body: dict[str, Any],
        *,
        client_order_id: str | None = None,
        fresh_until: datetime | None = None,
    ) -> Any:
        """``POST path``: retried only while it certainly did not execute, and not past
        ``fresh_until``; raises ``MaybeExecuted`` when it may have executed unanswered."""
        client = self.client
        last: list[BaseException] = []

        async def attempt() -> Any:
            if last and fresh_until is not None and self._clock.now() > fresh_until:
                raise _Stale(last[-1])
            try:
                return await client.call("POST", path, body=body)
            except (BridgeError, BridgeUnreachable) as exc:
                if retried(exc):
                    last.append(exc)
                    raise _Again(exc) from exc
                if isinstance(exc, BridgeUnreachable) or exc.server_error:
                    raise MaybeExecuted(exc) from exc
                raise

        backoff = self.config.backoff
        try:
            return await retry_async(attempt, transient=(_Again,), backoff=backoff, what=f"mt4 {what}")
        except _Again as again:
            self._fail(what, client_order_id, again.cause, backoff.attempts)
        except _Stale as stale:
            error = translate(what, client_order_id, stale.cause, attempts=len(last))
            raise BrokerUnavailable(
                f"{error}; not sent again: the signal is older than MT4_REQUOTE_WINDOW "
                f"({self.config.requote_window:g}s)", code=error.code) from None
        except BridgeError as exc:
            self._fail(what, client_order_id, exc, backoff.attempts)

    def _fail(self, what: str, client_order_id: str | None, exc: BaseException, attempts: int) -> NoReturn:
        error = translate(what, client_order_id, exc, attempts=attempts)
        if error.code == UNAUTHORIZED:
            self._auth_error = str(error)
            log.error("%s", error)
        raise error from None

