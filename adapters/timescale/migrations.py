"""Schema migrations: the plain SQL files of ``schemas/sql``, applied in name order, once each.

Workers starting together must not race, so a run holds a PostgreSQL session advisory lock; each
file is recorded in ``schema_migrations`` with its checksum in the same transaction that applies
it. Schema changes go into a new numbered file: an edited file is reported, never re-run.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources

import asyncpg

log = logging.getLogger(__name__)

#: Key of the session advisory lock that serialises migration runs across workers.
MIGRATION_LOCK_ID = 0x5349_4D49_4752  # "SIMIGR"

#: The table that records what ran; created before anything else, outside the numbered files.
BOOTSTRAP_MIGRATIONS = (
    "CREATE TABLE IF NOT EXISTS schema_migrations ("
    "version TEXT PRIMARY KEY, checksum TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
)


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


async def apply_migrations(conn: asyncpg.Connection, migrations: Sequence[Migration]) -> list[str]:
    """Apply the migrations not yet recorded, each in its own transaction; return their versions.

    Holds a session advisory lock for the whole run: a second worker waits, then finds every
    file recorded and applies nothing. A file edited after it was applied is reported, not
    re-run: schema changes belong in a new numbered file.
    """
    await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_ID)
    try:
        await conn.execute(BOOTSTRAP_MIGRATIONS)
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
