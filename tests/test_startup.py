"""Start-up stays light: literals written instead of bound parameters must mean exactly the same data."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import warnings
from collections.abc import Callable, Iterator
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path

import duckdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tobio.db.literals import NotLiteral, literal, values_list

ROOT = Path(__file__).resolve().parent.parent

AWKWARD = [
    None, True, False, 0, -1, 2**62, -(2**63),
    0.1 + 0.2, 1e308, -0.0, 5e-324, 1 / 3, float("inf"), float("-inf"),
    "", "it's", "''", "back\\slash", "new\nline\ttab", "ünïcødé ✓ 🐸", "$1 ? :name %s", "--comment", "/* c */",
    datetime(2026, 11, 25, 0, 9, 11, 4382), datetime(1999, 12, 31, 23, 59, 59), date(2024, 2, 29), time(7, 5, 3, 120),
]


@pytest.mark.parametrize("value", AWKWARD, ids=repr)
def test_a_literal_reads_back_as_the_bound_value(value: object) -> None:
    conn = duckdb.connect()
    bound = conn.execute("SELECT ?", [value]).fetchone()[0]
    inlined = conn.execute(f"SELECT {literal(value)}").fetchone()[0]
    if isinstance(value, float) and math.isnan(value):
        assert math.isnan(inlined)
    else:
        assert inlined == bound and type(inlined) is type(bound)
    if isinstance(value, float):
        assert math.copysign(1, inlined) == math.copysign(1, value)


def test_nan_reads_back() -> None:
    assert math.isnan(duckdb.connect().execute(f"SELECT {literal(float('nan'))}").fetchone()[0])


@pytest.mark.parametrize("value", [b"bytes", [0.1, 0.2], "nul\x00inside", {"a": 1}, datetime(2026, 1, 2, tzinfo=timezone(timedelta(hours=2)))], ids=repr)
def test_values_without_a_literal_form_are_left_to_binding(value: object) -> None:
    with pytest.raises(NotLiteral):
        values_list([[1, value]])


def test_a_values_list_inserts_rows_intact() -> None:
    conn = duckdb.connect()
    conn.execute("CREATE TABLE t (i BIGINT, s VARCHAR, f DOUBLE, ts TIMESTAMP, ok BOOLEAN)")
    rows = [[1, "it's", 0.1, datetime(2026, 11, 25, 1, 2, 3, 456), True], [2, None, None, None, None]]
    conn.execute(f"INSERT INTO t VALUES {values_list(rows)}")
    assert [list(r) for r in conn.execute("SELECT * FROM t ORDER BY i").fetchall()] == rows


# Libraries the first prompt does not need, each 50-500 ms to import (bench/startup.py's budget): the data
# stack, model runtimes, and what only the web page, notebooks or the interactive prompt use.
HEAVY = ("pandas", "numpy", "pyarrow", "sqlalchemy.orm", "openai", "torch", "llama_cpp",
         "panel", "bokeh", "IPython", "ipykernel", "prompt_toolkit", "rich", "httpx", "jinja2")

# What only a chat, a notebook or a typo needs, each measured at 1-5 ms of a start's import: a person's fact
# rules and reply checks (tobio/people), the settings typo hint, html's entity table.
DEFERRED = ("tobio.people.extract", "tobio.people.check", "difflib", "html")

# Runs `tobio-shell -c "agent ls"` in-process; prints where pandas got imported (if it did) to stderr.
PROBE = f"""
import sys, traceback
HEAVY = {HEAVY + DEFERRED!r}

class ShowWhoImportsPandas:
    def find_spec(self, name, path=None, target=None):
        if name == "pandas":
            traceback.print_stack(limit=25)

