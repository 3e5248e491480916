-- 002_hypertables: turn the time-series tables into TimescaleDB hypertables when possible.
--
-- Guarded so the same migration runs on plain PostgreSQL: if the extension is not installed, or
-- cannot be created (e.g. timescaledb missing from shared_preload_libraries), the tables stay
-- ordinary tables with the time indexes of 001 and a NOTICE says so. The EXCEPTION block runs the
-- attempt in a subtransaction, so a failure never aborts the migration.

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb') THEN
        RAISE NOTICE 'timescaledb not available: order_events, fills, nav_spreads stay plain tables';
        RETURN;
    END IF;
    BEGIN
        CREATE EXTENSION IF NOT EXISTS timescaledb;
        -- EXECUTE, not PERFORM: create_hypertable does not exist when the extension is absent,
        -- and dynamic SQL is only planned when it runs.
        EXECUTE $sql$SELECT create_hypertable('order_events', 'ts',
                    if_not_exists => TRUE, migrate_data => TRUE)$sql$;
        EXECUTE $sql$SELECT create_hypertable('fills', 'ts',
                    if_not_exists => TRUE, migrate_data => TRUE)$sql$;
        EXECUTE $sql$SELECT create_hypertable('nav_spreads', 'ts',
                    if_not_exists => TRUE, migrate_data => TRUE)$sql$;
    EXCEPTION WHEN OTHERS THEN
        RAISE WARNING 'timescaledb present but hypertables not created (%): plain tables kept', SQLERRM;
    END;
END
$$;
