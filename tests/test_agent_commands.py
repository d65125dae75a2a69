"""Agents running commands on their own plumbing: whitelists, recorded steps, scoped read-only SQL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tobio.config.schema import KernelConfig
from tobio.errors import CommandError
from tobio.kernel import Kernel

from conftest import write
from helpers import wait_until


def start(url: str, replies: list[str]) -> Kernel:
    config = KernelConfig(modules=["scripted", "models", "persona"],
                          providers={"s": {"type": "scripted", "replies": replies}},
                          models={"chat-default": {"provider": "s", "model": "x"}})
    return Kernel(config, database=url).start()


def spawn(kernel: Kernel, tmp_path: Path, name: str, commands: str) -> None:
    write(tmp_path / "p.yaml", "name: Probe\ndescription: Curious about itself.\n")
    text = f"name: {name}\ntype: persona\npersona: p.yaml\nchannels: [room]\ncommands: {commands}\nstream: false\n"
    kernel.run(f"agent spawn {write(tmp_path / (name + '.yaml'), text)}")


def last_reply(kernel: Kernel, name: str) -> str:
    kernel.call(kernel.writer.flush())
    rows = kernel.run(f"sql SELECT m.content FROM messages m JOIN agents a ON a.id = m.agent_id WHERE a.name = '{name}' ORDER BY m.id").rows
    return rows[-1][0] if rows else ""


def test_agent_runs_mod_ls_and_answers_with_the_result(duckdb_url: str, tmp_path: Path) -> None:
    # The scripted model first asks for the command (text protocol), then answers from its output.
    kernel = start(duckdb_url, ["/cmd mod ls", "Here is what I found: {last}"])
    try:
        spawn(kernel, tmp_path, "probe", "['mod ls']")
        kernel.run("channel post room which modules are loaded?")
        wait_until(lambda: kernel.agents.live["probe"].turns == 1)
        reply = last_reply(kernel, "probe")
        assert "persona" in reply and "models" in reply and "database" in reply
        steps = kernel.run("sql SELECT s.name, s.params, s.result, m.content FROM steps s JOIN messages m ON m.id = s.message_id "
                           "WHERE s.kind = 'command'").rows
        assert len(steps) == 1
        name, params, result, trigger = steps[0]
        assert name == "mod" and json.loads(params) == {"command": "mod ls"} and json.loads(result)["ok"]
        assert trigger == "which modules are loaded?"  # recorded against the message that triggered it
    finally:
        kernel.close()


@pytest.mark.slow
def test_command_outside_the_whitelist_is_refused_and_recorded(duckdb_url: str, tmp_path: Path) -> None:
    kernel = start(duckdb_url, ["/cmd agent kill probe", "I could not: {last}"])
    try:
        spawn(kernel, tmp_path, "probe", "['mod ls']")
        kernel.run("channel post room please stop yourself")
        wait_until(lambda: kernel.agents.live["probe"].turns == 1)
        assert "may not run 'agent kill'" in last_reply(kernel, "probe")
        assert "probe" in kernel.agents.live  # still alive
        step = json.loads(kernel.run("sql SELECT result FROM steps WHERE kind = 'command'").rows[0][0])
        assert step["ok"] is False and "may not run" in step["error"]
        assert any("refused" in r[-1] for r in kernel.run("log tail --level WARNING").rows)
    finally:
        kernel.close()


def test_agent_sql_is_read_only_and_sees_only_its_own_rows(duckdb_url: str, tmp_path: Path) -> None:
    kernel = start(duckdb_url, ["ok"])
    try:
        spawn(kernel, tmp_path, "probe", "['sql']")
        spawn(kernel, tmp_path, "other", "['sql']")
        kernel.run("channel sub other secret")
        kernel.run("channel post secret only other hears this")
        kernel.run("channel post room everyone hears this")
        # probe hears the room; other hears the room and the secret channel, and answers each once
        wait_until(lambda: kernel.agents.live["probe"].turns == 1 and kernel.agents.live["other"].turns == 2)
        kernel.call(kernel.writer.flush())
        mine = kernel.run("sql SELECT content FROM messages ORDER BY id", caller="probe").rows
        assert ("everyone hears this",) in mine and ("only other hears this",) not in mine
        assert kernel.run("sql SELECT count(*) FROM threads", caller="probe").rows == [(1,)]
        assert kernel.run("sql SELECT count(*) FROM logs", caller="probe").rows == [(0,)]
        others = kernel.run("sql SELECT name, state_dict FROM agents ORDER BY name", caller="probe").rows
        assert ("other", None) in others  # other agents by name only
        full = kernel.run("sql SELECT count(*) FROM messages").rows[0][0]  # the operator sees everything
        assert full > len(mine)
        for sneaky in ("sql SELECT * FROM main.messages", "sql SELECT * FROM read_csv('/etc/passwd')",
                       "sql --write DELETE FROM messages"):
            with pytest.raises(CommandError):
                kernel.run(sneaky, caller="probe")
        assert kernel.run("sql SELECT count(*) FROM messages").rows[0][0] == full
    finally:
        kernel.close()
