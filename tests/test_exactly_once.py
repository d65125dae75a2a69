"""Exactly once across crashes: every stored message gets one reply, whatever moment kill -9 picks.

Delivery is at least once (pushes are durable before delivery; inboxes are rebuilt from unhandled
pushes on start) and handling is idempotent (the handled mark commits with the reply), so each
message is answered exactly once. The crash loop checks that from outside, with a real SIGKILL.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from shell.commands import ShellCommands
from tobio.config.schema import KernelConfig
from tobio.kernel import Kernel

from conftest import write
from helpers import wait_until

SEED = 15
KILLS = 4

# The child: a kernel with one answering agent, posting numbered lines until it is killed.
WORKER = textwrap.dedent(
    """
    import json, sys, time
    from tobio.config.schema import KernelConfig
    from tobio.kernel import Kernel

    url, config_json, first, pause = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    kernel = Kernel(KernelConfig(**json.loads(config_json)), database=url).start()
    print("ready", flush=True)
    i = first
    while True:
        message = kernel.post_sync("talk", f"user line {i}", role="user")
        print(message.id, flush=True)   # acknowledged: durable and delivered
        i += 1
        if pause:
            time.sleep(pause)
    """
)
SCRIPTED = "name: echo\ntype: scripted\nchannels: [talk]\nreplies: ['heard: {text}']\ndelay_s: 0.004\n"
PERSONA = "name: echo\ntype: persona\npersona: p.yaml\nchannels: [talk]\nstream: true\ncontext_messages: 4\n"


def kernel_config(kind: str, tmp_path: Path, token_delay_s: float = 0.002, latency_s: float = 0.0) -> dict[str, Any]:
    """The same kernel in the child and after the restart: the agent comes from its file, then from the database."""
    if kind == "scripted":
        agent = write(tmp_path / "echo.yaml", SCRIPTED)
        return {"modules": ["scripted"], "agents": [str(agent)], "log_level": "WARNING"}
    write(tmp_path / "p.yaml", "name: Echo\ndescription: Repeats what it hears.\n")
    agent = write(tmp_path / "echo.yaml", PERSONA)
    return {
        "modules": ["scripted", "models", "persona"], "agents": [str(agent)], "log_level": "WARNING",
        "providers": {"s": {"type": "scripted", "replies": ["You said: {last}"], "token_delay_s": token_delay_s,
                            "latency_s": latency_s}},
        "models": {"chat-default": {"provider": "s", "model": "x"}},
    }


def run_child(url: str, config: dict[str, Any], first: int, tmp_path: Path, kill_after: int | None,
              pause: float = 0.0) -> list[int]:
    """Start a child on `url`; kill -9 it after `kill_after` acknowledged posts. Returns the acked ids."""
    import json

    script = write(tmp_path / "worker.py", WORKER)
    proc = subprocess.Popen(
        [sys.executable, str(script), url, json.dumps(config), str(first), str(pause)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ},
    )
    acked: list[int] = []
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready", proc.stderr.read() if proc.stderr else ""
        while kill_after is None or len(acked) < kill_after:
            line = proc.stdout.readline()
            assert line, proc.stderr.read() if proc.stderr else "worker died"
            acked.append(int(line))
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    return acked


def start(config: dict[str, Any] | KernelConfig, url: str) -> Kernel:
    """A kernel with the shell's commands too (`wait` is the shell's)."""
    kernel = Kernel(config if isinstance(config, KernelConfig) else KernelConfig(**config), database=url).start()
    ShellCommands().register(kernel.commands)
    return kernel


def drain(kernel: Kernel, timeout: float = 60.0) -> None:
    """Until the agents have handled everything the database says was pushed to them."""
    wait_until(lambda: kernel.run("wait --quiet 0.2 --timeout 30") is not None and unhandled(kernel) == 0, timeout=timeout)


def unhandled(kernel: Kernel) -> int:
    return sum(int(row[-1]) for row in kernel.run("agent ls").rows)


def backlog(url: str) -> int:
    """Unhandled pushes in a database no kernel has open (read the way a restart reads them)."""
    import sqlalchemy as sa

    from tobio.agents.handling import unhandled_counts

    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return sum(unhandled_counts(conn).values())
    finally:
        engine.dispose()


def replies_per_message(kernel: Kernel) -> dict[int, int]:
    """For every message posted by the child: how many replies name it."""
    kernel.call(kernel.writer.flush())
    rows = kernel.run(
        "sql --limit=1000000 SELECT m.id, (SELECT count(*) FROM messages r WHERE r.reply_to = m.id) AS n FROM messages m "
        "WHERE m.channel = 'talk' AND m.agent_id IS NULL ORDER BY m.id"
    ).rows
    return {int(mid): int(n) for mid, n in rows}


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["scripted", "persona"])
def test_crash_loop_answers_every_stored_message_exactly_once(kind: str, duckdb_url: str, tmp_path: Path) -> None:
    rng = random.Random(SEED)
    config = kernel_config(kind, tmp_path)
    acked: list[int] = []
    owed = []  # unhandled pushes each kill left behind: the next start must give them back
    for _ in range(KILLS):
        acked += run_child(duckdb_url, config, len(acked), tmp_path, kill_after=rng.randint(5, 60))
        owed.append(backlog(duckdb_url))
    print(f"{kind}: {len(acked)} acknowledged, unhandled after each kill: {owed}")
    assert sum(owed) > 0  # the kills did land while messages were waiting to be handled
    kernel = start(config, duckdb_url)
    try:
        drain(kernel)
        counts = replies_per_message(kernel)
        assert set(acked) <= set(counts)  # storing was durable already; handling is what is tested
        lost = [m for m, n in counts.items() if n == 0]
        doubled = [m for m, n in counts.items() if n > 1]
        assert (lost, doubled) == ([], []), f"{len(counts)} stored, {len(lost)} unanswered, {len(doubled)} answered twice"
        assert len(counts) >= 4 * 5
        if kind == "scripted":  # the replies themselves, not only their links: each line heard once
            heard = [r[0] for r in kernel.run("sql --limit=1000000 SELECT content FROM messages WHERE content LIKE 'heard: %'").rows]
            assert len(heard) == len(set(heard)) == len(counts)
        else:  # runs cut by a kill were marked expired at the next start, none left hanging
            statuses = dict(kernel.run("sql SELECT status, count(*) FROM runs GROUP BY status").rows)
            assert set(statuses) <= {"completed", "expired"}, kernel.run("sql SELECT * FROM runs WHERE status <> 'completed'").rows
            assert statuses["completed"] >= len(counts)  # a run whose reply a kill cut off completed too
            pairs = kernel.run("sql --limit=1000000 SELECT r.content, m.content FROM messages r JOIN messages m "
                               "ON m.id = r.reply_to").rows
            assert len(pairs) == len(counts) and all(reply == f"You said: {text}" for reply, text in pairs)
    finally:
        kernel.close()


@pytest.mark.slow
def test_restart_in_the_middle_of_a_persona_run_expires_it_and_answers_once(duckdb_url: str, tmp_path: Path) -> None:
    # A model that takes 60 s to answer: the child is killed while the run is in progress.
    slow = kernel_config("persona", tmp_path, latency_s=60.0)
    worker = write(tmp_path / "slow.py", textwrap.dedent(
        """
        import json, sys, time
        from tobio.config.schema import KernelConfig
        from tobio.kernel import Kernel
        from tobio.models.module import runs_of

        kernel = Kernel(KernelConfig(**json.loads(sys.argv[2])), database=sys.argv[1]).start()
        kernel.post_sync("talk", "are you there?", role="user")
        echo = kernel.agents.live["echo"]
        while not runs_of(kernel).live:
            time.sleep(0.01)
        kernel.call(kernel.writer.flush())  # the run's start is durable: it is in progress on disk
        print("running", flush=True)
        time.sleep(120)
        """
    ))
    import json

    proc = subprocess.Popen([sys.executable, str(worker), duckdb_url, json.dumps(slow)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "running"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()

    kernel = start(kernel_config("persona", tmp_path), duckdb_url)
    try:
        drain(kernel)
        runs = kernel.run("sql SELECT status, message_id FROM runs ORDER BY id").rows
        assert [r[0] for r in runs] == ["expired", "completed"]
        counts = replies_per_message(kernel)
        assert list(counts.values()) == [1]
        reply = kernel.run("sql SELECT content, reply_to FROM messages WHERE agent_id IS NOT NULL").rows
        assert reply == [("You said: are you there?", next(iter(counts)))]
    finally:
        kernel.close()


AGENT = "name: {name}\ntype: scripted\nchannels: [talk]\nreplies: ['{name}: {{text}}']\n{extra}"


def test_inbox_is_rebuilt_in_order_after_a_restart(db_url: str, tmp_path: Path) -> None:
    path = write(tmp_path / "echo.yaml", AGENT.format(name="echo", extra=""))
    kernel = start(KernelConfig(modules=["scripted"]), db_url)
    try:
        kernel.run(f"agent spawn {path}")
        kernel.run("agent pause echo")
        for i in range(5):
            kernel.run(f"channel post talk line {i}")
        assert [r[-1] for r in kernel.run("agent ls").rows] == [5]
    finally:
        kernel.close()
    kernel = start(KernelConfig(modules=["scripted"]), db_url)
    try:
        assert [r[-1] for r in kernel.run("agent ls").rows] == [5]  # still paused, still owed its messages
        kernel.run("agent resume echo")
        kernel.run("wait --quiet 0.1")
        said = [r[0] for r in kernel.run("sql SELECT content FROM messages WHERE agent_id IS NOT NULL ORDER BY id").rows]
        assert said == [f"echo: line {i}" for i in range(5)]
        assert [r[-1] for r in kernel.run("agent ls").rows] == [0]
    finally:
        kernel.close()


def test_messages_an_agent_chooses_not_to_answer_are_marked_seen(db_url: str, tmp_path: Path) -> None:
    kernel = start(KernelConfig(modules=["scripted"]), db_url)
    try:
        kernel.run(f"agent spawn {write(tmp_path / 'picky.yaml', AGENT.format(name='picky', extra='reply_to: [ann]'))}")
        kernel.run(f"agent spawn {write(tmp_path / 'deaf.yaml', AGENT.format(name='deaf', extra='ignore: [ann, picky]'))}")
        ann = kernel.call(kernel.agents.ensure_user("ann", channels=("talk",)))
        kernel.call(ann.say("talk", "hello from ann"))
        kernel.run("channel post talk hello from nobody")
        kernel.run("wait --quiet 0.1")
        assert {r[0]: r[-1] for r in kernel.run("agent ls").rows} == {"picky": 0, "deaf": 0, "ann": 0}
        # Both agents saw both messages; what they did not answer is "seen, not answered" in the record.
        outcome = kernel.run(
            "sql SELECT a.name, m.content, CASE WHEN EXISTS (SELECT 1 FROM messages r WHERE r.reply_to = m.id "
            "AND r.agent_id = a.id) THEN 'answered' ELSE 'seen' END FROM threads t JOIN agents a ON a.id = t.agent_id "
            "JOIN pushes p ON p.thread_id = t.id JOIN messages m ON m.id = p.message_id JOIN handled h ON h.thread_id = t.id "
            "WHERE m.content LIKE 'hello%' AND p.message_id <= h.message_id AND a.name IN ('picky', 'deaf') "
            "ORDER BY a.name, m.id"
        ).rows
        assert [tuple(r) for r in outcome] == [
            ("deaf", "hello from ann", "seen"), ("deaf", "hello from nobody", "answered"),
            ("picky", "hello from ann", "answered"), ("picky", "hello from nobody", "seen"),
        ]
    finally:
        kernel.close()


def test_wait_counts_a_message_in_hand_as_busy(duckdb_url: str, tmp_path: Path) -> None:
    # The agent has taken the message from its inbox and not answered yet (like a persona whose model is
    # still loading): inbox empty, no run, nothing said. `wait` must still wait for the reply.
    slow = write(tmp_path / "slow.yaml", AGENT.format(name="slow", extra="delay_s: 1.0"))
    kernel = start(KernelConfig(modules=["scripted"]), duckdb_url)
    try:
        kernel.run(f"agent spawn {slow}")
        kernel.run("channel post talk anyone?")
        kernel.run("wait --quiet 0.1 --timeout 10")
        assert kernel.run("sql SELECT count(*) FROM messages WHERE content = 'slow: anyone?'").rows[0][0] == 1
    finally:
        kernel.close()


def test_wait_counts_loading_models_as_busy(duckdb_url: str) -> None:
    import threading

    from tobio.progress import loading

    kernel = start(KernelConfig(modules=["scripted"]), duckdb_url)
    loaded = threading.Event()

    def load() -> None:
        with loading("weights that take a second"):
            time.sleep(1.0)
        loaded.set()

    try:
        threading.Thread(target=load, daemon=True).start()
        time.sleep(0.05)
        kernel.run("wait --quiet 0.1 --timeout 10")
        assert loaded.is_set()
    finally:
        kernel.close()


def test_upgrading_a_database_counts_its_history_as_handled(db_url: str, tmp_path: Path) -> None:
    """A database from before handling was recorded: its agents must not answer their whole past again."""
    import sqlalchemy as sa

    path = write(tmp_path / "echo.yaml", AGENT.format(name="echo", extra=""))
    kernel = start(KernelConfig(modules=["scripted"]), db_url)
    try:
        kernel.run(f"agent spawn {path}")
        for i in range(3):
            kernel.run(f"channel post talk line {i}")
        kernel.run("wait --quiet 0.1")
    finally:
        kernel.close()
    engine = sa.create_engine(db_url)  # back to the shape before m003: no cursors at all
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE handled")
        conn.exec_driver_sql("DELETE FROM schema_migrations WHERE name = 'm003_handling'")
    engine.dispose()
    kernel = start(KernelConfig(modules=["scripted"]), db_url)
    try:
        kernel.run("wait --quiet 0.2")
        assert [r[-1] for r in kernel.run("agent ls").rows] == [0]
        assert kernel.run("sql SELECT count(*) FROM messages WHERE agent_id IS NOT NULL").rows[0][0] == 3
    finally:
        kernel.close()
