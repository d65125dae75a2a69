"""Running an agent's SQL: checked and rewritten (sql_guard), bounded in time and size, off the DB thread.

First the agent's rows of each table it names are copied into temporary tables by trusted SQL
(tobio.agents.sandbox); then its statement, regenerated from the checked syntax tree, runs against
those alone. So no predicate or function of the agent's is ever evaluated on another agent's row:
not even an error message or a failing cast can tell it something it may not read.

DuckDB runs it on a second connection to the same database in a worker thread, interrupted when
time runs out. PostgreSQL runs it on a pooled connection of its own, read-only once the copies are
made, with a statement timeout. SQLite runs it on the DB thread (a second connection's read lock
would stall the writer's commit instead), with a progress handler for the timeout and an
authorizer that allows reads of those temporary tables only. Errors come back as one line: the
first error, never a later "transaction is aborted" one.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.engine import Connection, Engine

from tobio.agents.sandbox import Scope, relation_sql
from tobio.db.database import Database, duckdb_connection
from tobio.db.sql_guard import CTE_PREFIX, compile_agent_sql
from tobio.errors import CommandError

TIMEOUT_S = 5.0  # per agent statement, from the moment it starts running
MAX_ROWS = 1000  # the most rows an agent may ask for (`sql --limit`)
MAX_CHARS = 1_000_000  # the most text a result may hold, summed over its cells
# The longest string or blob an agent statement may build. SQLite enforces it; PostgreSQL caps values at
# 1 GB itself; DuckDB has no per-value cap, so a string doubled through many CTE levels is bounded
# only by the timeout and DuckDB's memory_limit (replace/repeat/lpad, which grow fastest, are refused).
MAX_VALUE_BYTES = 16_000_000
_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="tobio-agent-sql")  # 2 cores are common
_SCOPE_PREFIX = "_tobio_scope_"

Rows = list[tuple[Any, ...]]


@dataclass
class AgentQuery:
    """One agent statement: what to run, for whom, and how to stop it from another thread."""

    query: str
    me: int | None  # the agent's id; None when its config grants every agent's rows
    limit: int
    scopes: Mapping[str, Scope] = field(default_factory=dict)  # table -> the rows agents may read
    timeout_s: float = field(default_factory=lambda: TIMEOUT_S)
    timed_out: bool = False
    stop: Callable[[], None] | None = None

    def interrupt(self) -> None:
        if self.stop is not None:
            try:
                self.stop()
            except Exception:  # best effort; the statement may have just finished
                pass


@dataclass(frozen=True)
class AgentResult:
    columns: list[str]
    rows: Rows
    truncated: bool


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _raw(conn: Connection) -> Any:
    """The driver's own connection (DuckDB, psycopg or sqlite3), for what SQLAlchemy does not wrap."""
    return conn.connection.dbapi_connection


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


@dataclass(frozen=True)
class _Plan:
    """The statement to run, and the temporary tables (name -> filling SELECT) it reads."""

    sql: str
    copies: dict[str, str]


def _plan(job: AgentQuery, backend: str, known: set[str], real_prefix: str, temp_prefix: str) -> _Plan:
    copies: dict[str, str] = {}

    def real(name: str) -> str:
        return f"{real_prefix}{_quote(name)}"

    def relations(name: str) -> str | None:
        if name not in known:
            return None
        if job.me is None:  # every agent's rows: nothing to hide, read the table itself
            return real(name)
        temp = f"{_SCOPE_PREFIX}{name}"
        copies[temp] = relation_sql(name, known, real, job.me, job.scopes) or "SELECT NULL WHERE FALSE"
        return f"{temp_prefix}{_quote(temp)}"

    return _Plan(sql=compile_agent_sql(job.query, backend, relations, job.limit), copies=copies)


