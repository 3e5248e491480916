"""The NAV-arbitrage agent: ``nav.quotes`` (keyed by pair) -> rolling spread z-scores -> two-leg
trades on ``signals``; the legs' outcomes (``order-events``, re-keyed by pair onto ``nav.legs``)
drive the pair's episode and its leg risk. The rule and the episode are execution/nav_arb.py; this
module is the I/O around them.

Two agents (worker role ``nav-arb``):

* ``nav-legs`` reads ``order-events``, keeps the terminal events of ``strategy = nav-arb`` orders
  and re-produces them keyed by their pair (read from the group id) onto ``nav.legs``: a pair's
  quotes and its legs' outcomes then share a partition number, so they reach the worker that
  owns the pair whatever the number of workers.
* ``nav-arb`` reads ``nav.quotes`` and ``nav.legs`` as one stream, so a pair's quotes and leg
  events are applied one at a time, in one place.

Recovery: the durable source of a pair's state is PostgreSQL; the Faust table is its cache.
----------------------------------------------------------------------------------------------
Why not the Faust table alone. A Faust table is recovered by reading its changelog up to the end
offsets the broker reports, and on the embedded broker (Tansu) those lag the last batch (measured
here: a partition holding 36 quotes, produced as two batches of 18, reported an end offset of 19):
a restarted worker would resume from an older window and its z-scores would differ from an
uninterrupted run's. And a ``kill -9`` leaves the changelog and the
source topic's committed offsets apart in both directions: Faust produces changelog records
without waiting for them (``acks=False``) and commits the source offsets on its own timer, so a
quote's state change can be lost with its offset committed (the quote is never seen again), or
be on the changelog with its offset not committed (the quote comes back as a duplicate after
its nav_spreads row, signals and the rest of its batch were lost). No exactly-once producer on
Tansu either, so no transaction can tie them.

What is done instead. Each batch is one PostgreSQL transaction (``NavArbStore.save_nav``): the
pairs' new states (``nav_pairs``: the window, last ts, position and episode as one value with a
version), the ``nav_spreads`` rows of the quotes and the ``nav_episodes`` records. Then:

* The source offsets are committed only after that transaction (and the produces below) went
  through, so a crash before it redelivers the batch, and a crash after it redelivers quotes the
  stored state already has: their ts is not after the pair's last ts, so they change nothing and
  record nothing. Observations, state and z-scores are exactly once, whatever was lost.
* Every save names the version it read; a stored version that moved (another worker saved the
  pair: a rebalance's overlap, or this worker's cache was behind) fails the whole save
  (``StaleNavState``), and the batch is redone on the stored state. So a stale cache can cost a
  retry but never a wrong z-score.
* The signals a transition asks for are saved with the state, as the pair's outbox, in the same
  transaction, and produced after it; once delivered the outbox is marked sent. A worker that
  died in between left it unsent: whoever holds the pair next (on its first batch, and every
  worker on start) sends it again. Re-sending is harmless: the leg signal ids are derived from
  the pair, the quote's ts and the leg, and the pipeline places a signal id once. Because a leg
  is produced only after the state that expects it is durable, its outcome can never reach a
  state that does not know it.

A worker killed before its first offset commit and restarted while the table recovered skipped
the quotes published meanwhile (Faust throws away what it fetched during the recovery and seeks
back only partitions with a committed offset): ``streams/transport.py`` ``TunedConsumer.perform_seek``
rewinds such a partition to its beginning.

The Faust table (``nav-arb-pairs``, changelog ``<SUPERINTEL_APP_ID>-nav-arb-pairs-changelog``:
both named from the app id, never the worker's roles or consumer group, so a restarted worker of
another shape finds them) holds each pair's last saved state, its version and its fingerprint (a
hash of the state's content). Each batch asks the database about its pairs (one query, answering
a pair's state only when the cached fingerprint is not the stored one) and works from the table
when it holds exactly the stored state, from the database otherwise: after a restart whose
changelog recovery stopped short, or read a record from another history, the first batch of a
pair reloads it from PostgreSQL (logged: "reloaded from the database").
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from functools import partial
from typing import Any

import faust
from faust.types import EventT, StreamT
from pydantic import ValidationError

from agents.batches import BatchLimits, batches, process_batch
from agents.dead_letters import DeadLetters, describe
from agents.parts import AgentTopics, NavArbParts
from agents.publish import DeliveryFailed, Publisher, abandon, delivered
from execution.nav_arb import (
    ENTRIES,
    STRATEGY,
    EpisodeRecord,
    NavArbParams,
    NavArbStore,
    PairState,
    PairWrite,
    SpreadRow,
    StaleNavState,
    StoredPair,
    pair_of_group,
    spread_of,
)
from execution.retry import until_done
from schemas import NavQuote, OrderEvent, Signal

log = logging.getLogger(__name__)

#: the table's name (its changelog: ``<app id>-nav-arb-pairs-changelog``)
TABLE = "nav-arb-pairs"
#: how a nav-arb order's event looks on the wire (pydantic's compact JSON): the re-keyer parses
#: only events containing it, not every order event of the pipeline
_MARKER = b'"strategy":"' + STRATEGY.encode() + b'"'
#: a batch redone this many times on StaleNavState (pairs moving under it) is retried as a failure
STALE_REDOS = 5

Item = NavQuote | OrderEvent
SignalSender = Callable[[Sequence[Signal]], Awaitable[None]]
SpotPrice = Callable[[str], Awaitable[Decimal | None]]


def changelog_topic_name(app_id: str) -> str:
    return f"{app_id}-{TABLE}-changelog"


def pair_of(item: Item) -> str | None:
    return item.pair if isinstance(item, NavQuote) else pair_of_group(item.group_id)


@dataclass
class _Work:
    """A batch worked out on the stored states, not yet saved."""

    versions: dict[str, int]
    states: dict[str, PairState]
    changed: set[str] = field(default_factory=set)
    signals: dict[str, list[Signal]] = field(default_factory=lambda: defaultdict(list))
    spreads: list[SpreadRow] = field(default_factory=list)
    records: list[EpisodeRecord] = field(default_factory=list)

    def writes(self) -> list[PairWrite]:
        return [PairWrite(pair, self.versions[pair], self.states[pair].to_dict(), self.states[pair].episode,
                          tuple(self.signals[pair]) or None) for pair in sorted(self.changed)]


class NavArbEngine:
    """The agent's work on batches of quotes and leg events, without Faust: the store is the
    durable state, ``cache`` (the Faust table, or any mapping) holds the last saved state of each
    pair, ``send`` produces signals and returns once they were delivered."""

    def __init__(self, store: Callable[[], Awaitable[NavArbStore]], send: SignalSender,
                 params: Callable[[str], NavArbParams], spot_price: SpotPrice,
                 cache: MutableMapping[bytes, bytes] | None = None) -> None:
        self._store = store
        self._send = send
        self._params = params
        self._spot_price = spot_price
        self.cache: MutableMapping[bytes, bytes] = cache if cache is not None else {}
        #: how often a pair's state came from the database instead of the cache (stale or missing)
        self.reloads = 0

    async def start(self) -> None:
        """Send the outboxes a worker left unsent (it died between its commit and its produce)."""
        store = await self._store()
        await self._flush(store, await store.unsent_nav_outboxes())

    async def handle(self, items: Sequence[Item]) -> None:
        """Apply a batch; returns once its state is saved and its signals were delivered."""
        pairs = list(dict.fromkeys(p for item in items if (p := pair_of(item)) is not None))
        if not pairs:
            return
        store = await self._store()
        known = {pair: self._cached(pair)[0] for pair in pairs}  # pair -> fingerprint of the cached state
        for redo in range(STALE_REDOS + 1):
            stored = await store.load_nav_pairs(known)
            await self._flush(store, {p: row for p, row in stored.items() if row.outbox})
            try:
                work = await self._work(items, pairs, known, stored)
                await store.save_nav(work.writes(), work.spreads, work.records)
            except StaleNavState as stale:
                log.info("NAV-arb: %s (attempt %d); redoing the batch on the stored state", stale, redo + 1)
                known.update({pair: "" for pair in stale.pairs})
                continue
            break
        else:
            raise StaleNavState(pairs)
        writes = work.writes()
        for write in writes:
            self.cache[write.pair.encode()] = json.dumps(
                {"version": write.version, "fingerprint": write.fingerprint, "state": write.state}).encode()
        await self._flush(store, {w.pair: StoredPair(w.version, None, w.outbox) for w in writes if w.outbox})

    def _cached(self, pair: str) -> tuple[str, int, dict[str, Any] | None]:
        """The cached state of ``pair``: its fingerprint ("" for none), version and value."""
        raw = self.cache.get(pair.encode())
        if raw is None:
            return "", 0, None
        try:
            data = json.loads(raw)
            return str(data["fingerprint"]), int(data["version"]), data["state"]
        except (ValueError, KeyError, TypeError) as exc:  # not ours, or another layout: not a cache hit
            log.warning("NAV-arb %s: unreadable cached state (%r); reading the database", pair, exc)
            return "", 0, None

    def _load(self, pair: str, known: str, row: StoredPair | None) -> tuple[int, PairState]:
        """The state to work from: the stored one, from the cache when it holds exactly that."""
        if row is None:
            return 0, PairState.new(pair, self._params(pair))
        if row.state is None:  # the cache holds the stored state (same fingerprint)
            cached, _, state = self._cached(pair)
            if state is None or cached != known:  # the cache moved meanwhile: read the row
                raise StaleNavState([pair])
            return row.version, PairState.from_dict(state)
        self.reloads += 1
        if known:
            log.info("NAV-arb %s: the cached state (version %d) is not the database's (version %d); "
                     "reloaded from the database", pair, self._cached(pair)[1], row.version)
        return row.version, PairState.from_dict(row.state)

    async def _work(self, items: Sequence[Item], pairs: Sequence[str], known: Mapping[str, str],
                    stored: Mapping[str, StoredPair]) -> _Work:
        versions: dict[str, int] = {}
        states: dict[str, PairState] = {}
        for pair in pairs:
            versions[pair], states[pair] = self._load(pair, known[pair], stored.get(pair))
        work = _Work(versions, states)
        for item in items:
            item_pair = pair_of(item)
            if item_pair is None:
                continue
            pair, state = item_pair, states[item_pair]
            if isinstance(item, NavQuote):
                params = self._params(pair)
                obs = state.observe(item.ts, spread_of(item.trust_price, item.nav_per_share), params)
                if obs is None:
                    continue  # a duplicate or late quote: nothing, not even a row
                spot = item.spot_price
                if spot is None and obs.decision in ENTRIES:
                    spot = await self._spot(item.spot_symbol)
                step = state.act(obs, item, spot, params)
                work.spreads.append(SpreadRow(
                    pair=pair, ts=item.ts, trust_price=item.trust_price, nav=item.nav_per_share,
                    spot_price=spot, spread=obs.spread, z=obs.z, decision=obs.decision, episode=state.episode,
                    group_id=state.group_id if step.signals else None))
            else:
                step = state.on_order_event(item)
            if step.changed:
                work.changed.add(pair)
            work.signals[pair].extend(step.signals)
            work.records.extend(step.records)
            for record in step.records:
                log.info("NAV-arb %s: %s -> %s (%s)", pair, record.previous, record.episode, record.reason)
        return work

    async def _spot(self, symbol: str) -> Decimal | None:
        try:
            return await self._spot_price(symbol)
        except Exception as exc:  # no price is a reason not to trade, recorded with the episode
            log.warning("NAV-arb: no spot price for %s from the spot venue: %r", symbol, exc)
            return None

    async def _flush(self, store: NavArbStore, outboxes: Mapping[str, StoredPair]) -> None:
        """Produce the outboxes (all their signals concurrently), then mark them sent."""
        signals = [signal for row in outboxes.values() for signal in row.outbox]
        if not signals:
            return
        await self._send(signals)
        await store.mark_nav_outbox_sent({pair: row.version for pair, row in outboxes.items()})


def register(app: faust.App, topics: AgentTopics, parts: NavArbParts, limits: BatchLimits, *,
             app_id: str, partitions: int) -> None:
    _register_legs(app, topics, limits)
    dead = DeadLetters(topics.dlq, "nav-arb")
    signals = Publisher(app, topics.signals)
    changelog = app.topic(changelog_topic_name(app_id), partitions=partitions, key_type=bytes, value_type=bytes,
                          key_serializer="raw", value_serializer="raw", internal=True, compacting=True)
    # use_partitioner: the changelog record of a pair goes to the partition of its key, the
    # pair's partition on nav.quotes and nav.legs, whatever event is being processed
    table = app.Table(TABLE, key_type=bytes, value_type=bytes, partitions=partitions, changelog_topic=changelog,
                      use_partitioner=True, help="NAV-arb pair states (a cache of nav_pairs)")

    async def send(batch: Sequence[Signal]) -> None:
        # every leg of the batch at once (the seed's asyncio.gather), deliveries awaited together
        deliveries = await asyncio.gather(*(signals.send(s.symbol.encode(), s.to_bytes()) for s in batch),
                                          return_exceptions=True)
        sent = [d for d in deliveries if not isinstance(d, BaseException)]
        failed = [d for d in deliveries if isinstance(d, BaseException)]
        if failed:
            abandon(sent)
            raise DeliveryFailed(f"{len(failed)} of {len(batch)} NAV-arb signals not handed to the producer: "
                                 f"{failed[0]!r}") from failed[0]
        await delivered(sent, "NAV-arb signals")
        for s in batch:
            log.info("NAV-arb signal %s: %s %s %s (group %s)", s.signal_id, s.side, s.quantity, s.symbol, s.group_id)

    engine = NavArbEngine(parts.store, send, parts.params, parts.spot_price, table)
    transient = (*parts.transient, DeliveryFailed, StaleNavState)
    quotes, legs = topics.nav_quotes.get_topic_name(), topics.nav_legs.get_topic_name()
    source = app.topic(quotes, legs, key_type=bytes, value_type=bytes, key_serializer="raw",
                       value_serializer="raw")

    def parse(events: Iterable[EventT[Any]]) -> tuple[list[tuple[EventT[Any], Item]], list[tuple[EventT[Any], str]]]:
        items: list[tuple[EventT[Any], Item]] = []
        refused: list[tuple[EventT[Any], str]] = []
        for event in events:
            model: type[NavQuote] | type[OrderEvent] = NavQuote if event.message.topic == quotes else OrderEvent
            try:
                items.append((event, model.model_validate_json(event.value)))
            except ValidationError as exc:
                refused.append((event, describe(exc)))
        return items, refused

    async def consume_batch(events: Sequence[EventT[Any]]) -> None:
        items, refused = parse(events)
        await dead.send_all(refused)
        await process_batch("nav-arb", items, engine.handle, dead, transient)

    @app.agent(source, name="nav-arb")
    async def nav_arb(stream: StreamT[bytes]) -> None:
        await until_done("nav-arb start", engine.start, transient=transient, rng=parts.rng)
        log.info("nav-arb ready")
        async for events in batches(stream, limits):
            await until_done(f"nav-arb batch of {len(events)}", partial(consume_batch, events),
                             transient=transient, other_attempts=1, rng=parts.rng)


def _register_legs(app: faust.App, topics: AgentTopics, limits: BatchLimits) -> None:
    legs = Publisher(app, topics.nav_legs)

    async def rekey(events: Sequence[EventT[Any]]) -> None:
        messages: list[tuple[bytes, bytes]] = []
        for event in events:
            value = event.value
            if not isinstance(value, bytes) or _MARKER not in value:
                continue
            try:
                order_event = OrderEvent.model_validate_json(value)
            except ValidationError as exc:  # not ours to dead-letter: the executors' own topic
                log.warning("nav-legs: unreadable order event at %s@%s: %s", event.message.partition,
                            event.message.offset, describe(exc))
                continue
            pair = pair_of_group(order_event.group_id)
            if order_event.strategy == STRATEGY and order_event.state.is_terminal and pair is not None:
                messages.append((pair.encode(), value))
        await legs.send_all(messages)

    @app.agent(topics.order_events, name="nav-legs")
    async def nav_legs(stream: StreamT[bytes]) -> None:
        async for events in batches(stream, limits):
            await until_done(f"nav-legs batch of {len(events)}", partial(rekey, events),
                             transient=(DeliveryFailed,), other_attempts=1)
