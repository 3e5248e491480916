"""TimescaleDB / PostgreSQL: the durable ``OrderStore`` and ``FillStore`` over an asyncpg pool.

Why it is shaped like this:

* Every public method is one transaction with a fixed number of round trips whatever the batch
  size (the set-based statements of ``sql.py``, pipelined ``executemany``), because the agents
  hand over whole Kafka batches and a round trip per row would cap throughput at the network
  latency.
* Idempotency lives in the database, not in the consumer: ``orders`` has its primary key
  (redelivered signal -> no second order), ``fill_ids`` remembers every ``(broker, exec_id)``
  (redelivered fill message -> skipped before any lock), and the order's ``filled_quantity`` is a
  cumulative watermark (a fill re-emitted under a new id after a crash applies only the growth).
  The watermark and position arithmetic is the core's (``execution/fills.py``), shared with the
  in-memory store (``adapters/memory.py``) so both give the same numbers.
* Fill application locks what it changes (orders ``FOR UPDATE``, then positions ``FOR UPDATE``),
  always in sorted key order, so several fill writers can run side by side without lost updates
  and without lock-order deadlocks; a deadlock reported anyway is retried.
* Money is ``Decimal`` end to end (NUMERIC in, ``Decimal`` out of asyncpg).
* Ownership (issue 12): an order row carries ``owner``/``lease_until``/``executor``
  (``schemas/sql/004_order_claims.sql``). Claims are taken, renewed and swept in single
  statements that compare with the database's ``now()``, never a worker's clock, so every process
  agrees on whether a lease has run out; ``now`` below never decides a claim.
* Migrations (``migrations.py``) run on ``start``; the read side is ``queries.py``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import Self, TypeVar

import asyncpg

from adapters.timescale import nav, queries
from adapters.timescale.migrations import apply_migrations, load_migrations
from adapters.timescale.sql import (
    ADVANCE_ORDERS,
    CLAIM_EXEC_IDS,
    CLAIM_EXPIRED,
    CLAIM_ORDERS,
    ENSURE_POSITIONS,
    EVENT_COLUMNS,
    FILL_COLUMNS,
    INSERT_EVENTS,
    INSERT_FILLS,
    INSERT_ORDERS,
    LOCK_ORDERS,
    LOCK_ORPHANS,
    LOCK_POSITIONS,
    ORDER_COLUMNS,
    ORPHAN_WATERMARKS,
    RECORD_FEES,
    REJECT_ORDERS,
    RELEASE_CLAIMS,
    RENEW_CLAIMS,
    SAVE_TRANSITION,
    SELECT_ORDERS,
    TERMINAL_STATE_VALUES,
    WRITE_POSITIONS,
    arrays,
    db_value,
)
from execution.fills import (
    AppliedFill,
    OrderFillState,
    PositionKey,
    PositionState,
    apply_to_orders,
    first_of_each,
    move_positions,
)
from execution.nav_arb import EpisodeRecord, PairWrite, SpreadRow, StoredPair
from execution.ports import ClaimResult, FillFee
from schemas import Broker, Fill, Order, OrderEvent, OrderState, Position, utcnow

#: failures that pass when the database comes back; anything else from here is a bug or bad data.
#: Besides lost connections: the server out of disk (53100) or memory (53200), a statement
#: cancelled (57014: statement_timeout, an operator's pg_cancel_backend), a crash restart
#: (57P02), and a read-only transaction (25006: a hot standby during a failover) all say
#: nothing about the batch; dead-lettering it would drop good messages, so they are waited out.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.SerializationError,
    asyncpg.DeadlockDetectedError,
    asyncpg.DiskFullError,
    asyncpg.OutOfMemoryError,
    asyncpg.QueryCanceledError,
    asyncpg.ReadOnlySQLTransactionError,
    # the schema this code expects is not there (yet): a migration running, a deploy half done.
    # Waited out like an outage; read as a bad message, it would dead-letter every fill.
    asyncpg.UndefinedColumnError,
    asyncpg.UndefinedTableError,
    ConnectionError,
)

log = logging.getLogger(__name__)

#: How often a batch is retried when PostgreSQL reports a deadlock or serialization failure.
TRANSACTION_ATTEMPTS = 3

_T = TypeVar("_T")


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Pool release hook: skip asyncpg's reset query (one more round trip per use). The store
    leaves no session state behind (no SET, LISTEN or cursors; the migration lock is released
    in a ``finally``); only a transaction left open by a failure is rolled back here."""
    if conn.is_in_transaction():
        await conn.execute("ROLLBACK")


