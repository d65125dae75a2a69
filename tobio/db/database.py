"""The database: one engine, one dedicated thread, bulk inserts, and clear errors.

Every statement runs on a single DB thread. That keeps DuckDB's one-writer rule inside the process,
gives a total order to writes (a subscribe submitted before a post is committed before it), and
keeps blocking I/O off the kernel's event loop.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from tobio.cluster.ids import SequenceIds, ensure_sequence
from tobio.cluster.single import FileLock
from tobio.db.duckdb_dialect import DuckDBConnection, tobio_url
from tobio.db.literals import NotLiteral, values_list
from tobio.db.tables import ID_TABLES, metadata
from tobio.errors import DatabaseError, DatabaseLockedError

if TYPE_CHECKING:
    import sqlite3

    import duckdb
    import psycopg

T = TypeVar("T")
# Compiled on first use (re's cache), as a plain command's start never uses it: ~1.3 M instructions a pattern.
_LOCK_PID = r"PID (\d+)"
# Rows keyed by name, which another kernel on the same PostgreSQL may have written first: the same row.
SHARED_ROWS = frozenset({"channels"})
SMALL_BATCH = 32  # rows; below this a VALUES insert beats registering a DataFrame
# A DuckDB file's WAL smaller than this is left at close for the next open to replay (Database._fold_wal).
# Measured (callgrind): folding at close ~118 M instructions; replaying costs an open ~4 M plus ~2.3 M per
# one-shot start's log rows (~730 bytes). Folding every ~11 starts (8 KB) makes the average start cheapest.
WAL_KEPT_BYTES = 8 * 1024


def duckdb_connection(conn: Connection) -> duckdb.DuckDBPyConnection:
    """The DuckDB connection under `conn`, for DataFrame views and literal batches SQLAlchemy does not wrap."""
    raw = conn.connection.dbapi_connection
    # Tobio's dialect wraps it (duckdb_dialect.py); duckdb-engine's wrapper (a caller's own engine) passes it through.
    return raw.duckdb if isinstance(raw, DuckDBConnection) else cast("duckdb.DuckDBPyConnection", raw)


def _describe_open_error(url: str, exc: BaseException) -> DatabaseError:
    text = str(getattr(exc, "orig", None) or exc)
    if "Could not set lock" in text or "Conflicting lock" in text:
        pid = re.search(_LOCK_PID, text)
        who = f"process {pid.group(1)}" if pid else "another process"
        return DatabaseLockedError(
            f"database {url} is open read-write in {who}; DuckDB allows one writer per file. "
            f"Close that process, or give this one another file with --database."
        )
    return DatabaseError(f"cannot open database {url}: {text.splitlines()[0]}")


def _dump(value: Any) -> str | None:
    return None if value is None else json.dumps(value, ensure_ascii=False)


def _json_columns(table: str) -> set[str]:
    return {c.name for c in metadata.tables[table].c if isinstance(c.type, sa.JSON)}


def column_frame(columns: dict[str, Sequence[Any]]) -> dict[str, Any]:
    """Columns as NumPy arrays, a batch DuckDB scans directly (a dict of arrays is one of its scans; no pandas,
    90 MB, or Arrow, 170 MB, to install for it). Whole-int columns become int64 arrays; the rest are object
    arrays, which `register_batch` has DuckDB read as text and the INSERT or UPDATE casts to each column's type.
    """
    import numpy as np

    frame: dict[str, Any] = {}
    for name, values in columns.items():
        if values and all(type(value) is int for value in values):
            try:
                frame[name] = np.array(values, dtype=np.int64)
                continue
            except OverflowError:
                pass
        column = np.empty(len(values), dtype=object)
        column[:] = list(values)
        frame[name] = column
    return frame


def register_batch(raw: Any, view: str, frame: dict[str, Any]) -> None:
    """Register a `column_frame` as `view`, its object columns read as text (cast by the statement that uses
    them). DuckDB otherwise guesses an object column's type from a sample, and a sample of NULLs makes it call
    pandas (`first_valid_index`), which Tobio does not install; text casts exactly (ints of any size, str()
    of datetimes and floats) and is faster than the sampling."""
    raw.execute("SET pandas_analyze_sample = 0")
    raw.register(view, frame)


def _duckdb_engine(url: sa.URL) -> Engine:
    """An engine on Tobio's own DuckDB dialect (duckdb_dialect.py says why not duckdb-engine's)."""
    return sa.create_engine(tobio_url(url), future=True)


class Database:
    """Owns the engine and the DB thread; `call` runs a function there inside one transaction."""

    def __init__(self, url: str) -> None:
        self.url = url
        parsed = sa.engine.make_url(url)
        self.engine: Engine = _duckdb_engine(parsed) if parsed.drivername == "duckdb" else sa.create_engine(url, future=True)
        self.dialect = self.engine.dialect.name
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tobio-db")
        self._local = threading.local()
        self._next_ids: dict[str, int] = {}
        # Where each table's reserved range ends: unbounded on a file (one kernel owns it), a block from
        # the table's sequence on PostgreSQL (tobio/cluster/ids.py), refilled when used up.
        self._id_ends: dict[str, int] = {}
        self._sequences: SequenceIds | None = SequenceIds(self.engine) if self.dialect == "postgresql" else None
        self._file_lock: FileLock | None = None
        self._closed = False
        self._threads: int | None = None  # DuckDB's worker threads while a boot runs without them (open(boot=True))
        self._active: Connection | None = None
        # Which call is running on the DB thread, so cancelling one interrupts that call and never the
        # next: DuckDB interrupts whatever statement is executing when asked, and a call's future reports
        # "not cancellable" both while it runs and once it is done. The lock keeps the DB thread from
        # moving on to the next call while an interrupt is being delivered.
        self._running: object | None = None
        self._running_lock = threading.Lock()

    # -- lifecycle ---------------------------------------------------------------------------
    def open(self, *, boot: bool = False) -> None:
        """Connect, migrate and read the id counters; raises DatabaseLockedError when held elsewhere.

        `boot`: a kernel's boot follows, a few dozen tiny statements, which DuckDB runs without its worker
        threads until `booted()`: handing each one to a worker costs more than it runs (measured, a boot's
        statements and closing: 67 -> 56 ms of CPU)."""
        from tobio.db.migrations import migrate

        path = sa.engine.make_url(self.url).database
        if self.dialect in ("duckdb", "sqlite") and path and path != ":memory:":
            Path(path).expanduser().parent.mkdir(parents=True, exist_ok=True)
            if self.dialect == "sqlite":  # DuckDB locks its file itself
                self._file_lock = FileLock(Path(path).expanduser().with_name(Path(path).name + ".lock"))
                self._file_lock.acquire(self.url)

        def _open(conn: Connection) -> None:
            if boot and self.dialect == "duckdb":
                self._threads = int(conn.exec_driver_sql("SELECT current_setting('threads')").scalar() or 0)
                conn.exec_driver_sql("SET threads = 1")
            migrate(conn)
            if self._sequences is not None:  # ids come from the sequences, a block at a time, when first needed
                for table in ID_TABLES:
                    self._next_ids[table] = self._id_ends[table] = 0
                return
            # One statement for every counter (a start pays a round trip per statement), as a UNION ALL: DuckDB
            # plans a row of scalar subqueries ~8x slower (6 ms of CPU a start, against 0.7).
            union = " UNION ALL ".join(f"SELECT {i}, max(id) FROM {t}" for i, t in enumerate(ID_TABLES))
            tops: dict[int, int | None] = {i: top for i, top in conn.execute(sa.text(union))}
            for i, table in enumerate(ID_TABLES):
                self._next_ids[table] = (tops[i] or 0) + 1

        try:
            self.call_sync(_open)
        except BaseException:
            self._release_file()
            raise

    async def booted(self) -> None:
        """The boot is done: DuckDB gets back the worker threads `open(boot=True)` set aside."""
        threads, self._threads = self._threads, None
        if threads:
            await self.call(lambda conn: conn.exec_driver_sql(f"SET threads = {threads:d}"))

    def close(self) -> None:
        """Close the DB thread's connection and the engine. Safe to call twice."""
        if self._closed:
            return
        self._closed = True

        def _close() -> None:
            conn = getattr(self._local, "conn", None)
            if conn is not None:
                if self.dialect == "duckdb":
                    try:
                        conn.exec_driver_sql("CHECKPOINT" if self._fold_wal() else "PRAGMA disable_checkpoint_on_shutdown")
                        conn.commit()
                    except Exception:  # closing must not fail over a checkpoint
                        conn.rollback()
                conn.close()
                self._local.conn = None

        self._executor.submit(_close).result()
        self._executor.shutdown(wait=True)
        if self._sequences is not None:
            self._sequences.close()
        self.engine.dispose()
        self._release_file()

    def _fold_wal(self) -> bool:
        """Whether closing should fold DuckDB's WAL into the file (DuckDB does it when its last connection
        closes, unless told not to). What is in the WAL is committed and durable already; folding it costs
        the close ~9 ms of CPU even for the dozen log rows a one-shot command's start writes, and replaying
        those costs the next open far less. So a WAL under WAL_KEPT_BYTES is left to be replayed, a larger
        one folded as before: no open after a clean close replays more than that."""
        path = sa.engine.make_url(self.url).database
        if not path or path == ":memory:":
            return True
        try:
            return Path(f"{Path(path).expanduser()}.wal").stat().st_size >= WAL_KEPT_BYTES
        except FileNotFoundError:  # nothing written since the last fold
            return False

    def _release_file(self) -> None:
        if self._file_lock is not None:
            self._file_lock.release()
            self._file_lock = None

    # -- running work on the DB thread -------------------------------------------------------
    def _connection(self) -> Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None or conn.closed:
            try:
                conn = self.engine.connect()
            except Exception as exc:  # turned into a clear error
                raise _describe_open_error(self.url, exc) from None
            self._local.conn = conn
            self._active = conn  # the DB thread's connection, so another thread can interrupt it
        return conn

    def _run(self, fn: Callable[..., T], *args: Any, token: object | None = None) -> T:
        conn = self._connection()
        with self._running_lock:
            self._running = token
        try:
            with conn.begin():
                return fn(conn, *args)
        except sa.exc.DBAPIError:
            if not conn.invalidated and not conn.in_transaction():
                self._end_failed_commit(conn)
            if conn.invalidated:
                self._local.conn = None
            raise
        finally:
            with self._running_lock:
                self._running = None
            if conn.in_transaction():
                conn.rollback()

    def _end_failed_commit(self, conn: Connection) -> None:
        """A COMMIT that failed (an interrupt meant for a cancelled call can land on it) leaves DuckDB's
        transaction open and aborted, which would fail the next call: roll it back, or drop the connection."""
        try:
            conn.dialect.do_rollback(conn.connection)  # "no transaction is active" is not an error here
        except Exception:  # a connection that cannot even roll back is replaced by a new one
            conn.invalidate()

    def call_sync(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn(conn, *args)` on the DB thread in one transaction and wait for it."""
        if self._closed:
            raise DatabaseError("database is closed")
        return self._executor.submit(self._run, fn, *args).result()

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Async form of `call_sync`, for code on the kernel's loop. Cancelling it interrupts the query."""
        if self._closed:
            raise DatabaseError("database is closed")
        token = object()
        future = self._executor.submit(self._run, fn, *args, token=token)
        try:
            return await asyncio.shield(asyncio.wrap_future(future))
        except asyncio.CancelledError:
            if not future.cancel():  # running (or just done): stop its statement, not just our wait
                self.interrupt(token)
            raise

    def interrupt(self, token: object | None = None) -> None:
        """Interrupt the statement running on the DB thread (DuckDB; PostgreSQL cancels the query).

        With `token`, only if the call it names is still the one running."""
        with self._running_lock:
            if token is not None and self._running is not token:
                return
            self._interrupt()

    def _interrupt(self) -> None:
        conn = self._active
        if conn is None or conn.closed:
            return
        try:
            raw = conn.connection.dbapi_connection
            if self.dialect == "duckdb":
                duckdb_connection(conn).interrupt()
            elif self.dialect == "postgresql":
                cast("psycopg.Connection[Any]", raw).cancel()
            elif self.dialect == "sqlite":
                cast("sqlite3.Connection", raw).interrupt()
        except Exception as exc:  # best effort
            import logging

            logging.getLogger(__name__).warning("could not interrupt the running statement: %s", exc)

    # -- ids and bulk writes (DB thread or loop; the loop is the only allocator) --------------
    def track_ids(self, conn: Connection, table: str) -> None:
        """Start allocating ids for a module's own table (call on the DB thread, e.g. after migrating)."""
        if self._sequences is not None:
            ensure_sequence(conn, table)  # its ids come from the sequence, as the kernel's tables' do
            self._next_ids.setdefault(table, 0)
            self._id_ends.setdefault(table, 0)
            return
        top = conn.execute(sa.text(f"SELECT max(id) FROM {table}")).scalar()
        self._next_ids[table] = max(self._next_ids.get(table, 1), (top or 0) + 1)

    def next_ids(self, table: str, count: int = 1) -> int:
        """Reserve `count` consecutive ids in `table`; returns the first.

        From memory; on PostgreSQL, a used-up block is refilled from the table's sequence first (one short
        transaction per block of ids, on a connection of its own), so kernels sharing the database never
        hand out the same id."""
        first = self._next_ids[table]
        if self._sequences is not None and first + count > self._id_ends.get(table, 0):
            first, self._id_ends[table] = self._sequences.take(table, count)
        self._next_ids[table] = first + count
        return first

    def bulk_insert(self, conn: Connection, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        """Insert many rows fast: a registered DataFrame into DuckDB, executemany elsewhere."""
        if not rows:
            return
        if self.dialect == "duckdb":
            raw = duckdb_connection(conn)
            json_cols = _json_columns(table)
            names = ", ".join(f'"{c}"' for c in columns)
        if self.dialect == "duckdb" and len(rows) <= SMALL_BATCH:
            # Registering a DataFrame costs a few ms whatever its size; a VALUES list is cheaper when small.
            # Plain values go in as literals: binding any parameter makes DuckDB import pandas (literals.py).
            cells = [[(_dump(v) if c in json_cols else v) for c, v in zip(columns, row)] for row in rows]
            try:
                raw.execute(f"INSERT INTO {table} ({names}) VALUES {values_list(cells)}")
            except NotLiteral:
                marks = "(" + ", ".join("?" for _ in columns) + ")"
                raw.execute(f"INSERT INTO {table} ({names}) VALUES {', '.join([marks] * len(rows))}", [v for row in cells for v in row])
            return
        if self.dialect == "duckdb":
            values = list(zip(*rows))
            batch = column_frame({name: [_dump(v) for v in col] if name in json_cols else col for name, col in zip(columns, values)})
            view = f"_tobio_batch_{table}"
            register_batch(raw, view, batch)
            try:
                raw.execute(f"INSERT INTO {table} ({names}) SELECT {names} FROM {view}")
            finally:
                raw.unregister(view)
            return
        target = metadata.tables[table]
        statement: Any = sa.insert(target)
        if self.dialect == "postgresql" and table in SHARED_ROWS:
            from sqlalchemy.dialects.postgresql import insert

            statement = insert(target).on_conflict_do_nothing()
        conn.execute(statement, [dict(zip(columns, row)) for row in rows])
