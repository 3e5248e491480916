"""Interactive Brokers' settings: the one place its configuration is declared (``IBKR_*`` environment).

This module and ``plugin.py`` are all the registry imports, so reading them never loads ib_async.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import SettingsConfigDict

from adapters.venue import VenueSettings
from execution.retry import Backoff
from schemas import AssetClass

#: what happens to a new order while the connection to IB is down
DisconnectedPolicy = Literal["paper", "hold", "reject"]


class IbkrConfig(VenueSettings):
    """Everything the IBKR adapter needs, read from ``IBKR_<FIELD>`` (e.g. ``IBKR_PORT``).

    ``client_id`` is the first API client id this process tries; IB refuses a second connection
    with an id already connected (error 326), so scaled-out executors each take the next free id
    from ``client_id`` up to ``client_id + client_id_span - 1``. ``master_client_id`` is the id
    set as "Master API client ID" in the gateway's settings: a connection with it sees every
    client's orders and executions, which an executor taking over another's orders needs to
    watch them by push. The adapter tries it first and falls back to the pool when another
    process holds it (then taken-over orders are refreshed by asking IB, see ``execution.py``).

    ``account`` identifies the account: a ``SecretStr``, shown as ``**********`` in reprs and
    logs. ``disconnected_policy`` decides what a new order does while the gateway is down (the
    seed's nightly restart): ``paper`` (the seed's rule), ``hold`` (kept PENDING, placed after
    the reconnect if still younger than ORDER_MAX_AGE) or ``reject``; one value for every asset
    class, or JSON per class (``IBKR_DISCONNECTED_POLICY='{"EQUITY": "hold", "OPTION": "reject"}'``,
    classes not named use ``paper``).
    """

    model_config = SettingsConfigDict(env_prefix="IBKR_", extra="ignore", env_ignore_empty=True, frozen=True)

    host: str = "127.0.0.1"
    #: 4002: IB Gateway's paper-trading port (the seed's gateway container)
    port: int = 4002
    client_id: int = 1
    client_id_span: int = 16
    master_client_id: int | None = None
    account: SecretStr = SecretStr("")
    #: seconds for the connection handshake and each connect-time synchronisation request
    connect_timeout: float = 8.0
    #: seconds for a request (contract details, order lookups, snapshots)
    request_timeout: float = 8.0
    #: seconds to wait for IB's first answer to a placement before it counts as ambiguous
    ack_timeout: float = 5.0
    #: how a lost connection is retried (forever, with this backoff between attempts)
    reconnect_backoff: Backoff = Field(default_factory=lambda: Backoff(attempts=1_000_000, base=0.5, cap=15.0))
    disconnected_policy: DisconnectedPolicy | dict[AssetClass, DisconnectedPolicy] = "paper"
    #: FX goes to MT4 first; with this set, FX goes to IBKR (CASH on IDEALPRO) when MT4 is unavailable
    fx_secondary: bool = False
    #: seconds between refreshes of orders this connection does not see by push (placed by another
    #: client id and taken over without the master client id)
    foreign_refresh_interval: float = 5.0

    @field_validator("disconnected_policy", mode="before")
    @classmethod
    def _policy_upper_keys(cls, value: object) -> object:
        if isinstance(value, dict):
            return {str(k).upper(): v for k, v in value.items()}
        return value

    def policy_for(self, asset_class: AssetClass) -> DisconnectedPolicy:
        policy = self.disconnected_policy
        if isinstance(policy, dict):
            return policy.get(asset_class, "paper")
        return policy
