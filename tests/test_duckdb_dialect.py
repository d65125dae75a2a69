"""Tobio's DuckDB dialect (tobio/db/duckdb_dialect.py): SQLAlchemy Core reads and writes DuckDB as it did
through duckdb-engine, on a real DuckDB file."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import duckdb
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from tobio.db.duckdb_dialect import KEYWORDS, DuckDBConnection, tobio_url
from tobio.db.migrations import table_exists

meta = sa.MetaData()
# Columns named by DuckDB keywords, which only quoting lets through.
Things = sa.Table(
    "things", meta,
    sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("order", sa.String(20)),
    sa.Column("left", sa.Integer, nullable=True),
    sa.Column("data", sa.JSON, nullable=True),
    sa.Column("at", sa.DateTime(), nullable=True),
    sa.Column("ok", sa.Boolean(), nullable=True),
    sa.Column("score", sa.Float, nullable=True),
)
Tags = sa.Table("tags", meta, sa.Column("thing_id", sa.BigInteger), sa.Column("tag", sa.String(20)))


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    made = sa.create_engine(tobio_url(sa.make_url(f"duckdb:///{tmp_path / 'd.duckdb'}")))
    with made.begin() as conn:
        meta.create_all(conn)  # checkfirst: the dialect's has_table
        meta.create_all(conn)
    yield made
    made.dispose()


def test_it_is_the_duckdb_dialect_and_its_connection_is_duckdbs(engine: Engine) -> None:
    assert engine.dialect.name == "duckdb"
    with engine.connect() as conn:
        raw = conn.connection.dbapi_connection
        assert isinstance(raw, DuckDBConnection) and isinstance(raw.duckdb, duckdb.DuckDBPyConnection)


def test_every_keyword_duckdb_reserves_is_quoted() -> None:
    """The list is DuckDB 1.5's; a newer DuckDB reserving more words must extend it."""
    with duckdb.connect() as probe:
        reserved = {k for (k,) in probe.execute(
            "SELECT keyword_name FROM duckdb_keywords() WHERE keyword_category IN ('reserved', 'type_function')").fetchall()}
    assert reserved <= KEYWORDS


def test_core_statements_round_trip(engine: Engine) -> None:
    at = datetime(2026, 12, 7, 13, 45, 1, 250)
    rows = [{"id": i, "order": f"o{i}", "left": i % 7, "data": {"i": i, "s": "it's"}, "at": at, "ok": i % 2 == 0, "score": i / 4}
            for i in range(2500)]  # more than one page of insertmanyvalues (1000 rows)
    with engine.begin() as conn:
        conn.execute(sa.insert(Things), rows)
        conn.execute(sa.insert(Tags), [{"thing_id": i, "tag": "even"} for i in range(0, 10, 2)])
    with engine.begin() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(Things)).scalar() == 2500
        got = conn.execute(sa.select(Things).where(Things.c.id == 3)).one()
        assert got._asdict() == rows[3]
        assert conn.execute(sa.select(Things.c.id).where(Things.c.id.in_([]))).all() == []  # empty IN
        assert conn.execute(sa.select(Things.c.id).where(Things.c.id.not_in([]), Things.c.id < 2)).scalars().all() == [0, 1]
        page = sa.select(Things.c.id).order_by(Things.c.id)
        assert conn.execute(page.limit(2).offset(5)).scalars().all() == [5, 6]
        assert conn.execute(page.offset(2498)).scalars().all() == [2498, 2499]  # OFFSET without LIMIT
        assert conn.execute(sa.select(sa.literal(7) / sa.literal(2))).scalar() == 3.5  # `/` divides exactly
        assert conn.execute(sa.select(Things.c.ok).where(Things.c.id == 1)).scalar() is False
        # UPDATE … FROM and DELETE … USING: statements that read another table
        conn.execute(sa.update(Things).where(Things.c.id == Tags.c.thing_id).values(order=Tags.c.tag))
        assert conn.execute(sa.select(Things.c.order).where(Things.c.id == 4)).scalar() == "even"
        conn.execute(sa.delete(Things).where(Things.c.id == Tags.c.thing_id, Tags.c.tag == "even"))
        assert conn.execute(sa.select(sa.func.count()).select_from(Things)).scalar() == 2495
        # an untyped result column that DuckDB says is JSON comes back parsed, as through duckdb-engine
        assert conn.execute(sa.text("SELECT data FROM things WHERE id = 3")).scalar() == {"i": 3, "s": "it's"}


