"""Every MT4 bridge failure has one meaning: the one translation for the core.

The bridge answers errors as ``{"retcode": <MT4 GetLastError code>, "error": "<MT4's text>"}``
(README, "MT4 bridge contract"). Three kinds, decided by the code, not by the HTTP status alone:

* **nothing happened, try again** (136 off quotes, 138 requote, 146 trade context busy; HTTP 409):
  retried with backoff by the session, then ``BrokerUnavailable`` (the order was never taken);
* **the venue said no** (130 invalid stops, 131 invalid volume, 132 market closed, 133 trade
  disabled, 134 not enough money, 4106 unknown symbol, 401 unauthorized, any other 4xx):
  ``OrderRejected`` carrying the MT4 code and MT4's own words;
* **no answer** (connection refused, timeout, dropped connection) and **5xx** (bridge or terminal
  trouble): ``BrokerUnavailable`` for the breaker, except that a trade request which may have
  reached the bridge is never called "not placed" (``execution.py`` turns it into
  ``PlacementUnknown`` and asks by client id).
"""

from __future__ import annotations

from execution.ports import BrokerError, BrokerUnavailable, OrderRejected, PlacementUnknown

OFF_QUOTES = 136
REQUOTE = 138
TRADE_CONTEXT_BUSY = 146
#: MT4 refused the request before doing anything: retrying later is safe
RETRYABLE_CODES: frozenset[int] = frozenset({OFF_QUOTES, REQUOTE, TRADE_CONTEXT_BUSY})

INVALID_STOPS = 130
INVALID_VOLUME = 131
MARKET_CLOSED = 132
TRADE_DISABLED = 133
NOT_ENOUGH_MONEY = 134
UNKNOWN_SYMBOL = 4106
INVALID_TICKET = 4108
UNAUTHORIZED = 401


class BridgeError(Exception):
    """The bridge answered with an HTTP error status (and, normally, an MT4 retcode)."""

    def __init__(self, status: int, retcode: int | None, text: str, detail: str = "") -> None:
        super().__init__(f"HTTP {status}: {text}" + (f" (retcode {retcode})" if retcode is not None else "")
                         + (f": {detail}" if detail else ""))
        self.status = status
        self.retcode = retcode
        self.text = text
        #: what exactly was wrong, when the bridge says (which stop, which limit)
        self.detail = detail

    @property
    def retryable(self) -> bool:
        """MT4 said nothing happened and asked to try again (136/138/146)."""
        return self.retcode in RETRYABLE_CODES or (self.status == 409 and self.retcode is None)

    @property
    def server_error(self) -> bool:
        """Bridge or terminal trouble: a trade request's outcome is unknown."""
        return self.status >= 500

    @property
    def code(self) -> int:
        return self.retcode if self.retcode is not None else self.status


class BridgeUnreachable(Exception):
    """No answer from the bridge. ``maybe_sent`` is False only when the request certainly never
    left (the connection was never established), so resending it is safe."""

    def __init__(self, detail: str, *, maybe_sent: bool) -> None:
        super().__init__(detail)
        self.maybe_sent = maybe_sent


class OutcomeUnknown(PlacementUnknown):
    """A trade request may have reached the bridge and the bridge could not say what became of
    it (yet). The core keeps the order at MT4 and asks again (``query``) instead of placing it
    again or elsewhere."""


def retried(exc: BaseException) -> bool:
    """Safe to send again: it never reached the bridge, or MT4 said nothing happened."""
    if isinstance(exc, BridgeUnreachable):
        return not exc.maybe_sent
    return isinstance(exc, BridgeError) and exc.retryable


def translate(what: str, client_order_id: str | None, exc: BaseException, *, attempts: int) -> BrokerError:
    """The one mapping from what the bridge did to what the core does with it."""
    subject = f"order {client_order_id}" if client_order_id else what
    if isinstance(exc, BridgeUnreachable):
        return BrokerUnavailable(f"MT4 bridge unreachable during {what} after {attempts} attempt(s): {exc}")
    if not isinstance(exc, BridgeError):
        return BrokerError(f"MT4 {what} failed: {type(exc).__name__}: {exc}")
    if exc.server_error:
        return BrokerUnavailable(f"MT4 bridge error during {what}: {exc}", code=exc.code)
    if exc.retryable:
        return BrokerUnavailable(
            f"MT4 {what} for {subject}: {exc.text} (retcode {exc.code}) after {attempts} attempt(s); "
            "nothing was executed",
            code=exc.code,
        )
    if exc.status == UNAUTHORIZED or exc.retcode == UNAUTHORIZED:
        return OrderRejected(
            f"MT4 bridge refused the credentials for {subject}: {exc.text}. Check MT4_API_TOKEN",
            code=UNAUTHORIZED,
        )
    detail = f": {exc.detail}" if exc.detail else ""
    return OrderRejected(f"MT4 rejected {subject}: {exc.text} (retcode {exc.code}){detail}", code=exc.code)
