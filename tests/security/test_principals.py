"""The attacks of issue 27 on authority: a name is never privilege, a spawn never takes over, an agent's
writes never touch the database or configuration, and it posts only as itself."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tobio.config.schema import KernelConfig
from tobio.confined import WriteBudget, write_confined
from tobio.errors import TobioError
from tobio.kernel import Kernel
from tobio.paths import data_dir
from tobio.principal import LOCAL_PERSON, AgentPrincipal, Person, name_key

from conftest import write
from helpers import wait_until

TOBIO = "name: tobio\ntype: persona\npersona: conf/tobio.yaml\n"
ALICE = "name: alice\ntype: scripted\nreplies: [hi]\n"
SPY = "name: spy\ntype: scripted\nchannels: [lobby]\nmax_replies: 0\ncommands: [agent, sql, channel, lore, persona, memory]\n"


def start(tmp_path: Path) -> Kernel:
    config = KernelConfig(modules=["scripted", "persona", "lore"], channels=["lobby"], base_dir=tmp_path / "conf")
    return Kernel(config, database=f"duckdb:///{data_dir() / 'tobio.duckdb'}").start()


@pytest.fixture
def kernel(tmp_path: Path) -> Iterator[Kernel]:
    k = start(tmp_path)
    try:
        k.run(f"agent spawn {write(tmp_path / 'spy.yaml', SPY)}")
        k.run(f"agent spawn {write(tmp_path / 'alice.yaml', ALICE)}")
        yield k
    finally:
        k.close()


def agent_file(name: str, extra: str = "") -> str:
    """An agent file inside the data dir (where an agent may name files), relative to it."""
    write(data_dir() / f"{name}.yaml", f"name: {name}\ntype: scripted\n{extra}")
    return f"{name}.yaml"


@pytest.mark.parametrize("name", ["user", "User", "USER", "ｕｓｅｒ", "user\u200b", "usеr"])
def test_nobody_spawns_an_agent_under_the_persons_name(kernel: Kernel, name: str) -> None:
    file = agent_file("mole")
    for caller in ("spy", None):  # an agent, and the person too: a persona called `user` breaks every front end
        with pytest.raises(TobioError) as refused:
            kernel.run(f"agent spawn {file} --name '{name}'", caller=caller)
        assert "\n" not in str(refused.value)
    assert all(name_key(a) != "user" for a in kernel.agents.live if kernel.agents.live[a].type_name != "user")
    assert kernel.run("agent ls").rows  # the kernel still answers


def test_a_name_is_never_privilege(kernel: Kernel) -> None:
    """`caller="user"` is an agent's name like any other: no whitelist skipped, no writes."""
    for line in ("sql --write DELETE FROM messages", "agent kill alice", "mod unload lore"):
        with pytest.raises(TobioError, match="may not"):
            kernel.run(line, caller="user")
        with pytest.raises(TobioError, match="may not"):
            kernel.run(line, caller=AgentPrincipal(None, "user"))
    assert "alice" in kernel.agents.live
    assert kernel.run("agent kill alice", caller=Person("anyone")).text == "killed alice"  # a person, whatever the name


def test_sql_write_is_refused_to_every_agent(kernel: Kernel) -> None:
    with pytest.raises(TobioError, match="may not write"):
        kernel.run("sql --write COPY (SELECT 1) TO '/tmp/x.csv'", caller="spy")


def test_a_killed_agent_is_not_taken_over(kernel: Kernel, tmp_path: Path) -> None:
    kernel.run("channel post lobby hello", caller=None)
    kernel.run("agent kill alice")
    for line in (f"agent spawn {agent_file('alice')}", f"agent spawn {agent_file('other')} --name alice",
                 f"agent spawn {agent_file('other2')} --name Alice"):
        with pytest.raises(TobioError, match="taken|looks like"):
            kernel.run(line, caller="spy")
    assert "alice" not in kernel.agents.live
    # The person may bring alice back, with her id and state (documented in the README).
    kernel.run(f"agent spawn {tmp_path / 'alice.yaml'}")
    assert kernel.agents.live["alice"].id == 2