def test_a_transaction_is_one_on_the_connection_itself(engine: Engine) -> None:
    """Statements run on the transaction SQLAlchemy began (DuckDB's own cursor() would open another
    connection); a rollback undoes them, and rolling back with nothing begun is not an error."""
    with engine.connect() as conn:
        with conn.begin() as tx:
            conn.execute(sa.insert(Things).values(id=1, order="a"))
            raw = conn.connection.dbapi_connection
            cursor = raw.cursor()
            cursor.execute("SELECT count(*) FROM things")
            assert cursor.fetchone() == (1,)
            cursor.close()  # closes nothing: the cursor is the connection
            tx.rollback()
        assert conn.execute(sa.select(sa.func.count()).select_from(Things)).scalar() == 0
        conn.rollback()
        conn.dialect.do_rollback(conn.connection)


def test_a_cached_statement_still_writes_each_constant(engine: Engine) -> None:
    """Statements are cached by shape; `const` values are written into the SQL, so each check asks its own."""
    with engine.connect() as conn:
        assert table_exists(conn, "things") and not table_exists(conn, "nothing") and table_exists(conn, "tags")


def test_reflection_sees_tables_views_and_columns(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE VIEW even_things AS SELECT id FROM things")
        inspector = sa.inspect(conn)
        assert inspector.get_table_names() == ["tags", "things"]
        assert inspector.get_view_names() == ["even_things"]
        assert inspector.has_table("things") and inspector.has_table("even_things") and not inspector.has_table("it's")
        columns = {c["name"]: c for c in inspector.get_columns("things")}
        assert list(columns) == ["id", "order", "left", "data", "at", "ok", "score"]
        assert isinstance(columns["id"]["type"], sa.BigInteger) and not columns["id"]["nullable"]
        assert isinstance(columns["at"]["type"], sa.DateTime) and isinstance(columns["data"]["type"], sa.JSON)
        assert isinstance(columns["order"]["type"], sa.String) and columns["left"]["nullable"]
        with pytest.raises(sa.exc.NoSuchTableError):
            inspector.get_columns("nothing")


def test_a_urls_options_are_duckdbs_settings(tmp_path: Path) -> None:
    made = sa.create_engine(tobio_url(sa.make_url(f"duckdb:///{tmp_path / 'o.duckdb'}?threads=3&memory_limit=1GB")))
    try:
        with made.connect() as conn:
            threads, limit = conn.exec_driver_sql("SELECT current_setting('threads'), current_setting('memory_limit')").one()
        assert threads == 3 and limit.replace(" ", "").startswith(("1.0GiB", "953.6MiB", "1GB", "1.0GB"))
    finally:
        made.dispose()


def test_an_error_is_sqlalchemys_with_duckdbs_inside(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(sa.insert(Things).values(id=1, order="a"))
    with pytest.raises(sa.exc.IntegrityError) as caught, engine.begin() as conn:
        conn.execute(sa.insert(Things).values(id=1, order="b"))
    assert isinstance(caught.value.orig, duckdb.ConstraintException)


def test_memory_database_is_one_per_engine(tmp_path: Path) -> None:
    """`:memory:` is one database shared by the engine's connections (one per thread would be many databases)."""
    made = sa.create_engine(tobio_url(sa.make_url("duckdb:///:memory:")))
    try:
        with made.begin() as conn:
            meta.create_all(conn)
        with made.connect() as conn:
            assert table_exists(conn, "things")
    finally:
        made.dispose()
