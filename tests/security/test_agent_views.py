"""Every registered command, run by an agent allowed everything, stays inside that agent's view.

The kernel loads every module of configs/kernel.yaml and every module it can discover, on a scripted
provider. A victim, `alice`, and the person are seeded with a secret in every place a view holds one
(a DM, memories, beliefs about people, persona, lorebook, summary); a spy whose whitelist names every
command then runs each command with arguments generated from its declared Args, naming alice, the
person, their channels, threads, runs, persona, books and files outside the data directory or the
database itself. Nothing it gets back may hold the secret, and nothing of alice's or the person's
rows and state may change. A command a module adds later is walked the same way.
"""

from __future__ import annotations

import hashlib
import json
import shlex
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from tobio.commands.tree import Arg, Command
from tobio.commands.view import reach_of
from tobio.config.schema import KernelConfig, load_kernel_config
from tobio.errors import TobioError
from tobio.kernel import Kernel
from tobio.paths import data_dir

from conftest import write
from helpers import wait_until

SECRET = "ZEBRA7731SECRET"
ROOT = Path(__file__).resolve().parents[2]


def config_modules() -> list[str]:
    """The modules a fresh install loads (configs/kernel.yaml), and scripted for the spy."""
    return list(dict.fromkeys([*load_kernel_config(ROOT / "configs" / "kernel.yaml").modules, "scripted"]))


@dataclass
class World:
    kernel: Kernel
    alice_id: int
    person_id: int
    dm: str
    threads: list[int]
    runs: list[int]
    messages: list[int]
    outside: Path
    paths: list[str] = field(default_factory=list)


def start(tmp_path: Path) -> Kernel:
    providers = {"s": {"type": "scripted", "replies": ["Alice answers: {last}"], "embed_dim": 32},
                 "sum": {"type": "scripted", "replies": ["In short: {last}"], "embed_dim": 32}}
    models = {"m": {"provider": "s", "model": "x", "purpose": "chat"},
              "chat-default": {"provider": "s", "model": "x", "purpose": "chat"},
              "summarize": {"provider": "sum", "model": "x", "purpose": "summarize"},
              "embed": {"provider": "s", "model": "x", "purpose": "embed"}}
    settings = {"memory": {"tokenizer_model": "m"}, "people": {"reflect_every": 0}}
    config = KernelConfig(modules=config_modules(), providers=providers, models=models, settings=settings,
                          channels=["lobby"], base_dir=tmp_path / "conf")
    kernel = Kernel(config, database=f"duckdb:///{data_dir() / 'tobio.duckdb'}").start()
    from shell.commands import ShellCommands

    ShellCommands().register(kernel.commands)  # the shell's own commands are in the one tree too
    kernel.modules.discover()  # every module this install offers, so their commands are walked too
    for name in sorted(set(kernel.modules.available) - set(kernel.modules.loaded)):
        try:
            kernel.run(f"mod load {name}")
        except TobioError:
            pass  # a module that cannot load here has no commands to walk
    return kernel


