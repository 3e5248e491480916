"""TimescaleDB / PostgreSQL adapter: the durable ``OrderStore`` and ``FillStore``.

Why it is shaped like this:

* Every public method is one transaction with a fixed number of round trips whatever the batch
  size (``INSERT ... SELECT FROM unnest(...)``, ``UPDATE ... FROM unnest(...)``, pipelined
  ``executemany``), because the agents hand over whole Kafka batches and a round trip per row
  would cap throughput at the network latency.
* Idempotency lives in the database, not in the consumer: ``orders`` has its primary key
  (redelivered signal -> no second order), ``fill_ids`` remembers every ``(broker, exec_id)``
  (redelivered fill message -> skipped before any lock), and the order's ``filled_quantity`` is a
  cumulative watermark (a fill re-emitted under a new id after a crash applies only the growth).
* Fill application locks what it changes (orders ``FOR UPDATE``, then positions ``FOR UPDATE``),
  always in sorted key order, so several fill writers can run side by side without lost updates
  and without lock-order deadlocks; a deadlock reported anyway is retried.
* Money is ``Decimal`` end to end (NUMERIC in, ``Decimal`` out of asyncpg); the arithmetic runs in
  a 50-digit context so sums and products stay exact and only averages are rounded.
* Migrations are the plain SQL files of ``schemas/sql``, applied in name order, once each,
  under a PostgreSQL advisory lock so workers starting together do not race.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal, localcontext
from enum import Enum
from importlib import resources
from types import TracebackType
from typing import Any, Self, TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from schemas import TERMINAL_STATES, Broker, Fill, Order, OrderEvent, OrderState, Position, utcnow

#: failures that pass when the database comes back; anything else from here is a bug or bad data
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.AdminShutdownError,
    asyncpg.SerializationError,
    asyncpg.DeadlockDetectedError,
    ConnectionError,
)

log = logging.getLogger(__name__)

#: Key of the session advisory lock that serialises migration runs across workers.
MIGRATION_LOCK_ID = 0x5349_4D49_4752  # "SIMIGR"
#: How often a batch is retried when PostgreSQL reports a deadlock or serialization failure.
TRANSACTION_ATTEMPTS = 3
#: Precision of the fill/position arithmetic; generous so only divisions ever round.
DECIMAL_PRECISION = 50

_T = TypeVar("_T")

_TERMINAL = sorted(state.value for state in TERMINAL_STATES)
_ZERO = Decimal(0)

Column = tuple[str, str]
"""A column name with its PostgreSQL type, used to build typed ``unnest`` parameters."""

ORDER_COLUMNS: tuple[Column, ...] = (
    ("client_order_id", "text"),
    ("signal_id", "text"),
    ("ts", "timestamptz"),
    ("strategy", "text"),
    ("symbol", "text"),
    ("side", "text"),
    ("quantity", "numeric"),
    ("order_type", "text"),
    ("limit_price", "numeric"),
    ("stop_price", "numeric"),
    ("take_profit_price", "numeric"),
    ("asset_class", "text"),
    ("reference_price", "numeric"),
    ("time_in_force", "text"),
    ("group_id", "text"),
    ("broker", "text"),
    ("route_reason", "text"),
    ("rerouted_from", "text"),
    ("routed_at", "timestamptz"),
    ("state", "text"),
    ("filled_quantity", "numeric"),
    ("avg_fill_price", "numeric"),
    ("venue_order_id", "text"),
    ("reason", "text"),
    ("created_at", "timestamptz"),
    ("updated_at", "timestamptz"),
)

EVENT_COLUMNS: tuple[Column, ...] = (
    ("client_order_id", "text"),
    ("ts", "timestamptz"),
    ("state", "text"),
    ("previous_state", "text"),
    ("reason", "text"),
    ("broker", "text"),
    ("symbol", "text"),
)

FILL_COLUMNS: tuple[Column, ...] = (
    ("exec_id", "text"),
    ("broker", "text"),
    ("client_order_id", "text"),
    ("venue_order_id", "text"),
    ("symbol", "text"),
    ("asset_class", "text"),
    ("strategy", "text"),
    ("side", "text"),
    ("quantity", "numeric"),
    ("reported_quantity", "numeric"),
    ("price", "numeric"),
    ("commission", "numeric"),
    ("commission_asset", "text"),
    ("cumulative_quantity", "numeric"),
    ("ts", "timestamptz"),
    ("signal_ts", "timestamptz"),
    ("recorded_at", "timestamptz"),
)

_FILL_MODEL_COLUMNS = tuple(
    name for name, _ in FILL_COLUMNS if name not in ("reported_quantity", "recorded_at")
)
_POSITION_COLUMNS = "broker, symbol, quantity, avg_price, realized_pnl, updated_at"


def _check_columns_match_models() -> None:
    """Fail at import if the wire models and the column lists drift apart.

    A field added to ``Order`` or ``Fill`` without a column would otherwise be dropped silently
    on the way to the database.
    """
    for model, columns in ((Order, {n for n, _ in ORDER_COLUMNS}), (Fill, set(_FILL_MODEL_COLUMNS))):
        drift = set(model.model_fields) ^ columns
        if drift:
            raise RuntimeError(f"{model.__name__} fields and table columns differ: {sorted(drift)}")


_check_columns_match_models()


def _insert_sql(table: str, columns: Sequence[Column], suffix: str = "") -> str:
    """``INSERT INTO table (...) SELECT * FROM unnest($1::t1[], ...)``: a whole batch, one statement."""
    names = ", ".join(name for name, _ in columns)
    params = ", ".join(f"${i}::{pg_type}[]" for i, (_, pg_type) in enumerate(columns, start=1))
    return f"INSERT INTO {table} ({names}) SELECT * FROM unnest({params}) {suffix}".rstrip()


def _db_value(value: Any) -> Any:
    """Enums travel as their text value; everything else (Decimal, datetime, str, None) as is."""
    return value.value if isinstance(value, Enum) else value


def _arrays(rows: Sequence[Sequence[Any]], width: int) -> list[list[Any]]:
    """Transpose rows into one parameter array per column, as ``unnest`` wants them."""
    if not rows:
        return [[] for _ in range(width)]
    return [[_db_value(value) for value in column] for column in zip(*rows, strict=True)]


_INSERT_ORDERS = (
    # One statement (so one round trip, atomic without BEGIN/COMMIT): the new orders and, for
    # exactly those that were new, their first audit event. Step 2 sits on the hot path.
    "WITH inserted AS ("
    + _insert_sql("orders", ORDER_COLUMNS,
                  "ON CONFLICT (client_order_id) DO NOTHING "
                  "RETURNING client_order_id, updated_at, state, reason, broker, symbol")
    + "), events AS (INSERT INTO order_events (client_order_id, ts, state, previous_state, reason, broker, symbol) "
    "SELECT client_order_id, updated_at, state, NULL, reason, broker, symbol FROM inserted "
    "ORDER BY client_order_id) "
    "SELECT client_order_id FROM inserted"
)
_INSERT_EVENTS = _insert_sql("order_events", EVENT_COLUMNS)
_INSERT_FILLS = _insert_sql("fills", FILL_COLUMNS)
_CLAIM_EXEC_IDS = (
    "INSERT INTO fill_ids (broker, exec_id) "
    "SELECT b, e FROM unnest($1::text[], $2::text[]) AS k(b, e) ORDER BY b, e "
    "ON CONFLICT (broker, exec_id) DO NOTHING RETURNING broker, exec_id"
)
_SELECT_ORDERS = f"SELECT {', '.join(n for n, _ in ORDER_COLUMNS)} FROM orders"
_LOCK_ORDERS = (
    "SELECT client_order_id, broker, symbol, quantity, filled_quantity, avg_fill_price, state, "
    "venue_order_id FROM orders WHERE client_order_id = ANY($1::text[]) "
    "ORDER BY client_order_id FOR UPDATE"
)
_LOCK_ORPHANS = (
    "SELECT pg_advisory_xact_lock(hashtextextended(id, 0)) FROM unnest($1::text[]) AS t(id) ORDER BY id"
)
_ORPHAN_WATERMARKS = (
    "SELECT client_order_id, sum(quantity) AS filled, sum(quantity * price) AS notional FROM fills "
    "WHERE client_order_id = ANY($1::text[]) GROUP BY client_order_id"
)
_ADVANCE_ORDERS = (
    "UPDATE orders AS o SET filled_quantity = u.filled, avg_fill_price = u.avg, state = u.state, "
    "venue_order_id = COALESCE(o.venue_order_id, u.venue_order_id), updated_at = $6 "
    "FROM unnest($1::text[], $2::numeric[], $3::numeric[], $4::text[], $5::text[]) "
    "AS u(id, filled, avg, state, venue_order_id) WHERE o.client_order_id = u.id"
)
_ENSURE_POSITIONS = (
    "INSERT INTO positions (broker, symbol) "
    "SELECT b, s FROM unnest($1::text[], $2::text[]) AS k(b, s) ORDER BY b, s "
    "ON CONFLICT (broker, symbol) DO NOTHING"
)
_LOCK_POSITIONS = (
    f"SELECT {_POSITION_COLUMNS} FROM positions "
    "WHERE (broker, symbol) IN (SELECT * FROM unnest($1::text[], $2::text[])) "
    "ORDER BY broker, symbol FOR UPDATE"
)
_WRITE_POSITIONS = (
    "UPDATE positions AS p SET quantity = u.q, avg_price = u.a, realized_pnl = u.r, updated_at = $6 "
    "FROM unnest($1::text[], $2::text[], $3::numeric[], $4::numeric[], $5::numeric[]) AS u(b, s, q, a, r) "
    "WHERE p.broker = u.b AND p.symbol = u.s"
)
# A transition never leaves a terminal state (WHERE) and never moves a live order backwards
# (order_state_rank, see 001_core.sql); fill totals only grow. The event is recorded regardless.
_SAVE_TRANSITION = (
    # filled_quantity / avg_fill_price are deliberately absent: apply_fills is their only writer,
    # because its watermark (cumulative - filled_quantity) must only ever see applied fills.
    "UPDATE orders AS o SET "
    "state = CASE WHEN order_state_rank($2::text) >= order_state_rank(o.state) THEN $2::text "
    "ELSE o.state END, "
    "reason = $3, broker = $4, rerouted_from = $5, "
    "venue_order_id = COALESCE($6, o.venue_order_id), "
    "updated_at = $7 "
    "WHERE o.client_order_id = $1 AND o.state <> ALL($8::text[])"
)


# --------------------------------------------------------------------------------------------
# Migrations
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Migration:
    """One numbered SQL file of ``schemas/sql``; ``version`` is its name without ``.sql``."""

    version: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def load_migrations() -> list[Migration]:
    """The SQL files shipped in the ``schemas`` package (package data), in name order."""
    root = resources.files("schemas") / "sql"
    files = sorted((f for f in root.iterdir() if f.name.endswith(".sql")), key=lambda f: f.name)
    return [Migration(f.name.removesuffix(".sql"), f.read_text(encoding="utf-8")) for f in files]


_BOOTSTRAP_MIGRATIONS = (
    "CREATE TABLE IF NOT EXISTS schema_migrations ("
    "version TEXT PRIMARY KEY, checksum TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
)


async def apply_migrations(conn: asyncpg.Connection, migrations: Sequence[Migration]) -> list[str]:
    """Apply the migrations not yet recorded, each in its own transaction; return their versions.

    Holds a session advisory lock for the whole run: a second worker waits, then finds every
    file recorded and applies nothing. A file edited after it was applied is reported, not
    re-run: schema changes belong in a new numbered file.
    """
    await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_ID)
    try:
        await conn.execute(_BOOTSTRAP_MIGRATIONS)
        rows = await conn.fetch("SELECT version, checksum FROM schema_migrations")
        recorded = {row["version"]: row["checksum"] for row in rows}
        applied: list[str] = []
        for migration in migrations:
            if migration.version in recorded:
                if recorded[migration.version] != migration.checksum:
                    log.warning("migration %s changed after it was applied; not re-run", migration.version)
                continue
            async with conn.transaction():
                await conn.execute(migration.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, checksum) VALUES ($1, $2)",
                    migration.version,
                    migration.checksum,
                )
            log.info("applied migration %s", migration.version)
            applied.append(migration.version)
        return applied
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_ID)


# --------------------------------------------------------------------------------------------
# Fill and position arithmetic (pure, no I/O)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PositionState:
    """A net position under the average-cost method.

    Adding to a position (or opening one) moves ``avg_price`` to the weighted average; reducing
    it realises ``(price - avg) * closed * direction`` and keeps the average; going flat resets the
    average to 0; flipping through zero opens the remainder at the fill price.
    """

    quantity: Decimal = _ZERO
    avg_price: Decimal = _ZERO
    realized_pnl: Decimal = _ZERO

    def apply(self, signed_quantity: Decimal, price: Decimal) -> PositionState:
        held = self.quantity
        after = held + signed_quantity
        if held == 0 or (held > 0) == (signed_quantity > 0):
            average = (abs(held) * self.avg_price + abs(signed_quantity) * price) / abs(after)
            return replace(self, quantity=after, avg_price=average)
        closed = min(abs(signed_quantity), abs(held))
        direction = 1 if held > 0 else -1
        realized = self.realized_pnl + (price - self.avg_price) * closed * direction
        if after == 0:
            average = _ZERO
        elif (after > 0) != (held > 0):
            average = price
        else:
            average = self.avg_price
        return PositionState(quantity=after, avg_price=average, realized_pnl=realized)


@dataclass(slots=True)
class _OrderFillState:
    """What apply_fills needs of one order while it walks a batch: the cumulative watermark.

    ``state`` is ``None`` for an orphan (a fill whose order row does not exist): its watermark is
    what ``fills`` already holds for that client order id, and it has no state to advance.
    """

    client_order_id: str
    broker: str | None
    symbol: str | None
    quantity: Decimal | None
    filled: Decimal
    avg_price: Decimal | None
    state: OrderState | None
    venue_order_id: str | None
    changed: bool = False

    @property
    def exists(self) -> bool:
        return self.state is not None

    def absorb(self, fill: Fill) -> Decimal | None:
        """Advance the watermark to ``fill.cumulative_quantity``; return the quantity applied,
        or ``None`` when the fill brings no growth (duplicate, re-emitted or stale)."""
        applied = fill.cumulative_quantity - self.filled
        if applied <= 0:
            return None
        prior_price = self.avg_price if self.avg_price is not None else fill.price
        self.avg_price = (prior_price * self.filled + fill.price * applied) / fill.cumulative_quantity
        self.filled = fill.cumulative_quantity
        self.venue_order_id = self.venue_order_id or fill.venue_order_id
        if self.state is not None and not self.state.is_terminal and self.quantity is not None:
            self.state = OrderState.FILLED if self.filled >= self.quantity else OrderState.PARTIALLY_FILLED
        self.changed = True
        return applied


def _fill_event(
    order: _OrderFillState, fill: Fill, applied: Decimal, previous: OrderState, state: OrderState
) -> OrderEvent:
    """The audit row of one applied fill; a fill on a closed order says so in its reason."""
    reason = f"fill {fill.exec_id}: {applied} @ {fill.price}, cumulative {fill.cumulative_quantity}"
    if previous.is_terminal:
        reason = f"late {reason} on {previous.value} order"
    return OrderEvent(
        client_order_id=order.client_order_id,
        broker=Broker(order.broker or fill.broker),
        symbol=order.symbol or fill.symbol,
        state=state,
        previous_state=previous,
        reason=reason,
        ts=utcnow(),
    )


def _first_of_each(fills: Iterable[Fill]) -> list[Fill]:
    """Drop repeats of the same ``(broker, exec_id)`` inside one batch, keeping batch order."""
    seen: set[tuple[str, str]] = set()
    unique: list[Fill] = []
    for fill in fills:
        key = (fill.broker.value, fill.exec_id)
        if key not in seen:
            seen.add(key)
            unique.append(fill)
    return unique


@dataclass(frozen=True, slots=True)
class _Applied:
    """A fill as applied (quantity = watermark growth) with the quantity the venue reported."""

    fill: Fill
    reported_quantity: Decimal


# --------------------------------------------------------------------------------------------
# The store
# --------------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def scratch_database(admin_dsn: str, prefix: str) -> AsyncIterator[str]:
    """A uniquely named database on the server of ``admin_dsn``, dropped on exit: what tests and
    benchmarks run against, so they never meet each other's data or a user's."""
    name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(admin_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield urlunsplit(urlsplit(admin_dsn)._replace(path=f"/{name}"))
    finally:
        admin = await asyncpg.connect(admin_dsn)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Pool release hook: skip asyncpg's reset query (one more round trip per use). The store
    leaves no session state behind (no SET, LISTEN or cursors; the migration lock is released
    in a ``finally``); only a transaction left open by a failure is rolled back here."""
    if conn.is_in_transaction():
        await conn.execute("ROLLBACK")


