"""TimescaleDB / PostgreSQL adapter: the durable ``OrderStore`` and ``FillStore``.

``sql.py`` holds the write side's column lists and statements, ``migrations.py`` applies the SQL
files of ``schemas/sql``, ``store.py`` is the store itself, and ``queries.py`` the read side that
operators, the demo and the bench use.
"""

from adapters.timescale.migrations import Migration, apply_migrations, load_migrations
from adapters.timescale.store import TRANSIENT_ERRORS, TimescaleStore

__all__ = ["TRANSIENT_ERRORS", "Migration", "TimescaleStore", "apply_migrations", "load_migrations"]