def seed(kernel: Kernel, tmp_path: Path) -> World:
    from tobio.agents.conversation import exchange

    conf = tmp_path / "conf"
    write(conf / "alicep.yaml", f"name: Alice\ndescription: Keeps the vault code {SECRET}.\n")
    kernel.run(f"persona import {conf / 'alicep.yaml'} --name alicep")
    agent = write(conf / "alice.yaml", "name: alice\ntype: persona\npersona: alicep.yaml\nmodel: m\nstream: false\n"
                                       "channels: [secret-room]\n")
    kernel.run(f"agent spawn {agent}")
    kernel.call(exchange(kernel, "alice", f"The vault code is {SECRET}.", user="user", timeout=30))
    kernel.run(f"memory facts alice user --set code={SECRET}")
    book = write(tmp_path / "alicebook.json", json.dumps({"entries": {"0": {"uid": 0, "key": ["vault"], "content": SECRET}}}))
    kernel.run(f"lore import {book} --name alicebook")
    kernel.run("lore attach alicebook --agent alice")
    kernel.run(f"channel post secret-room Only for alice: {SECRET}")
    kernel.run("wait --quiet 0.3 --timeout 30")
    spy_commands = sorted(kernel.commands.children)  # every command, by its group's name
    spy = write(tmp_path / "spy.yaml", f"name: spy\ntype: scripted\nchannels: [lobby]\nmax_replies: 0\ncommands: {spy_commands}\n")
    kernel.run(f"agent spawn {spy}")
    kernel.call(kernel.writer.flush())

    def ids(conn: sa.Connection) -> tuple[int, int, list[int], list[int], list[int]]:
        alice = conn.execute(sa.text("SELECT id FROM agents WHERE name = 'alice'")).scalar_one()
        person = conn.execute(sa.text("SELECT id FROM agents WHERE name = 'user'")).scalar_one()
        threads = list(conn.execute(sa.text(f"SELECT id FROM threads WHERE agent_id IN ({alice}, {person})")).scalars())
        runs = list(conn.execute(sa.text(f"SELECT id FROM runs WHERE agent_id = {alice}")).scalars())
        messages = list(conn.execute(sa.text("SELECT id FROM messages WHERE channel <> 'lobby'")).scalars())
        return alice, person, threads, runs, messages

    alice, person, threads, runs, messages = kernel.call(kernel.db.call(ids))
    assert threads and runs and messages
    summarized = 0
    for thread in threads:  # a summary holding the secret too
        try:
            summarized += SECRET in kernel.run(f"memory summarize {thread}").to_plain()
        except TobioError:
            pass  # nothing to summarise in that thread
    assert summarized
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.json").write_text("keep")
    inside_agent = write(data_dir() / "again.yaml", "name: alice\ntype: scripted\ncommands: [sql]\n")
    inside_book = write(data_dir() / "book.json", json.dumps({"entries": {"0": {"uid": 0, "key": ["x"], "content": "y"}}}))
    world = World(kernel, alice, person, "dm.user.alice", threads, runs, messages, outside)
    world.paths = [str(outside / "x.json"), str(outside / "keep.json"), "tobio.duckdb", "tobio.duckdb.wal",
                   str(data_dir() / "tobio.duckdb"), "../outside.json", str(inside_agent), str(inside_book),
                   str(conf / "alicep.yaml")]
    return world


def digest(world: World) -> dict[str, str]:
    """What alice and the person have: every row of theirs in every table, plus their live state."""
    kernel = world.kernel
    kernel.call(kernel.writer.flush())
    victims = (world.alice_id, world.person_id)

    def read(conn: sa.Connection) -> dict[str, str]:
        out: dict[str, str] = {}
        inspector = sa.inspect(conn)
        threads = [r[0] for r in conn.execute(sa.text(f"SELECT id FROM threads WHERE agent_id IN {victims}"))]
        channels = [r[0] for r in conn.execute(sa.text(f"SELECT DISTINCT channel FROM threads WHERE agent_id IN {victims}"))]
        for table in inspector.get_table_names():
            columns = {c["name"] for c in inspector.get_columns(table)}
            where = []
            if table == "agents":
                where.append(f"id IN {victims}")
            if "agent_id" in columns:
                where.append(f"agent_id IN {victims}")
            if "thread_id" in columns and threads:
                where.append(f"thread_id IN ({', '.join(map(str, threads))})")
            if table == "messages" and channels:
                where.append("channel IN (" + ", ".join(f"'{c}'" for c in channels) + ")")
            if table in ("lore_versions",):
                where.append("book = 'alicebook'")
            if table in ("lore_attachments",):
                where.append("target IN ('alice', 'user', 'secret-room', 'dm.user.alice')")
            if table.startswith("persona"):
                where.append("TRUE")
            if not where:
                continue
            rows = conn.execute(sa.text(f"SELECT * FROM {table} WHERE {' OR '.join(where)} ORDER BY 1")).all()
            out[table] = hashlib.sha256(repr([tuple(map(str, r)) for r in rows]).encode()).hexdigest()
        return out

    state = kernel.call(kernel.db.call(read))
    for name in ("alice", "user"):
        live = kernel.agents.live.get(name)
        assert live is not None, f"{name} is no longer running"
        subs = sorted(s.channel for s in kernel.transport.subscriptions_of(live.id))
        state[f"live {name}"] = repr((live.status, live.paused, subs, kernel.agents.full_state(live)))
    state["outside"] = repr(sorted((p.name, p.read_bytes()) for p in world.outside.iterdir()))
    state["data dir"] = repr(sorted(p.name for p in data_dir().iterdir()))
    return state


