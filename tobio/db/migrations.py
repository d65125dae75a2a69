"""Schema creation and upgrade: a list of named migrations and a table recording which ran.

Why not Alembic: duckdb-engine cannot reflect tables (its Postgres-flavoured reflection queries fail
on DuckDB), which Alembic's autogenerate relies on, and Alembic's import alone would double the
shell's start-up. Named functions run in order are enough for one embedded schema, read the same on
DuckDB, SQLite and PostgreSQL, and are easy to review. To change the schema: change `tables.py`,
then append `mNNN_what(conn)` below that brings an existing database to the same shape.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from tobio.db.literals import const, literal
from tobio.db.tables import MigrationRow, metadata

Migration = Callable[[Connection], None]
MIGRATIONS: list[Migration] = []


def migration(fn: Migration) -> Migration:
    """Register a migration; they run in the order they are defined, once each."""
    MIGRATIONS.append(fn)
    return fn


_EPOCH = datetime(1970, 1, 1)


def utcnow() -> datetime:
    """Now as naive UTC, to the microsecond (truncated, as `datetime.now` does)."""
    # The same value as datetime.now(timezone.utc).replace(tzinfo=None) at a quarter of its cost: every
    # post and every handled mark is stamped with it.
    return _EPOCH + timedelta(microseconds=time.time_ns() // 1000)


@migration
def m001_initial(conn: Connection) -> None:
    """The seed schema: agents, state, channels, threads, messages, pushes, steps, summaries, logs."""
    names = ("agents", "state", "channels", "threads", "messages", "pushes", "steps", "summaries", "logs")  # as of m001
    create_tables(conn, [metadata.tables[n] for n in names])


@migration
def m002_runs(conn: Connection) -> None:
    """Model runs, and steps linked to the run that took them."""
    create_tables(conn, [metadata.tables["runs"]])
    add_column_if_missing(conn, "steps", metadata.tables["steps"].c.run_id)


@migration
def m003_handling(conn: Connection) -> None:
    """Durable handling: a cursor per thread (`handled`) and the message a reply answers
    (`messages.reply_to`). Threads opened before this count what was already pushed to them as handled:
    nothing recorded otherwise, and answering a whole history again at the first start would be worse."""
    create_tables(conn, [metadata.tables["handled"]])
    add_column_if_missing(conn, "messages", metadata.tables["messages"].c.reply_to)
    conn.execute(sa.text(
        "INSERT INTO handled (thread_id, message_id) SELECT t.id, coalesce(max(p.message_id), 0) FROM threads t"
        " LEFT JOIN pushes p ON p.thread_id = t.id WHERE t.id NOT IN (SELECT thread_id FROM handled) GROUP BY t.id"
    ))


@migration
def m004_runs_status_unindexed(conn: Connection) -> None:
    """Drop the index on `runs.status` (see tables.py: DuckDB lost entries of it recovering from kill -9)."""
    conn.exec_driver_sql("DROP INDEX IF EXISTS ix_runs_status")


@migration
def m005_no_secondary_indexes_on_duckdb(conn: Connection) -> None:
    """Drop DuckDB's secondary indexes (kernel's and modules' alike): a crash can leave them missing rows
    (see tables.py). Primary keys and UNIQUE constraints are not among them (`duckdb_indexes()` lists
    only CREATE INDEX ones) and stay."""
    if conn.dialect.name != "duckdb":
        return
    names = conn.exec_driver_sql(
        "SELECT index_name FROM duckdb_indexes() WHERE database_name = current_database() AND schema_name = current_schema()"
    ).scalars().all()
    for name in names:
        conn.exec_driver_sql(f'DROP INDEX IF EXISTS "{name}"')


@migration
def m006_pushes_unkeyed_on_duckdb(conn: Connection) -> None:
    """Rebuild `pushes` without its primary key on DuckDB (see tables.py: it cost the writer, never a
    reader). DuckDB cannot drop a key, so the rows move to a new table, in message order."""
    if conn.dialect.name != "duckdb":
        return
    keyed = conn.exec_driver_sql(
        "SELECT count(*) FROM duckdb_constraints() WHERE database_name = current_database() AND schema_name = current_schema()"
        " AND table_name = 'pushes' AND constraint_type = 'PRIMARY KEY'"
    ).scalar()
    if not keyed:
        return
    conn.exec_driver_sql("CREATE TABLE _pushes_m006 (thread_id BIGINT NOT NULL, message_id BIGINT NOT NULL)")
    conn.exec_driver_sql("INSERT INTO _pushes_m006 SELECT thread_id, message_id FROM pushes ORDER BY message_id, thread_id")
    conn.exec_driver_sql("DROP TABLE pushes")
    conn.exec_driver_sql("ALTER TABLE _pushes_m006 RENAME TO pushes")


@migration
def m007_branches(conn: Connection) -> None:
    """Forks: which agent each branched from and when (`branches`), and whose earlier words are its own (`lineage`)."""
    create_tables(conn, [metadata.tables["branches"], metadata.tables["lineage"]])


@migration
def m008_id_sequences(conn: Connection) -> None:
    """On PostgreSQL, one sequence per kernel table, past its largest id: several kernels share the
    database and reserve their ids from them in blocks (tobio/cluster/ids.py)."""
    if conn.dialect.name != "postgresql":
        return
    from tobio.cluster.ids import ensure_sequence
    from tobio.db.tables import ID_TABLES

    for table in ID_TABLES:
        ensure_sequence(conn, table)


@migration
def m009_kernels_and_leases(conn: Connection) -> None:
    """Kernels sharing the database and their leases on agents (tobio/cluster); kernel ids from a sequence."""
    create_tables(conn, [metadata.tables["kernels"], metadata.tables["leases"]])
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("CREATE SEQUENCE IF NOT EXISTS tobio_ids_kernels AS bigint MINVALUE 1")


def _now_value(conn: Connection) -> Any:
    """`utcnow()` for an INSERT: written into the SQL on DuckDB (no bound parameter, no pandas), bound elsewhere."""
    now = utcnow()
    return sa.literal_column(literal(now), sa.DateTime()) if conn.dialect.name == "duckdb" else now


def create_tables(conn: Connection, tables: Sequence[sa.Table]) -> None:
    """CREATE each of `tables` that is not there yet, with its indexes, referenced tables first.

    For migrations instead of `create_all` / `create(checkfirst=True)`: their existence check binds
    parameters, and on DuckDB binding imports pandas (half a second of the first start); `table_exists`
    asks without parameters.
    """
    existing = _duckdb_tables(conn) if conn.dialect.name == "duckdb" else None  # one query, not one per table
    for table in sa.schema.sort_tables(tables):
        if not (table.name in existing if existing is not None else table_exists(conn, table.name)):
            table.create(conn, checkfirst=False)
            conn.info.setdefault(_CREATED, {})[table.name] = (conn.get_transaction(), table)


# conn.info: table name -> (transaction, Table) for tables created from their current definition in that
# transaction. A new database runs every migration; the columns later ones add are already there.
_CREATED = "tobio.created_tables"


def _created_with(conn: Connection, table: str, column: str) -> bool:
    """Whether `table` was created in this transaction from a definition that has `column`."""
    created = conn.info.get(_CREATED, {}).get(table)
    return created is not None and created[0] is conn.get_transaction() and column in created[1].c


def _duckdb_tables(conn: Connection) -> set[str]:
    """The tables of the current schema on DuckDB (no bound parameters)."""
    query = sa.select(sa.column("table_name", sa.String())).select_from(sa.text("duckdb_tables()")).where(
        sa.text("database_name = current_database() AND schema_name = current_schema()"))
    return set(conn.execute(query).scalars())


def column_names(conn: Connection, table: str) -> set[str]:
    """The columns `table` has now (none when there is no such table). On DuckDB without bound parameters."""
    if conn.dialect.name != "duckdb":
        try:
            return {c["name"] for c in sa.inspect(conn).get_columns(table)}
        except sa.exc.NoSuchTableError:
            return set()
    query = sa.select(sa.column("column_name", sa.String())).select_from(sa.text("duckdb_columns()")).where(
        sa.text("database_name = current_database() AND schema_name = current_schema()"),
        sa.column("table_name") == const(table),
    )
    return set(conn.execute(query).scalars())


def add_column_if_missing(conn: Connection, table: str, column: sa.Column[Any]) -> None:
    """Helper for later migrations: `ALTER TABLE … ADD COLUMN` unless it is already there (on a new database,
    known without asking: the table was just created with it)."""
    if _created_with(conn, table, column.name):
        return
    if column.name not in column_names(conn, table):
        ddl = column.type.compile(dialect=conn.dialect)
        conn.exec_driver_sql(f'ALTER TABLE {table} ADD COLUMN "{column.name}" {ddl}')


def table_exists(conn: Connection, name: str) -> bool:
    """Whether `name` is a table here. On DuckDB without bound parameters (see `literals.const`)."""
    if conn.dialect.name != "duckdb":
        return sa.inspect(conn).has_table(name)
    query = sa.select(sa.func.count()).select_from(sa.text("duckdb_tables()")).where(
        sa.text("database_name = current_database() AND schema_name = current_schema()"),
        sa.column("table_name") == const(str(name)),  # a plain str: `const` refuses quoted_name
    )
    return bool(conn.execute(query).scalar())


_TABLE_KNOWN = "tobio.schema_migrations"  # conn.info: the table was there when a transaction began


def _ensure_migrations_table(conn: Connection) -> None:
    """Create `schema_migrations` unless it is there. Every module's migrate asks at each start; once it has
    been seen in a transaction that did not create it, it is committed, and this connection stops asking."""
    if conn.info.get(_TABLE_KNOWN):
        return
    if table_exists(conn, MigrationRow.name):
        if conn.info.get(_TABLE_KNOWN + ".created_in") is not conn.get_transaction():
            conn.info[_TABLE_KNOWN] = True
        return
    MigrationRow.create(conn, checkfirst=False)
    conn.info[_TABLE_KNOWN + ".created_in"] = conn.get_transaction()  # not known for sure until committed


def migrate(conn: Connection, migrations: Sequence[Migration] | None = None, prefix: str = "") -> list[str]:
    """Run the migrations this database has not seen yet; returns their names.

    Modules with tables of their own call this from module_init with their own list and a prefix
    (`memory.m001_embeddings`), so their schema is versioned the same way as the kernel's.
    """
    if conn.dialect.name == "postgresql":
        # Kernels starting at once on one database migrate one after the other (until this transaction ends).
        conn.exec_driver_sql("SELECT pg_advisory_xact_lock(hashtext('tobio.migrate'))")
    _ensure_migrations_table(conn)
    applied = _applied(conn)
    ran = []
    for fn in MIGRATIONS if migrations is None else migrations:
        name = f"{prefix}{fn.__name__}"
        if name in applied:
            continue
        fn(conn)
        ran.append(name)
    if ran:  # one statement for all (a new database runs them all): the same transaction records them or none
        conn.info.pop(_APPLIED, None)  # whether they are recorded is known once this transaction ends: read again
        conn.execute(sa.insert(MigrationRow).values([{"name": const(n), "applied_at": _now_value(conn)} for n in ran]))
    return ran


_APPLIED = "tobio.applied_migrations"  # conn.info: the names in schema_migrations, read once per connection


def _applied(conn: Connection) -> frozenset[str]:
    """The migrations this database has recorded. The kernel and each module migrate in a transaction of
    their own at every start: on a file one process owns (DuckDB, SQLite) the set read by the first is
    still true for the next unless one of them ran migrations (then it is read again). PostgreSQL is
    shared by kernels that migrate too, so it is read each time, under the lock."""
    if conn.dialect.name == "postgresql":
        return frozenset(conn.execute(sa.select(MigrationRow.c.name)).scalars())
    applied: frozenset[str] | None = conn.info.get(_APPLIED)
    if applied is None:
        applied = conn.info[_APPLIED] = frozenset(conn.execute(sa.select(MigrationRow.c.name)).scalars())
    return applied
