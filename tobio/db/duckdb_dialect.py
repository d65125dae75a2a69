"""Tobio's SQLAlchemy dialect for DuckDB: what duckdb-engine did for Tobio, without what it cost every start.

duckdb-engine builds on SQLAlchemy's PostgreSQL dialect, and importing any of that runs the package's
`__init__`, which imports every PostgreSQL driver's dialect (asyncpg, psycopg2, pg8000, …; ~21 ms). Its
import and first connect also probe DuckDB on throwaway in-memory databases (COMMENT support, reserved
keywords, the settings list; ~15 ms). A one-shot `tobio-shell -c "agent ls"` paid ~40 ms for it, ~7% of
its time. Tobio's SQL is plain Core (selects, inserts, updates, DDL of simple tables), which SQLAlchemy's
generic compiler renders as DuckDB reads it; this file adds DuckDB's parameter style, its keywords, the few
clauses the generic compiler leaves out, transactions on one connection, and the reflection Tobio asks for.

Registered as `duckdb+tobio` (a user's own `duckdb://` engine is still duckdb-engine's); its name is
`duckdb`, so `dialect.name` checks and `@compiles(..., "duckdb")` rules apply to it as before.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy import types as sqltypes
from sqlalchemy.engine import default
from sqlalchemy.sql import compiler

from tobio.db.literals import literal

if TYPE_CHECKING:
    import duckdb

DRIVERNAME = "duckdb+tobio"
USER_AGENT = f"tobio(sqlalchemy/{sa.__version__})"

# DuckDB's keywords that cannot name a column unquoted (`duckdb_keywords()`: reserved and type_function, as
# of DuckDB 1.5; tests/test_duckdb_dialect.py checks the installed DuckDB adds none).
KEYWORDS = frozenset("""
    all analyse analyze and any array as asc asymmetric both case cast check collate column constraint create
    default deferrable desc describe distinct do else end except false fetch for foreign from group having
    in initially intersect into lambda lateral leading limit not null offset on only or order pivot pivot_longer
    pivot_wider placing primary qualify references returning select show some summarize symmetric table then
    to trailing true union unique unpivot using variadic when where window with
    anti asof at authorization binary by collation columns concurrently cross freeze full generated glob ilike
    inner is isnull join left like map natural notnull outer overlaps positional right semi similar struct
    tablesample try_cast unpack verbose