class TimescaleStore:
    """``OrderStore`` + ``FillStore`` on TimescaleDB or plain PostgreSQL, over an asyncpg pool."""

    def __init__(
        self,
        dsn: str,
        *,
        min_pool_size: int = 1,
        max_pool_size: int = 10,
        command_timeout: float = 60.0,
    ) -> None:
        self._dsn = dsn
        self._min_pool_size = min_pool_size
        self._max_pool_size = max_pool_size
        self._command_timeout = command_timeout
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
        """
        first: dict[str, Order] = {}
        for order in orders:
            first.setdefault(order.client_order_id, order)
        unique = list(first.values())
        if not unique:
            return set()
        # Sorted by key, like every multi-row write here, so concurrent batches cannot deadlock.
        rows = [
            tuple(getattr(order, name) for name, _ in ORDER_COLUMNS)
            for order in sorted(unique, key=lambda o: o.client_order_id)
        ]

        for attempt in range(1, TRANSACTION_ATTEMPTS + 1):
            try:
                inserted_rows = await self.pool.fetch(_INSERT_ORDERS, *_arrays(rows, len(ORDER_COLUMNS)))
                return {row["client_order_id"] for row in inserted_rows}
            except asyncpg.DeadlockDetectedError as exc:
                if attempt == TRANSACTION_ATTEMPTS:
                    raise
                log.warning("insert_orders attempt %d rolled back (%s); retrying", attempt, exc)
        raise AssertionError("unreachable")

    async def get_orders(self, client_order_ids: Sequence[str]) -> dict[str, Order]:
        if not client_order_ids:
            return {}
        rows = await self.pool.fetch(
            f"{_SELECT_ORDERS} WHERE client_order_id = ANY($1::text[])", list(client_order_ids)
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
                _db_value(order.rerouted_from),
                order.venue_order_id,
                order.updated_at,
                _TERMINAL,
            )
            for order in ordered
        ]

        async def work(conn: asyncpg.Connection) -> None:
            await conn.executemany(_SAVE_TRANSITION, args)
            await self._insert_events(conn, [event for _, event in changes])

        await self._transaction("save_transitions", work)

    async def open_orders(self, broker: Broker) -> list[Order]:
        """Every non-terminal order placed at ``broker``: what reconcile asks the venue about."""
        rows = await self.pool.fetch(
            f"{_SELECT_ORDERS} WHERE broker = $1 AND state <> ALL($2::text[]) ORDER BY created_at",
            broker.value,
            _TERMINAL,
        )
        return [Order.model_validate(dict(row)) for row in rows]

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
        if broker is None:
            rows = await self.pool.fetch(f"SELECT {_POSITION_COLUMNS} FROM positions ORDER BY broker, symbol")
        else:
            rows = await self.pool.fetch(
                f"SELECT {_POSITION_COLUMNS} FROM positions WHERE broker = $1 ORDER BY symbol", broker.value
            )
        return [Position.model_validate(dict(row)) for row in rows]

    # ---- read helpers (tests, demo summary, operators) ----------------------------------------

    async def order_counts(self) -> dict[tuple[Broker, OrderState], int]:
        rows = await self.pool.fetch("SELECT broker, state, count(*) AS n FROM orders GROUP BY broker, state")
        return {(Broker(row["broker"]), OrderState(row["state"])): row["n"] for row in rows}

    async def fill_count(self) -> int:
        count: int = await self.pool.fetchval("SELECT count(*) FROM fills")
        return count

    async def order_events(self, client_order_id: str) -> list[OrderEvent]:
        """The audit trail of one order, oldest first."""
        rows = await self.pool.fetch(
            f"SELECT {', '.join(n for n, _ in EVENT_COLUMNS)} FROM order_events "
            "WHERE client_order_id = $1 ORDER BY id",
            client_order_id,
        )
        return [OrderEvent.model_validate(dict(row)) for row in rows]

    async def recorded_fills(self, client_order_id: str | None = None) -> list[Fill]:
        """Fills as recorded (``quantity`` = applied), in recording order."""
        columns = ", ".join(_FILL_MODEL_COLUMNS)
        if client_order_id is None:
            rows = await self.pool.fetch(f"SELECT {columns} FROM fills ORDER BY recorded_at, ts")
        else:
            rows = await self.pool.fetch(
                f"SELECT {columns} FROM fills WHERE client_order_id = $1 ORDER BY recorded_at, ts",
                client_order_id,
            )
        return [Fill.model_validate(dict(row)) for row in rows]

    # ---- internals ---------------------------------------------------------------------------

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
            await conn.execute(_INSERT_EVENTS, *_arrays(rows, len(EVENT_COLUMNS)))

    async def _apply_fills(self, conn: asyncpg.Connection, fills: Sequence[Fill]) -> list[Fill]:
        fresh = await self._claim_exec_ids(conn, _first_of_each(fills))
        if not fresh:
            return []
        orders = await self._lock_orders(conn, sorted({fill.client_order_id for fill in fresh}))
        with localcontext() as ctx:
            ctx.prec = DECIMAL_PRECISION
            applied, events = self._advance_orders(orders, fresh)
        if not applied:
            return []
        positions = await self._lock_positions(conn, applied)
        with localcontext() as ctx:
            ctx.prec = DECIMAL_PRECISION
            for item in applied:
                key = (item.fill.broker.value, item.fill.symbol)
                positions[key] = positions[key].apply(item.fill.signed_quantity, item.fill.price)
        now = utcnow()
        await self._insert_fills(conn, applied, now)
        await self._write_orders(conn, [o for o in orders.values() if o.changed and o.exists], now)
        await self._insert_events(conn, events)
        await self._write_positions(conn, positions, now)
        self._warn_orphans(orders, applied)
        return [item.fill for item in applied]

    @staticmethod
    async def _claim_exec_ids(conn: asyncpg.Connection, fills: Sequence[Fill]) -> list[Fill]:
        """Record every ``(broker, exec_id)``; keep only the fills seen here for the first time."""
        rows = await conn.fetch(
            _CLAIM_EXEC_IDS, [fill.broker.value for fill in fills], [fill.exec_id for fill in fills]
        )
        claimed = {(row["broker"], row["exec_id"]) for row in rows}
        return [fill for fill in fills if (fill.broker.value, fill.exec_id) in claimed]

    @staticmethod
    async def _lock_orders(conn: asyncpg.Connection, ids: Sequence[str]) -> dict[str, _OrderFillState]:
        """Lock the batch's order rows (sorted: no lock-order deadlocks) and read their watermarks;
        orphans get a transaction advisory lock and the watermark of their recorded fills."""
        orders = {
            row["client_order_id"]: _OrderFillState(
                client_order_id=row["client_order_id"],
                broker=row["broker"],
                symbol=row["symbol"],
                quantity=row["quantity"],
                filled=row["filled_quantity"],
                avg_price=row["avg_fill_price"],
                state=OrderState(row["state"]),
                venue_order_id=row["venue_order_id"],
            )
            for row in await conn.fetch(_LOCK_ORDERS, list(ids))
        }
        orphans = [cid for cid in ids if cid not in orders]
        if orphans:
            await conn.execute(_LOCK_ORPHANS, orphans)
            recorded = {row["client_order_id"]: row for row in await conn.fetch(_ORPHAN_WATERMARKS, orphans)}
            for cid in orphans:
                row = recorded.get(cid)
                filled = row["filled"] if row else _ZERO
                avg = row["notional"] / filled if row else None
                orders[cid] = _OrderFillState(cid, None, None, None, filled, avg, None, None)
        return orders

    @staticmethod
    def _advance_orders(
        orders: dict[str, _OrderFillState], fills: Sequence[Fill]
    ) -> tuple[list[_Applied], list[OrderEvent]]:
        """Walk the batch in order against the in-memory watermarks; nothing is written here."""
        applied: list[_Applied] = []
        events: list[OrderEvent] = []
        for fill in fills:
            order = orders[fill.client_order_id]
            previous = order.state
            quantity = order.absorb(fill)
            if quantity is None:
                continue
            applied.append(_Applied(fill.model_copy(update={"quantity": quantity}), fill.quantity))
            if previous is not None and order.state is not None:
                events.append(_fill_event(order, fill, quantity, previous, order.state))
        return applied, events

    @staticmethod
    async def _lock_positions(
        conn: asyncpg.Connection, applied: Sequence[_Applied]
    ) -> dict[tuple[str, str], PositionState]:
        """Make sure every touched position row exists, then lock them all in key order."""
        keys = sorted({(item.fill.broker.value, item.fill.symbol) for item in applied})
        brokers, symbols = [k[0] for k in keys], [k[1] for k in keys]
        await conn.execute(_ENSURE_POSITIONS, brokers, symbols)
        rows = await conn.fetch(_LOCK_POSITIONS, brokers, symbols)
        return {
            (row["broker"], row["symbol"]): PositionState(
                row["quantity"], row["avg_price"], row["realized_pnl"]
            )
            for row in rows
        }

    @staticmethod
    async def _insert_fills(conn: asyncpg.Connection, applied: Sequence[_Applied], now: datetime) -> None:
        rows = []
        for item in applied:
            values = item.fill.model_dump()
            values.update(reported_quantity=item.reported_quantity, recorded_at=now)
            rows.append(tuple(values[name] for name, _ in FILL_COLUMNS))
        await conn.execute(_INSERT_FILLS, *_arrays(rows, len(FILL_COLUMNS)))

    @staticmethod
    async def _write_orders(
        conn: asyncpg.Connection, orders: Sequence[_OrderFillState], now: datetime
    ) -> None:
        if not orders:
            return
        await conn.execute(
            _ADVANCE_ORDERS,
            [o.client_order_id for o in orders],
            [o.filled for o in orders],
            [o.avg_price for o in orders],
            [_db_value(o.state) for o in orders],
            [o.venue_order_id for o in orders],
            now,
        )

    @staticmethod
    async def _write_positions(
        conn: asyncpg.Connection, positions: dict[tuple[str, str], PositionState], now: datetime
    ) -> None:
        keys = sorted(positions)
        await conn.execute(
            _WRITE_POSITIONS,
            [k[0] for k in keys],
            [k[1] for k in keys],
            [positions[k].quantity for k in keys],
            [positions[k].avg_price for k in keys],
            [positions[k].realized_pnl for k in keys],
            now,
        )

    @staticmethod
    def _warn_orphans(orders: dict[str, _OrderFillState], applied: Sequence[_Applied]) -> None:
        for item in applied:
            if not orders[item.fill.client_order_id].exists:
                log.warning(
                    "fill %s/%s for unknown order %s recorded without an order row",
                    item.fill.broker.value,
                    item.fill.exec_id,
                    item.fill.client_order_id,
                )
