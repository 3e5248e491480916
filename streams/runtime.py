"""Runtime: the worker's long-lived resources (DB pool, Redis, venue adapters, services).

Built lazily, once, by whichever agent needs it first, so a worker that runs only the router
never opens a database pool, and an executor-only worker never connects to Redis.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, cast

from adapters.composite import CompositeBrokerAdapter
from adapters.paper import PaperAdapter, SlippageModel
from adapters.redis_bus import TRANSIENT_ERRORS as BUS_TRANSIENT_ERRORS
from adapters.redis_bus import RedisFillPublisher
from adapters.timescale import TRANSIENT_ERRORS as STORE_TRANSIENT_ERRORS
from adapters.timescale import TimescaleStore
from execution.breaker import BreakerState, CircuitBreaker
from execution.fill_tracker import FillTracker
from execution.ports import BrokerPort, ExecutionEvents, MarketDataPort
from execution.risk import PreTradeLimits
from execution.router import BrokerRouter
from execution.service import ExecutionService
from schemas import AssetClass, Broker
from streams.settings import Settings

log = logging.getLogger(__name__)


class Runtime:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lock = asyncio.Lock()
        self._store: TimescaleStore | None = None
        self._publisher: RedisFillPublisher | None = None
        self._live: dict[Broker, BrokerPort] | None = None
        self._services: dict[Broker, ExecutionService] = {}
        self._closers: list[Callable[[], Awaitable[Any]]] = []
        self.breakers: dict[Broker, CircuitBreaker] = {}

    def router(self) -> BrokerRouter:
        return BrokerRouter(self.configured_live_brokers(), force_paper=self.settings.force_paper_trading)

    def configured_live_brokers(self) -> set[Broker]:
        """Live venues this deployment has adapters configured for (static, no I/O)."""
        live = set()
        if self.settings.binance.enabled:
            live.add(Broker.BINANCE)
        return live

    @staticmethod
    def transient_errors() -> tuple[type[BaseException], ...]:
        """Failures worth waiting out (the database or Redis restarting), as opposed to bugs."""
        return (OSError, TimeoutError, *STORE_TRANSIENT_ERRORS, *BUS_TRANSIENT_ERRORS)

    async def store(self) -> TimescaleStore:
        async with self._lock:
            if self._store is None:
                store = TimescaleStore(self.settings.database_url)
                await store.start()
                self._closers.append(store.close)
                self._store = store
            return self._store

    async def publisher(self) -> RedisFillPublisher:
        async with self._lock:
            if self._publisher is None:
                publisher = RedisFillPublisher.from_url(self.settings.redis_url)
                self._closers.append(publisher.close)
                self._publisher = publisher
            return self._publisher

    async def live_adapters(self) -> dict[Broker, BrokerPort]:
        async with self._lock:
            if self._live is None:
                self._live = await self._connect_live()
            return self._live

    async def _connect_live(self) -> dict[Broker, BrokerPort]:
        adapters: dict[Broker, BrokerPort] = {}
        for broker in self.configured_live_brokers():
            adapter = self._build_live(broker)  # a configuration error stops the worker, loudly
            try:
                await adapter.connect()
            except Exception as exc:  # visible, and orders still flow (to paper, with the reason)
                log.error("connecting %s failed: %r; its orders go to paper until it recovers", broker, exc)
            adapters[broker] = adapter
            self._closers.append(adapter.close)
        return adapters

    def _build_live(self, broker: Broker) -> BrokerPort:
        if broker is Broker.BINANCE:
            from adapters.binance import BinanceAdapter, BinanceConfig

            adapter: BrokerPort = BinanceAdapter(BinanceConfig.from_settings(self.settings.binance))
            return adapter
        raise ValueError(f"no live adapter for {broker}")

    async def service(self, broker: Broker, sink: ExecutionEvents) -> ExecutionService:
        if broker in self._services:
            return self._services[broker]
        store = await self.store()
        live = (await self.live_adapters()).get(broker)
        live_adapters = await self.live_adapters()
        binance = live_adapters.get(Broker.BINANCE)
        paper = PaperAdapter(
            SlippageModel(self.settings.paper_slippage),
            cast(MarketDataPort, binance) if binance is not None else None,  # BinanceAdapter quotes
            market_data_classes=frozenset({AssetClass.CRYPTO}),
        )
        breaker = CircuitBreaker(
            str(broker),
            failure_threshold=self.settings.breaker_failure_threshold,
            cooldown=self.settings.breaker_cooldown,
            on_change=_log_breaker,
        )
        self.breakers[broker] = breaker
        composite = CompositeBrokerAdapter(
            live, paper, breaker, force_paper=self.settings.force_paper_trading
        )
        service = ExecutionService(
            broker=composite,
            store=store,
            sink=sink,
            tracker=FillTracker(store, sink),
            limits=PreTradeLimits(self.settings.max_order_quantity, self.settings.max_order_notional),
        )
        self._services[broker] = service
        return service

    async def close(self) -> None:
        while self._closers:
            closer = self._closers.pop()
            try:
                await closer()
            except Exception:
                log.exception("closing a runtime resource failed")


def _log_breaker(name: str, state: BreakerState, reason: str) -> None:
    log.warning("BREAKER %s is now %s: %s", name, state, reason)
