"""Every setting from the environment (pydantic-settings). Secrets are ``SecretStr``: their
repr is ``'**********'``, so logging a settings object never leaks a key."""

from __future__ import annotations

from dataclasses import fields, replace
from decimal import Decimal
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from execution.nav_arb import NavArbParams
from schemas import Broker


class WorkerRole(StrEnum):
    ROUTER = "router"
    EXECUTORS = "executors"
    FILLS = "fills"
    #: the NAV-arbitrage agent (nav.quotes -> two-leg signals) and its legs' re-keying
    NAV_ARB = "nav-arb"


_NAV_DEFAULTS = NavArbParams()
#: the NavArbParams fields a NAV_ARB_PAIRS entry may override
NAV_PAIR_FIELDS = frozenset(f.name for f in fields(NavArbParams))


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", extra="ignore", env_nested_delimiter="__")

    app_id: str = Field("superintel-execution", alias="SUPERINTEL_APP_ID")
    kafka_bootstrap: str = Field("127.0.0.1:9092", alias="KAFKA_BOOTSTRAP")
    database_url: str = Field("postgresql://postgres@127.0.0.1:5432/test", alias="DATABASE_URL")
    redis_url: str = Field("redis://127.0.0.1:6379/0", alias="REDIS_URL")

    #: partitions each topic is created with (Kafka can't shrink them; Tansu can't grow them)
    topic_partitions: int = Field(4, alias="TOPIC_PARTITIONS")
    #: consumer fetch long-poll; Faust hard-codes 1500 ms, which dominates latency on small flows.
    #: 5 ms (bench/run.py, 100 signals/s): p50 signal->fill ~15 ms vs ~22 at 10 and ~34 at 20;
    #: 2 ms gains nothing more and doubles the idle fetch CPU.
    fetch_max_wait_ms: int = Field(5, alias="KAFKA_FETCH_MAX_WAIT_MS")
    #: the long-poll once no fetch has brought data for KAFKA_FETCH_IDLE_AFTER seconds: an idle
    #: worker then polls the broker ten times a second instead of two hundred (streams/transport.py
    #: AdaptiveFetchWait); the first message after a quiet spell waits up to this on its first hop
    fetch_idle_wait_ms: int = Field(100, alias="KAFKA_FETCH_IDLE_WAIT_MS")
    fetch_idle_after: float = Field(1.0, alias="KAFKA_FETCH_IDLE_AFTER")
    session_timeout: float = Field(8.0, alias="KAFKA_SESSION_TIMEOUT")
    heartbeat_interval: float = Field(1.5, alias="KAFKA_HEARTBEAT_INTERVAL")
    #: how long a produced message may wait for the broker's acknowledgement before its delivery
    #: fails (Faust's default is 1200 s). A failed delivery holds its batch unacked and is retried
    #: (agents/publish.py), so this bounds how long a broker outage goes unnoticed per batch.
    producer_request_timeout: float = Field(30.0, alias="KAFKA_PRODUCER_REQUEST_TIMEOUT")
    #: seconds a worker asked to stop (SIGTERM) spends finishing: waiting for batches in progress,
    #: committing what is done, handing claims over. Past it the worker exits anyway, committing
    #: nothing more (what is not committed is processed again, idempotently, after the restart):
    #: a stop never hangs on an unreachable broker, database or venue. Orchestrators SIGKILL 10 s
    #: after SIGTERM by default (Docker, Kubernetes' 30 s grace is longer), so it stays under that.
    shutdown_grace: float = Field(8.0, alias="SHUTDOWN_GRACE")
    #: a batch closes when nothing more is queued for the agent, at ``batch_max`` messages, or
    #: ``batch_window`` seconds after its first message, whichever first (agents/batches.py)
    batch_max: int = Field(500, alias="AGENT_BATCH_MAX")
    batch_window: float = Field(0.002, alias="AGENT_BATCH_WINDOW")
    web_port: int = Field(6066, alias="SUPERINTEL_WEB_PORT")
    #: where Faust keeps the worker's data (one folder per app id below it): under .superintel/ of
    #: the directory the worker starts in, never loose in it; tests and the bench set a temporary one
    data_dir: Path = Field(Path(".superintel") / "data", alias="SUPERINTEL_DATA_DIR")
    #: the worker's event loop: "uvloop" (when installed; it comes with ccxt) or "asyncio"
    event_loop: Literal["uvloop", "asyncio"] = Field("uvloop", alias="SUPERINTEL_EVENT_LOOP")

    force_paper_trading: bool = Field(False, alias="FORCE_PAPER_TRADING")
    #: what this worker runs: any of router, executors, fills (per-role scaling)
    worker_roles: list[WorkerRole] = Field(default_factory=lambda: list(WorkerRole), alias="WORKER_ROLES")
    #: brokers whose executor agents this worker runs (per-broker scaling); empty = all
    worker_brokers: list[Broker] = Field(default_factory=list, alias="WORKER_BROKERS")

    paper_slippage: Decimal = Field(Decimal("0.001"), alias="PAPER_SLIPPAGE")
    max_order_quantity: Decimal = Field(Decimal("1000000"), alias="MAX_ORDER_QUANTITY")
    max_order_notional: Decimal = Field(Decimal("10000000"), alias="MAX_ORDER_NOTIONAL")

    breaker_failure_threshold: int = Field(5, alias="BREAKER_FAILURE_THRESHOLD")
    breaker_cooldown: float = Field(30.0, alias="BREAKER_COOLDOWN")
    #: an order's claim (owner + lease on its row) lasts this long unless renewed; a dead executor's
    #: open orders are taken over within ORDER_LEASE_SECONDS + ORDER_SWEEP_INTERVAL
    order_lease_seconds: float = Field(30.0, alias="ORDER_LEASE_SECONDS")
    order_sweep_interval: float = Field(5.0, alias="ORDER_SWEEP_INTERVAL")
    #: a signal older than this (seconds, on the pipeline's clock) when its order would first be
    #: placed is EXPIRED with the reason, never placed late
    order_max_age: float = Field(300.0, alias="ORDER_MAX_AGE")
    #: seeds the random source of retry jitter (None: unseeded); a replay or a drill sets it
    random_seed: int | None = Field(None, alias="SUPERINTEL_RANDOM_SEED")

    #: NAV arbitrage (execution/nav_arb.py): the rule's window, thresholds and sizes for every
    #: pair on nav.quotes; NAV_ARB_PAIRS overrides them per pair, as JSON
    #: {"GBTC-BTC": {"trust_qty": 50, "entry_z": 2.5, "spot_step": "0.0001"}}
    nav_arb_window: int = Field(_NAV_DEFAULTS.window, alias="NAV_ARB_WINDOW")
    nav_arb_min_obs: int = Field(_NAV_DEFAULTS.min_obs, alias="NAV_ARB_MIN_OBS")
    nav_arb_entry_z: float = Field(_NAV_DEFAULTS.entry_z, alias="NAV_ARB_ENTRY_Z")
    nav_arb_entry_spread: float = Field(_NAV_DEFAULTS.entry_spread, alias="NAV_ARB_ENTRY_SPREAD")
    nav_arb_exit_z: float = Field(_NAV_DEFAULTS.exit_z, alias="NAV_ARB_EXIT_Z")
    nav_arb_trust_qty: Decimal = Field(_NAV_DEFAULTS.trust_qty, alias="NAV_ARB_TRUST_QTY")
    #: the spot venue's quantity step (the spot leg is rounded down to it)
    nav_arb_spot_step: Decimal = Field(_NAV_DEFAULTS.spot_step, alias="NAV_ARB_SPOT_STEP")
    nav_arb_unwind_attempts: int = Field(_NAV_DEFAULTS.unwind_attempts, alias="NAV_ARB_UNWIND_ATTEMPTS")
    nav_arb_pairs: dict[str, dict[str, Any]] = Field(default_factory=dict, alias="NAV_ARB_PAIRS")

    @model_validator(mode="after")
    def _nav_arb_params_valid(self) -> Settings:
        """A bad NAV-arb setting stops the worker at start, naming it, not at a pair's first quote."""
        self.nav_arb_params(None)
        for pair in self.nav_arb_pairs:
            self.nav_arb_params(pair)
        return self

    def nav_arb_params(self, pair: str | None) -> NavArbParams:
        """The rule's parameters for ``pair``: the NAV_ARB_* defaults and its NAV_ARB_PAIRS overrides."""
        params = NavArbParams(
            window=self.nav_arb_window, min_obs=self.nav_arb_min_obs, entry_z=self.nav_arb_entry_z,
            entry_spread=self.nav_arb_entry_spread, exit_z=self.nav_arb_exit_z, trust_qty=self.nav_arb_trust_qty,
            spot_step=self.nav_arb_spot_step, unwind_attempts=self.nav_arb_unwind_attempts,
        )
        overrides = self.nav_arb_pairs.get(pair, {}) if pair is not None else {}
        unknown = set(overrides) - NAV_PAIR_FIELDS
        if unknown:
            raise ValueError(f"NAV_ARB_PAIRS[{pair!r}]: unknown field(s) {sorted(unknown)}; "
                             f"known: {sorted(NAV_PAIR_FIELDS)}")
        types = {f.name: f.type for f in fields(NavArbParams)}
        converted = {name: _as(types[name], value) for name, value in overrides.items()}
        return replace(params, **converted)

    def executor_brokers(self) -> list[Broker]:
        return list(self.worker_brokers or Broker)

    def consumer_group(self) -> str:
        """Workers of different shapes must never share a group (their subscriptions differ),
        so the shape is part of the group id; workers of the same shape scale out together."""
        if set(self.worker_roles) == set(WorkerRole) and not self.worker_brokers:
            return self.app_id
        roles = "-".join(sorted(self.worker_roles))
        brokers = "-".join(sorted(self.worker_brokers)) if WorkerRole.EXECUTORS in self.worker_roles else ""
        return "-".join(p for p in (self.app_id, roles, brokers) if p)


def _as(kind: Any, value: Any) -> Any:
    """A NAV_ARB_PAIRS value as its NavArbParams field's type (annotations are strings here)."""
    name = kind if isinstance(kind, str) else getattr(kind, "__name__", str(kind))
    if name == "Decimal":
        return Decimal(str(value))
    if name == "int":
        return int(value)
    if name == "float":
        return float(value)
    return value


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