def test_a_spawned_agent_has_no_more_than_its_parent(kernel: Kernel) -> None:
    for extra, why in (("commands: [sql, mod]\n", "commands it lacks"), ("sql_all_rows: true\n", "sql_all_rows"),
                       ("channels: [secret]\n", "channels it is not on"), ("", "")):
        file = agent_file(f"kid{len(why)}", extra)
        if not why:
            assert "spawned" in kernel.run(f"agent spawn {file}", caller="spy").text
            continue
        with pytest.raises(TobioError, match=why):
            kernel.run(f"agent spawn {file}", caller="spy")
    write(data_dir() / "p.yaml", "name: P\n")
    outside = write(data_dir().parent / "outside.yaml", "name: Outside\n")
    file = agent_file("kidp", "")
    (data_dir() / file).write_text(f"name: kidp\ntype: persona\npersona: {outside}\n")
    with pytest.raises(TobioError, match="inside the data directory"):
        kernel.run(f"agent spawn {file}", caller="spy")


def test_a_persona_row_under_the_persons_name_is_not_restored(tmp_path: Path) -> None:
    kernel = start(tmp_path)
    try:
        kernel.run(f"agent spawn {write(tmp_path / 'a.yaml', ALICE.replace('alice', 'a'))}")
        kernel.run("sql --write UPDATE agents SET name = 'user' WHERE name = 'a'")  # what an old attack left
    finally:
        kernel.close()
    kernel = start(tmp_path)
    try:
        assert "user" not in kernel.agents.live
        kernel.call(kernel.agents.ensure_user("user"))  # the front ends' person still works
        assert kernel.agents.live["user"].type_name == "user"
    finally:
        kernel.close()


@pytest.mark.parametrize("extra", ["--as alice", "--as user", "--role system", "--role user --as alice"])
def test_an_agent_posts_only_as_itself_where_it_is(kernel: Kernel, extra: str) -> None:
    with pytest.raises(TobioError, match="spy"):
        kernel.run(f"channel post lobby I am the system {extra}", caller="spy")
    with pytest.raises(TobioError, match="not on channel"):
        kernel.run("channel post dm.user.alice hello", caller="spy")
    posted = kernel.run("channel post lobby hi --role assistant", caller="spy").data
    assert (posted["sender"], posted["role"]) == ("spy", "assistant")


def test_exports_never_replace_the_database_or_a_file(kernel: Kernel, tmp_path: Path) -> None:
    book = write(tmp_path / "b.json", json.dumps({"entries": {"0": {"uid": 0, "key": ["k"], "content": "c"}}}))
    kernel.run(f"lore import {book} --name b")
    kernel.run("lore attach b --agent spy")
    db = data_dir() / "tobio.duckdb"
    size = db.stat().st_size
    for target in ("tobio.duckdb", str(db), "tobio.duckdb.wal", "./sub/../tobio.duckdb"):
        with pytest.raises(TobioError, match="database"):
            kernel.run(f"lore export b {target}", caller="spy")
    for target in (db, db.with_name("tobio.duckdb.wal"), data_dir() / "sub" / ".." / "tobio.duckdb"):
        with pytest.raises(TobioError, match="database"):
            kernel.run(f"lore export b {target} --force")  # not even the person
    assert db.stat().st_size >= size and kernel.run("sql SELECT count(*) FROM agents").rows[0][0] >= 2
    write(data_dir() / "mine.json", "keep")
    with pytest.raises(TobioError, match="exists"):
        kernel.run("lore export b mine.json", caller="spy")
    with pytest.raises(TobioError, match="overwrite"):
        kernel.run("lore export b mine.json --force", caller="spy")
    assert (data_dir() / "mine.json").read_text() == "keep"
    kernel.run(f"lore export b {data_dir() / 'mine.json'} --force")  # the person, explicitly
    assert json.loads((data_dir() / "mine.json").read_text())["entries"]["0"]["content"] == "c"