def _fetch(cursor: Any, limit: int) -> AgentResult:
    columns = [d[0] for d in cursor.description or ()]
    fetched = cursor.fetchmany(limit + 1)
    rows = [tuple(r) for r in fetched[:limit]]
    size = sum(len(str(v)) for row in rows for v in row)
    if size > MAX_CHARS:
        raise CommandError(f"the result holds more than {MAX_CHARS:,} characters; ask for fewer rows or columns")
    return AgentResult(columns=columns, rows=rows, truncated=len(fetched) > limit)


def _failed(job: AgentQuery, exc: BaseException, scrub: str = "") -> CommandError:
    if job.timed_out:
        return CommandError(f"agent SQL stopped after {job.timeout_s:g} s (the limit for agents); ask for less")
    message = _first_line(exc)
    if scrub:
        message = message.replace(scrub, "")
    return CommandError(f"SQL error: {message}")


# -- DuckDB: a second connection in a worker thread -----------------------------------------------
def _duckdb_cursor(conn: Connection) -> Any:
    return duckdb_connection(conn).cursor()  # a new connection to the same database, not a cursor sharing this one


def _run_duckdb(cursor: Any, job: AgentQuery) -> AgentResult:
    catalog = ""

    def out_of_time() -> None:
        job.timed_out = True
        job.interrupt()

    timer = threading.Timer(job.timeout_s, out_of_time)
    job.stop = cursor.interrupt
    try:
        timer.start()
        catalog = str(cursor.execute("SELECT current_database()").fetchone()[0])
        known = {str(r[0]).lower() for r in cursor.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_catalog = current_database() "
            "AND table_schema = 'main'").fetchall()}
        plan = _plan(job, "duckdb", known, f"{_quote(catalog)}.main.", "temp.main.")
        for temp, select in plan.copies.items():
            cursor.execute(f"CREATE TEMP TABLE {_quote(temp)} AS {select}")
        cursor.execute(plan.sql)
        return _fetch(cursor, job.limit)
    except CommandError:
        raise
    except Exception as exc:  # one line, never a traceback
        raise _failed(job, exc, scrub=f"{_quote(catalog)}." if catalog else "") from None
    finally:
        timer.cancel()
        job.stop = None
        cursor.close()  # its temporary tables go with it


# -- PostgreSQL: a pooled connection, read-only, with a statement timeout ---------------------------
def _run_postgres(engine: Engine, job: AgentQuery) -> AgentResult:
    deadline = time.monotonic() + job.timeout_s
    with engine.connect() as conn:
        raw = _raw(conn)
        cursor = raw.cursor()
        job.stop = raw.cancel

        def execute(sql: str) -> None:
            """Each statement gets what is left of the job's time, so together they stay within it."""
            left_ms = int((deadline - time.monotonic()) * 1000)
            if left_ms <= 0:
                job.timed_out = True
                raise TimeoutError
            cursor.execute(f"SET LOCAL statement_timeout = {left_ms}")
            cursor.execute(sql)

        try:
            execute("SELECT current_schema()")
            schema = str(cursor.fetchone()[0])
            execute("SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()")
            known = {str(r[0]).lower() for r in cursor.fetchall()}
            plan = _plan(job, "postgresql", known, f"{_quote(schema)}.", "pg_temp.")
            for temp, select in plan.copies.items():  # dropped with the transaction, rolled back below
                execute(f"CREATE TEMP TABLE {_quote(temp)} ON COMMIT DROP AS {select}")
            cursor.execute("SET TRANSACTION READ ONLY")  # allowed mid-transaction in this direction
            execute(plan.sql)
            return _fetch(cursor, job.limit)
        except CommandError:
            raise
        except Exception as exc:  # the first error, before anything else can hide it
            if "statement timeout" in str(exc):
                job.timed_out = True
            raise _failed(job, exc) from None
        finally:
            job.stop = None
            try:
                raw.rollback()
            except Exception:  # the connection goes back to the pool either way
                pass


# -- SQLite: the DB thread's connection, with an authorizer and a progress handler ---------------------
_DENIED_FUNCTIONS = ("load_extension", "readfile", "writefile", "edit", "fts3_tokenizer", "zipfile")


