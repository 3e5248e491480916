"""The composition root: builds the pipeline from the parts it is *handed*.

``Bootstrap`` is given the settings, the clock, the venue registry, and factories for the
order/fill store and the fill publisher; each has a production default (wall clock, the
registered venue plug-ins read from their own environment prefixes, TimescaleStore, Redis). Tests
and replays hand it other parts (a ManualClock, an in-memory store and publisher, a registry of
fake or paper venues) and get the same pipeline composed differently.

Parts are built lazily, once, by whichever agent needs them first: a worker that runs only the
router never opens a database pool, an executor-only worker never connects to Redis, and a
router-only worker never imports a venue's client library.

Agents receive narrow interfaces from it (``ExecutorParts``, ``FillSinks``, a ``BrokerRouter``),
never the Bootstrap itself.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import socket
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol

from adapters.paper import PaperAdapter, SlippageModel
from adapters.registry import VenueRegistry, default_registry
from adapters.venue import VenuePlugin
from agents.parts import ExecutorParts, FillSinks, NavArbParts
from execution.breaker import BreakerState, CircuitBreaker
from execution.clock import SYSTEM_CLOCK, Clock
from execution.fallback import CompositeBrokerAdapter
from execution.fill_tracker import FillTracker
from execution.mapper import ExchangeMapper, UnknownSymbol
from execution.nav_arb import NavArbStore
from execution.ports import BrokerPort, ExecutionEvents, FillPublisher, FillStore, MarketDataPort, OrderStore
from execution.prices import QuotesByAssetClass
from execution.risk import PreTradeLimits
from execution.router import ROUTING_TABLE, BrokerRouter
from execution.service import ExecutionService
from schemas import AssetClass, Broker
from streams.settings import Settings

log = logging.getLogger(__name__)


class Store(OrderStore, FillStore, NavArbStore, Protocol):
    """What the pipeline needs of its database: orders (executors), fills (fills writer) and the
    NAV-arb agent's pairs."""

    async def close(self) -> None: ...


class ClosablePublisher(FillPublisher, Protocol):
    async def close(self) -> None: ...


StoreFactory = Callable[[Settings], Awaitable[Store]]
PublisherFactory = Callable[[Settings], Awaitable[ClosablePublisher]]


async def timescale_store(settings: Settings) -> Store:
    """Production default: TimescaleDB/PostgreSQL at ``DATABASE_URL``, migrations applied."""
    from adapters.timescale import TimescaleStore

    store = TimescaleStore(settings.database_url)
    await store.start()
    return store


async def redis_publisher(settings: Settings) -> ClosablePublisher:
    """Production default: Redis pub/sub at ``REDIS_URL``."""
    from adapters.redis_bus import RedisFillPublisher

    return RedisFillPublisher.from_url(settings.redis_url)


def infrastructure_errors() -> tuple[type[BaseException], ...]:
    """Failures worth waiting out (the database or Redis restarting), as opposed to bugs."""
    from adapters.redis_bus import TRANSIENT_ERRORS as BUS_TRANSIENT_ERRORS
    from adapters.timescale import TRANSIENT_ERRORS as STORE_TRANSIENT_ERRORS

    return (OSError, TimeoutError, *STORE_TRANSIENT_ERRORS, *BUS_TRANSIENT_ERRORS)


@dataclass(frozen=True, slots=True)
class VenueSet:
    """The live venues of this composition and the prices they offer paper."""

    live: Mapping[Broker, BrokerPort]
    prices: QuotesByAssetClass

    @classmethod
    def of(cls, venues: Mapping[Broker, tuple[BrokerPort, MarketDataPort | None, frozenset[AssetClass]]]) -> VenueSet:
        return cls(
            live={broker: port for broker, (port, _, _) in venues.items()},
            prices=QuotesByAssetClass([(classes, md) for _, md, classes in venues.values()
                                       if md is not None and classes]),
        )


