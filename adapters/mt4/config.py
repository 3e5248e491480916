"""MT4's settings: the one place its configuration is declared (``MT4_*`` environment).

This module and ``plugin.py`` are all the registry imports, so reading them never loads httpx.
"""

from __future__ import annotations

from decimal import Decimal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import SettingsConfigDict

from adapters.venue import VenueSettings
from execution.retry import Backoff

#: the seed's bridge container (superintel-mt4-bridge) publishes its port 8000 here
DEFAULT_URL = "http://127.0.0.1:8005"


class Mt4Config(VenueSettings):
    """Everything the MT4 adapter needs, read from ``MT4_<FIELD>`` (e.g. ``MT4_BASE_URL``,
    ``MT4_CLOSE_OPPOSITE``); keyword arguments override the environment. An empty variable
    counts as unset.

    ``api_token`` is sent as ``Authorization: Bearer <token>`` when set; it is a ``SecretStr``,
    shown as ``**********`` in reprs and never written to a log or an error message.

    Units: a signal's FX quantity is in units of the base currency; one lot is ``contract_size``
    units and MT4 takes volumes in multiples of ``lot_step`` lots (EURUSD 10000 = 0.10 lot). A
    quantity that is not a whole number of steps is refused with the reason, never rounded.

    ``backoff`` paces the retries of what is safe to retry: requests that never reached the
    bridge (connection refused), reads (``GET``), and MT4's "nothing happened, try again" answers
    to a trade request (136 off quotes, 138 requote, 146 trade context busy). Those trade retries
    stop once the order's signal is older than ``requote_window`` seconds: a price the strategy
    saw that long ago is not chased. JSON in the environment: ``MT4_BACKOFF='{"attempts": 6}'``.

    ``close_opposite`` chooses the account model: false (MT4's own hedging: a SELL while a BUY is
    open opens a second ticket) or true (netting: open opposite tickets of the symbol are closed
    first, oldest first, and only the excess opens a new ticket). See README, "MT4 bridge contract".
    """

    # frozen: the HTTP client is built from these values, so they must not change under it
    model_config = SettingsConfigDict(env_prefix="MT4_", extra="ignore", env_ignore_empty=True, frozen=True)

    base_url: str = DEFAULT_URL
    api_token: SecretStr = SecretStr("")
    #: seconds to establish a TCP connection to the bridge
    connect_timeout: float = 3.0
    #: seconds to wait for the bridge's answer (an OrderSend through the terminal can take a while)
    read_timeout: float = 10.0
    #: connections kept to the bridge (one pooled client per adapter)
    max_connections: int = 10
    #: seconds between the fill tracker's polls of an open order
    poll_interval: float = 3.0
    backoff: Backoff = Field(default_factory=lambda: Backoff(attempts=5, base=0.1, factor=2.0, cap=2.0))
    #: seconds after the signal's time during which 136/138/146 answers are retried
    requote_window: float = 10.0
    #: after a trade request whose answer was lost (timeout, dropped connection, 5xx), the bridge's
    #: "no such order" is believed only this many seconds later: the terminal may still be working
    #: through the request (MT4 executes trade requests one at a time, in its trade context)
    settle_delay: float = 15.0
    #: units of the base currency per lot (100 000 for FX majors)
    contract_size: Decimal = Decimal(100_000)
    #: the smallest volume increment, in lots
    lot_step: Decimal = Decimal("0.01")
    close_opposite: bool = False
    #: MT4's magic number on every order this adapter sends (tells our orders from manual ones)
    magic: int = 0

    @field_validator("contract_size", "lot_step")
    @classmethod
    def _positive(cls, value: Decimal) -> Decimal:
        if value <= 0:
            raise ValueError("must be positive")
        return value

    @field_validator("base_url")
    @classmethod
    def _no_trailing_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @property
    def step_units(self) -> Decimal:
        """The smallest tradable quantity in units (1000 for 0.01 lot of 100 000)."""
        return self.contract_size * self.lot_step