""".split())


def register() -> None:
    """Make `duckdb+tobio://` URLs load this dialect (no scan of installed packages' entry points)."""
    sa.dialects.registry.register("duckdb.tobio", __name__, "DuckDBDialect")


def tobio_url(url: sa.URL) -> sa.URL:
    """A `duckdb://` URL, to be served by this dialect."""
    register()
    return url.set(drivername=DRIVERNAME)


# -- the driver: DuckDB's connection as a DB-API connection -----------------------------------------
class DuckDBCursor:
    """A cursor on the connection itself. DuckDB's own `cursor()` opens another connection, with a
    transaction of its own, where a statement would not see what SQLAlchemy's transaction wrote."""

    __slots__ = ("_duck", "connection")

    def __init__(self, connection: DuckDBConnection) -> None:
        self.connection = connection
        self._duck = connection.duckdb

    def execute(self, statement: str, parameters: Any = None, context: Any = None) -> DuckDBCursor:
        if parameters is None:
            self._duck.execute(statement)
        else:
            self._duck.execute(statement, parameters)
        return self

    def executemany(self, statement: str, parameters: Any = None, context: Any = None) -> DuckDBCursor:
        self._duck.executemany(statement, list(parameters) if parameters else [])
        return self

    @property
    def description(self) -> Any:
        return self._duck.description

    @property
    def rowcount(self) -> int:
        return int(self._duck.rowcount)

    def fetchone(self) -> Any:
        return self._duck.fetchone()

    def fetchmany(self, size: int | None = None) -> list[Any]:
        return self._duck.fetchmany() if size is None else self._duck.fetchmany(size)

    def fetchall(self) -> list[Any]:
        return self._duck.fetchall()

    def close(self) -> None:
        """Nothing to close: the cursor is the connection, which stays open."""

    def __getattr__(self, name: str) -> Any:
        return getattr(self._duck, name)


class DuckDBConnection:
    """A DuckDB connection as SQLAlchemy's pool holds it; everything else passes through to `duckdb`."""

    __slots__ = ("closed", "duckdb")

    def __init__(self, duck: duckdb.DuckDBPyConnection) -> None:
        self.duckdb = duck
        self.closed = False

    def cursor(self) -> DuckDBCursor:
        return DuckDBCursor(self)

    def begin(self) -> None:
        self.duckdb.begin()

    def commit(self) -> None:
        self.duckdb.commit()

    def rollback(self) -> None:
        self.duckdb.rollback()

    def close(self) -> None:
        self.duckdb.close()
        self.closed = True

    def __getattr__(self, name: str) -> Any:
        return getattr(self.duckdb, name)


class _DBAPI:
    """The DB-API module SQLAlchemy asks for: DuckDB's exceptions and `$1` parameters."""

    paramstyle = "numeric_dollar"
    apilevel = "2.0"
    threadsafety = 1

    def __init__(self, duck: Any) -> None:
        for name in ("Error", "Warning", "DatabaseError", "DataError", "OperationalError", "IntegrityError",
                     "InternalError", "ProgrammingError", "NotSupportedError"):
            setattr(self, name, getattr(duck, name))

    @staticmethod
    def Binary(value: Any) -> Any:
        return value


def client() -> Any:
    """DuckDB's native client module, which the `duckdb` package re-exports (duckdb>=1.4). The package's own
    `__init__` also reads its version from the installed metadata and, for its DB-API type objects, opens a
    default in-memory database: ~75 M instructions (~20 ms) of every start that Tobio's dialect never uses.
    A DuckDB that names its module otherwise is imported as the package."""
    try:
        import _duckdb
    except ImportError:  # not DuckDB 1.4 or 1.5's layout
        import duckdb

        return duckdb
    return _duckdb


def _core_settings() -> set[str]:
    """DuckDB's own settings, which go to `duckdb.connect`; a URL's other options are extensions' (`SET` after
    connecting). Asked of a throwaway database, and only for a URL with options: Tobio's own has none."""
    with client().connect(":memory:") as probe:
        return {name for (name,) in probe.execute("SELECT name FROM duckdb_settings()").fetchall()}


# -- SQL ---------------------------------------------------------------------------------------------
class DuckDBCompiler(compiler.SQLCompiler):
    """The generic compiler plus what it leaves to dialects: LIMIT/OFFSET, empty IN, UPDATE … FROM, DELETE … USING."""

    def limit_clause(self, select: Any, **kw: Any) -> str:
        text = ""
        if select._limit_clause is not None:
            text += " \n LIMIT " + self.process(select._limit_clause, **kw)
        if select._offset_clause is not None:
            if select._limit_clause is None:
                text += "\n LIMIT ALL"
            text += " OFFSET " + self.process(select._offset_clause, **kw)
        return text

    def visit_empty_set_expr(self, element_types: Any, **kw: Any) -> str:
        types = [sqltypes.INTEGER() if t._isnull else t for t in element_types] or [sqltypes.INTEGER()]
        casts = ", ".join(f"CAST(NULL AS {self.dialect.type_compiler_instance.process(t)})" for t in types)
        return f"SELECT {casts} WHERE 1!=1"

    def update_from_clause(self, update_stmt: Any, from_table: Any, extra_froms: Any, from_hints: Any, **kw: Any) -> str:
        kw["asfrom"] = True
        return "FROM " + ", ".join(t._compiler_dispatch(self, fromhints=from_hints, **kw) for t in extra_froms)

    def delete_extra_from_clause(self, delete_stmt: Any, from_table: Any, extra_froms: Any, from_hints: Any, **kw: Any) -> str:
        kw["asfrom"] = True
        return "USING " + ", ".join(t._compiler_dispatch(self, fromhints=from_hints, **kw) for t in extra_froms)


class DuckDBTypeCompiler(compiler.GenericTypeCompiler):
    def visit_JSON(self, type_: Any, **kw: Any) -> str:
        return "JSON"

    def visit_datetime(self, type_: Any, **kw: Any) -> str:
        return "TIMESTAMP WITH TIME ZONE" if getattr(type_, "timezone", False) else "TIMESTAMP WITHOUT TIME ZONE"

    visit_TIMESTAMP = visit_DATETIME = visit_datetime


class DuckDBIdentifierPreparer(compiler.IdentifierPreparer):
    reserved_words = compiler.RESERVED_WORDS | KEYWORDS


class _NullType(sqltypes.NullType):
    """An untyped result column (`text()` SQL) that DuckDB says is JSON is parsed, as duckdb-engine did."""

    def result_processor(self, dialect: Any, coltype: Any) -> Any:
        if coltype == "JSON":
            return sqltypes.JSON().result_processor(dialect, coltype)  # type: ignore[no-untyped-call]  # SQLAlchemy's JSON is untyped
        return super().result_processor(dialect, coltype)


# DuckDB's type names (`duckdb_columns().data_type`, without any `(…)`) as SQLAlchemy types, for get_columns.
_TYPES: dict[str, type[sqltypes.TypeEngine[Any]]] = {
    "BIGINT": sqltypes.BigInteger, "INTEGER": sqltypes.Integer, "SMALLINT": sqltypes.SmallInteger,
    "TINYINT": sqltypes.SmallInteger, "HUGEINT": sqltypes.Numeric, "UBIGINT": sqltypes.BigInteger,
    "UINTEGER": sqltypes.BigInteger, "USMALLINT": sqltypes.Integer, "UTINYINT": sqltypes.SmallInteger,
    "BOOLEAN": sqltypes.Boolean, "VARCHAR": sqltypes.String, "DOUBLE": sqltypes.Double, "FLOAT": sqltypes.Float,
    "DECIMAL": sqltypes.Numeric, "DATE": sqltypes.Date, "TIME": sqltypes.Time, "TIMESTAMP": sqltypes.DateTime,
    "BLOB": sqltypes.LargeBinary, "UUID": sqltypes.Uuid, "JSON": sqltypes.JSON, "INTERVAL": sqltypes.Interval,
}


class DuckDBDialect(default.DefaultDialect):
    """DuckDB through its Python client, one transaction per SQLAlchemy transaction on the connection itself."""

    name = "duckdb"
    driver = "tobio"
    supports_statement_cache = True
    default_paramstyle = "numeric_dollar"
    statement_compiler = DuckDBCompiler
    type_compiler_cls = DuckDBTypeCompiler
    preparer = DuckDBIdentifierPreparer
    _json_serializer = None
    _json_deserializer = None

    max_identifier_length = 63  # the names SQLAlchemy makes up (labels, constraints) stay as they were
    supports_native_boolean = True
    supports_native_uuid = True
    supports_sane_rowcount = False  # DuckDB reports DML counts as a row, not in rowcount
    supports_sane_multi_rowcount = False
    supports_server_side_cursors = False
    div_is_floordiv = False  # `/` divides exactly
    supports_comments = True
    inline_comments = False
    supports_sequences = True
    sequences_optional = True
    supports_default_values = True
    supports_multivalues_insert = True
    supports_default_metavalue = True
    supports_empty_insert = False
    insert_returning = update_returning = delete_returning = True
    update_returning_multifrom = delete_returning_multifrom = True
    postfetch_lastrowid = False
    # Many rows go in as one INSERT … VALUES (…), (…): DuckDB's executemany runs a statement per row.
    use_insertmanyvalues = True
    use_insertmanyvalues_wo_returning = True
    insert_executemany_returning = True
    insert_executemany_returning_sort_by_parameter_order = True

    @classmethod
    def import_dbapi(cls) -> Any:
        return _DBAPI(client())

    @classmethod
    def get_pool_class(cls, url: sa.URL) -> Any:
        # One in-memory database per connection would give each thread a database of its own.
        return sa.pool.SingletonThreadPool if url.database == ":memory:" else sa.pool.QueuePool

    def create_connect_args(self, url: sa.URL) -> Any:
        options: dict[str, Any] = {"database": url.database or ":memory:"}
        if url.query:
            options["url_config"] = dict(url.query)
        return (), options

    def connect(self, *cargs: Any, **cparams: Any) -> DuckDBConnection:
        config = dict(cparams.pop("config", None) or {})
        options = cparams.pop("url_config", None) or {}
        core = _core_settings() if options else set()
        config.update({k: v for k, v in options.items() if k in core})
        agent = config.get("custom_user_agent")
        config["custom_user_agent"] = f"{USER_AGENT} {agent}" if agent else USER_AGENT
        cparams["config"] = config
        duck = client().connect(*cargs, **cparams)
        try:
            for key, value in options.items():
                if key not in core:
                    duck.execute(f"SET {key} = {literal(value)}")
        except BaseException:
            duck.close()
            raise
        return DuckDBConnection(duck)

    def _get_server_version_info(self, connection: Any) -> tuple[int, ...]:
        return tuple(int(part) for part in re.findall(r"\d+", client().__version__)[:3])

    def _get_default_schema_name(self, connection: Any) -> str:
        return "main"

    def get_default_isolation_level(self, dbapi_conn: Any) -> Any:
        raise NotImplementedError  # DuckDB has one level (snapshot isolation), and no way to choose

    def do_begin(self, dbapi_connection: Any) -> None:
        # DuckDB's client commits each statement unless a transaction was begun.
        dbapi_connection.begin()

    def do_rollback(self, dbapi_connection: Any) -> None:
        try:
            dbapi_connection.rollback()
        except Exception as exc:  # nothing to roll back is not an error here
            if "no transaction is active" not in str(exc):
                raise

    def is_disconnect(self, e: Any, connection: Any, cursor: Any) -> bool:
        return bool(getattr(connection, "closed", False))

    def type_descriptor(self, typeobj: Any) -> Any:
        described = super().type_descriptor(typeobj)  # type: ignore[no-untyped-call]  # untyped in SQLAlchemy
        return _NullType() if type(described) is sqltypes.NullType else described

    # -- reflection: what `sa.inspect(conn)` is asked on DuckDB (tables, views, columns) --------
    def _scope(self, schema: str | None) -> str:
        return "database_name = current_database() AND schema_name = " + (
            "current_schema()" if schema is None else literal(str(schema)))

    def has_table(self, connection: Any, table_name: str, schema: str | None = None, **kw: Any) -> bool:
        self._ensure_has_table_connection(connection)
        name = literal(str(table_name))
        found = connection.exec_driver_sql(
            f"SELECT 1 FROM duckdb_tables() WHERE {self._scope(schema)} AND table_name = {name} UNION ALL "
            f"SELECT 1 FROM duckdb_views() WHERE {self._scope(schema)} AND view_name = {name} LIMIT 1").first()
        return found is not None

    def get_table_names(self, connection: Any, schema: str | None = None, **kw: Any) -> list[str]:
        return list(connection.exec_driver_sql(
            f"SELECT table_name FROM duckdb_tables() WHERE {self._scope(schema)} ORDER BY table_name").scalars())

    def get_view_names(self, connection: Any, schema: str | None = None, **kw: Any) -> list[str]:
        return list(connection.exec_driver_sql(
            f"SELECT view_name FROM duckdb_views() WHERE {self._scope(schema)} AND NOT internal ORDER BY view_name").scalars())

    def get_columns(self, connection: Any, table_name: str, schema: str | None = None, **kw: Any) -> list[Any]:
        rows = connection.exec_driver_sql(
            f"SELECT column_name, data_type, is_nullable, column_default FROM duckdb_columns() WHERE {self._scope(schema)}"
            f" AND table_name = {literal(str(table_name))} ORDER BY column_index").all()
        if not rows and not self.has_table(connection, table_name, schema):
            raise sa.exc.NoSuchTableError(table_name)
        columns = []
        for name, data_type, nullable, column_default in rows:
            kind = _TYPES.get(str(data_type).split("(")[0].strip())
            type_: Any = sqltypes.NullType() if kind is None else kind()
            if str(data_type) == "TIMESTAMP WITH TIME ZONE":
                type_ = sqltypes.DateTime(timezone=True)
            columns.append({"name": name, "type": type_, "nullable": bool(nullable), "default": column_default,
                            "autoincrement": False})
        return columns


dialect = DuckDBDialect
