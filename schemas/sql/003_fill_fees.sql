-- 003_fill_fees: fees reported after their fill (IB sends commissionReport after execDetails).
--
-- Kept apart from ``fills`` on purpose: the tracker records a late fee on the executor side while
-- the fill itself travels through Kafka to the fills writer, so the fee can arrive before its
-- fill is recorded. An upsert here never races the fill transaction and never depends on which
-- comes first; readers take the fee from here when there is one (adapters/timescale/queries.py).
-- Recording the same fee again sets the same value: idempotent per (broker, exec_id).
CREATE TABLE IF NOT EXISTS fill_fees (
    broker            TEXT NOT NULL,
    exec_id           TEXT NOT NULL,
    commission        NUMERIC NOT NULL CHECK (commission >= 0),
    commission_asset  TEXT,
    recorded_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (broker, exec_id)
);