def _authorizer(db_name: str, tables: set[str]) -> Callable[..., int]:
    """Reads of `tables` in `db_name` and of the statement's own CTEs; nothing else."""

    def allow(action: int, arg1: str | None, arg2: str | None, db: str | None, _trigger: str | None) -> int:
        if action == sqlite3.SQLITE_SELECT:
            return sqlite3.SQLITE_OK
        if action == sqlite3.SQLITE_READ:
            name = (arg1 or "").lower()
            ok = (name in tables and db in (db_name, None)) or (name.startswith(CTE_PREFIX) and db is None)
            return sqlite3.SQLITE_OK if ok else sqlite3.SQLITE_DENY
        if action == sqlite3.SQLITE_FUNCTION:
            name = (arg2 or "").lower()
            bad = name in _DENIED_FUNCTIONS or name.startswith(("sqlite_", "pragma_"))
            return sqlite3.SQLITE_DENY if bad else sqlite3.SQLITE_OK
        return sqlite3.SQLITE_DENY

    return allow


def _run_sqlite(conn: Connection, job: AgentQuery) -> AgentResult:
    raw = _raw(conn)
    known = {str(r[0]).lower() for r in raw.execute(
        "SELECT name FROM main.sqlite_master WHERE type IN ('table', 'view') AND name NOT LIKE 'sqlite%'")}
    plan = _plan(job, "sqlite", known, '"main".', '"temp".')
    readable = ("temp", set(plan.copies)) if job.me is not None else ("main", known)
    deadline = time.monotonic() + job.timeout_s

    def progress() -> int:
        if time.monotonic() > deadline:
            job.timed_out = True
            return 1
        return 0

    cursor = raw.cursor()
    raw.set_progress_handler(progress, 1000)
    try:
        for temp, select in plan.copies.items():
            cursor.execute(f"DROP TABLE IF EXISTS temp.{_quote(temp)}")
            cursor.execute(f"CREATE TEMP TABLE {_quote(temp)} AS {select}")
        raw.set_authorizer(_authorizer(*readable))
        longest = raw.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, MAX_VALUE_BYTES)  # no string doubled into gigabytes
        try:
            cursor.execute(plan.sql)
            return _fetch(cursor, job.limit)
        finally:
            raw.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, longest)
    except CommandError:
        raise
    except Exception as exc:  # one line, never a traceback
        if "not authorized" in str(exc):
            raise CommandError("agents may read only their own tables from SQL") from None
        raise _failed(job, exc) from None
    finally:
        raw.set_authorizer(None)
        raw.set_progress_handler(None, 0)
        cursor.close()
        for temp in plan.copies:  # the DB thread's connection outlives this statement
            try:
                raw.execute(f"DROP TABLE IF EXISTS temp.{_quote(temp)}")
            except sqlite3.Error:  # the next statement drops it before reuse anyway
                pass


async def run_agent_query(db: Database, query: str, me: int | None, limit: int, scopes: Mapping[str, Scope]) -> AgentResult:
    """Run one agent statement; `me` is the agent's id (None: every agent's rows), `scopes` the SQL_SCOPE
    hooks by table. One-line errors."""
    if limit < 0:
        raise CommandError("--limit must be 0 or more")
    if limit > MAX_ROWS:
        raise CommandError(f"agents may fetch at most {MAX_ROWS} rows (--limit {MAX_ROWS} or less)")
    job = AgentQuery(query=query, me=me, limit=limit, scopes={k.lower(): v for k, v in scopes.items()})
    if db.dialect == "sqlite":
        return await db.call(_run_sqlite, job)
    if db.dialect == "duckdb":
        cursor = await db.call(_duckdb_cursor)
        future = _pool.submit(_run_duckdb, cursor, job)
    elif db.dialect == "postgresql":
        future = _pool.submit(_run_postgres, db.engine, job)
    else:
        raise CommandError(f"agent SQL is not supported on {db.dialect}")
    try:
        return await asyncio.shield(asyncio.wrap_future(future))
    except asyncio.CancelledError:
        job.interrupt()
        raise