class TimescaleStore:
    """``OrderStore`` + ``FillStore`` on TimescaleDB or plain PostgreSQL, over an asyncpg pool.

    ``now`` stamps what the store itself records (fills' ``recorded_at``, the order and position
    updates and audit events of applied fills): the pipeline's clock, the wall clock by default.
    """

    def __init__(
        self,
        dsn: str,
        *,
        min_pool_size: int = 1,
        max_pool_size: int = 10,
        command_timeout: float = 60.0,
        now: Callable[[], datetime] = utcnow,
    ) -> None:
        self._dsn = dsn
        self._min_pool_size = min_pool_size
        self._max_pool_size = max_pool_size
        self._command_timeout = command_timeout
        self._now = now
        self._pool: asyncpg.Pool | None = None

    # ---- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the pool and bring the schema up to date (idempotent)."""
        if self._pool is None:
            self._pool = await asyncpg.create_pool(
                self._dsn,
                min_size=self._min_pool_size,
                max_size=self._max_pool_size,
                command_timeout=self._command_timeout,
                reset=_keep_session,
            )
        await self.migrate()

    async def migrate(self) -> list[str]:
        """Apply pending ``schemas/sql`` files; return the versions applied by this call."""
        async with self.pool.acquire() as conn:
            return await apply_migrations(conn, load_migrations())

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError("TimescaleStore not started: await start() first")
        return self._pool

    # ---- OrderStore ------------------------------------------------------------------------

    async def insert_orders(self, orders: Sequence[Order]) -> set[str]:
        """Step 2: insert each order unless its id exists; return the ids inserted.

        An id that already exists is a redelivery: the caller resumes tracking instead of
        placing again. Each inserted order gets its first audit event in the same transaction.
        The rows are unowned: the first ``claim_orders`` or sweep takes them (``claim_orders``
        is the step 2 of a scaled-out executor).
        """
        params = _order_arrays(orders)
        if params is None:
            return set()
        rows = await self._statement("insert_orders", INSERT_ORDERS, *params)
        return {row["client_order_id"] for row in rows}

    async def claim_orders(self, orders: Sequence[Order], *, owner: str, lease_seconds: float) -> ClaimResult:
        """Step 2 with ownership: one statement, one round trip for the batch (``sql.CLAIM_ORDERS``).

        New orders are inserted owned by ``owner`` with ``executor`` = their broker (terminal ones
        unowned); existing open orders whose claim is free, expired or ``owner``'s are taken over.
        Two executors racing on the same ids each get a disjoint share: row locks order them, and
        the loser's WHERE is re-checked against the winner's committed claim.
        """
        params = _order_arrays(orders)
        if params is None:
            return ClaimResult(frozenset(), frozenset())
        rows = await self._statement("claim_orders", CLAIM_ORDERS, *params, owner, float(lease_seconds))
        return ClaimResult(
            inserted=frozenset(row["client_order_id"] for row in rows if row["inserted"]),
            claimed=frozenset(row["client_order_id"] for row in rows if not row["inserted"]),
        )

    async def renew_claims(self, *, owner: str, client_order_ids: Sequence[str], lease_seconds: float) -> set[str]:
        """Extend ``owner``'s leases on these ids by ``lease_seconds`` from now; return the ids it
        still owns (an id missing was taken over after its lease ran out, or went terminal)."""
        if not client_order_ids:
            return set()
        rows = await self._statement(
            "renew_claims", RENEW_CLAIMS, owner, sorted(set(client_order_ids)), float(lease_seconds)
        )
        return {row["client_order_id"] for row in rows}

    async def claim_expired(
        self, executor: Broker, *, owner: str, lease_seconds: float, limit: int = 500
    ) -> list[Order]:
        """The sweep: take over up to ``limit`` open orders that came from ``executor``'s topic and
        whose claim is free or expired, oldest first (``sql.CLAIM_EXPIRED``). Rows being claimed
        by someone else at this moment are skipped, not waited for, so concurrent sweepers share
        the work and never return the same order."""
        if limit <= 0:
            return []
        rows = await self._statement(
            "claim_expired", CLAIM_EXPIRED, executor.value, owner, float(lease_seconds), limit
        )
        return [Order.model_validate(dict(row)) for row in rows]

    async def release_claims(self, *, owner: str, client_order_ids: Sequence[str]) -> None:
        """Free ``owner``'s claims on these ids (graceful shutdown): the next sweep of any
        executor takes them at once. Claims held by others are untouched."""
        if client_order_ids:
            await self._statement("release_claims", RELEASE_CLAIMS, owner, sorted(set(client_order_ids)))

    async def reject_orders(
        self, rejections: Sequence[tuple[str, str]], *, owner: str, at: datetime
    ) -> list[OrderEvent]:
        """Reject the still-PENDING orders a dead-lettered message left behind, one statement
        (``sql.REJECT_ORDERS``); see ``OrderStore.reject_orders``. The first reason of an id wins."""
        reasons: dict[str, str] = {}
        for cid, reason in rejections:
            reasons.setdefault(cid, reason)
        if not reasons:
            return []
        ids = sorted(reasons)
        rows = await self._statement("reject_orders", REJECT_ORDERS, ids, [reasons[cid] for cid in ids], owner, at)
        return [
            OrderEvent(client_order_id=row["client_order_id"], broker=Broker(row["broker"]), symbol=row["symbol"],
                       state=OrderState.REJECTED, previous_state=OrderState.PENDING, reason=row["reason"],
                       ts=row["updated_at"], strategy=row["strategy"], group_id=row["group_id"],
                       filled_quantity=row["filled_quantity"], avg_fill_price=row["avg_fill_price"])
            for row in rows
        ]

    async def get_orders(self, client_order_ids: Sequence[str]) -> dict[str, Order]:
        if not client_order_ids:
            return {}
        rows = await self.pool.fetch(
            f"{SELECT_ORDERS} WHERE client_order_id = ANY($1::text[])", list(client_order_ids)
        )
        return {row["client_order_id"]: Order.model_validate(dict(row)) for row in rows}

    async def save_transitions(self, changes: Sequence[tuple[Order, OrderEvent]]) -> None:
        """Persist new order states with their events, in one transaction, in the given order.

        Pipelined ``executemany`` keeps the order of several transitions of one order in a batch
        (SUBMITTED then FILLED), which a single set-based UPDATE could not guarantee. The updates
        run stably sorted by order id (the lock order of apply_fills), events in the given order.
        """
        if not changes:
            return
        ordered = sorted((order for order, _ in changes), key=lambda o: o.client_order_id)
        args = [
            (
                order.client_order_id,
                order.state.value,
                order.reason,
                order.broker.value,
                db_value(order.rerouted_from),
                order.venue_order_id,
                order.updated_at,
                TERMINAL_STATE_VALUES,
            )
            for order in ordered
        ]

        async def work(conn: asyncpg.Connection) -> None:
            await conn.executemany(SAVE_TRANSITION, args)
            await self._insert_events(conn, [event for _, event in changes])

        await self._transaction("save_transitions", work)

    async def open_orders(self, broker: Broker) -> list[Order]:
        """Every non-terminal order placed at ``broker``: what reconcile asks the venue about."""
        rows = await self.pool.fetch(
            f"{SELECT_ORDERS} WHERE broker = $1 AND state <> ALL($2::text[]) ORDER BY created_at",
            broker.value,
            TERMINAL_STATE_VALUES,
        )
        return [Order.model_validate(dict(row)) for row in rows]

    async def record_fees(self, fees: Sequence[FillFee]) -> None:
        """Record fees reported after their fills (IB's commission report), one statement.

        Kept in ``fill_fees``, not written into ``fills``: the fee may arrive before the fills
        writer has recorded its fill. Readers (``queries.recorded_fills``) apply it. Recording a
        fee again sets the same value; within one batch the last report of a fill wins."""
        latest = {(fee.broker, fee.exec_id): fee for fee in fees}
        if not latest:
            return
        keys = sorted(latest)
        await self.pool.execute(
            RECORD_FEES,
            [broker.value for broker, _ in keys],
            [exec_id for _, exec_id in keys],
            [latest[k].commission for k in keys],
            [latest[k].commission_asset for k in keys],
            self._now(),
        )

    # ---- FillStore ---------------------------------------------------------------------------

    async def apply_fills(self, fills: Sequence[Fill]) -> list[Fill]:
        """Steps 6-7 for a batch, in one transaction: record fills, advance orders, move positions.

        Returns the fills applied, each with ``quantity`` set to what was applied (the growth of
        its order's cumulative watermark). Skipped: a ``(broker, exec_id)`` already seen, and a
        fill whose ``cumulative_quantity`` does not exceed what is recorded.

        A fill whose order row does not exist is recorded anyway (its position must not be
        wrong) with a warning; its watermark is the sum of the fills already recorded for that
        client order id, so re-emitted orphan fills are skipped too.
        """
        if not fills:
            return []
        return await self._transaction("apply_fills", lambda conn: self._apply_fills(conn, fills))

    async def positions(self, broker: Broker | None = None) -> list[Position]:
        return await queries.positions(self.pool, broker)

    # ---- NavArbStore (execution/nav_arb.py): the NAV-arb agent's pairs, observations, episodes ----

    async def load_nav_pairs(self, known: Mapping[str, str]) -> dict[str, StoredPair]:
        """The rows of ``known``'s pairs; a pair's state only where the caller's cached state is
        not the stored one (by fingerprint), its outbox only while unsent (``timescale/nav.py``)."""
        return await nav.load_pairs(self.pool, known)

    async def save_nav(self, writes: Sequence[PairWrite], spreads: Sequence[SpreadRow],
                       episodes: Sequence[EpisodeRecord]) -> None:
        """One transaction: the pairs' new states (``StaleNavState`` if a stored version moved,
        and nothing is saved), their observations and episode records."""
        if writes or spreads or episodes:
            await self._transaction("save_nav", lambda conn: nav.save(conn, writes, spreads, episodes))

    async def mark_nav_outbox_sent(self, sent: Mapping[str, int]) -> None:
        await nav.mark_sent(self.pool, sent)

    async def unsent_nav_outboxes(self) -> dict[str, StoredPair]:
        return await nav.unsent_outboxes(self.pool)

    async def nav_spreads(self, pair: str) -> list[SpreadRow]:
        """A pair's observations, oldest first."""
        return await nav.spreads_of(self.pool, pair)

    async def nav_episodes(self, pair: str) -> list[EpisodeRecord]:
        """A pair's episode changes, in the order they were recorded."""
        return await nav.episodes_of(self.pool, pair)

    # ---- read helpers (tests, operators): thin delegations to queries.py -----------------------

    async def order_counts(self) -> dict[tuple[Broker, OrderState], int]:
        return await queries.order_counts(self.pool)

    async def fill_count(self) -> int:
        return await queries.fill_count(self.pool)

    async def order_events(self, client_order_id: str) -> list[OrderEvent]:
        """The audit trail of one order, oldest first."""
        return await queries.order_events(self.pool, client_order_id)

    async def recorded_fills(self, client_order_id: str | None = None) -> list[Fill]:
        """Fills as recorded (``quantity`` = applied), in recording order."""
        return await queries.recorded_fills(self.pool, client_order_id)

    # ---- internals ---------------------------------------------------------------------------

    async def _statement(self, what: str, query: str, *args: object) -> list[asyncpg.Record]:
        """Run one self-contained statement (atomic on its own, one round trip); rerun it when
        PostgreSQL picked it as a deadlock victim (rolled back whole, so rerunning is safe)."""
        for attempt in range(1, TRANSACTION_ATTEMPTS + 1):
            try:
                rows: list[asyncpg.Record] = await self.pool.fetch(query, *args)
                return rows
            except asyncpg.DeadlockDetectedError as exc:
                if attempt == TRANSACTION_ATTEMPTS:
                    raise
                log.warning("%s attempt %d rolled back (%s); retrying", what, attempt, exc)
        raise AssertionError("unreachable")

    async def _transaction(self, what: str, work: Callable[[asyncpg.Connection], Awaitable[_T]]) -> _T:
        """Run ``work`` in one transaction; rerun it when PostgreSQL picked it as a deadlock or
        serialization victim (rolled back whole, so rerunning is safe)."""
        for attempt in range(1, TRANSACTION_ATTEMPTS + 1):
            try:
                async with self.pool.acquire() as conn, conn.transaction():
                    return await work(conn)
            except (asyncpg.DeadlockDetectedError, asyncpg.SerializationError) as exc:
                if attempt == TRANSACTION_ATTEMPTS:
                    raise
                log.warning("%s attempt %d rolled back (%s); retrying", what, attempt, exc)
        raise AssertionError("unreachable")

    @staticmethod
    async def _insert_events(conn: asyncpg.Connection, events: Sequence[OrderEvent]) -> None:
        if events:
            rows = [tuple(getattr(event, name) for name, _ in EVENT_COLUMNS) for event in events]
            await conn.execute(INSERT_EVENTS, *arrays(rows, len(EVENT_COLUMNS)))

    async def _apply_fills(self, conn: asyncpg.Connection, fills: Sequence[Fill]) -> list[Fill]:
        fresh = await self._claim_exec_ids(conn, first_of_each(fills))
        if not fresh:
            return []
        orders = await self._lock_orders(conn, sorted({fill.client_order_id for fill in fresh}))
        now = self._now()
        applied, events = apply_to_orders(orders, fresh, now)
        if not applied:
            return []
        positions = move_positions(await self._lock_positions(conn, applied), applied)
        await self._insert_fills(conn, applied, now)
        await self._write_orders(conn, [o for o in orders.values() if o.changed and o.exists], now)
        await self._insert_events(conn, events)
        await self._write_positions(conn, positions, now)
        _warn_orphans(orders, applied)
        return [item.fill for item in applied]

    @staticmethod
    async def _claim_exec_ids(conn: asyncpg.Connection, fills: Sequence[Fill]) -> list[Fill]:
        """Record every ``(broker, exec_id)``; keep only the fills seen here for the first time."""
        rows = await conn.fetch(
            CLAIM_EXEC_IDS, [fill.broker.value for fill in fills], [fill.exec_id for fill in fills]
        )
        claimed = {(row["broker"], row["exec_id"]) for row in rows}
        return [fill for fill in fills if (fill.broker.value, fill.exec_id) in claimed]

    @staticmethod
    async def _lock_orders(conn: asyncpg.Connection, ids: Sequence[str]) -> dict[str, OrderFillState]:
        """Lock the batch's order rows (sorted: no lock-order deadlocks) and read their watermarks;
        orphans get a transaction advisory lock and the watermark of their recorded fills."""
        orders = {
            row["client_order_id"]: OrderFillState(
                client_order_id=row["client_order_id"],
                filled=row["filled_quantity"],
                avg_price=row["avg_fill_price"],
                quantity=row["quantity"],
                state=OrderState(row["state"]),
                broker=Broker(row["broker"]),
                symbol=row["symbol"],
                venue_order_id=row["venue_order_id"],
            )
            for row in await conn.fetch(LOCK_ORDERS, list(ids))
        }
        orphans = [cid for cid in ids if cid not in orders]
        if orphans:
            await conn.execute(LOCK_ORPHANS, orphans)
            recorded = {row["client_order_id"]: row for row in await conn.fetch(ORPHAN_WATERMARKS, orphans)}
            for cid in orphans:
                row = recorded.get(cid)
                orders[cid] = (
                    OrderFillState.orphan(cid, row["filled"], row["notional"]) if row else OrderFillState(cid)
                )
        return orders

    @staticmethod
    async def _lock_positions(
        conn: asyncpg.Connection, applied: Sequence[AppliedFill]
    ) -> dict[PositionKey, PositionState]:
        """Make sure every touched position row exists, then lock them all in key order."""
        keys = sorted({(item.fill.broker.value, item.fill.symbol) for item in applied})
        brokers, symbols = [k[0] for k in keys], [k[1] for k in keys]
        await conn.execute(ENSURE_POSITIONS, brokers, symbols)
        rows = await conn.fetch(LOCK_POSITIONS, brokers, symbols)
        return {
            (Broker(row["broker"]), row["symbol"]): PositionState(
                row["quantity"], row["avg_price"], row["realized_pnl"]
            )
            for row in rows
        }

    @staticmethod
    async def _insert_fills(conn: asyncpg.Connection, applied: Sequence[AppliedFill], now: datetime) -> None:
        rows = []
        for item in applied:
            values = item.fill.model_dump()
            values.update(reported_quantity=item.reported_quantity, recorded_at=now)
            rows.append(tuple(values[name] for name, _ in FILL_COLUMNS))
        await conn.execute(INSERT_FILLS, *arrays(rows, len(FILL_COLUMNS)))

    @staticmethod
    async def _write_orders(conn: asyncpg.Connection, orders: Sequence[OrderFillState], now: datetime) -> None:
        if not orders:
            return
        await conn.execute(
            ADVANCE_ORDERS,
            [o.client_order_id for o in orders],
            [o.filled for o in orders],
            [o.avg_price for o in orders],
            [db_value(o.state) for o in orders],
            [o.venue_order_id for o in orders],
            now,
        )

    @staticmethod
    async def _write_positions(
        conn: asyncpg.Connection, positions: dict[PositionKey, PositionState], now: datetime
    ) -> None:
        keys = sorted(positions)
        await conn.execute(
            WRITE_POSITIONS,
            [k[0].value for k in keys],
            [k[1] for k in keys],
            [positions[k].quantity for k in keys],
            [positions[k].avg_price for k in keys],
            [positions[k].realized_pnl for k in keys],
            now,
        )


def _order_arrays(orders: Sequence[Order]) -> list[list[object]] | None:
    """The batch as one typed array per ``ORDER_COLUMNS`` column (the first of each id kept), or
    None when empty. Sorted by key, like every multi-row write here, so concurrent batches take
    their row locks in one order and cannot deadlock."""
    first: dict[str, Order] = {}
    for order in orders:
        first.setdefault(order.client_order_id, order)
    if not first:
        return None
    rows = [tuple(getattr(first[cid], name) for name, _ in ORDER_COLUMNS) for cid in sorted(first)]
    return arrays(rows, len(ORDER_COLUMNS))


def _warn_orphans(orders: dict[str, OrderFillState], applied: Sequence[AppliedFill]) -> None:
    """Log each applied fill whose order the store does not hold (recorded without an order row)."""
    for item in applied:
        if not orders[item.fill.client_order_id].exists:
            log.warning(
                "fill %s/%s for unknown order %s recorded without an order row",
                item.fill.broker.value,
                item.fill.exec_id,
                item.fill.client_order_id,
            )