sys.meta_path.insert(0, ShowWhoImportsPandas())
sys.argv = ["tobio-shell", "-c", "agent ls"]
from shell.app import main
code = main()
print(sorted(m for m in HEAVY if m in sys.modules), code)
"""


def one_shot_starts(tmp_path: Path, probe: str) -> Iterator[tuple[str, str]]:
    """`probe` run as a new user's first start on an empty data dir, then as a second start: (which, stdout)."""
    env = {**os.environ, "TOBIO_DATA_DIR": str(tmp_path), "TOBIO_LOAD_PLUGINS": ""}
    env.pop("TOBIO_CONFIG", None)
    env.pop("TOBIO_DATABASE", None)
    for start in ("first", "second"):
        done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"{start} start: {done.stderr}"
        yield start, done.stdout


@pytest.mark.slow
def test_a_one_shot_command_imports_nothing_heavy_on_a_new_or_existing_database(tmp_path: Path) -> None:
    """bench/startup.py's case, and a new user's very first start (which creates the database and spawns
    the agents of configs/: inserts and look-ups that must not bind parameters on DuckDB): pandas alone
    is ~0.5 s, more than the shell's own start-up."""
    for start, stdout in one_shot_starts(tmp_path, PROBE):
        assert "tobio" in stdout, f"{start} start: {stdout}"  # the persona agent from configs/ is listed
        assert stdout.strip().splitlines()[-1] == "[] 0", f"{start} start imported:\n{stdout}"
    assert (tmp_path / "tobio.duckdb").exists()  # the first start did create the database here


# The whole command tree as `help`, `--help` and TAB see it, in a started kernel; prints what got imported.
TREE_PROBE = f"""
import sys
from tobio.commands.complete import CommandCompleter, NoSources
from tobio.commands.tree import Command
from tobio.kernel import Kernel
with Kernel() as kernel:
    listing = kernel.run("help").to_plain()
    commands = [n for n in kernel.commands.walk() if isinstance(n, Command)]
    helps = [kernel.run(n.path + " --help").to_plain() for n in commands]
    completer = CommandCompleter(kernel.commands, NoSources())
    offered = [c.text for c in completer.complete("")] + [c.text for c in completer.complete("agent ls ")]
print(len(commands), all(helps), sorted(offered)[:3], listing.count(chr(10)))
print(sorted(m for m in {HEAVY!r} if m in sys.modules))
"""


@pytest.mark.slow
def test_the_command_tree_helps_and_completes_without_heavy_imports(tmp_path: Path) -> None:
    """Every command's `--help`, the `help` listing and completion need only the tree: none of them may pull
    in the web page's, the notebook's or the model runtimes' packages."""
    env = {**os.environ, "TOBIO_DATA_DIR": str(tmp_path), "TOBIO_LOAD_PLUGINS": ""}
    env.pop("TOBIO_CONFIG", None)
    env.pop("TOBIO_DATABASE", None)
    done = subprocess.run([sys.executable, "-c", TREE_PROBE], cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    summary, imported = done.stdout.strip().splitlines()[-2:]
    count, all_helped = summary.split(" ", 2)[:2]
    assert int(count) > 60 and all_helped == "True", summary
    assert imported == "[]", f"the command tree imported {imported}"


@pytest.mark.parametrize("value", ["it's", "back\\slash", "ünï %s $1", 42, -(2**63)], ids=repr)
def test_const_renders_the_same_value_on_every_backend(db_url: str, value: object) -> None:
    import sqlalchemy as sa

    from tobio.db.literals import const

    engine = sa.create_engine(db_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.select(const(value))).scalar() == value  # type: ignore[arg-type]
    finally:
        engine.dispose()


MIGRATE_NEW_DATABASE = """
import sys
import sqlalchemy as sa
from tobio.db.migrations import migrate
engine = sa.create_engine(sys.argv[1])
for _ in range(2):  # a new file, then the same file again
    with engine.begin() as conn:
        ran = migrate(conn)
    print(len(ran), sorted(m for m in ("pandas", "numpy", "torch") if m in sys.modules))
"""


def test_creating_a_new_database_imports_neither_pandas_nor_torch(tmp_path: Path) -> None:
    """The kernel's migrations on a new DuckDB file check and record without bound parameters."""
    url = f"duckdb:///{tmp_path / 'new.duckdb'}"
    done = subprocess.run([sys.executable, "-c", MIGRATE_NEW_DATABASE, url], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    first, second = done.stdout.strip().splitlines()
    assert first.split(" ", 1)[1] == "[]" and int(first.split()[0]) > 0, done.stdout
    assert second == "0 []", done.stdout  # nothing runs twice


def test_create_tables_and_column_names_agree_on_every_backend(db_url: str) -> None:
    import sqlalchemy as sa

    from tobio.db.migrations import add_column_if_missing, column_names, create_tables, table_exists

    meta = sa.MetaData()
    parent = sa.Table("t_parent", meta, sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=False))
    child = sa.Table("t_child", meta, sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=False),
                     sa.Column("parent_id", sa.BigInteger, sa.ForeignKey("t_parent.id")))
    engine = sa.create_engine(db_url)
    try:
        with engine.begin() as conn:
            create_tables(conn, [child, parent])  # referenced table first, whatever the order given
            create_tables(conn, [child, parent])  # and again: nothing to do
            assert table_exists(conn, "t_child") and table_exists(conn, "t_parent") and not table_exists(conn, "t_none")
            assert column_names(conn, "t_child") == {"id", "parent_id"}
            add_column_if_missing(conn, "t_child", sa.Column("note", sa.String(20)))
            add_column_if_missing(conn, "t_child", sa.Column("note", sa.String(20)))
            assert column_names(conn, "t_child") == {"id", "parent_id", "note"}
            assert column_names(conn, "it's") == set()
    finally:
        engine.dispose()


