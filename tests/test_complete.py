"""The completion engine over the command tree: names, flags, values, quoting, SQL."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from shell.commands import ShellCommands
from shell.testing import running_kernel
from tobio.commands.complete import (
    Candidate,
    CommandCompleter,
    KernelSources,
    complete_sql,
    split_partial,
    sql_is_complete,
)
from tobio.commands.tree import Group
from tobio.kernel import Kernel


class FakeSources:
    """Fixed values, including ones that need quoting."""

    def values(self, source: str) -> list[tuple[str, str]]:
        return {
            "agent": [("echo", "scripted · running"), ("eve", "scripted · paused"), ("my agent", "has a space")],
            "channel": [("lobby", "2 subscribed")],
            "thread": [("1", "echo@lobby")],
        }.get(source, [])

    def sql_schema(self) -> dict[str, list[tuple[str, str]]]:
        return {
            "messages": [("id", "BIGINT"), ("content", "VARCHAR"), ("channel", "VARCHAR")],
            "agents": [("id", "BIGINT"), ("name", "VARCHAR")],
        }

    def sql_functions(self) -> list[tuple[str, str]]:
        return [("count", "aggregate"), ("strftime", "Converts a date to a string")]


@pytest.fixture(scope="module")
def tree() -> Group:
    kernel = Kernel(None, database="duckdb:///:memory:")  # not started: the tree is built in __init__
    ShellCommands().register(kernel.commands)
    return kernel.commands


@pytest.fixture
def engine(tree: Group) -> CommandCompleter:
    return CommandCompleter(tree, FakeSources())


def texts(candidates: list[Candidate]) -> list[str]:
    return [c.text for c in candidates]


def test_split_partial_keeps_quotes_and_positions() -> None:
    words, current = split_partial("channel post 'two words' \"unfinished wo")
    assert [w.value for w in words] == ["channel", "post", "two words"]
    assert current.value == "unfinished wo" and current.quote == '"' and current.length == len('"unfinished wo')
    assert split_partial("agent ")[1].value == ""


def test_commands_and_subcommands_with_help(engine: CommandCompleter) -> None:
    top = engine.complete("")
    assert {"agent ", "sql ", "chat ", "exit "} <= set(texts(top))
    agent = next(c for c in top if c.display == "agent")
    assert agent.help.startswith("Spawn, inspect") and agent.help.endswith("…")  # a group
    sub = engine.complete("agent s")
    assert texts(sub) == ["show ", "spawn ", "state "] and all(c.start == -1 for c in sub)
    assert all(c.help for c in sub)
    assert texts(engine.complete("ag")) == ["agent "]
    assert engine.complete("nosuch ") == []


def test_flags_and_option_values(engine: CommandCompleter) -> None:
    flags = engine.complete("agent ls -")
    assert texts(flags) == ["--all ", "--branches ", "--help "] and flags[0].help == "include killed agents"
    assert texts(engine.complete("log tail --level ")) == ["DEBUG ", "INFO ", "WARNING ", "ERROR "]
    assert texts(engine.complete("log tail --level W")) == ["WARNING "]
    inline = engine.complete("log tail --level=E")
    assert texts(inline) == ["ERROR "] and inline[0].start == -1
    assert "--lines " not in texts(engine.complete("log tail --lines 5 -"))  # used options are not offered again


def test_argument_values_from_sources(engine: CommandCompleter) -> None:
    values = engine.complete("agent show e")
    assert texts(values) == ["echo ", "eve "] and values[0].help == "scripted · running"
    assert texts(engine.complete("channel sub echo ")) == ["lobby "]  # second positional: a channel
    assert "echo " in texts(engine.complete("channel post lobby hi there --as "))
    assert texts(engine.complete("thread show ")) == ["1 "]
    assert "--last " in texts(engine.complete("thread show 1 "))  # positional filled: options remain


def test_quoted_arguments(engine: CommandCompleter) -> None:
    assert texts(engine.complete("agent show 'e")) == ["'echo' ", "'eve' "]
    assert texts(engine.complete('agent show "my')) == ['"my agent" ']
    unquoted = engine.complete("agent show my")
    assert texts(unquoted) == ["'my agent' "] and unquoted[0].start == -2
    assert engine.complete("agent 'sh") == []  # quoted words are never command names


def test_help_completes_command_paths(engine: CommandCompleter) -> None:
    assert texts(engine.complete("help ag")) == ["agent "]
    assert "spawn " in texts(engine.complete("help agent "))


def test_file_paths(engine: CommandCompleter, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "agents").mkdir()
    (tmp_path / "agents" / "bob.yaml").write_text("name: bob\n")
    (tmp_path / "my file.yaml").write_text("")
    monkeypatch.chdir(tmp_path)
    assert texts(engine.complete("agent spawn ag")) == ["agents/"]
    got = engine.complete("agent spawn agents/")
    assert texts(got) == ["agents/bob.yaml "] and got[0].start == -len("agents/")
    assert texts(engine.complete("agent spawn my")) == ["'my file.yaml' "]


def test_subshell_group_and_root_fallback(engine: CommandCompleter, tree: Group) -> None:
    agent = tree.get("agent")
    assert isinstance(agent, Group)
    inside = engine.complete("", group=agent, extra={"exit": "leave"})
    assert "ls " in texts(inside) and "exit " in texts(inside) and "sql " not in texts(inside)
    assert texts(engine.complete("l", group=agent)) == ["ls "]
    assert texts(engine.complete("sq", group=agent)) == ["sql "]  # root commands stay reachable
    assert texts(engine.complete("show e", group=agent)) == ["echo ", "eve "]


def test_sql_keywords_tables_columns(engine: CommandCompleter) -> None:
    assert texts(engine.complete("sql SEL")) == ["SELECT"]
    assert texts(engine.complete("sql sel")) == ["select"]  # the user's case is kept for keywords
    assert texts(engine.complete("sql SELECT * FROM ")) == ["agents", "messages"]
    where = engine.complete("sql SELECT * FROM messages WHERE con")
    assert texts(where) == ["content"] and where[0].help == "messages · VARCHAR"
    assert texts(engine.complete("sql SELECT * FROM messages m WHERE m.c")) == ["content", "channel"]
    assert texts(engine.complete("sql --limit 5 SELECT str")) == ["strftime"]
    assert engine.complete("sql SELECT 'unfinished str") == []  # inside a string literal
    assert "--write " in texts(engine.complete("sql --"))


def test_sql_in_raw_mode_and_statement_end(engine: CommandCompleter, tree: Group) -> None:
    sql = tree.get("sql")
    assert texts(engine.complete_raw(sql, "SELECT id FROM messages;\nSELECT * FROM ag")) == ["agents"]  # type: ignore[arg-type]
    assert texts(complete_sql("SUMMARIZE mes", FakeSources())) == ["messages"]
    assert sql_is_complete("SELECT 1;") and sql_is_complete("SELECT 1; -- done")
    assert not sql_is_complete("SELECT ';'") and not sql_is_complete("SELECT 1") and not sql_is_complete("SELECT 1 /* ; */")


@pytest.fixture(scope="module")
def kernel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kernel]:
    with running_kernel(tmp_path_factory.mktemp("complete")) as kernel:
        yield kernel


def test_kernel_sources_read_live_state(kernel: Kernel) -> None:
    engine = CommandCompleter(kernel.commands, KernelSources(kernel))
    echo = engine.complete("agent show ")
    assert texts(echo) == ["echo "] and "scripted" in echo[0].help
    assert "lobby " in texts(engine.complete("channel post "))
    assert "scripted " in texts(engine.complete("mod info "))
    assert texts(engine.complete("task cancel ")) == ["1 "]
    deadline = time.monotonic() + 10
    while "1 " not in texts(engine.complete("thread show ")):  # cached lists arrive in the background
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert "messages" in texts(engine.complete("sql SELECT * FROM mes"))
    assert "content" in texts(engine.complete("sql SELECT con"))


def test_kernel_sources_never_block_for_long(kernel: Kernel) -> None:
    busy = threading.Thread(target=kernel.db.call_sync, args=(lambda conn: time.sleep(1.5),))
    busy.start()  # the DB thread is taken: the schema cannot be read for a while
    time.sleep(0.05)
    started = time.monotonic()
    assert KernelSources(kernel).sql_schema() == {}
    assert time.monotonic() - started < 1.0
    busy.join()
