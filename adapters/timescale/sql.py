"""The write side's SQL: column lists, statements, and how Python values become parameters.

Every multi-row statement takes whole batches as typed arrays (``INSERT ... SELECT FROM
unnest(...)``, ``UPDATE ... FROM unnest(...)``) so a batch costs one round trip whatever its size.
The column lists are checked against the wire models at import, so a field added to ``Order`` or
``Fill`` without a column fails loudly instead of being dropped on the way to the database.
The read side (operator, demo and bench queries) is ``queries.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import Enum
from typing import Any

from schemas import TERMINAL_STATES, Fill, Order, OrderState

#: the text values of the terminal states, as a ``text[]`` parameter
TERMINAL_STATE_VALUES = sorted(state.value for state in TERMINAL_STATES)

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
    # schemas/sql/006_nav_arb.sql: what the order-events topic carries besides the transition
    ("strategy", "text"),
    ("group_id", "text"),
    ("filled_quantity", "numeric"),
    ("avg_fill_price", "numeric"),
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
    ("cumulative_notional", "numeric"),
    ("ts", "timestamptz"),
    ("signal_ts", "timestamptz"),
    ("recorded_at", "timestamptz"),
)

#: the ``fills`` columns that make up a ``Fill`` (the others are the store's bookkeeping)
FILL_MODEL_COLUMNS = tuple(name for name, _ in FILL_COLUMNS if name not in ("reported_quantity", "recorded_at"))
POSITION_COLUMNS = "broker, symbol, quantity, avg_price, realized_pnl, updated_at"


def _check_columns_match_models() -> None:
    """Fail at import if the wire models and the column lists drift apart."""
    for model, columns in ((Order, {n for n, _ in ORDER_COLUMNS}), (Fill, set(FILL_MODEL_COLUMNS))):
        drift = set(model.model_fields) ^ columns
        if drift:
            raise RuntimeError(f"{model.__name__} fields and table columns differ: {sorted(drift)}")


_check_columns_match_models()


def insert_sql(table: str, columns: Sequence[Column], suffix: str = "") -> str:
    """``INSERT INTO table (...) SELECT * FROM unnest($1::t1[], ...)``: a whole batch, one statement."""
    names = ", ".join(name for name, _ in columns)
    params = ", ".join(f"${i}::{pg_type}[]" for i, (_, pg_type) in enumerate(columns, start=1))
    return f"INSERT INTO {table} ({names}) SELECT * FROM unnest({params}) {suffix}".rstrip()


def db_value(value: Any) -> Any:
    """Enums travel as their text value; everything else (Decimal, datetime, str, None) as is."""
    return value.value if isinstance(value, Enum) else value


def arrays(rows: Sequence[Sequence[Any]], width: int) -> list[list[Any]]:
    """Transpose rows into one parameter array per column, as ``unnest`` wants them."""
    if not rows:
        return [[] for _ in range(width)]
    return [[db_value(value) for value in column] for column in zip(*rows, strict=True)]


def _terminal_list() -> str:
    return ", ".join(f"'{value}'" for value in TERMINAL_STATE_VALUES)


#: "the order is not terminal", as a literal list: the partial index of the sweep
#: (schemas/sql/004_order_claims.sql) is only usable by a query whose WHERE repeats its predicate
#: literally; a ``<> ALL($n)`` parameter would hide it from the planner.
OPEN_STATE_SQL = f"state NOT IN ({_terminal_list()})"
TERMINAL_STATE_SQL = f"IN ({_terminal_list()})"

_ORDER_NAMES = ", ".join(name for name, _ in ORDER_COLUMNS)
_ORDER_PARAMS = ", ".join(f"${i}::{pg_type}[]" for i, (_, pg_type) in enumerate(ORDER_COLUMNS, start=1))
#: the first parameter after the order columns' arrays ($1 is the array of client order ids)
_NEXT = len(ORDER_COLUMNS) + 1
#: a lease of ``$n`` seconds from the database's clock: every process compares with one clock
_LEASE = "now() + make_interval(secs => ${n}::float8)"


def _insert_order_rows(owner: str, lease_until: str) -> str:
    """The batch insert of step 2: the ``Order`` columns from typed arrays plus the claim columns.

    ``executor`` is the broker the order is inserted with, i.e. the topic it came from; no later
    statement writes it, so a reroute to paper keeps the order in its executor's sweep."""
    return (
        f"INSERT INTO orders ({_ORDER_NAMES}, executor, owner, lease_until) "
        f"SELECT {_ORDER_NAMES}, u.broker, {owner}, {lease_until} "
        f"FROM unnest({_ORDER_PARAMS}) AS u({_ORDER_NAMES}) "
        "ON CONFLICT (client_order_id) DO NOTHING "
        "RETURNING client_order_id, updated_at, state, reason, broker, symbol"
    )