def test_duckdb_urls_with_and_without_options_connect_with_their_settings(tmp_path: Path) -> None:
    """Tobio's dialect connects a plain URL directly; a URL's options become DuckDB's settings."""
    from tobio.db.database import Database

    for url, threads in ((f"duckdb:///{tmp_path / 'plain.duckdb'}", None), (f"duckdb:///{tmp_path / 'opts.duckdb'}?threads=1", 1)):
        db = Database(url)
        try:
            db.open()
            setting, agent = db.call_sync(lambda conn: conn.exec_driver_sql(
                "SELECT current_setting('threads'), current_setting('custom_user_agent')").one())
            assert agent.startswith("tobio(sqlalchemy/")  # the user agent Tobio's dialect gives its connections
            if threads is not None:
                assert setting == threads
        finally:
            db.close()


def test_duckdb_runs_a_boot_without_worker_threads_and_gets_them_back(tmp_path: Path) -> None:
    """A boot's statements run on DuckDB's own thread only (open(boot=True)); `booted()` restores the setting
    it found, a URL's own `threads` option included, so a started kernel's queries run as DuckDB would."""
    import asyncio

    from tobio.db.database import Database

    def threads(db: Database) -> int:
        return int(db.call_sync(lambda conn: conn.exec_driver_sql("SELECT current_setting('threads')").scalar()))

    default = duckdb.connect().execute("SELECT current_setting('threads')").fetchone()[0]
    for url, expected in ((f"duckdb:///{tmp_path / 'plain.duckdb'}", default), (f"duckdb:///{tmp_path / 'opts.duckdb'}?threads=3", 3)):
        db = Database(url)
        try:
            db.open(boot=True)
            assert threads(db) == 1
            asyncio.run(db.booted())
            assert threads(db) == expected
        finally:
            db.close()


def test_a_started_kernel_has_duckdbs_worker_threads(tmp_path: Path) -> None:
    from tobio.kernel import Kernel

    default = duckdb.connect().execute("SELECT current_setting('threads')").fetchone()[0]
    with Kernel(None, database=f"duckdb:///{tmp_path / 'k.duckdb'}", spawn_agents=False) as kernel:
        setting = kernel.call(kernel.db.call(lambda conn: conn.exec_driver_sql("SELECT current_setting('threads')").scalar()))
    assert setting == default


