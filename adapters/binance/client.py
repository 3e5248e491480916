"""The ccxt client: Binance's spot error table on any base URL, error annotations, secret-safe
logging, and one shared instance per process and credentials.

* **The mapping holds off production too.** ccxt picks Binance's *spot* error table by URL
  prefix (``https://api.binance.com/``), so against a simulator or proxy it would silently use
  only the generic table. ``BinanceClient`` applies the spot table to the configured base URL,
  and annotates every exception with the Binance ``code``/``msg`` and ``Retry-After``.
* **Secrets stay secret.** Key and secret are ``SecretStr`` until handed to ccxt here; ccxt's own
  logger is given a filter that masks both, and ``REDACTOR`` masks every message the adapter builds.
* **One ccxt instance per process and credentials** (``ClientPool``), so its rate limiter sees
  all traffic, as Binance's weight limit does.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import urllib.parse
from dataclasses import dataclass
from typing import Any

import ccxt.async_support as ccxt_async
from ccxt.base import errors as ccxt_errors

from adapters.binance.config import PRODUCTION_URL, BinanceConfig


class RedactingFilter(logging.Filter):
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


#: knows every key and secret a client was made with in this process
REDACTOR = RedactingFilter()
#: the logger ccxt instances made here write to; masked so request headers never leak the key
CCXT_LOGGER = logging.getLogger("adapters.binance.ccxt")
CCXT_LOGGER.addFilter(REDACTOR)


class BinanceClient(ccxt_async.binance):  # type: ignore[misc]
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


def ccxt_options(config: BinanceConfig) -> dict[str, Any]:
    """The ccxt constructor options for ``config``: spot only, our logger, Binance's recvWindow."""
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
    REDACTOR.register(config.api_key.get_secret_value(), config.api_secret.get_secret_value())
    client = BinanceClient(ccxt_options(config), base_url=config.base_url)
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


class ClientPool:
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


CLIENTS = ClientPool()
