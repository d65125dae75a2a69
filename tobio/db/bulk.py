"""Bulk writes the group-commit writer needs beyond `Database.bulk_insert`.

- `bulk_update`: many rows set by key in one statement (handling cursors, agents' states). An UPDATE
  per row costs DuckDB a statement each (~100 µs); joining the table to the new values costs one.
  DuckDB gets the values as literals (small) or a DataFrame view (large), like `Database.bulk_insert`;
  SQLite and PostgreSQL get one executemany, which their drivers already run as a prepared loop.
- `insert_fans`: a post's pushes, one row per thread id of its channel, given as groups (the
  channel's thread ids, the ids of the messages posted to it). DuckDB expands them itself from one
  short statement: 500 posts to 10 subscribers are 500 ids in the SQL, not 5,000 rows built in Python
  and scanned from a DataFrame (whose scan needs the GIL the kernel's loop is busy with).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from tobio.db.database import SMALL_BATCH, Database, _dump, _json_columns, column_frame, duckdb_connection, register_batch
from tobio.db.literals import NotLiteral, values_list
from tobio.db.tables import metadata


def insert_fans(db: Database, conn: Connection, table: str, columns: tuple[str, str],
                groups: list[tuple[tuple[Any, ...], list[Any]]]) -> int:
    """Insert a row (key, value) for every key of every value of each group; returns the row count."""
    count = sum(len(keys) * len(values) for keys, values in groups)
    if not count:
        return 0
    if db.dialect == "duckdb" and all(_ints(keys) and _ints(values) for keys, values in groups):
        # Keys as a list literal (a channel's thread ids: few), values as one string DuckDB splits
        # (many: a long list literal costs DuckDB an expression per element to bind).
        rows = ", ".join(f"([{', '.join(map(str, keys))}]::BIGINT[], '{','.join(map(str, values))}')" for keys, values in groups)
        key, value = (f'"{c}"' for c in columns)
        duckdb_connection(conn).execute(
            f"INSERT INTO {table} ({key}, {value}) SELECT unnest(g.k), g.v FROM"
            f" (SELECT k, unnest(string_split(v, ',')::BIGINT[]) AS v FROM (VALUES {rows}) AS g0(k, v)) AS g"
        )
        return count
    db.bulk_insert(conn, table, columns, [(k, v) for keys, values in groups for v in values for k in keys])
    return count


def _ints(values: Sequence[Any]) -> bool:
    """Plain ints only (not bools, whose str() DuckDB would read as a name)."""
    return all(type(v) is int for v in values)


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
    view = f"_tobio_set_{table}"
    register_batch(raw, view, column_frame({name: col for name, col in zip(names, zip(*rows))}))
    try:
        raw.execute(f"UPDATE {table} SET {assign} FROM {view} AS v WHERE {where}")
    finally:
        raw.unregister(view)