def test_a_new_database_adds_no_column_it_just_created(tmp_path: Path) -> None:
    """On a new file every migration runs; the columns later ones add came with the tables, so nothing asks
    the catalog for them. Created in an earlier transaction, the table is asked again."""
    import sqlalchemy as sa

    from tobio.db.migrations import add_column_if_missing, column_names, create_tables

    meta = sa.MetaData()
    table = sa.Table("t_new", meta, sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=False),
                     sa.Column("later", sa.String(20)))
    engine = sa.create_engine(f"duckdb:///{tmp_path / 'cols.duckdb'}")
    statements: list[str] = []
    sa.event.listen(engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    try:
        with engine.begin() as conn:
            create_tables(conn, [table])
            statements.clear()
            add_column_if_missing(conn, "t_new", table.c.later)
            assert statements == []
        with engine.begin() as conn:
            add_column_if_missing(conn, "t_new", table.c.later)  # another transaction: asked, and already there
            assert any("duckdb_columns" in s for s in statements) and not any("ALTER" in s for s in statements)
            assert column_names(conn, "t_new") == {"id", "later"}
    finally:
        engine.dispose()


def test_the_boot_logs_its_lines_in_one_batch_and_in_order(tmp_path: Path) -> None:
    """Each "loaded module" line was a commit of its own; held during boot, they are one batch, ids in order."""
    import logging

    from tobio.kernel import Kernel

    with Kernel(None, database=f"duckdb:///{tmp_path / 'logs.duckdb'}") as kernel:
        kernel.call(kernel.flush())
        rows = kernel.run("sql SELECT id, logger, content FROM logs ORDER BY id;").rows
        contents = [r[2] for r in rows]
        assert contents[-1].startswith("kernel started on") and "loaded module database" in contents
        assert [r[0] for r in rows] == list(range(rows[0][0], rows[0][0] + len(rows)))  # consecutive, in order

        batches = kernel.writer.batches
        logging.getLogger("tobio.test").info("after the boot")  # written as it comes, no longer held
        kernel.call(kernel.flush())
        assert kernel.writer.batches > batches
        assert kernel.run("sql SELECT content FROM logs ORDER BY id DESC LIMIT 1;").rows[0][0] == "after the boot"


def test_a_failed_boot_still_logs_what_it_did(tmp_path: Path) -> None:
    """The lines held during a boot that fails half-way are written before the writer closes."""
    import duckdb

    from tobio.config.schema import KernelConfig
    from tobio.errors import ModuleError
    from tobio.kernel import Kernel
    from tobio.modules import Module

    class Explodes(Module):
        name = "explodes"

        async def module_init(self, kernel: Kernel) -> None:
            raise RuntimeError("boom")

    path = tmp_path / "failed.duckdb"
    kernel = Kernel(KernelConfig(modules=["explodes"]), database=f"duckdb:///{path}", spawn_agents=False)
    kernel.modules.register(Explodes)
    with pytest.raises(ModuleError, match="boom"):
        kernel.start()
    with duckdb.connect(str(path), read_only=True) as conn:
        contents = [r[0] for r in conn.execute("SELECT content FROM logs ORDER BY id").fetchall()]
    assert "loaded module database" in contents  # logged before the failure, held, written at teardown
    assert not any(c.startswith("kernel started") for c in contents)


# -- The DuckDB path: Tobio's own dialect (tobio/db/duckdb_dialect.py), not duckdb-engine's ----------------------
# Runs `tobio-shell -c "agent ls"` in-process; prints the modules of duckdb-engine's path it imported, and every
# database DuckDB was asked to open.
DUCKDB_PROBE = """
import sys
import _duckdb, duckdb
opened = []
connect = duckdb.connect
def recording(database=":memory:", *args, **kwargs):
    opened.append(str(database))
    return connect(database, *args, **kwargs)
duckdb.connect = _duckdb.connect = recording  # the package's, and the native module's the dialect calls
sys.argv = ["tobio-shell", "-c", "agent ls"]
from shell.app import main
code = main()
print(sorted(m for m in ("duckdb_engine", "sqlalchemy.dialects.postgresql") if m in sys.modules), code)
print(sorted(set(opened)))
"""


def test_a_one_shot_command_on_duckdb_loads_no_postgresql_dialect_and_opens_only_its_file(tmp_path: Path) -> None:
    """duckdb-engine imported SQLAlchemy's PostgreSQL dialect with every PostgreSQL driver's (~21 ms) and probed
    DuckDB on throwaway in-memory databases (~15 ms), each start; a new database and an existing one alike."""
    for start, stdout in one_shot_starts(tmp_path, DUCKDB_PROBE):
        imported, opened = stdout.strip().splitlines()[-2:]
        assert imported == "[] 0", f"{start} start imported: {imported}"
        assert opened == repr([str(tmp_path / "tobio.duckdb")]), f"{start} start opened: {opened}"


# --- Tobio's own start-up: what a one-shot command no longer imports or reads ----------------------------

# Each was imported by every start, for what only some commands, chats or scenes use: `regex` (~8 ms) to
# validate a scripted rule that `re` reads alike, pydantic's TypeAdapter for a name given outside a model
# (a first start still checks the names of the agents it spawns), the replay, scene and SillyTavern-chat
# code, the lore engine and book schema (until a prompt has books to scan), and the embedded models' host
# (validating kernel.yaml's `local` provider needs its settings only).
NOT_AT_START = ("regex", "pydantic.type_adapter", "tobio.replay", "tobio.scenes.schema", "tobio.persona.stchat",
                "tobio.lore.engine", "tobio.lore.schema", "tobio.providers.model_host")

# Also counts Tobio's reads of every installed package's metadata, which TOBIO_LOAD_PLUGINS="" makes needless.
LEAN_PROBE = f"""
import sys
import tobio.plugins
reads = []
real = tobio.plugins.entry_points
tobio.plugins.entry_points = lambda *a, **k: reads.append(1) or real(*a, **k)
sys.argv = ["tobio-shell", "-c", "agent ls"]
from shell.app import main
code = main()
print(sorted(m for m in {NOT_AT_START!r} if m in sys.modules), len(reads), code)
"""


@pytest.mark.slow
def test_a_one_shot_command_imports_only_what_a_start_needs(tmp_path: Path) -> None:
    expected = {"first": "['pydantic.type_adapter'] 0 0", "second": "[] 0 0"}
    for start, stdout in one_shot_starts(tmp_path, LEAN_PROBE):
        assert "echo" in stdout and "tobio" in stdout, f"{start} start: {stdout}"  # both agents listed
        assert stdout.strip().splitlines()[-1] == expected[start], f"{start} start:\n{stdout}"


def test_the_builtin_entry_points_are_pyprojects() -> None:
    """With TOBIO_LOAD_PLUGINS empty, Tobio's own modules and provider types come from plugins.BUILTIN, not
    the installed metadata: it must name exactly what pyproject.toml declares."""
    import tomllib

    from tobio.plugins import BUILTIN

    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"]
    assert {group: dict(BUILTIN[group]) for group in BUILTIN} == {group: declared[group] for group in BUILTIN}


def test_without_third_party_plugins_the_builtins_are_found_as_entry_points_would_be(monkeypatch: pytest.MonkeyPatch) -> None:
    from tobio.plugins import plugin_entry_points

    monkeypatch.setenv("TOBIO_LOAD_PLUGINS", "")
    lean = {(ep.name, ep.value) for group in ("tobio.modules", "tobio.providers") for ep in plugin_entry_points(group)}
    monkeypatch.setenv("TOBIO_LOAD_PLUGINS", "no-such-plugin")  # reads the installed metadata, keeps Tobio's own
    read = {(ep.name, ep.value) for group in ("tobio.modules", "tobio.providers") for ep in plugin_entry_points(group)}
    assert lean == read and ("persona", "tobio.persona.module:PersonaModule") in lean


PATTERN_PARTS = ["a", "b", "(", ")", "[", "]", "{", "}", "|", "*", "+", "?", ".", "^", "$", "\\", "-", ",", ":", "=", "!",
                 "<", ">", "0", "2", "&", "~", "#", "i", "x", "{2,3}", "{e<=1}", "(?i)", "(?P<n>", "(?P=n)", "\\1",
                 "[:alpha:]", "\\p{L}", "\\N{", "(?>", "++", "(?#", "(?|", "(?V1)", "(?a)(?u)", "\\d", "\\b", "[^", "(?:"]


@given(st.lists(st.sampled_from(PATTERN_PARTS), min_size=1, max_size=10).map("".join))
@settings(max_examples=400, deadline=None)
def test_checking_a_rule_refuses_what_compiling_it_refuses(pattern: str) -> None:
    """A scripted rule is validated without importing `regex` when `re` compiles it and it has nothing
    `regex` reads otherwise: the answer must be the one compiling it with `regex` gives, message included."""
    from tobio.patterns import PatternError, check_pattern, compile_pattern

    def outcome(check: Callable[[str, bool], object]) -> str | None:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)  # `re` on a possible nested set
                check(pattern, True)
        except PatternError as exc:
            return str(exc)
        return None

    assert outcome(check_pattern) == outcome(compile_pattern)


