-- 005_fill_notional: each recorded fill keeps its order's cumulative notional (issue 12, "Books").
--
-- A fill carries the order's cumulative quantity AND cumulative notional (sum of quantity x price
-- of all its executions), so the fills writer prices whatever growth it applies from its own
-- watermark, and a gap (fills lost, a tracker restarted from an older baseline) is priced right
-- (execution/fills.py). The column records the notional the fill carried.
--
-- Nullable: a fill from an older producer has none (it is applied as before, its growth at its
-- price). Rows recorded before this migration are backfilled with the running notional of their
-- order's recorded fills (quantity and price as applied, in watermark order), which is exactly
-- what the order's avg_fill_price was computed from. Idempotent: ADD COLUMN IF NOT EXISTS, and
-- the backfill only touches NULLs. No CHECK on the column: an inline constraint in ADD COLUMN IF
-- NOT EXISTS is not reliably skipped on replay; the wire model refuses a non-positive notional.

ALTER TABLE fills ADD COLUMN IF NOT EXISTS cumulative_notional NUMERIC;

UPDATE fills AS f SET cumulative_notional = r.notional
FROM (
    SELECT broker, exec_id,
           sum(quantity * price) OVER (
               PARTITION BY client_order_id ORDER BY cumulative_quantity, ts, exec_id
               ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS notional
    FROM fills
) AS r
WHERE f.cumulative_notional IS NULL AND f.broker = r.broker AND f.exec_id = r.exec_id;
