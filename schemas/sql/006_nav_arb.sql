-- 006_nav_arb: the NAV-arbitrage agent's durable state (issue 15).
--
-- order_events keeps what the order-events topic now carries besides the transition: the order's
-- strategy and group (the NAV-arb agent follows its legs by them) and its fill totals at that
-- moment. NULL on rows written before, and on audit events built without the order at hand.
--
-- nav_spreads gains the rest of an observation: the spot price, the decision (NULL: none), the
-- pair's episode after the quote, the group of the legs it sent, and when the row was recorded.
--
-- nav_pairs is the durable source of each pair's state (agents/nav_arb.py): the window, the
-- position and the episode as one JSON value, saved in the same transaction as the observations
-- it comes from, with a version that every save compares (a worker holding an older version saves
-- nothing and reads again) and a fingerprint of its content (a cache is trusted only with it). The outbox holds the signals a version asked for, until they were
-- delivered (outbox_sent): a worker that died between the commit and the produce left them there,
-- and whoever holds the pair next sends them (idempotently: their signal ids are deterministic).
--
-- nav_episodes records every change of a pair's episode with the reason (leg risk, unwinds).
--
-- Idempotent like the files before it: IF NOT EXISTS everywhere.

ALTER TABLE order_events ADD COLUMN IF NOT EXISTS strategy TEXT;
ALTER TABLE order_events ADD COLUMN IF NOT EXISTS group_id TEXT;
ALTER TABLE order_events ADD COLUMN IF NOT EXISTS filled_quantity NUMERIC;
ALTER TABLE order_events ADD COLUMN IF NOT EXISTS avg_fill_price NUMERIC;

ALTER TABLE nav_spreads ADD COLUMN IF NOT EXISTS spot_price NUMERIC;
ALTER TABLE nav_spreads ADD COLUMN IF NOT EXISTS decision TEXT;
ALTER TABLE nav_spreads ADD COLUMN IF NOT EXISTS episode TEXT;
ALTER TABLE nav_spreads ADD COLUMN IF NOT EXISTS group_id TEXT;
ALTER TABLE nav_spreads ADD COLUMN IF NOT EXISTS recorded_at TIMESTAMPTZ NOT NULL DEFAULT now();

CREATE TABLE IF NOT EXISTS nav_pairs (
    pair         TEXT PRIMARY KEY,
    version      BIGINT NOT NULL CHECK (version > 0),
    -- the state's content hash (execution/nav_arb.py fingerprint): a worker's cached state is
    -- used only when it has this one, whatever version number its cache carries
    fingerprint  TEXT NOT NULL,
    episode      TEXT NOT NULL CHECK (episode IN ('FLAT', 'ENTERING', 'IN_POSITION', 'EXITING', 'UNWINDING')),
    state        JSONB NOT NULL,
    outbox       JSONB NOT NULL DEFAULT '[]',
    outbox_sent  BOOLEAN NOT NULL DEFAULT true,
    updated_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);
-- "every pair whose outbox is not confirmed sent" (a worker's start): only those rows
CREATE INDEX IF NOT EXISTS nav_pairs_unsent_idx ON nav_pairs (pair) WHERE NOT outbox_sent;

CREATE TABLE IF NOT EXISTS nav_episodes (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    pair         TEXT NOT NULL,
    ts           TIMESTAMPTZ NOT NULL,
    group_id     TEXT,
    previous     TEXT NOT NULL,
    episode      TEXT NOT NULL,
    direction    TEXT,
    reason       TEXT NOT NULL DEFAULT '',
    legs         JSONB NOT NULL DEFAULT '[]',
    recorded_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS nav_episodes_pair_idx ON nav_episodes (pair, id);