def test_a_start_reads_each_persona_file_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The persona agent reads its file when made; registering it with the persona registry reuses that read
    (it was parsed and validated twice per start), and a file edited between two starts is still a version."""
    import tobio.persona.agent as agent_module
    import tobio.persona.registry as registry_module
    from tobio.kernel import Kernel

    reads: list[str] = []
    real = registry_module.load_persona

    def counting(path: str | Path) -> object:
        reads.append(str(path))
        return real(path)

    monkeypatch.setattr(agent_module, "load_persona", counting)
    monkeypatch.setattr(registry_module, "load_persona", counting)
    url = f"duckdb:///{tmp_path / 'p.duckdb'}"
    for _ in range(2):
        reads.clear()
        with Kernel(None, database=url) as kernel:
            versions = kernel.run("persona history tobio").rows
        assert len(reads) == 1, reads
    assert len(versions) == 1  # the second start found the file unchanged: no new version


def test_a_module_that_fails_to_import_is_reported_once_the_database_is_open(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """The kernel imports its modules' classes while the database opens; a failure there is left to the
    discovery, which logs it and names no such module, as before."""
    from tobio.config.schema import KernelConfig
    from tobio.errors import ModuleError
    from tobio.kernel import Kernel
    from tobio.plugins import BUILTIN

    monkeypatch.setenv("TOBIO_LOAD_PLUGINS", "")
    monkeypatch.setitem(BUILTIN["tobio.modules"], "broken", "tobio.no_such_module:Broken")
    kernel = Kernel(KernelConfig(modules=["broken"]), database=f"duckdb:///{tmp_path / 'b.duckdb'}", spawn_agents=False)
    with pytest.raises(ModuleError, match="no module named 'broken'"):
        kernel.start()
    assert any("broken" in r.getMessage() and "failed to import" in r.getMessage() for r in caplog.records)


def test_a_start_reads_the_recorded_migrations_once_and_a_module_added_later_still_migrates(tmp_path: Path) -> None:
    """The kernel and each module with tables migrate in a transaction of their own: on a file one process
    owns, schema_migrations is read by the first and the set reused (it was read five times per start);
    a migration that runs makes the next one read it again, so a new module's tables are still made."""
    import sqlalchemy as sa

    from tobio.config.schema import KernelConfig
    from tobio.db.migrations import migrate
    from tobio.kernel import Kernel

    url = f"duckdb:///{tmp_path / 'm.duckdb'}"
    with Kernel(KernelConfig(modules=[]), database=url, spawn_agents=False):
        pass  # a new database: the kernel's migrations run and are recorded
    reads: list[str] = []

    def count(conn: object, cursor: object, statement: str, *rest: object) -> None:
        if "FROM schema_migrations" in statement:
            reads.append(statement)

    sa.event.listen(sa.engine.Engine, "before_cursor_execute", count)
    try:
        with Kernel(None, database=url, spawn_agents=False) as kernel:  # memory, people, lore, persona: new to it
            first = len(reads)
            reads.clear()
            kernel.run("agent ls")
        with Kernel(None, database=url, spawn_agents=False) as kernel:
            again = len(reads)
            names = {r[0] for r in kernel.run("sql SELECT name FROM schema_migrations").rows}

            def new_module(conn: sa.Connection) -> list[str]:
                def m001_extra(conn: sa.Connection) -> None:
                    conn.exec_driver_sql("CREATE TABLE extra_things (id BIGINT)")
                return migrate(conn, [m001_extra], prefix="extra.") + migrate(conn, [m001_extra], prefix="extra.")

            ran = kernel.call(kernel.db.call(new_module))
            extra = kernel.run("sql SELECT count(*) FROM schema_migrations WHERE name = 'extra.m001_extra'").rows[0][0]
    finally:
        sa.event.remove(sa.engine.Engine, "before_cursor_execute", count)
    assert first > 1  # each module that ran migrations made the next read again
    assert again == 1, reads
    assert {"m001_initial", "memory.m001_memory"} <= names
    assert ran == ["extra.m001_extra"] and extra == 1  # recorded once, though the set had been read before


