"""What a start leaves unimported: DuckDB's Python package (Tobio's dialect uses its native client module),
and the built-in commands' rarely-run helpers (forks, histories), imported when such a command runs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_startup import one_shot_starts

ROOT = Path(__file__).resolve().parent.parent

# `tobio-shell -c "agent ls"` in-process; prints whether DuckDB's package got imported, then the exit code.
NO_PACKAGE = """
import sys
sys.argv = ["tobio-shell", "-c", "agent ls"]
from shell.app import main
code = main()
print("duckdb" in sys.modules, "_duckdb" in sys.modules, code)
"""


@pytest.mark.slow
def test_a_one_shot_command_opens_duckdb_without_its_package(tmp_path: Path) -> None:
    """The `duckdb` package's `__init__` opens a default in-memory database that Tobio never uses."""
    for start, stdout in one_shot_starts(tmp_path, NO_PACKAGE):
        assert "tobio" in stdout, f"{start} start: {stdout}"
        assert stdout.strip().splitlines()[-1] == "False True 0", f"{start} start:\n{stdout}"


# A database written and read back through the dialect while `import _duckdb` fails, as with a DuckDB
# whose native module is named otherwise: the dialect falls back to the `duckdb` package.
FALLBACK = """
import sys
import duckdb  # the package, with the native module under whatever name it has
sys.modules["_duckdb"] = None  # from here `import _duckdb` raises ImportError
import sqlalchemy as sa
from tobio.db.duckdb_dialect import tobio_url
engine = sa.create_engine(tobio_url(sa.make_url("duckdb:///" + sys.argv[1])))
with engine.begin() as conn:
    conn.exec_driver_sql("CREATE TABLE t (i BIGINT, s VARCHAR)")
    conn.execute(sa.text("INSERT INTO t VALUES (:i, :s)"), {"i": 7, "s": "it's"})
with engine.connect() as conn:
    print(conn.execute(sa.text("SELECT i, s FROM t")).all(), engine.dialect.server_version_info[0] >= 1)
try:
    with engine.begin() as conn:
        conn.exec_driver_sql("SELECT * FROM missing")
except sa.exc.DBAPIError as exc:
    print(isinstance(exc.orig, duckdb.CatalogException))
engine.dispose()
"""


def test_the_dialect_falls_back_to_the_duckdb_package(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-c", FALLBACK, str(tmp_path / "f.duckdb")], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, env={**os.environ})
    assert done.returncode == 0, done.stderr
    rows, caught = done.stdout.strip().splitlines()
    assert rows == "[(7, \"it's\")] True"
    assert caught == "True"  # DuckDB's own error, wrapped by SQLAlchemy as SQLAlchemy's DBAPIError


# The built-in command groups, imported as a kernel's start does (register_builtins).
BUILTINS = """
import sys
from tobio.commands.builtin import agent, thread
print(sorted(m for m in ("tobio.branching.fork", "tobio.db.history") if m in sys.modules))
"""


def test_the_builtin_agent_and_thread_commands_leave_forks_and_histories_to_first_use() -> None:
    done = subprocess.run([sys.executable, "-c", BUILTINS], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
