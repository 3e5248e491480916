-- 001_core: the durable state of SuperIntel Execution.
--
-- Written so it can run twice (IF NOT EXISTS / OR REPLACE everywhere): the migration runner in
-- adapters/timescale.py applies each file once and records it in schema_migrations, but an
-- operator replaying the file by hand must not break anything either.
--
-- Money and quantities are NUMERIC (unbounded precision, exact), never float. Enums are TEXT with
-- CHECK constraints so any SQL client can read them and a bad value fails at the edge.
-- No foreign keys from the time-series tables to orders: a fill whose order row is missing must
-- still be recorded (see TimescaleStore.apply_fills), and hypertables make FKs expensive.

CREATE TABLE IF NOT EXISTS schema_migrations (
    version     TEXT PRIMARY KEY,
    checksum    TEXT NOT NULL,
    applied_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- One row per order (schemas.models.Order); the primary key is the idempotency gate of step 2.
CREATE TABLE IF NOT EXISTS orders (
    client_order_id    TEXT PRIMARY KEY,
    signal_id          TEXT NOT NULL,
    ts                 TIMESTAMPTZ NOT NULL,
    strategy           TEXT NOT NULL,
    symbol             TEXT NOT NULL,
    side               TEXT NOT NULL CHECK (side IN ('BUY', 'SELL')),
    quantity           NUMERIC NOT NULL CHECK (quantity > 0),
    order_type         TEXT NOT NULL CHECK (order_type IN ('MARKET', 'LIMIT', 'STOP', 'BRACKET')),
    limit_price        NUMERIC CHECK (limit_price > 0),
    stop_price         NUMERIC CHECK (stop_price > 0),
    take_profit_price  NUMERIC CHECK (take_profit_price > 0),
    asset_class        TEXT NOT NULL CHECK (asset_class IN ('EQUITY', 'OPTION', 'FUTURE', 'FX', 'CRYPTO')),
    reference_price    NUMERIC CHECK (reference_price > 0),
    time_in_force      TEXT NOT NULL CHECK (time_in_force IN ('DAY', 'GTC', 'IOC', 'FOK')),
    group_id           TEXT,
    broker             TEXT NOT NULL CHECK (broker IN ('ibkr', 'mt4', 'binance', 'paper')),
    route_reason       TEXT NOT NULL DEFAULT '',
    rerouted_from      TEXT CHECK (rerouted_from IN ('ibkr', 'mt4', 'binance', 'paper')),
    routed_at          TIMESTAMPTZ NOT NULL,
    state              TEXT NOT NULL CHECK (state IN ('PENDING', 'SUBMITTED', 'PARTIALLY_FILLED', 'FILLED',
                                                      'CANCELLED', 'REJECTED', 'EXPIRED')),
    filled_quantity    NUMERIC NOT NULL DEFAULT 0 CHECK (filled_quantity >= 0),
    avg_fill_price     NUMERIC CHECK (avg_fill_price > 0),
    venue_order_id     TEXT,
    reason             TEXT NOT NULL DEFAULT '',
    created_at         TIMESTAMPTZ NOT NULL,
    updated_at         TIMESTAMPTZ NOT NULL
);

-- Reconcile on start asks "every non-terminal order of broker X".
CREATE INDEX IF NOT EXISTS orders_broker_state_idx ON orders (broker, state);
CREATE INDEX IF NOT EXISTS orders_symbol_created_idx ON orders (symbol, created_at);

-- Order of the non-terminal states, so a late, stale update (an executor saving SUBMITTED after
-- the fill writer already moved the order to PARTIALLY_FILLED) cannot move an order backwards.
CREATE OR REPLACE FUNCTION order_state_rank(state TEXT) RETURNS INT
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE state
        WHEN 'PENDING' THEN 0
        WHEN 'SUBMITTED' THEN 1
        WHEN 'PARTIALLY_FILLED' THEN 2
        ELSE 3
    END
$$;

-- The audit trail: one row per state transition (and per fill applied to an order).
-- ``id`` gives a total order to events sharing a timestamp; no primary key because a hypertable's
-- unique indexes must include the time column and nothing needs to look an event up by id.
CREATE TABLE IF NOT EXISTS order_events (
    id               BIGINT GENERATED ALWAYS AS IDENTITY,
    client_order_id  TEXT NOT NULL,
    ts               TIMESTAMPTZ NOT NULL,
    state            TEXT NOT NULL,
    previous_state   TEXT,
    reason           TEXT NOT NULL DEFAULT '',
    broker           TEXT NOT NULL,
    symbol           TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS order_events_ts_idx ON order_events (ts DESC);
CREATE INDEX IF NOT EXISTS order_events_order_idx ON order_events (client_order_id, ts);

-- Executions as applied. ``quantity`` is what was applied (growth of the order's cumulative
-- watermark), ``reported_quantity`` what the venue message said: they differ only when fills were
-- lost (crash gap) and a later cumulative fill covered them, which stays visible this way.
CREATE TABLE IF NOT EXISTS fills (
    exec_id              TEXT NOT NULL,
    broker               TEXT NOT NULL,
    client_order_id      TEXT NOT NULL,
    venue_order_id       TEXT,
    symbol               TEXT NOT NULL,
    asset_class          TEXT NOT NULL,
    strategy             TEXT NOT NULL,
    side                 TEXT NOT NULL CHECK (side IN ('BUY', 'SELL')),
    quantity             NUMERIC NOT NULL CHECK (quantity > 0),
    reported_quantity    NUMERIC NOT NULL CHECK (reported_quantity > 0),
    price                NUMERIC NOT NULL CHECK (price > 0),
    commission           NUMERIC NOT NULL DEFAULT 0,
    commission_asset     TEXT,
    cumulative_quantity  NUMERIC NOT NULL,
    ts                   TIMESTAMPTZ NOT NULL,
    signal_ts            TIMESTAMPTZ,
    recorded_at          TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS fills_ts_idx ON fills (ts DESC);
CREATE INDEX IF NOT EXISTS fills_order_idx ON fills (client_order_id, ts);
CREATE INDEX IF NOT EXISTS fills_broker_symbol_idx ON fills (broker, symbol, ts);

-- Every (broker, exec_id) ever seen: the cheap exact-duplicate gate. A separate small table
-- because a unique index on the fills hypertable would have to include ts, and a redelivered
-- message must be recognised whatever its timestamp.
CREATE TABLE IF NOT EXISTS fill_ids (
    broker       TEXT NOT NULL,
    exec_id      TEXT NOT NULL,
    recorded_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (broker, exec_id)
);

-- Net position per broker and symbol, average-cost method; updated in the fill transaction.
CREATE TABLE IF NOT EXISTS positions (
    broker        TEXT NOT NULL CHECK (broker IN ('ibkr', 'mt4', 'binance', 'paper')),
    symbol        TEXT NOT NULL,
    quantity      NUMERIC NOT NULL DEFAULT 0,
    avg_price     NUMERIC NOT NULL DEFAULT 0 CHECK (avg_price >= 0),
    realized_pnl  NUMERIC NOT NULL DEFAULT 0,
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (broker, symbol)
);

-- The seed's paper_positions table, as a VIEW: paper fills go through the same fill transaction
-- as live ones, so a view is one source of truth that can never drift from positions, and costs
-- no second write per fill.
CREATE OR REPLACE VIEW paper_positions AS
    SELECT symbol, quantity, avg_price, realized_pnl, updated_at
    FROM positions
    WHERE broker = 'paper';

-- Trust-vs-NAV spread history of the NAV-arbitrage agent.
CREATE TABLE IF NOT EXISTS nav_spreads (
    pair         TEXT NOT NULL,
    ts           TIMESTAMPTZ NOT NULL,
    trust_price  NUMERIC NOT NULL,
    nav          NUMERIC NOT NULL,
    spread       NUMERIC NOT NULL,
    zscore       NUMERIC,
    PRIMARY KEY (pair, ts)
);
CREATE INDEX IF NOT EXISTS nav_spreads_ts_idx ON nav_spreads (ts DESC);
