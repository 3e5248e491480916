"""The HTTP client: the only module importing httpx. One pooled ``httpx.AsyncClient`` per adapter,
explicit connect/read timeouts, the bearer token, and one attempt per call.

Each call either returns the bridge's JSON or raises one of two exceptions (``errors.py``):
``BridgeError`` (the bridge answered with an error status and MT4 retcode) or
``BridgeUnreachable`` (no answer; ``maybe_sent`` says whether the request may have reached it).
Retries and their meaning are the session's (``session.py``).

The token lives in the client's default headers only: httpx logs requests by method and URL,
never headers, and every text this module puts into an exception passes the redactor.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import httpx

from adapters.mt4.config import Mt4Config
from adapters.mt4.errors import BridgeError, BridgeUnreachable

log = logging.getLogger(__name__)
#: httpx logs every request at INFO; the fill tracker polls each open order every MT4_POLL_INTERVAL,
#: which would drown a worker's INFO log. Quieted unless someone set its level on purpose.
_HTTPX_LOG = logging.getLogger("httpx")

#: httpx failures where the request certainly never left this process: safe to send again
_NOT_SENT: tuple[type[Exception], ...] = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout,
                                          httpx.UnsupportedProtocol)


class Redactor:
    """Masks the configured token in any text (a bridge echoing a header, an exception's repr)."""

    def __init__(self, *secrets: str) -> None:
        self._secrets = [s for s in secrets if len(s) >= 4]

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text


class BridgeClient:
    """One pooled connection set to the bridge at ``config.base_url``."""

    def __init__(self, config: Mt4Config, *, transport: httpx.AsyncBaseTransport | None = None) -> None:
        if _HTTPX_LOG.level == logging.NOTSET:
            _HTTPX_LOG.setLevel(logging.WARNING)
        token = config.api_token.get_secret_value()
        self.redact = Redactor(token)
        headers = {"Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._http = httpx.AsyncClient(
            base_url=config.base_url,
            headers=headers,
            timeout=httpx.Timeout(config.read_timeout, connect=config.connect_timeout),
            limits=httpx.Limits(max_connections=config.max_connections,
                                max_keepalive_connections=config.max_connections),
            transport=transport,
        )

    async def close(self) -> None:
        await self._http.aclose()

    @property
    def closed(self) -> bool:
        return self._http.is_closed

    async def call(
        self,
        method: str,
        path: str,
        *,
        body: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
    ) -> Any:
        """One request; the bridge's JSON body on 2xx."""
        try:
            response = await self._http.request(method, path, json=body, params=params)
        except _NOT_SENT as exc:
            raise BridgeUnreachable(self._describe(exc), maybe_sent=False) from None
        except httpx.TransportError as exc:
            raise BridgeUnreachable(self._describe(exc), maybe_sent=True) from None
        if response.status_code >= 400:
            raise self._error(response)
        try:
            return response.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            # an answer we cannot read: for a trade request as good as no answer at all
            raise BridgeUnreachable(
                f"unreadable answer to {method} {path} (HTTP {response.status_code}): "
                f"{self.redact(response.text[:200])!r}", maybe_sent=True) from None

    def _error(self, response: httpx.Response) -> BridgeError:
        retcode: int | None = None
        detail = ""
        text = response.reason_phrase or f"HTTP {response.status_code}"
        try:
            payload = response.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            payload = None
            if response.text.strip():
                text = response.text.strip()[:200]
        if isinstance(payload, dict):
            raw = payload.get("retcode")
            try:
                retcode = int(raw) if raw is not None else None
            except (TypeError, ValueError):
                retcode = None
            text = str(payload.get("error") or payload.get("message") or text)
            detail = str(payload.get("detail") or "")
        return BridgeError(response.status_code, retcode, self.redact(text), self.redact(detail))

    def _describe(self, exc: Exception) -> str:
        detail = str(exc) or exc.__class__.__doc__ or ""
        return self.redact(f"{type(exc).__name__}: {detail.strip().splitlines()[0] if detail.strip() else ''}")