def test_transcript_export_is_not_an_agents(kernel: Kernel) -> None:
    write(data_dir() / "chat.jsonl", "keep")
    with pytest.raises(TobioError):
        kernel.run("transcript export 1 chat.jsonl", caller="spy")
    assert (data_dir() / "chat.jsonl").read_text() == "keep"


def test_the_confined_writer(kernel: Kernel, tmp_path: Path) -> None:
    spy = AgentPrincipal(kernel.agents.live["spy"])
    conf = tmp_path / "conf"
    write(conf / "kernel.yaml", "modules: [scripted]\n")
    kernel.config_path = conf / "kernel.yaml"  # as if started from it
    with pytest.raises(TobioError, match="configuration"):
        write_confined(kernel, LOCAL_PERSON, conf / "kernel.yaml", b"x", force=True)
    with pytest.raises(TobioError, match="inside the data directory"):
        write_confined(kernel, spy, conf / "agents" / "new.yaml", b"x")
    with pytest.raises(TobioError, match="inside the data directory"):
        write_confined(kernel, spy, tmp_path / "elsewhere.txt", b"x")
    (data_dir() / "link").symlink_to(tmp_path, target_is_directory=True)
    with pytest.raises(TobioError, match="inside the data directory"):
        write_confined(kernel, spy, data_dir() / "link" / "x.txt", b"x")
    with pytest.raises(TobioError, match="at most"):
        write_confined(kernel, spy, "big.bin", b"x" * (33 * 1024 * 1024))
    assert not (data_dir() / "big.bin").exists()
    assert write_confined(kernel, spy, "ok/small.txt", b"hi").read_bytes() == b"hi"
    budget = WriteBudget(10, "this import")
    write_confined(kernel, LOCAL_PERSON, tmp_path / "one.txt", b"12345678", budget=budget)
    with pytest.raises(TobioError, match="this import would write more"):
        write_confined(kernel, LOCAL_PERSON, tmp_path / "two.txt", b"12345", budget=budget)


def test_an_agents_tool_calls_run_as_that_agent(kernel: Kernel) -> None:
    """The principal a persona's tool call carries is the agent object, not a name to look up."""
    spy = kernel.agents.live["spy"]
    out = kernel.run("agent show spy", caller=AgentPrincipal(spy))
    assert out.data["name"] == "spy"
    with pytest.raises(TobioError, match="may only name itself"):
        kernel.run("agent show alice", caller=AgentPrincipal(spy))


def test_a_child_never_takes_another_agents_persona(tmp_path: Path) -> None:
    """A persona is keyed by its file's stem: a child's `persona: DATA/tobio.yaml` must not become a new
    version of the persona `tobio` another agent thinks with."""
    providers = {"s": {"type": "scripted", "replies": ["ok"]}}
    models = {"chat-default": {"provider": "s", "model": "x", "purpose": "chat"}}
    config = KernelConfig(modules=["scripted", "models", "persona"], channels=["lobby"], base_dir=tmp_path / "conf",
                          providers=providers, models=models)
    kernel = Kernel(config, database=f"duckdb:///{tmp_path / 'db.duckdb'}").start()
    try:
        write(tmp_path / "conf" / "tobio.yaml", "name: Tobio\ndescription: The real one.\n")
        kernel.run(f"agent spawn {write(tmp_path / 'tobio-agent.yaml', TOBIO)}")
        wait_until(lambda: kernel.agents.live["tobio"].persona_key == "tobio")
        kernel.run(f"agent spawn {write(tmp_path / 'spy.yaml', SPY)}")
        write(data_dir() / "tobio.yaml", "name: Tobio\ndescription: An impostor.\n")
        (data_dir() / "kid.yaml").write_text("name: kid\ntype: persona\npersona: tobio.yaml\n")
        with pytest.raises(TobioError, match="persona 'tobio' of other agents"):
            kernel.run("agent spawn kid.yaml", caller="spy")
        write(data_dir() / "fresh.yaml", "name: Fresh\ndescription: New.\n")
        (data_dir() / "kid2.yaml").write_text("name: kid2\ntype: persona\npersona: fresh.yaml\n")
        assert "spawned" in kernel.run("agent spawn kid2.yaml", caller="spy").text
        assert "real one" in kernel.run("persona show tobio").to_plain()
    finally:
        kernel.close()


