"""In-memory order/fill store and fill publisher: the pipeline without PostgreSQL or Redis.

Why they are in the package and not only in ``tests/``: a replay, a unit test or a notebook can
compose the whole pipeline from them, and they only help if they behave like production.
``InMemoryStore`` therefore has the semantics of ``adapters/timescale/store.py``, rule for rule
(``tests/contract/test_store_parity.py`` runs the same scenarios against both):

* ``insert_orders`` is the idempotency gate: an existing client order id is never replaced, and
  each inserted order gets its first audit event.
* ``save_transitions`` never moves a live order backwards (the rank of
  ``schemas/sql/001_core.sql``'s ``order_state_rank``), never leaves a terminal state, never
  touches fill totals (``apply_fills`` is their only writer), and records every event regardless.
* ``apply_fills`` is idempotent on ``(broker, exec_id)`` and on each order's cumulative
  watermark; fill and position arithmetic is the core's (``execution/fills.py``).
* Ownership (``claim_orders``, ``renew_claims``, ``claim_expired``, ``release_claims``) follows
  ``adapters/timescale/sql.py`` rule for rule; lease times are read from the injected ``now``
  (the database's ``now()`` there), so a replay or test decides when a lease runs out
  (``execution/clock.py``'s ``ManualClock``). A terminal transition clears the claim.

Nothing here is safe for several processes; within one event loop every method is atomic (no
``await`` inside), which is what one transaction gives the real store.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from execution.fills import (
    AppliedFill,
    OrderFillState,
    PositionKey,
    PositionState,
    Watermark,
    advance_watermarks,
    apply_to_orders,
    first_of_each,
    move_positions,
)
from execution.nav_arb import EpisodeRecord, PairWrite, SpreadRow, StaleNavState, StoredPair, fingerprint
from execution.ports import ClaimResult, FillFee
from schemas import Broker, Fill, Order, OrderEvent, OrderState, Position, Signal, utcnow

log = logging.getLogger(__name__)

#: ``order_state_rank`` of schemas/sql/001_core.sql: a transition may not lower it
_RANK = {OrderState.PENDING: 0, OrderState.SUBMITTED: 1, OrderState.PARTIALLY_FILLED: 2}


def _rank(state: OrderState) -> int:
    return _RANK.get(state, 3)


@dataclass(frozen=True, slots=True)
class _Claim:
    """``orders.owner`` / ``orders.lease_until`` of one order (absent = free)."""

    owner: str
    lease_until: datetime


@dataclass(slots=True)
class _NavPair:
    """One ``nav_pairs`` row."""

    version: int
    state: dict[str, Any]
    outbox: tuple[Signal, ...]
    outbox_sent: bool


@dataclass(frozen=True, slots=True)
class _RecordedFill:
    applied: AppliedFill
    recorded_at: datetime


class InMemoryStore:
    """``OrderStore`` + ``FillStore`` in dicts, with ``TimescaleStore``'s semantics.

    ``now`` stamps what the store itself records (as ``TimescaleStore``'s ``now``). ``orders``
    is the current row of every order, readable by tests; write through the methods.
    """

    def __init__(self, *, now: Callable[[], datetime] = utcnow) -> None:
        self._now = now
        self.orders: dict[str, Order] = {}
        self._events: list[OrderEvent] = []
        self._fills: list[_RecordedFill] = []
        self._exec_ids: set[tuple[Broker, str]] = set()
        self._positions: dict[PositionKey, Position] = {}
        #: late fees by fill, with when each was recorded (as fill_fees.recorded_at)
        self._fees: dict[tuple[Broker, str], tuple[FillFee, datetime]] = {}
        #: ``orders.executor``: the broker each order was inserted with (the topic it came from)
        self._executors: dict[str, Broker] = {}
        #: ``orders.owner`` / ``lease_until`` of the claimed orders
        self._claims: dict[str, _Claim] = {}
        #: the NAV-arb tables: nav_pairs, nav_spreads (by pair and ts), nav_episodes
        self._nav_pairs: dict[str, _NavPair] = {}
        self._nav_spreads: dict[tuple[str, datetime], SpreadRow] = {}
        self._nav_episodes: list[EpisodeRecord] = []

    async def close(self) -> None:
        """Nothing to release; here so a composition closes every store alike."""

    # ---- OrderStore ------------------------------------------------------------------------

    async def insert_orders(self, orders: Sequence[Order]) -> set[str]:
        """Insert each order unless its id exists, unowned; return the ids inserted."""
        return set(self._insert(orders))

    async def claim_orders(self, orders: Sequence[Order], *, owner: str, lease_seconds: float) -> ClaimResult:
        """Insert the new orders owned by ``owner`` (terminal ones unowned) and take over the
        existing open orders whose claim is free, expired or ``owner``'s. See
        ``TimescaleStore.claim_orders``."""
        now = self._now()
        lease = _Claim(owner, now + timedelta(seconds=lease_seconds))
        requested = {order.client_order_id for order in orders}
        inserted = self._insert(orders)
        for cid in inserted:
            if not self.orders[cid].state.is_terminal:
                self._claims[cid] = lease
        claimed = {cid for cid in requested - inserted if self._claimable(cid, owner, now)}
        for cid in claimed:
            self._claims[cid] = lease
        return ClaimResult(inserted=frozenset(inserted), claimed=frozenset(claimed))

    async def renew_claims(self, *, owner: str, client_order_ids: Sequence[str], lease_seconds: float) -> set[str]:
        """Extend ``owner``'s leases on these ids from now; return the ids it still owns."""
        now = self._now()
        renewed = {
            cid for cid in client_order_ids
            if (claim := self._claims.get(cid)) is not None and claim.owner == owner
        }
        for cid in renewed:
            self._claims[cid] = _Claim(owner, now + timedelta(seconds=lease_seconds))
        return renewed

    async def claim_expired(
        self, executor: Broker, *, owner: str, lease_seconds: float, limit: int = 500
    ) -> list[Order]:
        """Take over up to ``limit`` open orders of ``executor``'s topic whose claim is free or
        expired, oldest first. See ``TimescaleStore.claim_expired``."""
        if limit <= 0:
            return []
        now = self._now()
        due = sorted(
            (
                order for cid, order in self.orders.items()
                if self._executor(cid) == executor and not order.state.is_terminal
                and self._claimable(cid, None, now)
            ),
            key=lambda o: (o.created_at, o.client_order_id),
        )[:limit]
        lease = _Claim(owner, now + timedelta(seconds=lease_seconds))
        for order in due:
            self._claims[order.client_order_id] = lease
        return due

    async def release_claims(self, *, owner: str, client_order_ids: Sequence[str]) -> None:
        """Free ``owner``'s claims on these ids; claims held by others are untouched."""
        for cid in client_order_ids:
            claim = self._claims.get(cid)
            if claim is not None and claim.owner == owner:
                del self._claims[cid]

    async def reject_orders(
        self, rejections: Sequence[tuple[str, str]], *, owner: str, at: datetime
    ) -> list[OrderEvent]:
        """Reject each still-PENDING order whose claim is free, expired or ``owner``'s, with its
        reason and an audit event; clear its claim. See ``TimescaleStore.reject_orders``."""
        reasons: dict[str, str] = {}
        for cid, reason in rejections:
            reasons.setdefault(cid, reason)
        now = self._now()
        events: list[OrderEvent] = []
        for cid in sorted(reasons):
            order = self.orders.get(cid)
            if order is None or order.state is not OrderState.PENDING or not self._claimable(cid, owner, now):
                continue
            rejected = order.model_copy(update={"state": OrderState.REJECTED, "reason": reasons[cid], "updated_at": at})
            self.orders[cid] = rejected
            self._claims.pop(cid, None)
            event = OrderEvent.of(rejected, OrderState.PENDING)
            self._events.append(event)
            events.append(event)
        return events

    async def get_orders(self, client_order_ids: Sequence[str]) -> dict[str, Order]:
        return {cid: self.orders[cid] for cid in client_order_ids if cid in self.orders}

    async def save_transitions(self, changes: Sequence[tuple[Order, OrderEvent]]) -> None:
        """Apply each transition, in the given order, to a stored non-terminal order; record
        every event, applied or not (a cancel that lost the race against a fill stays audited)."""
        for order, _ in changes:
            current = self.orders.get(order.client_order_id)
            if current is None or current.state.is_terminal:
                continue
            state = order.state if _rank(order.state) >= _rank(current.state) else current.state
            if state.is_terminal:
                self._claims.pop(order.client_order_id, None)
            self.orders[order.client_order_id] = current.model_copy(update={
                "state": state,
                "reason": order.reason,
                "broker": order.broker,
                "rerouted_from": order.rerouted_from,
                "venue_order_id": order.venue_order_id if order.venue_order_id is not None
                else current.venue_order_id,
                "updated_at": order.updated_at,
            })
        self._events.extend(event for _, event in changes)

    async def open_orders(self, broker: Broker) -> list[Order]:
        """Every non-terminal order placed at ``broker``, oldest first."""
        found = [o for o in self.orders.values() if o.broker == broker and not o.state.is_terminal]
        return sorted(found, key=lambda o: o.created_at)

    async def record_fees(self, fees: Sequence[FillFee]) -> None:
        """Keep the latest fee per fill, whether or not the fill is recorded yet; readers apply it."""
        if not fees:
            return
        now = self._now()
        for fee in fees:
            self._fees[(fee.broker, fee.exec_id)] = (fee, now)

    # ---- FillStore ---------------------------------------------------------------------------

    async def apply_fills(self, fills: Sequence[Fill]) -> list[Fill]:
        """Record new fills, advance their orders, move positions; return the fills applied, each
        with ``quantity`` = the growth it brought. See ``TimescaleStore.apply_fills``."""
        fresh: list[Fill] = []
        for fill in first_of_each(fills):
            key = (fill.broker, fill.exec_id)
            if key not in self._exec_ids:
                self._exec_ids.add(key)
                fresh.append(fill)
        if not fresh:
            return []
        states = {cid: self._fill_state(cid) for cid in sorted({fill.client_order_id for fill in fresh})}
        now = self._now()
        applied, events = apply_to_orders(states, fresh, now)
        if not applied:
            return []
        held = {key: PositionState(p.quantity, p.avg_price, p.realized_pnl) for key, p in self._positions.items()}
        for (broker, symbol), moved in move_positions(held, applied).items():
            self._positions[(broker, symbol)] = Position(
                broker=broker, symbol=symbol, quantity=moved.quantity, avg_price=moved.avg_price,
                realized_pnl=moved.realized_pnl, updated_at=now,
            )
        self._fills.extend(_RecordedFill(item, now) for item in applied)
        for state in states.values():
            if state.changed and state.exists:
                order = self.orders[state.client_order_id]
                self.orders[state.client_order_id] = order.model_copy(update={
                    "filled_quantity": state.filled,
                    "avg_fill_price": state.avg_price,
                    "state": state.state,
                    "venue_order_id": order.venue_order_id if order.venue_order_id is not None
                    else state.venue_order_id,
                    "updated_at": now,
                })
                if state.state is not None and state.state.is_terminal:
                    self._claims.pop(state.client_order_id, None)
        self._events.extend(events)
        for item in applied:
            if not states[item.fill.client_order_id].exists:
                log.warning("fill %s/%s for unknown order %s recorded without an order row",
                            item.fill.broker.value, item.fill.exec_id, item.fill.client_order_id)
        return [item.fill for item in applied]

    async def positions(self, broker: Broker | None = None) -> list[Position]:
        """By broker, then symbol (code point order; PostgreSQL's collation may order symbols
        with punctuation differently)."""
        keys = sorted(k for k in self._positions if broker is None or k[0] == broker)
        return [self._positions[k] for k in keys]

    # ---- NavArbStore: the rules of adapters/timescale/nav.py ----------------------------------

    async def load_nav_pairs(self, known: Mapping[str, str]) -> dict[str, StoredPair]:
        found: dict[str, StoredPair] = {}
        for pair, cached in known.items():
            row = self._nav_pairs.get(pair)
            if row is not None:
                state = None if fingerprint(row.state) == cached else copy.deepcopy(row.state)
                found[pair] = StoredPair(row.version, state, () if row.outbox_sent else row.outbox)
        return found

    async def save_nav(self, writes: Sequence[PairWrite], spreads: Sequence[SpreadRow],
                       episodes: Sequence[EpisodeRecord]) -> None:
        stale = [w.pair for w in writes
                 if (self._nav_pairs[w.pair].version if w.pair in self._nav_pairs else 0) != w.expected]
        if stale:
            raise StaleNavState(stale)
        for w in writes:
            before = self._nav_pairs.get(w.pair)
            outbox, sent = (w.outbox, False) if w.outbox is not None else (
                (before.outbox, before.outbox_sent) if before is not None else ((), True))
            self._nav_pairs[w.pair] = _NavPair(w.version, copy.deepcopy(w.state), outbox, sent)
        for row in spreads:
            self._nav_spreads.setdefault((row.pair, row.ts), row)
        self._nav_episodes.extend(episodes)

    async def mark_nav_outbox_sent(self, sent: Mapping[str, int]) -> None:
        for pair, version in sent.items():
            row = self._nav_pairs.get(pair)
            if row is not None and row.version == version:
                row.outbox_sent = True

    async def unsent_nav_outboxes(self) -> dict[str, StoredPair]:
        return {pair: StoredPair(row.version, copy.deepcopy(row.state), row.outbox)
                for pair, row in sorted(self._nav_pairs.items()) if not row.outbox_sent}

    async def nav_spreads(self, pair: str) -> list[SpreadRow]:
        return [row for (p, _), row in sorted(self._nav_spreads.items()) if p == pair]

    async def nav_episodes(self, pair: str) -> list[EpisodeRecord]:
        return [e for e in self._nav_episodes if e.pair == pair]

    # ---- read helpers (the same as TimescaleStore's) -----------------------------------------

    async def order_counts(self) -> dict[tuple[Broker, OrderState], int]:
        counts: dict[tuple[Broker, OrderState], int] = defaultdict(int)
        for order in self.orders.values():
            counts[(order.broker, order.state)] += 1
        return dict(counts)

    async def fill_count(self) -> int:
        return len(self._fills)

    async def order_events(self, client_order_id: str) -> list[OrderEvent]:
        """The audit trail of one order, oldest first."""
        return [e for e in self._events if e.client_order_id == client_order_id]

    async def recorded_fills(self, client_order_id: str | None = None) -> list[Fill]:
        """Fills as recorded (``quantity`` = applied, the late fee if one was recorded), in recording order."""
        found = [r for r in self._fills if client_order_id is None or r.applied.fill.client_order_id == client_order_id]
        return [self._with_fee(r.applied.fill) for r in sorted(found, key=lambda r: (r.recorded_at, r.applied.fill.ts))]

    # ---- internals ---------------------------------------------------------------------------

    def _insert(self, orders: Sequence[Order]) -> set[str]:
        """Step 2's insert: the first of each new id, with its first audit event and its
        ``executor`` (the broker it is inserted with); existing ids are left as they are."""
        inserted: dict[str, Order] = {}
        for order in orders:
            if order.client_order_id not in self.orders and order.client_order_id not in inserted:
                inserted[order.client_order_id] = order
        for cid in sorted(inserted):
            order = inserted[cid]
            self.orders[cid] = order
            self._executors[cid] = order.broker
            self._events.append(
                OrderEvent(client_order_id=cid, broker=order.broker, symbol=order.symbol, state=order.state,
                           previous_state=None, reason=order.reason, ts=order.updated_at)
            )
        return set(inserted)

    def _executor(self, client_order_id: str) -> Broker:
        """The topic an order came from. A row put into ``orders`` directly (a test's seed, as a
        row written before schemas/sql/004_order_claims.sql) counts as inserted with its broker."""
        return self._executors.get(client_order_id, self.orders[client_order_id].broker)

    def _claimable(self, client_order_id: str, owner: str | None, now: datetime) -> bool:
        """An existing open order whose claim is free, expired, or already ``owner``'s."""
        order = self.orders.get(client_order_id)
        if order is None or order.state.is_terminal:
            return False
        claim = self._claims.get(client_order_id)
        return claim is None or claim.owner == owner or claim.lease_until < now

    def _with_fee(self, fill: Fill) -> Fill:
        recorded = self._fees.get((fill.broker, fill.exec_id))
        if recorded is None:
            return fill
        fee = recorded[0]
        asset = fee.commission_asset if fee.commission_asset is not None else fill.commission_asset
        return fill.model_copy(update={"commission": fee.commission, "commission_asset": asset})

    def _fill_state(self, client_order_id: str) -> OrderFillState:
        """The watermark of one order, or for an orphan the total of its recorded fills."""
        order = self.orders.get(client_order_id)
        if order is not None:
            return OrderFillState.of(order)
        recorded = [r.applied.fill for r in self._fills if r.applied.fill.client_order_id == client_order_id]
        filled = sum((f.quantity for f in recorded), Decimal(0))
        notional = sum((f.quantity * f.price for f in recorded), Decimal(0))
        return OrderFillState.orphan(client_order_id, filled, notional)


class InMemoryFillPublisher:
    """``FillPublisher`` that keeps what it published and hands it to asyncio subscribers.

    Publishes only each order's growth beyond its cumulative watermark, priced from it, like the
    Redis bridge (``adapters/redis_bus.py``, the same ``advance_watermarks``), for as long as the
    object lives: what is published for one order never adds up to more than its cumulative
    quantity. A subscriber gets an unbounded queue of the fills published after it subscribed,
    optionally narrowed to one broker and symbol (the Redis channel grains).
    """

    def __init__(self) -> None:
        self.published: list[Fill] = []
        self._watermarks: dict[str, Watermark] = {}
        self._subscribers: list[tuple[asyncio.Queue[Fill], Broker | None, str | None]] = []

    def watermark(self, client_order_id: str) -> Watermark | None:
        """What has been published of one order so far."""
        return self._watermarks.get(client_order_id)

    async def publish_fills(self, fills: Sequence[Fill]) -> int:
        """Publish the growth the fills bring beyond their orders' watermarks; return how many
        fills were published."""
        published, marks = advance_watermarks(fills, self._watermarks)
        self._watermarks.update(marks)
        for fill in published:
            self.published.append(fill)
            for queue, broker, symbol in self._subscribers:
                if (broker is None or broker == fill.broker) and (symbol is None or symbol == fill.symbol.upper()):
                    queue.put_nowait(fill)
        return len(published)

    def subscribe(self, broker: Broker | None = None, symbol: str | None = None) -> asyncio.Queue[Fill]:
        """A queue receiving every fill published from now on (of ``broker`` / ``symbol`` if given)."""
        if symbol is not None and broker is None:
            raise ValueError("a symbol subscription names its broker (as fills.<broker>.<SYMBOL>)")
        queue: asyncio.Queue[Fill] = asyncio.Queue()
        self._subscribers.append((queue, broker, None if symbol is None else symbol.upper()))
        return queue

    async def close(self) -> None:
        """Nothing to release; what was published stays readable."""

    def unsubscribe(self, queue: asyncio.Queue[Fill]) -> None:
        self._subscribers = [s for s in self._subscribers if s[0] is not queue]
