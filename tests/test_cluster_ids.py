"""Kernels sharing a database: ids from PostgreSQL sequences never collide; a file stays one kernel's."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import sqlalchemy as sa

from tobio.errors import DatabaseLockedError

from conftest import _fresh_postgres, _postgres_url, make_kernel, write

pytestmark = pytest.mark.slow

POSTER = textwrap.dedent(
    """
    import sys, time
    from tobio.config.schema import KernelConfig
    from tobio.kernel import Kernel

    url, start_at, count = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
    time.sleep(max(0.0, start_at - time.time()))  # both processes open the fresh database at the same moment
    kernel = Kernel(KernelConfig(modules=["scripted"]), database=url).start()
    for i in range(count):
        kernel.post_sync("talk", f"line {i}")
        if i % 100 == 0:
            kernel.db.next_ids("messages", 1500)  # a bulk reservation larger than a block, in between
    kernel.close()
    print("done", flush=True)
    """
)

HOLDER = textwrap.dedent(
    """
    import sys, time
    from tobio.config.schema import KernelConfig
    from tobio.kernel import Kernel
    kernel = Kernel(KernelConfig(), database=sys.argv[1]).start()
    kernel.post_sync("talk", "held")
    kernel.run("sql SELECT 1")
    print("ready", flush=True)
    time.sleep(120)
    """
)


def test_kernels_starting_at_once_on_postgresql_never_share_an_id(tmp_path: Path) -> None:
    import time

    for url in _fresh_postgres(_postgres_url()):
        script = write(tmp_path / "poster.py", POSTER)
        start_at = str(time.time() + 3)
        procs = [subprocess.Popen([sys.executable, str(script), url, start_at, "400"], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for _ in range(2)]
        for proc in procs:
            out, err = proc.communicate(timeout=240)
            assert proc.returncode == 0, err[-2000:]
            assert out.strip() == "done"
        engine = sa.create_engine(url)
        with engine.connect() as conn:
            total, distinct = conn.exec_driver_sql("SELECT count(*), count(DISTINCT id) FROM messages").one()
            migrations = conn.exec_driver_sql("SELECT count(*), count(DISTINCT name) FROM schema_migrations").one()
            nextval = conn.exec_driver_sql("SELECT nextval('tobio_ids_messages')").scalar_one()
            top = conn.exec_driver_sql("SELECT max(id) FROM messages").scalar_one()
        engine.dispose()
        assert total == distinct == 800
        assert migrations[0] == migrations[1]  # each migration ran once, though both kernels migrated
        assert nextval > top


def test_sequences_start_after_the_ids_already_there(tmp_path: Path) -> None:
    """A database written before the sequences existed: new ids continue after its largest."""
    for url in _fresh_postgres(_postgres_url()):
        kernel = make_kernel(url)
        try:
            first = kernel.post_sync("talk", "before").id
        finally:
            kernel.close()
        engine = sa.create_engine(url)
        with engine.begin() as conn:  # as if written by a kernel of before m008, far ahead
            conn.exec_driver_sql("UPDATE messages SET id = 50000 WHERE id = %(i)s", {"i": first})
            conn.exec_driver_sql("DROP SEQUENCE tobio_ids_messages")
            conn.exec_driver_sql("DELETE FROM schema_migrations WHERE name = 'm008_id_sequences'")
        engine.dispose()
        kernel = make_kernel(url)
        try:
            assert kernel.post_sync("talk", "after").id == 50001
        finally:
            kernel.close()


@pytest.mark.parametrize("backend", ["sqlite", "duckdb"])
def test_second_kernel_on_a_file_says_so_in_one_line_and_writes_nothing(backend: str, tmp_path: Path) -> None:
    path = tmp_path / f"tobio.{backend}"
    url = f"{backend}:///{path}"
    script = write(tmp_path / "holder.py", HOLDER)
    proc = subprocess.Popen([sys.executable, str(script), url], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file() and p.name.startswith("tobio")}
        with pytest.raises(DatabaseLockedError) as err:
            make_kernel(url)
        message = str(err.value)
        assert f"process {proc.pid}" in message and "\n" not in message
        assert "PostgreSQL" in message if backend == "sqlite" else "one writer per file" in message
        after = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file() and p.name.startswith("tobio")}
        assert after == before
        cli = subprocess.run([sys.executable, "-m", "shell.app", "--database", url, "-c", "agent ls"],
                             capture_output=True, text=True, timeout=120)
        assert cli.returncode != 0
        lines = [line for line in (cli.stderr + cli.stdout).splitlines() if line.strip()]
        assert len(lines) == 1 and "open" in lines[0], lines
    finally:
        proc.kill()
        proc.wait()
    kernel = make_kernel(url)  # the holder died (kill -9): the file is free again
    try:
        assert kernel.run("sql SELECT count(*) FROM messages").rows[0][0] == 1
    finally:
        kernel.close()
