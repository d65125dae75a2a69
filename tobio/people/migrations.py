"""The people module's schema migrations, recorded in schema_migrations as `people.mNNN_…`."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from tobio.db.literals import const
from tobio.db.migrations import Migration, add_column_if_missing, create_tables
from tobio.db.tables import metadata
from tobio.people import tables
from tobio.people.store import CONFIDENCE

MIGRATIONS: list[Migration] = []


def _migration(fn: Migration) -> Migration:
    MIGRATIONS.append(fn)
    return fn


@_migration
def m001_people(conn: Connection) -> None:
    """Versioned facts about people, and reflections."""
    create_tables(conn, [metadata.tables[n] for n in tables.TABLES])


@_migration
def m002_fact_windows(conn: Connection) -> None:
    """Validity windows, confidence and retraction on facts; existing rows were true from when they were
    learnt until superseded, with the confidence of how they were learnt."""
    facts = tables.PersonFactRow
    for name in ("valid_from", "valid_to", "confidence", "retracted_at", "retracted_by"):
        add_column_if_missing(conn, "people_facts", facts.c[name])
    conn.execute(sa.update(facts).where(facts.c.valid_from.is_(None))
                 .values(valid_from=facts.c.created_at, valid_to=facts.c.superseded_at))
    for source, confidence in CONFIDENCE.items():  # literals, not bound parameters (DuckDB's binding imports pandas)
        conn.execute(sa.update(facts).where(facts.c.confidence.is_(None), facts.c.source == const(source))
                     .values(confidence=sa.literal_column(repr(float(confidence)), sa.Float)))
    conn.execute(sa.update(facts).where(facts.c.confidence.is_(None))
                 .values(confidence=sa.literal_column(repr(float(CONFIDENCE["rule"])), sa.Float)))
