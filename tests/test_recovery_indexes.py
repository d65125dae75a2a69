"""Lookups by name and channel after kill -9: DuckDB 1.5.6 checkpoints a secondary index without the rows
of a crashed WAL when the process that recovers the file closes it without touching that index.

The sequence, with a real SIGKILL: a kernel spawns agents, subscribes and unsubscribes, pauses and posts
(agents and threads rows inserted and updated) and is killed; another process opens the file, reads
something else and closes it; then every lookup through `agents.name`, `threads.channel`,
`threads.agent_id` and `messages.channel` must find what a scan finds, and a restarted kernel must be
able to update those rows. With the secondary indexes of tables.py back on DuckDB, it fails.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import make_kernel, write

pytestmark = pytest.mark.slow

duckdb = pytest.importorskip("duckdb")

KILLS = 3
AGENTS = 6
WORKER = textwrap.dedent(
    """
    import random, sys
    from tobio.config.schema import KernelConfig
    from tobio.kernel import Kernel

    url, seed, files = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    rng = random.Random(seed)
    kernel = Kernel(KernelConfig(modules=["scripted"], agents=files, log_level="ERROR"), database=url).start()
    agents = list(kernel.agents.live.values())
    print("ready", flush=True)
    i = 0
    while True:
        i += 1
        message = kernel.post_sync(f"c{rng.randrange(4)}", f"line {seed}.{i}", role="user")
        print(message.id, flush=True)
        agent, channel = rng.choice(agents), f"c{rng.randrange(4)}"
        if i % 3 == 0:  # a thread opened or closed: threads rows inserted and updated
            if kernel.transport.subscription(agent.id, channel) is None:
                kernel.call(kernel.transport.subscribe(agent, channel))
            else:
                kernel.call(kernel.transport.unsubscribe(agent.id, channel))
        elif i % 3 == 1:  # agents rows updated
            kernel.run(f"agent pause {agent.name}")
            kernel.run(f"agent resume {agent.name}")
    """
)
AGENT = "name: a{n}\ntype: scripted\nchannels: [c{n4}]\nreplies: ['a{n}: {{text}}']\nignore: [{names}]\n"


def crash(url: str, script: Path, files: list[str], seed: int, after: int) -> None:
    proc = subprocess.Popen([sys.executable, str(script), url, str(seed), *files], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ})
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready", proc.stderr.read() if proc.stderr else ""
        for _ in range(after):
            assert proc.stdout.readline(), proc.stderr.read() if proc.stderr else "worker died"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()


def open_and_close(path: Path) -> None:
    """What `tobio -c`, a test helper or the DuckDB CLI does: recover the file, read, close (checkpoint)."""
    con = duckdb.connect(str(path))
    con.execute("SELECT count(*) FROM pushes").fetchall()
    con.close()


def wrong_lookups(path: Path) -> list[str]:
    """Lookups an index could answer, compared with the same filter on a computed value (a scan)."""
    wrong = []
    con = duckdb.connect(str(path))
    try:
        for agent_id, name in con.execute("SELECT id, name FROM agents").fetchall():
            got = con.execute("SELECT id FROM agents WHERE name = ?", [name]).fetchall()
            if got != [(agent_id,)]:
                wrong.append(f"agents.name = {name!r}: {got}")
        for table, col in (("threads", "channel"), ("messages", "channel"), ("threads", "agent_id")):
            for (value,) in con.execute(f"SELECT DISTINCT {col} FROM {table} WHERE {col} IS NOT NULL").fetchall():
                scan = f"{col} || '' = ?" if isinstance(value, str) else f"{col} + 0 = ?"
                by_index = con.execute(f"SELECT count(*) FROM {table} WHERE {col} = ?", [value]).fetchone()
                by_scan = con.execute(f"SELECT count(*) FROM {table} WHERE {scan}", [value]).fetchone()
                if by_index != by_scan:
                    wrong.append(f"{table}.{col} = {value!r}: {by_index} vs scan {by_scan}")
    finally:
        con.close()
    return wrong


def test_lookups_survive_kill_9_and_a_foreign_close(tmp_path: Path) -> None:
    path = tmp_path / "tobio.duckdb"
    url = f"duckdb:///{path}"
    names = ", ".join(f"a{n}" for n in range(AGENTS))
    files = [str(write(tmp_path / f"a{n}.yaml", AGENT.format(n=n, n4=n % 4, names=names))) for n in range(AGENTS)]
    script = write(tmp_path / "worker.py", WORKER)
    rng = random.Random(23)
    for k in range(KILLS):
        crash(url, script, files, seed=k, after=rng.randint(15, 40))
        assert Path(f"{path}.wal").exists()  # the kill left rows to replay
        open_and_close(path)
        assert wrong_lookups(path) == []

    con = duckdb.connect(str(path))
    try:
        assert con.execute("SELECT index_name FROM duckdb_indexes()").fetchall() == []
    finally:
        con.close()
    kernel = make_kernel(url, agents=files)  # and the rows can still be updated (no fatal index error)
    try:
        kernel.run("agent pause a0")
        kernel.run("agent resume a0")
        agent = kernel.agents.live["a1"]
        for channel in ("c0", "c1", "c2", "c3"):
            if kernel.transport.subscription(agent.id, channel) is not None:
                kernel.call(kernel.transport.unsubscribe(agent.id, channel))
        kernel.post_sync("c1", "after the crashes", role="user")
    finally:
        kernel.close()
    assert wrong_lookups(path) == []
