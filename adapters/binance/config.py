"""Binance's settings: the one place its configuration is declared (``BINANCE_*`` environment).

This module and ``plugin.py`` are all the registry imports, so reading them never loads ccxt.
"""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from adapters.venue import VenueSettings
from execution.retry import Backoff

PRODUCTION_URL = "https://api.binance.com"
TESTNET_URL = "https://testnet.binance.vision"


class BinanceConfig(VenueSettings):
    """Everything the Binance adapter needs, read from ``BINANCE_<FIELD>`` (e.g. ``BINANCE_API_KEY``,
    ``BINANCE_POLL_INTERVAL``); keyword arguments override the environment.

    ``base_url`` None means production; set it to ``TESTNET_URL`` or a simulator's
    ``http://host:port``. ``rate_limit_ms`` overrides ccxt's client-side pacing (50 ms per weight
    unit by default). ``max_retry_after`` caps how long one retry may wait on a ``Retry-After``
    hint, so a long ban turns into ``BrokerUnavailable`` instead of a stuck partition. ``backoff``
    can be set as JSON (``BINANCE_BACKOFF='{"attempts": 6}'``). An empty variable counts as unset.
    Key and secret are ``SecretStr``: the settings' repr and logs show ``**********``.
    """

    # frozen: the client pool keys on these values, so they must not change under a live client
    model_config = SettingsConfigDict(env_prefix="BINANCE_", extra="ignore", env_ignore_empty=True, frozen=True)

    api_key: SecretStr = SecretStr("")
    api_secret: SecretStr = SecretStr("")
    base_url: str | None = None
    #: seconds between the fill tracker's polls of an open order
    poll_interval: float = 3.0
    #: Binance refuses a signed request older than this when it gets to it (gateway -1021,
    #: matching engine -5028); sent with every signed request
    recv_window_ms: int = 5000
    #: after a submit that may have reached Binance, its "no such order" is trusted only once
    #: ``recv_window_ms`` plus this margin has passed: Binance takes timestamps up to 1000 ms ahead of
    #: its own clock, so a request may stay valid that much longer; the rest covers clock drift
    ambiguous_submit_margin_ms: int = 1500
    timeout_ms: int = 10_000
    rate_limit_ms: float | None = None
    backoff: Backoff = Field(default_factory=Backoff)
    max_retry_after: float = 10.0
    adjust_for_time_difference: bool = True
    #: while credentials are known bad, health_check re-verifies them at most this often (seconds)
    auth_recheck_interval: float = 30.0

    @property
    def has_credentials(self) -> bool:
        return bool(self.api_key.get_secret_value() and self.api_secret.get_secret_value())
