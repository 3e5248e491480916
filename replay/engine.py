"""The pipeline composed for replay, and driven in process by recorded time.

What is the same as a worker: the composition root (``streams/bootstrap.py``) builds the router,
the ExecutionService of each broker topic with its FillTracker, the paper venue with its slippage,
pre-trade limits and ORDER_MAX_AGE, and the fill/position arithmetic is the stores' own. What is
composed differently, and why:

* **The clock is recorded time** (``ManualClock``): before a record is handled the clock is set to
  its Kafka timestamp, so routing, order and fill timestamps, signal ages and price lookups come
  from the data. Nothing in the results depends on when or how fast the replay ran.
* **A paper venue for every broker**: the venue registry is empty, so the router sends every
  asset class to paper with the reason, exactly as a deployment without live adapters does.
  Paper's prices are the recorded price file (``replay/prices.py``) for every asset class, else
  the signal's ``reference_price``, else the order is REJECTED with that reason: the live rule.
* **Results kept apart**: the in-memory store, or a PostgreSQL schema of the run's own (its
  ``search_path`` names only that schema, so no statement can reach the live tables), and the
  in-memory fill publisher: nothing reaches live Redis channels.
* **No topics in between**: what a worker sends through ``orders.<broker>``, ``fills`` and
  ``order-events`` is handed on in process (router -> ``ExecutionService.handle`` -> the fills
  the tracker emits -> ``store.apply_fills`` and the publisher), so nothing is published to any
  live topic, and each record is finished before the next one's time comes.
* **Resting orders move with the price path**: between records the clock steps through the price
  file's instants and the tracker polls the paper venue there (and one poll interval later, as a
  live tracker would poll at most that late), so a limit fills when the recorded price crosses
  it, at that recorded time.

Records are handled one at a time in ``(timestamp, partition, offset)`` order; the clock never
goes back.
"""

from __future__ import annotations

import logging
import random
import re
import urllib.parse
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from pydantic import ValidationError

from adapters.memory import InMemoryFillPublisher, InMemoryStore
from adapters.registry import VenueRegistry
from execution.clock import ManualClock
from execution.prices import QuotesByAssetClass
from execution.service import ExecutionService
from replay.prices import RecordedPrices
from replay.source import Record
from schemas import AssetClass, Broker, Fill, Order, OrderEvent, Position, Signal
from streams.bootstrap import Bootstrap, ClosablePublisher, Store, StoreFactory, VenueSet
from streams.settings import Settings

log = logging.getLogger(__name__)