class Bootstrap:
    def __init__(
        self,
        settings: Settings,
        *,
        clock: Clock = SYSTEM_CLOCK,
        registry: VenueRegistry | None = None,
        store: StoreFactory = timescale_store,
        publisher: PublisherFactory = redis_publisher,
        transient: tuple[type[BaseException], ...] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.registry = registry if registry is not None else default_registry()
        self._store_factory = store
        self._publisher_factory = publisher
        self._transient = transient
        self.rng = rng or random.Random(settings.random_seed)
        #: names this process on the order claims it holds: host, pid and a per-start nonce
        self.instance_id = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._lock = asyncio.Lock()
        self._store: Store | None = None
        self._publisher: ClosablePublisher | None = None
        self._venues: VenueSet | None = None
        self._services: dict[Broker, ExecutionService] = {}
        self._closers: list[Callable[[], Awaitable[Any]]] = []
        self.breakers: dict[Broker, CircuitBreaker] = {}
        self._enabled = {p.broker: (p, s) for p in self.registry if (s := p.settings()).enabled}

    # -- what the agents are handed ----------------------------------------------------------

    def router(self) -> BrokerRouter:
        return BrokerRouter(self.live_brokers(), force_paper=self.settings.force_paper_trading, clock=self.clock,
                            secondary=self.secondary_routes())

    def executor(self, broker: Broker) -> ExecutorParts:
        async def service(sink: ExecutionEvents) -> ExecutionService:
            return await self.service(broker, sink)

        return ExecutorParts(service=service, transient=self.transient_errors(), rng=self.rng,
                             sweep_interval=self.settings.order_sweep_interval)

    def fill_sinks(self) -> FillSinks:
        return FillSinks(store=self.store, publisher=self.publisher, transient=self.transient_errors())

    def nav_arb(self) -> NavArbParts:
        async def store() -> NavArbStore:
            return await self.store()

        return NavArbParts(store=store, params=self.settings.nav_arb_params, spot_price=self.spot_price,
                           transient=self.transient_errors(), rng=self.rng)

    async def spot_price(self, symbol: str) -> Decimal | None:
        """The mid of ``symbol`` from the venue whose market data prices its asset class (the
        NAV-arb spot leg when a quote has no spot price); None when no venue prices it."""
        mapper = ExchangeMapper()
        try:
            asset_class = mapper.asset_class(symbol)
        except UnknownSymbol:
            return None
        venues = await self.venues()
        quote = await venues.prices.quote_for(mapper.canonical(symbol, asset_class), asset_class)
        return quote.mid if quote is not None else None

    # -- the parts ---------------------------------------------------------------------------

    def live_brokers(self) -> set[Broker]:
        """Venues this deployment has enabled (static, no I/O)."""
        return set(self._enabled)

    def secondary_routes(self) -> dict[AssetClass, Broker]:
        """Asset class -> the enabled venue that is its secondary live route (static, no I/O)."""
        return {asset_class: broker for broker, (plugin, settings) in self._enabled.items()
                for asset_class in plugin.secondary_for(settings)}

    def plugins(self) -> Sequence[VenuePlugin[Any]]:
        return [plugin for plugin, _ in self._enabled.values()]

    def transient_errors(self) -> tuple[type[BaseException], ...]:
        return self._transient if self._transient is not None else infrastructure_errors()

    async def store(self) -> Store:
        async with self._lock:
            if self._store is None:
                store = await self._store_factory(self.settings)
                self._closers.append(store.close)
                self._store = store
            return self._store

    async def publisher(self) -> ClosablePublisher:
        async with self._lock:
            if self._publisher is None:
                publisher = await self._publisher_factory(self.settings)
                self._closers.append(publisher.close)
                self._publisher = publisher
            return self._publisher

    async def venues(self) -> VenueSet:
        async with self._lock:
            if self._venues is None:
                self._venues = await self._connect_venues()
            return self._venues

    async def _connect_venues(self) -> VenueSet:
        built: dict[Broker, tuple[BrokerPort, MarketDataPort | None, frozenset[AssetClass]]] = {}
        for broker, (plugin, settings) in self._enabled.items():
            parts = plugin.build(settings, self.clock)  # a configuration error stops the worker, loudly
            try:
                await parts.broker.connect()
            except Exception as exc:  # visible, and orders still flow (to paper, with the reason)
                log.error("connecting %s failed: %r; its orders go to paper until it recovers", broker, exc)
            self._closers.append(parts.broker.close)
            built[broker] = (parts.broker, parts.market_data, plugin.priced_classes)
        return VenueSet.of(built)

    async def service(self, broker: Broker, sink: ExecutionEvents) -> ExecutionService:
        if broker in self._services:
            return self._services[broker]
        store = await self.store()
        venues = await self.venues()
        paper = PaperAdapter(SlippageModel(self.settings.paper_slippage), venues.prices or None)
        breaker = CircuitBreaker(
            str(broker),
            failure_threshold=self.settings.breaker_failure_threshold,
            cooldown=self.settings.breaker_cooldown,
            clock=self.clock,
            on_change=_log_breaker,
        )
        self.breakers[broker] = breaker
        live = venues.live.get(broker)
        secondary = self._secondary_venue(broker, venues)
        composite = CompositeBrokerAdapter(
            live, paper, breaker, force_paper=self.settings.force_paper_trading, clock=self.clock,
            secondary=secondary,
        )
        tracker = FillTracker(store, sink, clock=self.clock)
        for venue in (live, secondary):
            if venue is not None:
                tracker.listen_to(venue)
        service = ExecutionService(
            broker=composite,
            store=store,
            sink=sink,
            tracker=tracker,
            limits=PreTradeLimits(self.settings.max_order_quantity, self.settings.max_order_notional),
            clock=self.clock,
            executor=broker,
            owner=f"{broker}-{self.instance_id}",
            lease_seconds=self.settings.order_lease_seconds,
            max_age_seconds=self.settings.order_max_age,
        )
        self._services[broker] = service
        return service

    def _secondary_venue(self, broker: Broker, venues: VenueSet) -> BrokerPort | None:
        """The secondary live venue of the asset classes this executor's topic carries, if any."""
        classes = {ac for ac, primary in ROUTING_TABLE.items() if primary == broker}
        for asset_class, second in self.secondary_routes().items():
            if asset_class in classes and second != broker and second in venues.live:
                return venues.live[second]
        return None

    async def close(self) -> None:
        while self._closers:
            closer = self._closers.pop()
            try:
                await closer()
            except Exception:
                log.exception("closing a composition part failed")


def _log_breaker(name: str, state: BreakerState, reason: str) -> None:
    log.warning("BREAKER %s is now %s: %s", name, state, reason)
