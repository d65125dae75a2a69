"""Crashes and contention: acknowledged messages survive kill -9; a held DuckDB file is reported clearly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tobio.errors import DatabaseLockedError

from conftest import make_kernel, write

pytestmark = pytest.mark.slow

WORKER = textwrap.dedent(
    """
    import sys
    from tobio.config.schema import KernelConfig
    from tobio.kernel import Kernel

    url, ping, pong = sys.argv[1:4]
    kernel = Kernel(KernelConfig(modules=["scripted"]), database=url).start()
    kernel.run(f"agent spawn {ping}")
    kernel.run(f"agent spawn {pong}")
    print("ready", flush=True)
    i = 0
    while True:
        message = kernel.post_sync("talk", f"user line {i}")
        print(message.id, flush=True)   # acknowledged: durable and delivered
        i += 1
    """
)
AGENT = "name: {name}\ntype: scripted\nchannels: [talk]\nreplies: ['{name} heard: {{text}}']\nignore: [ping, pong]\n"


def test_kill_9_loses_no_acknowledged_message_and_leaves_no_half_rows(duckdb_url: str, tmp_path: Path) -> None:
    ping = write(tmp_path / "ping.yaml", AGENT.format(name="ping"))
    pong = write(tmp_path / "pong.yaml", AGENT.format(name="pong"))
    script = write(tmp_path / "worker.py", WORKER)
    proc = subprocess.Popen(
        [sys.executable, str(script), duckdb_url, str(ping), str(pong)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ},
    )
    acked: list[int] = []
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready", proc.stderr.read() if proc.stderr else ""
        while len(acked) < 400:
            line = proc.stdout.readline()
            assert line, proc.stderr.read() if proc.stderr else "worker died"
            acked.append(int(line))
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()

    kernel = make_kernel(duckdb_url)
    try:
        stored = {r[0] for r in kernel.run("sql --limit=1000000 SELECT id FROM messages").rows}
        assert set(acked) <= stored
        # Every stored message has its pushes (one per subscriber): no message without its deliveries.
        orphans = kernel.run(
            "sql SELECT m.id, count(p.thread_id) AS n FROM messages m LEFT JOIN pushes p ON p.message_id = m.id "
            "WHERE m.channel = 'talk' GROUP BY m.id HAVING count(p.thread_id) <> 2"
        ).rows
        assert orphans == []
        # The agents replied too, and are back after the crash with their threads.
        assert sorted(kernel.agents.live) == ["ping", "pong"]
        assert kernel.run("sql SELECT count(*) FROM messages WHERE content LIKE 'ping heard:%'").rows[0][0] > 0
    finally:
        kernel.close()


HOLDER = textwrap.dedent(
    """
    import sys, time
    from tobio.config.schema import KernelConfig
    from tobio.kernel import Kernel
    kernel = Kernel(KernelConfig(), database=sys.argv[1]).start()
    print("ready", flush=True)
    time.sleep(120)
    """
)


def test_duckdb_file_held_by_another_process_is_reported(duckdb_url: str, tmp_path: Path) -> None:
    script = write(tmp_path / "holder.py", HOLDER)
    proc = subprocess.Popen([sys.executable, str(script), duckdb_url], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        with pytest.raises(DatabaseLockedError) as err:
            make_kernel(duckdb_url)
        message = str(err.value)
        assert f"process {proc.pid}" in message
        assert "one writer per file" in message
        assert "\n" not in message
    finally:
        proc.kill()
        proc.wait()