StoreKind = Literal["memory", "postgres"]
#: awaited before each record is handled, with its index: pacing (--speed) and progress
RecordHook = Callable[[int, Record], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Malformed:
    """A record of the range that is not a signal the router would route."""

    partition: int
    offset: int
    ts: datetime
    reason: str


@dataclass(slots=True)
class ReplayOutcome:
    """What the replayed range did, read back from the replay's own store."""

    read: int
    valid: int
    malformed: list[Malformed]
    #: every order the range created, by client order id
    orders: list[Order]
    #: the fills as the store applied them (``quantity`` = the growth each brought), in order
    fills: list[Fill]
    positions: list[Position]
    order_events: int
    #: where the results are kept: "memory", or the PostgreSQL schema
    store: str


class _InProcessTopics:
    """``ExecutionEvents`` kept in process: what a worker would produce to ``fills`` and
    ``order-events``, handed on by the replay instead (nothing goes to a live topic)."""

    def __init__(self) -> None:
        self._fills: list[Fill] = []
        self.events = 0

    async def fills(self, fills: Sequence[Fill]) -> None:
        self._fills.extend(fills)

    async def order_events(self, events: Sequence[OrderEvent]) -> None:
        self.events += len(events)

    def take_fills(self) -> list[Fill]:
        taken, self._fills = self._fills, []
        return taken


class ReplayBootstrap(Bootstrap):
    """The composition root with the replay's parts: no live venue (an empty registry), the
    recorded clock, and the recorded prices as paper's market data for every asset class.

    ``Bootstrap`` takes its paper prices from the market data of the live venues it connects;
    a replay has none, so ``venues`` is the one part overridden: the recorded price file."""

    def __init__(self, settings: Settings, *, clock: ManualClock, prices: RecordedPrices | None,
                 store: StoreFactory, publisher: InMemoryFillPublisher) -> None:
        async def in_memory_publisher(_: Settings) -> ClosablePublisher:
            return publisher

        super().__init__(settings, clock=clock, registry=VenueRegistry(()), store=store,
                         publisher=in_memory_publisher, transient=(), rng=random.Random(0))
        sources = [(frozenset(AssetClass), prices)] if prices is not None else []
        self._replay_venues = VenueSet(live={}, prices=QuotesByAssetClass(sources))

    async def venues(self) -> VenueSet:
        return self._replay_venues


def describe(exc: BaseException) -> str:
    """One line per malformed record, as the router's dead letter would say it."""
    if isinstance(exc, ValidationError):
        parts = [f"{'.'.join(str(p) for p in err['loc']) or 'message'}: {err['msg']}"
                 for err in exc.errors(include_url=False)]
        return f"invalid {exc.title}: " + "; ".join(parts)
    return f"{type(exc).__name__}: {exc}"


@dataclass
class ReplayPipeline:
    """Drives the replay composition: ``feed`` each record in order, then ``finish``."""

    boot: ReplayBootstrap
    clock: ManualClock
    prices: RecordedPrices | None
    store_name: str = "memory"
    read: int = 0
    valid: int = 0
    malformed: list[Malformed] = field(default_factory=list)
    fills: list[Fill] = field(default_factory=list)
    _client_ids: set[str] = field(default_factory=set)
    _services: dict[Broker, ExecutionService] = field(default_factory=dict)
    _topics: _InProcessTopics = field(default_factory=_InProcessTopics)

    def __post_init__(self) -> None:
        self.router = self.boot.router()

    async def feed(self, record: Record) -> None:
        """Handle one record at its recorded time: route it, run steps 1-5, apply its fills."""
        await self.advance(record.ts)
        self.clock.set(record.ts)
        self.read += 1
        try:
            if record.value is None:
                raise ValueError("record without a value")
            signal = Signal.model_validate_json(record.value)
            if "ts" not in signal.model_fields_set:  # its age counts from when it was recorded
                signal = signal.model_copy(update={"ts": record.ts})
            request = self.router.route(signal)
        except Exception as exc:  # malformed: counted and reported, never the end of the replay
            self.malformed.append(Malformed(record.partition, record.offset, record.ts, describe(exc)))
            return
        self.valid += 1
        self._client_ids.add(request.client_order_id)
        service = await self._service(request.broker)
        await service.handle([request])
        await self._settle()

    async def advance(self, until: datetime, *, inclusive: bool = True) -> None:
        """Move recorded time towards ``until`` through the price path, polling resting orders
        at each price instant and one poll interval after it, while any order is open."""
        if self.prices is None or not self._open_orders():
            return
        interval = self._poll_interval()
        if interval is None:
            return
        now = self.clock.now()
        points: set[datetime] = set()
        for tick in self.prices.ticks(now - interval, until, inclusive=inclusive):
            points.update(p for p in (tick, tick + interval)
                          if p > now and (p <= until if inclusive else p < until))
        for point in sorted(points):
            if not self._open_orders():
                return
            self.clock.set(point)
            for service in self._services.values():
                await service.tracker.poll_due()
            await self._settle()

    async def finish(self, end: datetime) -> ReplayOutcome:
        """Let resting orders meet the price path up to the range end; read the results back."""
        await self.advance(end, inclusive=False)
        store = await self.boot.store()
        orders = await store.get_orders(sorted(self._client_ids))
        positions = await store.positions()
        return ReplayOutcome(
            read=self.read, valid=self.valid, malformed=list(self.malformed),
            orders=[orders[cid] for cid in sorted(orders)], fills=list(self.fills), positions=positions,
            order_events=self._topics.events, store=self.store_name,
        )

    async def _service(self, broker: Broker) -> ExecutionService:
        service = self._services.get(broker)
        if service is None:
            service = self._services[broker] = await self.boot.service(broker, self._topics)
        return service

    async def _settle(self) -> None:
        """What the fills topic's consumers do live (steps 6-8), in process: the store applies
        the fills (orders, positions), the in-memory publisher passes their growth on."""
        for service in self._services.values():
            await service.tracker.apply_pushed()
        emitted = self._topics.take_fills()
        if not emitted:
            return
        store = await self.boot.store()
        self.fills.extend(await store.apply_fills(emitted))
        publisher = await self.boot.publisher()
        await publisher.publish_fills(emitted)

    def _open_orders(self) -> bool:
        return any(service.tracker.open_count for service in self._services.values())

    def _poll_interval(self) -> timedelta | None:
        """How often the tracker polls paper (None: paper has no market data to move it)."""
        for service in self._services.values():
            seconds = service.broker.adapter_for(Broker.PAPER).poll_interval
            if seconds is not None:
                return timedelta(seconds=seconds)
        return None


def memory_store(clock: ManualClock) -> StoreFactory:
    """The in-memory store (``adapters/memory.py``), stamping with recorded time."""
    store = InMemoryStore(now=clock.now)

    async def make(_: Settings) -> Store:
        return store

    return make


def schema_name(run_id: str) -> str:
    """The PostgreSQL schema of a run: ``replay_<run id>``, lower case, a legal identifier."""
    return ("replay_" + re.sub(r"[^a-z0-9_]+", "_", run_id.lower()))[:63]


def with_search_path(dsn: str, schema: str) -> str:
    """``dsn`` whose sessions see only ``schema`` (asyncpg passes unknown query parameters on as
    server settings): the migrations create the tables there and every statement finds them
    there, never the live ones."""
    parts = urllib.parse.urlsplit(dsn)
    query = [(k, v) for k, v in urllib.parse.parse_qsl(parts.query) if k != "search_path"]
    query.append(("search_path", schema))
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


def postgres_store(dsn: str, schema: str, clock: ManualClock) -> StoreFactory:
    """``TimescaleStore`` in a schema of the run's own, dropped and made anew first (a rerun
    replaces its own results, nothing else)."""

    async def make(_: Settings) -> Store:
        import asyncpg

        from adapters.timescale import TimescaleStore

        if not re.fullmatch(r"replay_[a-z0-9_]+", schema):
            raise ValueError(f"refusing to use schema {schema!r}: a replay writes only to replay_* schemas")
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            await conn.execute(f'CREATE SCHEMA "{schema}"')
        finally:
            await conn.close()
        store = TimescaleStore(with_search_path(dsn, schema), now=clock.now, max_pool_size=2)
        await store.start()
        return store

    return make


async def replay_records(
    records: Sequence[Record],
    *,
    settings: Settings,
    start: datetime,
    end: datetime,
    prices: RecordedPrices | None,
    clock: ManualClock,
    store: StoreFactory,
    store_name: str = "memory",
    publisher: InMemoryFillPublisher | None = None,
    on_record: RecordHook | None = None,
) -> ReplayOutcome:
    """Replay ``records`` (sorted by time) through the replay composition; ``on_record`` is
    awaited before each record is handled (pacing, progress)."""
    if clock.now() > start:
        raise ValueError("the replay clock must start at or before the range start (it never goes back)")
    boot = ReplayBootstrap(settings, clock=clock, prices=prices, store=store,
                           publisher=publisher or InMemoryFillPublisher())
    try:
        pipeline = ReplayPipeline(boot, clock, prices, store_name)
        clock.set(start)
        for index, record in enumerate(records):
            if on_record is not None:
                await on_record(index, record)
            await pipeline.feed(record)
        return await pipeline.finish(end)
    finally:
        await boot.close()
