"""`sql QUERY`: the database's own SQL (DuckDB by default), read-only unless `--write`.

Read-only is enforced by the engine where it can be (PostgreSQL read-only transactions, SQLite's
query_only) and by DuckDB's own parser elsewhere, never by guessing from keywords. Agents' SQL takes
another road (tobio.db.agent_sql): parsed, checked against allow-lists, rewritten over their rows.
"""

from __future__ import annotations

import re
from typing import Any

import sqlalchemy as sa

from tobio.commands import Arg, Context, Group, Result
from tobio.errors import CommandError

# Compiled on first use (re's cache), as a plain command's start never uses it: ~1.3 M instructions a pattern.
_EXPLAIN = r"(?i)^\s*EXPLAIN(\s+ANALY[SZ]E)?\s+"


def split_statements(query: str, dialect: str) -> list[str]:
    """Split on `;` outside quotes and comments (DuckDB: its own parser)."""
    if dialect == "duckdb":
        import duckdb

        try:
            return [s.query.strip() for s in duckdb.extract_statements(query) if s.query.strip()]
        except duckdb.Error as exc:
            raise CommandError(f"SQL error: {_first_line(exc)}") from None
    parts, current, quote = [], [], ""
    i = 0
    while i < len(query):
        ch = query[i]
        if quote:
            current.append(ch)
            if ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
            current.append(ch)
        elif query.startswith("--", i):
            end = query.find("\n", i)
            i = len(query) if end < 0 else end
            continue
        elif ch == ";":
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
        i += 1
    parts.append("".join(current))
    return [p.strip() for p in parts if p.strip()]


def _duckdb_is_read_only(statement: str) -> bool:
    import duckdb

    kinds = [s.type for s in duckdb.extract_statements(statement)]
    if kinds == [duckdb.StatementType.EXPLAIN]:
        return _duckdb_is_read_only(re.sub(_EXPLAIN, "", statement, count=1))
    return all(k == duckdb.StatementType.SELECT for k in kinds)


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def run_sql(
    conn: sa.Connection, statements: list[str], write: bool, limit: int
) -> tuple[list[str] | None, list[tuple[Any, ...]], bool, int]:
    """Run a user's statements on the DB thread; returns (columns, rows, truncated, affected) of the last one.

    Agents never come here: their SQL goes through tobio.db.agent_sql.
    """
    dialect = conn.dialect.name
    raw: Any = conn.connection.dbapi_connection
    if not write:
        if dialect == "duckdb":
            for statement in statements:
                if not _duckdb_is_read_only(statement):
                    raise CommandError("this statement writes; run it with `sql --write …` if you mean it")
        elif dialect == "postgresql":
            conn.exec_driver_sql("SET TRANSACTION READ ONLY")
        elif dialect == "sqlite":
            conn.exec_driver_sql("PRAGMA query_only = ON")
    columns: list[str] | None = None
    rows: list[tuple[Any, ...]] = []
    truncated, affected = False, 0
    try:
        for statement in statements:
            cursor = raw.cursor()
            cursor.execute(statement)
            names = [d[0] for d in cursor.description or ()]
            if names == ["Count"] and dialect == "duckdb" and not _duckdb_is_read_only(statement):
                affected = int((cursor.fetchone() or (0,))[0])  # DuckDB reports DML counts as a row
                columns, rows = None, []
            elif names:
                columns = names
                fetched = cursor.fetchmany(limit + 1)
                truncated = len(fetched) > limit
                rows = [tuple(r) for r in fetched[:limit]]
            else:
                columns, rows = None, []
                affected = cursor.rowcount if cursor.rowcount and cursor.rowcount > 0 else 0
            cursor.close()
    except Exception as exc:
        message = _first_line(exc)
        if "read-only" in message.lower() or "readonly" in message.lower() or "query_only" in message.lower():
            raise CommandError("this statement writes; run it with `sql --write …` if you mean it") from None
        raise CommandError(f"SQL error: {message}") from None
    finally:
        if not write and dialect == "sqlite":
            conn.exec_driver_sql("PRAGMA query_only = OFF")
    return columns, rows, truncated, affected


def register(root: Group) -> None:
    @root.command(
        "sql",
        Arg("--write", flag=True, help="allow statements that change the database"),
        Arg("--limit", type=int, default=1000, help="show at most this many rows"),
        Arg("query", raw=True, help="SQL, quotes kept as typed", complete="sql"),
        agents="agents",  # an agent's SQL runs in its sandbox (tobio.db.agent_sql): its own rows, no writes
    )
    async def sql(ctx: Context, query: str, write: bool, limit: int) -> Result:
        """Run SQL on the kernel's database (read-only unless --write)."""
        kernel = ctx.kernel
        if not ctx.caller.privileged:
            return await _agent_sql(ctx, query, write, limit)
        statements = split_statements(query, kernel.db.dialect)
        if not statements:
            raise CommandError("no SQL statement given", usage="usage: sql [--write] [--limit N] QUERY")
        await kernel.flush()  # what was posted before the query is visible to it
        columns, rows, truncated, affected = await kernel.db.call(run_sql, statements, write, limit)
        if columns is None:
            return Result(text=f"ok ({affected} rows affected)" if affected else "ok")
        note = f"showing the first {limit} rows; use --limit" if truncated else None
        return Result(columns=columns, rows=rows, note=note)


async def _agent_sql(ctx: Context, query: str, write: bool, limit: int) -> Result:
    """An agent asking: one SELECT over its own rows (all rows if its config says so), never a write."""
    from tobio.db.agent_sql import run_agent_query
    from tobio.hooks import SQL_SCOPE

    agent = ctx.agent
    if agent is None:
        raise CommandError(f"'{ctx.caller}' is not a running agent")
    if write:
        raise CommandError(f"agent '{agent.name}' may not write with sql")
    if not query.strip():
        raise CommandError("no SQL statement given", usage="usage: sql [--limit N] QUERY")
    me = None if getattr(agent.config, "sql_all_rows", False) else agent.id
    await ctx.kernel.flush()  # what was posted before the query is visible to it
    result = await run_agent_query(ctx.kernel.db, query, me, limit, ctx.kernel.hooks.keyed(SQL_SCOPE))
    note = f"showing the first {limit} rows; use --limit" if result.truncated else None
    return Result(columns=result.columns, rows=result.rows, note=note)