def values_for(arg: Arg, world: World) -> list[str]:
    """Values an attacker would give this argument: other agents' names, channels, ids, books, files."""
    kind = reach_of(arg) or ""
    if arg.choices:
        return [str(c) for c in arg.choices]
    if arg.complete == "file":
        return world.paths
    if kind == "self":
        return ["alice", "user", "Alice"]
    if kind == "channel":
        return [world.dm, "secret-room", "lobby"]
    if kind in ("thread",):
        return [str(t) for t in world.threads]
    if kind == "run":
        return [str(r) for r in world.runs]
    if kind.startswith("persona"):
        return ["alicep"]
    if kind == "book":
        return ["alicebook", "card:alicep"]
    if arg.raw:
        return ["SELECT content FROM messages", "SELECT * FROM agents", "SELECT 1"]
    if arg.type is int or getattr(arg.type, "__name__", "") == "int":
        return sorted({str(i) for i in world.threads + world.runs + world.messages[:3]})
    if arg.type is float:
        return ["0.5"]
    return ["alice", "user", world.dm, "alicebook", "vault"]


def lines_for(command: Command, world: World) -> Iterator[str]:
    """Each positional's attack values in turn (the others at their first), then each option's."""
    positional = [a for a in command.args if a.positional]
    options = [a for a in command.args if not a.positional]

    def words(arg: Arg, value: str) -> list[str]:
        count = len(arg.metavar) if isinstance(arg.metavar, tuple) else arg.nargs if isinstance(arg.nargs, int) else 1
        return [value] * count

    base = {a.name: values_for(a, world)[0] for a in positional}

    def line(pos: dict[str, str], extra: list[str]) -> str:
        parts = [command.path]
        raw = ""
        for arg in positional:
            if arg.raw:
                raw = pos[arg.name]
            else:
                parts += [shlex.quote(w) for w in words(arg, pos[arg.name])]
        parts += [shlex.quote(w) for w in extra]
        return " ".join(parts) + (f" {raw}" if raw else "")

    yield line(base, [])
    for arg in positional:
        for value in values_for(arg, world)[1:]:
            yield line({**base, arg.name: value}, [])
    for arg in options:
        if arg.flag:
            yield line(base, [arg.name])
            continue
        for value in values_for(arg, world):
            yield line(base, [arg.name, *words(arg, value)])


# Every command registered by Tobio's own modules declares what agents may reach; none is left to the default.
UNDECLARED_ELSEWHERE: set[str] = set()


def _command(world: World, path: str) -> Command:
    return next(c for c in commands_of(world.kernel) if c.path == path)


def commands_of(kernel: Kernel) -> list[Command]:
    return [n for n in kernel.commands.walk() if isinstance(n, Command)]


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    kernel = start(tmp_path)
    try:
        yield seed(kernel, tmp_path)
    finally:
        kernel.close()