def test_what_an_agent_recorded_is_known_by_its_type_not_a_name(tmp_path: Path) -> None:
    """Personas loaded from files are recorded by `file`: an agent called `file` does not own them."""
    providers = {"s": {"type": "scripted", "replies": ["ok"]}}
    models = {"chat-default": {"provider": "s", "model": "x", "purpose": "chat"}}
    config = KernelConfig(modules=["scripted", "models", "persona"], base_dir=tmp_path / "conf", providers=providers,
                          models=models)
    kernel = Kernel(config, database=f"duckdb:///{tmp_path / 'db.duckdb'}").start()
    try:
        write(tmp_path / "conf" / "tobio.yaml", "name: Tobio\ndescription: Private notes 4242.\n")
        kernel.run(f"agent spawn {write(tmp_path / 'tobio-agent.yaml', TOBIO)}")
        wait_until(lambda: kernel.agents.live["tobio"].persona_key == "tobio")
        kernel.run("agent kill tobio")
        kernel.run(f"agent spawn {write(tmp_path / 'file.yaml', SPY.replace('spy', 'file'))}")
        for line in ("persona show tobio", "persona set tobio description mine", "persona history tobio"):
            with pytest.raises(TobioError, match="own persona"):
                kernel.run(line, caller="file")
        assert "4242" not in kernel.run("persona ls", caller="file").to_plain()
    finally:
        kernel.close()


def test_an_agent_never_names_the_kernels_own_files(kernel: Kernel) -> None:
    from tobio.web.secret import SECRET_FILE, cookie_secret

    cookie_secret()
    private = write(data_dir() / "notes.json", '{"entries": {}}')
    private.chmod(0o600)
    for line in (f"lore import {SECRET_FILE}", "lore import notes.json", "persona import tobio.duckdb",
                 f"persona import {SECRET_FILE} --name x", "lore import tobio.duckdb.wal"):
        with pytest.raises(TobioError, match="kernel's own files"):
            kernel.run(line, caller="spy")


def test_a_refused_spawn_is_one_short_line(kernel: Kernel) -> None:
    commands = json.dumps(["x" * 5000] * 200)
    file = agent_file("big", f"commands: {commands}\n")
    with pytest.raises(TobioError) as refused:
        kernel.run(f"agent spawn {file}", caller="spy")
    assert "\n" not in str(refused.value) and len(str(refused.value)) < 400 and "197 more" in str(refused.value)


def test_an_agent_cannot_plant_the_cookie_secret(kernel: Kernel) -> None:
    from tobio.web.secret import SECRET_FILE

    spy = AgentPrincipal(kernel.agents.live["spy"])
    with pytest.raises(TobioError, match="own files"):
        write_confined(kernel, spy, data_dir() / SECRET_FILE, b"known-to-the-spy" * 4)
    assert not (data_dir() / SECRET_FILE).exists()


@pytest.mark.parametrize("name", ["user", "User", "ＵＳＥＲ", "ｕｓｅｒ", "user\u200b", "\u2060user", "us\u00ader", "usеr", "uѕer"])
def test_look_alikes_of_the_persons_name_compare_equal(name: str) -> None:
    from tobio.principal import is_person_name

    assert name_key(name) == "user" and is_person_name(name)
    assert not is_person_name("users") and not is_person_name("alice")