def test_a_small_wal_is_left_at_close_and_replayed_a_large_one_folded(tmp_path: Path) -> None:
    """Closing folds DuckDB's WAL into the file only once it is WAL_KEPT_BYTES or more (folding cost a one-shot
    command ~9 ms of CPU for its start's log rows): what a close leaves is all there at the next open, read
    only or not, and what a busy session wrote is folded as before."""
    import sqlalchemy as sa

    from tobio.config.schema import KernelConfig
    from tobio.db.database import WAL_KEPT_BYTES
    from tobio.db.tables import LogRow
    from tobio.kernel import Kernel

    path = tmp_path / "w.duckdb"
    wal = Path(f"{path}.wal")
    url = f"duckdb:///{path}"
    with Kernel(KernelConfig(modules=[]), database=url, spawn_agents=False) as kernel:
        kernel.run("channel post talk hello before close")
    assert 0 < wal.stat().st_size < WAL_KEPT_BYTES  # left, not folded
    with duckdb.connect(str(path), read_only=True) as conn:
        assert conn.execute("SELECT count(*) FROM messages WHERE content = 'hello before close'").fetchone() == (1,)
    with Kernel(KernelConfig(modules=[]), database=url, spawn_agents=False) as kernel:
        assert kernel.run("sql SELECT count(*) FROM messages WHERE content = 'hello before close'").rows[0][0] == 1
        started = kernel.run("sql SELECT count(*) FROM logs WHERE content LIKE 'kernel started%'").rows[0][0]

        def busy(conn: sa.Connection) -> None:
            top = conn.execute(sa.select(sa.func.max(LogRow.c.id))).scalar() or 0
            conn.execute(sa.insert(LogRow), [{"id": top + i + 1, "level": "INFO", "logger": "test", "content": "x" * 200,
                                              "created_at": datetime(2026, 1, 1)} for i in range(2 * WAL_KEPT_BYTES // 200)])

        kernel.call(kernel.db.call(busy))
    assert started == 2
    assert not wal.exists()  # folded at close
    with duckdb.connect(str(path), read_only=True) as conn:
        assert conn.execute("SELECT count(*) FROM logs WHERE logger = 'test'").fetchone() == (2 * WAL_KEPT_BYTES // 200,)
        assert conn.execute("SELECT count(*) FROM messages WHERE content = 'hello before close'").fetchone() == (1,)