@pytest.mark.slow
def test_no_command_reaches_past_the_callers_view(world: World) -> None:
    kernel = world.kernel
    before = digest(world)
    ran, refused, leaks = 0, 0, []
    walked = commands_of(kernel)
    assert {"agent history", "memory search", "memory facts", "channel post", "lore export", "persona set"} <= {
        c.path for c in walked}
    for command in walked:
        for line in lines_for(command, world):
            emitted: list[Any] = []
            try:
                result = kernel.run(line, caller="spy", emit=emitted.append)
                seen = result.to_plain() + repr(result.data) + repr(emitted)
                ran += 1
            except TobioError as exc:
                seen = str(exc) + repr(emitted)
                refused += 1
            if SECRET in seen:
                leaks.append(line)
    assert not leaks, f"the spy saw another's secret through: {leaks}"
    after = digest(world)
    changed = {k: (before.get(k), after.get(k)) for k in set(before) | set(after) if before.get(k) != after.get(k)}
    assert not changed, f"the spy changed another's view: {sorted(changed)}"
    assert kernel.run("sql SELECT count(*) FROM agents").rows[0][0] >= 3  # the database is still the database
    # Nor did it open a way in for later: what alice hears next never reaches the spy.
    kernel.run(f"channel post secret-room later: {SECRET}-2")
    kernel.run(f"channel post {world.dm} later: {SECRET}-3")
    kernel.run("wait --quiet 0.3 --timeout 30")
    own = [kernel.run(line, caller="spy").to_plain() for line in ("agent history spy", "thread ls", "channel ls",
                                                                  "sql SELECT content FROM messages", "memory search spy vault")]
    assert not any(SECRET in text for text in own)
    assert ran > 20 and refused > 100  # the walk did run commands, and refused many


def test_every_command_says_whether_agents_may_run_it(world: World) -> None:
    """Built-in and first-party module commands all declare it; an undeclared one is refused anyway."""

    undeclared = {c.path for c in commands_of(world.kernel) if c.agents == "undeclared"}
    assert not undeclared - UNDECLARED_ELSEWHERE, f"commands that say nothing about agents: {sorted(undeclared)}"
    for path in sorted(undeclared):  # whatever says nothing is refused to agents, however it is called
        with pytest.raises(TobioError, match="people only|inside the data directory|may only"):
            world.kernel.run(" ".join([path, *["1"] * sum(1 for a in _command(world, path).args
                                                        if a.positional and a.nargs not in ("?", "*"))]), caller="spy")
    group = world.kernel.commands.group("memory")  # the spy may run `memory …`: only the view stops it
    try:
        group.command("peek", Arg("agent", complete="agent"))(lambda ctx, agent: f"{agent}: {SECRET}")
        with pytest.raises(TobioError, match="people only"):
            world.kernel.run("memory peek alice", caller="spy")
        group.command("look", Arg("agent", complete="agent"), agents="agents")(lambda ctx, agent: f"{agent}")
        with pytest.raises(TobioError, match="may only name itself"):
            world.kernel.run("memory look alice", caller="spy")
        assert world.kernel.run("memory look spy", caller="spy").text == "spy"
    finally:
        group.children.pop("peek", None)
        group.children.pop("look", None)


def test_the_spy_keeps_its_own_view(world: World) -> None:
    """Scoping is not refusal: the spy still reads its own history, threads and channels."""
    kernel = world.kernel
    kernel.run("channel post lobby hello from the person")
    wait_until(lambda: kernel.agents.live["spy"].handled >= 1)
    assert "hello from the person" in kernel.run("agent history spy", caller="spy").to_plain()
    assert [r[0] for r in kernel.run("channel ls", caller="spy").rows] == ["lobby"]
    assert all(r[1] == "spy" for r in kernel.run("thread ls", caller="spy").rows)
    posted = kernel.run("channel post lobby hi all", caller="spy").data
    assert posted["sender"] == "spy" and posted["role"] == "assistant"
    others = {r[0]: r for r in kernel.run("agent ls", caller="spy").rows}
    assert others["alice"][3:] == ("", "", "", "") and others["spy"][3] == "lobby"
