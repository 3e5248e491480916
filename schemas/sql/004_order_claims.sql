-- 004_order_claims: who may place an order (issue 12, "Ownership").
--
-- Several executors consume one orders.<broker> topic (scale-out, rebalances), so the Kafka
-- consumer group alone cannot say who places an order: after a rebalance the old and the new
-- owner both hold it for a while. The row says it instead:
--
--   owner        the executor instance holding the claim; NULL = free (or terminal)
--   lease_until  when the claim expires unless its owner renews it; NULL together with owner
--   executor     the broker of the topic the order came from, set at insert and never changed,
--                so an order later rerouted to paper (broker = 'paper') is still swept by an
--                executor of its original topic
--
-- The claim is taken in the same statement as step 2 and compared with the database's now(),
-- one clock for every process (adapters/timescale/sql.py: CLAIM_ORDERS, CLAIM_EXPIRED).
--
-- Idempotent like 001: ADD COLUMN IF NOT EXISTS, a backfill that only touches NULLs, SET NOT NULL
-- (a no-op when already set) and CREATE INDEX IF NOT EXISTS, so replaying the file by hand is
-- harmless.

ALTER TABLE orders ADD COLUMN IF NOT EXISTS owner TEXT;
ALTER TABLE orders ADD COLUMN IF NOT EXISTS lease_until TIMESTAMPTZ;
ALTER TABLE orders ADD COLUMN IF NOT EXISTS executor TEXT
    CHECK (executor IN ('ibkr', 'mt4', 'binance', 'paper'));

-- Existing rows: the broker of the order's first audit event is the broker it was inserted with
-- (step 2 records it), which is the topic it came from even if it was rerouted since. Terminal
-- rows are never swept, so their current broker is good enough and saves the lookup.
UPDATE orders AS o SET executor = CASE
        WHEN o.state IN ('FILLED', 'CANCELLED', 'REJECTED', 'EXPIRED') THEN o.broker
        ELSE COALESCE(
            (SELECT e.broker FROM order_events AS e
             WHERE e.client_order_id = o.client_order_id AND e.previous_state IS NULL
             ORDER BY e.ts, e.id LIMIT 1),
            o.broker)
    END
WHERE o.executor IS NULL;

ALTER TABLE orders ALTER COLUMN executor SET NOT NULL;

-- The sweep: "open orders of executor X whose claim is free or expired". Partial, so the index
-- holds only the working set (terminal orders are most of the table and never swept). The
-- predicate must stay the literal list the sweep's WHERE uses (sql.py: OPEN_STATE_SQL), or the
-- planner cannot use it.
CREATE INDEX IF NOT EXISTS orders_claim_sweep_idx ON orders (executor, lease_until)
    WHERE state NOT IN ('CANCELLED', 'EXPIRED', 'FILLED', 'REJECTED');
