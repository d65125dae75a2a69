"""Bulk writes the group-commit writer needs beyond `Database.bulk_insert`.

- `bulk_update`: many rows set by key in one statement (handling cursors, agents' states). An UPDATE
  per row costs DuckDB a statement each (~100 µs); joining the table to the new values costs one.
  DuckDB gets the values as literals (small) or an Arrow view (large), like `Database.bulk_insert`;
  SQLite and PostgreSQL get one executemany, which their drivers already run as a prepared loop.
- `insert_columns`: rows given as columns (a post's pushes: every thread id of the channel, one
  message id), so nobody builds a tuple per row and DuckDB gets Arrow arrays without a transpose.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from tobio.db.database import SMALL_BATCH, Database, _dump, _json_columns, duckdb_connection
from tobio.db.literals import NotLiteral, values_list
from tobio.db.tables import metadata


def insert_columns(db: Database, conn: Connection, table: str, columns: tuple[str, ...], values: list[list[Any]]) -> None:
    """Insert rows given column by column (no JSON columns here: plain values only)."""
    count = len(values[0]) if values else 0
    if not count:
        return
    if db.dialect != "duckdb" or count <= SMALL_BATCH:
        db.bulk_insert(conn, table, columns, list(zip(*values)))
        return
    import pyarrow as pa

    raw = duckdb_connection(conn)
    names = ", ".join(f'"{c}"' for c in columns)
    view = f"_tobio_columns_{table}"
    raw.register(view, pa.table(dict(zip(columns, values))))
    try:
        raw.execute(f"INSERT INTO {table} ({names}) SELECT {names} FROM {view}")
    finally:
        raw.unregister(view)


def bulk_update(
    db: Database, conn: Connection, table: str, key_column: str, columns: tuple[str, ...], by_key: dict[Any, tuple[Any, ...]]
) -> None:
    """Set `columns` to `by_key[key]` in each row of `table` whose `key_column` is `key`."""
    if not by_key:
        return
    if db.dialect != "duckdb":
        target = metadata.tables[table]
        statement = (
            sa.update(target)
            .where(target.c[key_column] == sa.bindparam("k_"))
            .values({c: sa.bindparam(f"v_{c}") for c in columns})
        )
        conn.execute(statement, [{"k_": key, **{f"v_{c}": v for c, v in zip(columns, values)}} for key, values in by_key.items()])
        return
    raw = duckdb_connection(conn)
    json_cols = _json_columns(table)
    names = (key_column, *columns)
    rows = [[key, *((_dump(v) if c in json_cols else v) for c, v in zip(columns, values))] for key, values in by_key.items()]
    assign = ", ".join(f'"{c}" = v."{c}"' for c in columns)
    aliases = ", ".join(f'"{c}"' for c in names)
    where = f'{table}."{key_column}" = v."{key_column}"'
    if len(rows) <= SMALL_BATCH:
        try:
            raw.execute(f"UPDATE {table} SET {assign} FROM (VALUES {values_list(rows)}) AS v({aliases}) WHERE {where}")
            return
        except NotLiteral:
            pass
    import pyarrow as pa

    view = f"_tobio_set_{table}"
    raw.register(view, pa.table({name: list(col) for name, col in zip(names, zip(*rows))}))
    try:
        raw.execute(f"UPDATE {table} SET {assign} FROM {view} AS v WHERE {where}")
    finally:
        raw.unregister(view)
