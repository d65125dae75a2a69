"""Every command argument that names a file stays inside the data directory when an agent gives it.

The rule is declared once, on the argument (`complete="file"`), so it covers the built-in commands and
any a module adds. Outside paths, `..` and symlinks out are refused with one line; relative paths
are taken from the data directory.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tobio.commands.tree import Command, Group
from tobio.config.schema import KernelConfig
from tobio.errors import CommandError, TobioError
from tobio.kernel import Kernel
from tobio.paths import data_dir


@pytest.fixture
def kernel(tmp_path: Path, duckdb_url: str) -> Iterator[Kernel]:
    k = Kernel(KernelConfig(modules=["scripted", "persona", "scenes", "lore"]), database=duckdb_url).start()
    spy = tmp_path / "spy.yaml"
    spy.write_text("name: spy\ntype: scripted\ncommands: [persona, lore, scene, transcript, agent]\n")
    k.run(f"agent spawn {spy}")
    try:
        yield k
    finally:
        k.close()


def file_commands(group: Group) -> list[tuple[Command, str]]:
    """(command, its first file argument's name) for every command in the tree that takes a file."""
    out: list[tuple[Command, str]] = []
    for node in group.children.values():
        if isinstance(node, Group):
            out += file_commands(node)
        elif isinstance(node, Command):
            out += [(node, arg.name) for arg in node.args if arg.complete == "file"][:1]
    return out


def test_the_tree_declares_its_file_arguments(kernel: Kernel) -> None:
    paths = {command.path for command, _ in file_commands(kernel.commands)}
    assert {"persona import", "persona export", "lore import", "lore export", "scene run", "agent spawn",
            "transcript import", "transcript export"} <= paths


def line_for(command: Command, where: str) -> str:
    """The command with `where` in every file argument and a plain word in every other positional."""
    words = [command.path]
    for arg in command.args:
        if arg.complete == "file":
            words += [arg.name, where] if not arg.positional else [where]
        elif arg.positional and not arg.raw and arg.nargs not in ("?", "*"):
            words.append("1" if arg.type in (int, float) or getattr(arg.type, "__name__", "") == "number" else "x")
    return " ".join(words)


@pytest.mark.parametrize("where", ["/etc/passwd", "../../outside.json", "/tmp/anywhere/x.json", "~/.ssh/id_rsa"])
def test_agents_cannot_name_files_outside_the_data_dir(kernel: Kernel, where: str) -> None:
    for command, _ in file_commands(kernel.commands):
        with pytest.raises(CommandError, match="inside the data directory") as caught:
            kernel.run(line_for(command, where), caller="spy")
        assert "\n" not in str(caught.value)


def test_a_symlink_out_of_the_data_dir_is_refused(kernel: Kernel, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "card.json").write_text("{}")
    link = data_dir() / "link"
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(outside, target_is_directory=True)
    with pytest.raises(CommandError, match="inside the data directory"):
        kernel.run("persona import link/card.json", caller="spy")


def test_relative_paths_are_taken_from_the_data_dir(kernel: Kernel) -> None:
    path = data_dir() / "books" / "world.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('{"entries": {"0": {"uid": 0, "key": ["dragon"], "content": "Dragons sleep in winter."}}}')
    out = kernel.run("lore import books/world.json", caller="spy")
    assert "world" in out.to_plain().lower()


def test_users_keep_their_own_paths(kernel: Kernel, tmp_path: Path) -> None:
    book = tmp_path / "mine.json"
    book.write_text('{"entries": {"0": {"uid": 0, "key": ["tea"], "content": "Tea is served at five."}}}')
    assert "mine" in kernel.run(f"lore import {book}").to_plain().lower()


def test_files_an_agent_names_are_data_not_config(kernel: Kernel, monkeypatch: pytest.MonkeyPatch) -> None:
    """An agent cannot write `${SECRET}` into a file in the data dir, spawn it, and read its config back."""
    monkeypatch.setenv("TOBIO_TEST_SECRET", "sk-agent-exfil-0123456789")
    data_dir().mkdir(parents=True, exist_ok=True)
    (data_dir() / "mole.yaml").write_text("name: mole\ntype: scripted\ndescription: ${TOBIO_TEST_SECRET}\n")
    kernel.run("agent spawn mole.yaml", caller="spy")
    assert kernel.agents.live["mole"].config.description == "${TOBIO_TEST_SECRET}"
    kernel.run("agent kill mole")
    (data_dir() / "inc.yaml").write_text("name: inc\ntype: scripted\ndescription: !include /etc/hostname\n")
    with pytest.raises(TobioError, match="not allowed"):
        kernel.run("agent spawn inc.yaml", caller="spy")