#: For exactly the rows an insert CTE named ``inserted`` created: their first audit event.
_FIRST_EVENTS = (
    "events AS (INSERT INTO order_events (client_order_id, ts, state, previous_state, reason, broker, symbol) "
    "SELECT client_order_id, updated_at, state, NULL, reason, broker, symbol FROM inserted "
    "ORDER BY client_order_id)"
)

INSERT_ORDERS = (
    # One statement (so one round trip, atomic without BEGIN/COMMIT): the new orders, unowned,
    # and, for exactly those that were new, their first audit event. Step 2 sits on the hot path.
    f"WITH inserted AS ({_insert_order_rows('NULL::text', 'NULL::timestamptz')}), {_FIRST_EVENTS} "
    "SELECT client_order_id FROM inserted"
)

_OWNER = f"${_NEXT}::text"
CLAIM_ORDERS = (
    # Step 2 with ownership, one statement for the whole batch: insert the new rows owned by the
    # caller (terminal ones unowned: nothing to place), then take over the existing open rows
    # whose claim is free, expired or already the caller's. Every part of one statement reads
    # one snapshot, so the UPDATE never sees the rows just inserted (excluded explicitly too,
    # which also makes the insert run first); a row another transaction is claiming at the same
    # moment is locked, waited for, and its WHERE re-checked against the committed claim, so
    # two racing callers never both get it. A row inserted by a concurrent batch after our
    # snapshot conflicts on insert and is invisible to the UPDATE: in neither set, as it
    # should be (its inserter holds it).
    "WITH inserted AS ("
    + _insert_order_rows(
        f"CASE WHEN u.state {TERMINAL_STATE_SQL} THEN NULL ELSE {_OWNER} END",
        f"CASE WHEN u.state {TERMINAL_STATE_SQL} THEN NULL ELSE {_LEASE.format(n=_NEXT + 1)} END",
    )
    + f"), {_FIRST_EVENTS}, claimed AS ("
    f"UPDATE orders AS o SET owner = {_OWNER}, lease_until = {_LEASE.format(n=_NEXT + 1)} "
    "WHERE o.client_order_id = ANY($1::text[]) "
    "AND o.client_order_id NOT IN (SELECT client_order_id FROM inserted) "
    f"AND o.{OPEN_STATE_SQL} "
    f"AND (o.owner IS NULL OR o.owner = {_OWNER} OR o.lease_until < now()) "
    "RETURNING o.client_order_id) "
    "SELECT client_order_id, true AS inserted FROM inserted "
    "UNION ALL SELECT client_order_id, false AS inserted FROM claimed"
)
RENEW_CLAIMS = (
    # No state test needed: every terminal transition clears the owner (SAVE_TRANSITION,
    # ADVANCE_ORDERS) and a row inserted terminal is never owned.
    f"UPDATE orders SET lease_until = {_LEASE.format(n=3)} "
    "WHERE client_order_id = ANY($2::text[]) AND owner = $1::text "
    "RETURNING client_order_id"
)
RELEASE_CLAIMS = (
    "UPDATE orders SET owner = NULL, lease_until = NULL "
    "WHERE client_order_id = ANY($2::text[]) AND owner = $1::text"
)
REJECT_ORDERS = (
    # Dead-lettered after step 2 (agents/executor.py): reject, with its reason, each row that is
    # still PENDING (never placed) and whose claim is free, expired or the caller's ($3), clear
    # the claim, and record the audit event, in one statement. Rows are locked in id order (the
    # lock order of every batch here).
    "WITH r AS (SELECT id, reason FROM unnest($1::text[], $2::text[]) AS r(id, reason)), "
    "target AS (SELECT o.client_order_id FROM orders AS o JOIN r ON r.id = o.client_order_id "
    f"WHERE o.state = '{OrderState.PENDING.value}' "
    "AND (o.owner IS NULL OR o.owner = $3::text OR o.lease_until < now()) "
    "ORDER BY o.client_order_id FOR UPDATE OF o), "
    "rejected AS ("
    f"UPDATE orders AS o SET state = '{OrderState.REJECTED.value}', reason = r.reason, updated_at = $4, "
    "owner = NULL, lease_until = NULL "
    "FROM target AS t JOIN r ON r.id = t.client_order_id WHERE o.client_order_id = t.client_order_id "
    "RETURNING o.client_order_id, o.broker, o.symbol, o.reason, o.updated_at, o.strategy, o.group_id, "
    "o.filled_quantity, o.avg_fill_price), "
    "events AS (INSERT INTO order_events (client_order_id, ts, state, previous_state, reason, broker, symbol, "
    "strategy, group_id, filled_quantity, avg_fill_price) "
    f"SELECT client_order_id, updated_at, '{OrderState.REJECTED.value}', '{OrderState.PENDING.value}', "
    "reason, broker, symbol, strategy, group_id, filled_quantity, avg_fill_price FROM rejected "
    "ORDER BY client_order_id) "
    "SELECT client_order_id, broker, symbol, reason, updated_at, strategy, group_id, filled_quantity, "
    "avg_fill_price FROM rejected ORDER BY client_order_id"
)
CLAIM_EXPIRED = (
    # The sweep. SKIP LOCKED: a row another sweeper (or a claim_orders) is taking right now is
    # left to it rather than waited for; FOR UPDATE re-checks the WHERE against the latest
    # committed claim, so a row claimed since our snapshot is not taken again.
    "WITH candidates AS ("
    "SELECT client_order_id FROM orders "
    f"WHERE executor = $1::text AND {OPEN_STATE_SQL} AND (owner IS NULL OR lease_until < now()) "
    "ORDER BY created_at, client_order_id LIMIT $4::int FOR UPDATE SKIP LOCKED), "
    "claimed AS ("
    f"UPDATE orders AS o SET owner = $2::text, lease_until = {_LEASE.format(n=3)} "
    "FROM candidates AS c WHERE o.client_order_id = c.client_order_id "
    f"RETURNING {', '.join(f'o.{name}' for name, _ in ORDER_COLUMNS)}) "
    f"SELECT {_ORDER_NAMES} FROM claimed ORDER BY created_at, client_order_id"
)
INSERT_EVENTS = insert_sql("order_events", EVENT_COLUMNS)
INSERT_FILLS = insert_sql("fills", FILL_COLUMNS)
CLAIM_EXEC_IDS = (
    "INSERT INTO fill_ids (broker, exec_id) "
    "SELECT b, e FROM unnest($1::text[], $2::text[]) AS k(b, e) ORDER BY b, e "
    "ON CONFLICT (broker, exec_id) DO NOTHING RETURNING broker, exec_id"
)
SELECT_ORDERS = f"SELECT {', '.join(n for n, _ in ORDER_COLUMNS)} FROM orders"
LOCK_ORDERS = (
    "SELECT client_order_id, broker, symbol, quantity, filled_quantity, avg_fill_price, state, "
    "venue_order_id FROM orders WHERE client_order_id = ANY($1::text[]) "
    "ORDER BY client_order_id FOR UPDATE"
)
LOCK_ORPHANS = (
    "SELECT pg_advisory_xact_lock(hashtextextended(id, 0)) FROM unnest($1::text[]) AS t(id) ORDER BY id"
)
ORPHAN_WATERMARKS = (
    "SELECT client_order_id, sum(quantity) AS filled, sum(quantity * price) AS notional FROM fills "
    "WHERE client_order_id = ANY($1::text[]) GROUP BY client_order_id"
)
ADVANCE_ORDERS = (
    # An order the fills make terminal (FILLED) loses its claim: nothing is left to watch.
    "UPDATE orders AS o SET filled_quantity = u.filled, avg_fill_price = u.avg, state = u.state, "
    "venue_order_id = COALESCE(o.venue_order_id, u.venue_order_id), updated_at = $6, "
    f"owner = CASE WHEN u.state {TERMINAL_STATE_SQL} THEN NULL ELSE o.owner END, "
    f"lease_until = CASE WHEN u.state {TERMINAL_STATE_SQL} THEN NULL ELSE o.lease_until END "
    "FROM unnest($1::text[], $2::numeric[], $3::numeric[], $4::text[], $5::text[]) "
    "AS u(id, filled, avg, state, venue_order_id) WHERE o.client_order_id = u.id"
)
ENSURE_POSITIONS = (
    "INSERT INTO positions (broker, symbol) "
    "SELECT b, s FROM unnest($1::text[], $2::text[]) AS k(b, s) ORDER BY b, s "
    "ON CONFLICT (broker, symbol) DO NOTHING"
)
LOCK_POSITIONS = (
    f"SELECT {POSITION_COLUMNS} FROM positions "
    "WHERE (broker, symbol) IN (SELECT * FROM unnest($1::text[], $2::text[])) "
    "ORDER BY broker, symbol FOR UPDATE"
)
WRITE_POSITIONS = (
    "UPDATE positions AS p SET quantity = u.q, avg_price = u.a, realized_pnl = u.r, updated_at = $6 "
    "FROM unnest($1::text[], $2::text[], $3::numeric[], $4::numeric[], $5::numeric[]) AS u(b, s, q, a, r) "
    "WHERE p.broker = u.b AND p.symbol = u.s"
)
# A transition never leaves a terminal state (WHERE) and never moves a live order backwards
# (order_state_rank, see schemas/sql/001_core.sql); fill totals only grow. The event is recorded regardless.
# A terminal transition (a terminal $2 always wins the rank) clears the claim with it.
SAVE_TRANSITION = (
    # filled_quantity / avg_fill_price are deliberately absent: apply_fills is their only writer,
    # because its watermark (cumulative - filled_quantity) must only ever see applied fills.
    "UPDATE orders AS o SET "
    "state = CASE WHEN order_state_rank($2::text) >= order_state_rank(o.state) THEN $2::text "
    "ELSE o.state END, "
    "reason = $3, broker = $4, rerouted_from = $5, "
    "venue_order_id = COALESCE($6, o.venue_order_id), "
    "updated_at = $7, "
    "owner = CASE WHEN $2::text = ANY($8::text[]) THEN NULL ELSE o.owner END, "
    "lease_until = CASE WHEN $2::text = ANY($8::text[]) THEN NULL ELSE o.lease_until END "
    "WHERE o.client_order_id = $1 AND o.state <> ALL($8::text[])"
)
RECORD_FEES = (
    # Late fees (schemas/sql/003_fill_fees.sql): the latest report of a (broker, exec_id) wins.
    "INSERT INTO fill_fees (broker, exec_id, commission, commission_asset, recorded_at) "
    "SELECT b, e, c, a, $5 FROM unnest($1::text[], $2::text[], $3::numeric[], $4::text[]) AS f(b, e, c, a) "
    "ORDER BY b, e "
    "ON CONFLICT (broker, exec_id) DO UPDATE SET commission = EXCLUDED.commission, "
    "commission_asset = EXCLUDED.commission_asset, recorded_at = EXCLUDED.recorded_at"
)
