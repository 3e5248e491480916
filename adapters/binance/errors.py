"""Every Binance failure has one meaning: the one translation of ccxt exceptions for the core.

The venue refusing the order (funds, filters, symbol, credentials) becomes ``OrderRejected`` with
Binance's own message and code; transport trouble (network, 5xx, 429/418) is ``TRANSIENT``: the
adapter retries it with ``execution.retry`` backoff, then it becomes ``BrokerUnavailable`` for the
circuit breaker; a -1021 timestamp error that outlives a clock resync is ``ClockSkew``.
"""

from __future__ import annotations

import aiohttp
from ccxt.base import errors as ccxt_errors

from adapters.binance.client import REDACTOR
from execution.ports import BrokerError, BrokerUnavailable, OrderRejected, PlacementUnknown

#: retried with backoff; after the last attempt -> BrokerUnavailable
TRANSIENT: tuple[type[BaseException], ...] = (ccxt_errors.OperationFailed,)
#: the venue answered "no" to this request: final
REFUSED: tuple[type[BaseException], ...] = (
    ccxt_errors.InsufficientFunds,
    ccxt_errors.InvalidOrder,
    ccxt_errors.BadRequest,  # includes BadSymbol
    ccxt_errors.AuthenticationError,  # includes PermissionDenied, AccountSuspended
    ccxt_errors.OperationRejected,
    ccxt_errors.NotSupported,
    ccxt_errors.ArgumentsRequired,
)
#: Binance's answer to a reused ``newClientOrderId`` whose first order is still open
DUPLICATE_MSG = "Duplicate order sent."


class ClockSkew(Exception):
    """-1021 persisted after a time resync: not transient, not the order's fault."""


class OrderStateUnknown(PlacementUnknown):
    """The placement may have reached Binance, and Binance either could not be asked afterwards
    or does not show the order while the request may still execute (within its recvWindow plus a
    margin: ``execution.py``, *The safe delay*).

    A ``PlacementUnknown`` (so a ``BrokerUnavailable`` the breaker counts): the core keeps the
    order at Binance and reconciles it with ``query()`` instead of placing it again or elsewhere.
    """


def binance_code(exc: BaseException) -> int | None:
    """Binance's numeric error code, as annotated by ``client.BinanceClient.handle_errors``."""
    code = getattr(exc, "binance_code", None)
    try:
        return int(code) if code is not None else None
    except (TypeError, ValueError):
        return None


def venue_message(exc: BaseException) -> str:
    """Binance's own ``msg``, or ccxt's text without its ``binance`` prefix."""
    msg = getattr(exc, "binance_msg", None)
    if msg:
        return str(msg)
    text = str(exc)
    return text[len("binance "):] if text.startswith("binance ") else text


def maybe_reached_venue(exc: BaseException) -> bool:
    """False only when the request certainly did not execute: throttled (429/418, which Binance
    answers before processing) or the TCP connection was never established."""
    if isinstance(exc, ccxt_errors.DDoSProtection | ccxt_errors.RateLimitExceeded):
        return False
    return not isinstance(exc.__cause__, aiohttp.ClientConnectorError)


def is_authentication_failure(exc: BaseException) -> bool:
    """The venue refused the credentials (not this order): health stays False until they work."""
    return isinstance(exc, ccxt_errors.AuthenticationError)


def translate(what: str, client_order_id: str | None, exc: BaseException, *, attempts: int) -> BrokerError:
    """The one mapping from ccxt exceptions to what the core does with them.

    ``attempts`` is how many tries the transient ones were given (for the message only); every
    message is redacted, so no key or secret leaves through an exception.
    """
    subject = f"order {client_order_id}" if client_order_id else what
    code = binance_code(exc)
    detail = REDACTOR.redact(venue_message(exc))
    suffix = f" (code {code})" if code is not None else ""
    if isinstance(exc, ClockSkew):
        return BrokerUnavailable(
            f"binance {what}: clock still outside recvWindow after resync: {detail}", code=-1021
        )
    if isinstance(exc, TRANSIENT):
        return BrokerUnavailable(
            f"binance unavailable during {what} after {attempts} attempts: "
            f"{type(exc).__name__}: {detail}{suffix}",
            code=code,
        )
    if is_authentication_failure(exc):
        return OrderRejected(
            f"Binance authentication failed for {subject}: {detail}{suffix}. Check BINANCE_API_KEY / "
            "BINANCE_API_SECRET and the key's permissions and IP whitelist",
            code=code,
        )
    if isinstance(exc, ccxt_errors.InsufficientFunds):
        return OrderRejected(
            f"Binance rejected {subject}: insufficient funds: {detail}{suffix}", code=code
        )
    if isinstance(exc, REFUSED):
        return OrderRejected(f"Binance rejected {subject}: {detail}{suffix}", code=code)
    if code is not None:
        # An answer with a Binance code ccxt does not know: the venue said no.
        return OrderRejected(f"Binance rejected {subject}: {detail}{suffix}", code=code)
    return BrokerError(f"binance {what} failed: {type(exc).__name__}: {detail}")
