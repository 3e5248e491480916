"""The read side: every question operators, the demo, the bench and tests ask the database.

Kept in one module, apart from the write path (``store.py``), so the SQL that reads the tables
lives next to the SQL that writes them and a schema change is checked in two files, not in every
tool that prints a table. Each function takes anything with asyncpg's ``fetch``/``fetchval`` (a
pool or a connection) and returns wire models or small typed rows, never raw records.

``signal_prefix`` scopes a question to one run: the demo and the bench give their signals ids
starting with a run id, and never delete anyone's data.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol

from adapters.timescale.sql import EVENT_COLUMNS, FILL_MODEL_COLUMNS, POSITION_COLUMNS
from schemas import Broker, Fill, OrderEvent, OrderState, Position


class Reader(Protocol):
    """Where a query runs: an asyncpg pool (each call borrows a connection) or one connection."""

    async def fetch(self, query: str, *args: Any) -> list[Any]: ...

    async def fetchval(self, query: str, *args: Any) -> Any: ...


#: what makes otherwise equal reasons differ (order ids, market prices); grouped as placeholders
_REASON_NOISE = r"si[0-9a-f]{24}|mid [0-9.]+"
#: ``orders`` rows of one run (NULL prefix: every row). ``starts_with`` needs no LIKE escaping.
_OF_RUN = "($1::text IS NULL OR starts_with(o.signal_id, $1::text))"
_FILLS_OF_RUN = f"fills f JOIN orders o USING (client_order_id) WHERE {_OF_RUN}"
#: a recorded fill as a ``Fill``, with its late fee (schemas/sql/003_fill_fees.sql) when one came
_FILL_SELECT = ", ".join(
    f"COALESCE(ff.{name}, f.{name}) AS {name}" if name in ("commission", "commission_asset") else f"f.{name}"
    for name in FILL_MODEL_COLUMNS
)


@dataclass(frozen=True, slots=True)
class RouteCount:
    """How many orders sit at ``broker`` in ``state`` that were routed for ``routed_for``
    (different from ``broker`` when they were moved to paper)."""

    broker: Broker
    routed_for: Broker
    state: OrderState
    orders: int


@dataclass(frozen=True, slots=True)
class ReasonCount:
    """Orders sharing a reason (order ids and prices in it replaced by placeholders)."""

    label: str
    reason: str
    orders: int


@dataclass(frozen=True, slots=True)
class FillSummary:
    """Fills recorded for one broker, with the signal -> recorded latency percentiles."""

    broker: Broker
    fills: int
    quantity: Decimal
    notional: Decimal
    p50_ms: float
    p99_ms: float


@dataclass(frozen=True, slots=True)
class OrderTimes:
    """When an order was routed (router agent) and created (executor took it): bench hops."""

    routed_at: datetime
    created_at: datetime


# ---- the store's read helpers ------------------------------------------------------------------


async def positions(db: Reader, broker: Broker | None = None, *, traded_by: str | None = None) -> list[Position]:
    """Positions by broker and symbol; ``traded_by`` keeps the symbols a run's orders traded
    (positions are account totals: they include every run's fills on those symbols)."""
    rows = await db.fetch(
        f"SELECT {POSITION_COLUMNS} FROM positions p "
        "WHERE ($1::text IS NULL OR p.broker = $1::text) "
        "AND ($2::text IS NULL OR p.symbol IN "
        "(SELECT DISTINCT symbol FROM orders WHERE starts_with(signal_id, $2::text))) "
        "ORDER BY p.broker, p.symbol",
        None if broker is None else broker.value,
        traded_by,
    )
    return [Position.model_validate(dict(row)) for row in rows]


async def order_counts(db: Reader, signal_prefix: str | None = None) -> dict[tuple[Broker, OrderState], int]:
    rows = await db.fetch(
        f"SELECT o.broker, o.state, count(*) AS n FROM orders o WHERE {_OF_RUN} GROUP BY 1, 2", signal_prefix
    )
    return {(Broker(row["broker"]), OrderState(row["state"])): row["n"] for row in rows}


async def state_counts(db: Reader, signal_prefix: str | None = None) -> dict[OrderState, int]:
    """Orders by state, all brokers together."""
    rows = await db.fetch(f"SELECT o.state, count(*) AS n FROM orders o WHERE {_OF_RUN} GROUP BY 1", signal_prefix)
    return {OrderState(row["state"]): row["n"] for row in rows}


async def fill_count(db: Reader, signal_prefix: str | None = None) -> int:
    """Fills recorded; with a prefix, those of the run's orders (orphan fills have no order)."""
    if signal_prefix is None:
        total: int = await db.fetchval("SELECT count(*) FROM fills")
    else:
        total = await db.fetchval(f"SELECT count(*) FROM {_FILLS_OF_RUN}", signal_prefix)
    return total


async def order_events(db: Reader, client_order_id: str) -> list[OrderEvent]:
    """The audit trail of one order, oldest first."""
    rows = await db.fetch(
        f"SELECT {', '.join(n for n, _ in EVENT_COLUMNS)} FROM order_events "
        "WHERE client_order_id = $1 ORDER BY id",
        client_order_id,
    )
    return [OrderEvent.model_validate(dict(row)) for row in rows]


async def recorded_fills(db: Reader, client_order_id: str | None = None) -> list[Fill]:
    """Fills as recorded (``quantity`` = applied, the late fee if one was recorded), in recording order."""
    rows = await db.fetch(
        f"SELECT {_FILL_SELECT} FROM fills f LEFT JOIN fill_fees ff ON ff.broker = f.broker AND ff.exec_id = f.exec_id "
        "WHERE ($1::text IS NULL OR f.client_order_id = $1::text) ORDER BY f.recorded_at, f.ts",
        client_order_id,
    )
    return [Fill.model_validate(dict(row)) for row in rows]


# ---- the demo's summary ------------------------------------------------------------------------


async def orders_by_route(db: Reader, signal_prefix: str | None = None) -> list[RouteCount]:
    """Orders by broker, the broker they were routed for, and state."""
    rows = await db.fetch(
        "SELECT o.broker, coalesce(o.rerouted_from, o.broker) AS routed_for, o.state, count(*) AS n "
        f"FROM orders o WHERE {_OF_RUN} GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
        signal_prefix,
    )
    return [
        RouteCount(Broker(r["broker"]), Broker(r["routed_for"]), OrderState(r["state"]), r["n"]) for r in rows
    ]


async def reroute_reasons(
    db: Reader, signal_prefix: str | None, rerouted_from: Collection[Broker], limit: int = 8
) -> list[ReasonCount]:
    """Why orders routed for one of ``rerouted_from`` ended up on paper, most frequent first;
    ``label`` is the broker they were routed for."""
    rows = await db.fetch(
        "SELECT o.rerouted_from AS label, regexp_replace(o.reason, $2, '<..>', 'g') AS why, count(*) AS n "
        f"FROM orders o WHERE {_OF_RUN} AND o.broker = $3 AND o.rerouted_from = ANY($4::text[]) "
        "GROUP BY 1, 2 ORDER BY 3 DESC, 1, 2 LIMIT $5",
        signal_prefix,
        _REASON_NOISE,
        Broker.PAPER.value,
        [broker.value for broker in rerouted_from],
        limit,
    )
    return _reasons(rows)


async def outcome_reasons(
    db: Reader,
    signal_prefix: str | None,
    states: Collection[OrderState] = (OrderState.REJECTED, OrderState.EXPIRED, OrderState.CANCELLED),
    limit: int = 8,
) -> list[ReasonCount]:
    """Why orders ended in one of ``states`` (rejections, expiries, cancels), most frequent first;
    ``label`` is the state."""
    rows = await db.fetch(
        "SELECT o.state AS label, regexp_replace(o.reason, $2, '<..>', 'g') AS why, count(*) AS n "
        f"FROM orders o WHERE {_OF_RUN} AND o.state = ANY($3::text[]) "
        "GROUP BY 1, 2 ORDER BY 3 DESC, 1, 2 LIMIT $4",
        signal_prefix,
        _REASON_NOISE,
        [state.value for state in states],
        limit,
    )
    return _reasons(rows)


async def fill_summary(db: Reader, signal_prefix: str | None = None) -> list[FillSummary]:
    """Per broker: fills, quantity, notional, and signal -> recorded latency p50 / p99 in ms."""
    latency = "extract(epoch FROM f.recorded_at - o.ts)"
    rows = await db.fetch(
        "SELECT f.broker, count(*) AS n, sum(f.quantity) AS q, sum(f.quantity * f.price) AS notional, "
        f"percentile_cont(0.5) WITHIN GROUP (ORDER BY {latency}) * 1000 AS p50, "
        f"percentile_cont(0.99) WITHIN GROUP (ORDER BY {latency}) * 1000 AS p99 "
        f"FROM {_FILLS_OF_RUN} GROUP BY 1 ORDER BY 1",
        signal_prefix,
    )
    return [
        FillSummary(Broker(r["broker"]), r["n"], r["q"], r["notional"], float(r["p50"]), float(r["p99"]))
        for r in rows
    ]


async def recorded_exec_ids(db: Reader, signal_prefix: str | None = None) -> set[str]:
    """Exec ids of the fills recorded for a run's orders."""
    rows = await db.fetch(f"SELECT f.exec_id FROM {_FILLS_OF_RUN}", signal_prefix)
    return {row["exec_id"] for row in rows}


# ---- the bench ---------------------------------------------------------------------------------


async def order_times(db: Reader, client_order_ids: Sequence[str]) -> dict[str, OrderTimes]:
    """Routing and creation time of each order found."""
    rows = await db.fetch(
        "SELECT client_order_id, routed_at, created_at FROM orders WHERE client_order_id = ANY($1::text[])",
        list(client_order_ids),
    )
    return {r["client_order_id"]: OrderTimes(r["routed_at"], r["created_at"]) for r in rows}


def _reasons(rows: Sequence[Any]) -> list[ReasonCount]:
    return [ReasonCount(r["label"], r["why"] or "", r["n"]) for r in rows]
