"""Memory's schema migrations, recorded in schema_migrations as `memory.mNNN_…`."""

from __future__ import annotations

from sqlalchemy.engine import Connection

from tobio.db.migrations import Migration, create_tables
from tobio.db.tables import metadata

MIGRATIONS: list[Migration] = []


def _migration(fn: Migration) -> Migration:
    MIGRATIONS.append(fn)
    return fn


@_migration
def m001_memory(conn: Connection) -> None:
    """Embedded items, summary spans, forgotten messages."""
    from tobio.memory import tables  # here: a start on a migrated database does not build the tables' objects

    create_tables(conn, [metadata.tables[n] for n in tables.TABLES])
