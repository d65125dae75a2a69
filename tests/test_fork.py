"""Forks: a new agent whose whole mind is another's at a moment (state and mood, threads, summaries,
memories, people facts, lore), and a channel branch that forks everyone in a scene. Exactly as it was:
the fork's replay at the fork point equals its parent's; nothing the parent learned later reaches it.
On every backend (the brief asks DuckDB and PostgreSQL; SQLite costs a few seconds more)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tobio.config.schema import KernelConfig
from tobio.db.migrations import utcnow
from tobio.errors import AgentError, CommandError
from tobio.kernel import Kernel
from tobio.memory.service import Memory
from tobio.people.module import PeopleModule

from conftest import write
from helpers import wait_until

BACKENDS = ["duckdb", "sqlite", "postgresql"]
WORLD = {"entries": {"0": {"uid": 0, "key": ["lighthouse"], "content": "The lighthouse keeper is called Odo.",
                           "sticky": 3, "selective": False}}}


def start(url: str) -> Kernel:
    providers = {"s": {"type": "scripted", "replies": ["Nice to meet you.", "Tell me more.", "I see."], "embed_dim": 64},
                 "r": {"type": "scripted", "replies": ["- They like dogs a lot.\n- I feel warm toward them."]}}
    models = {"m": {"provider": "s", "model": "x", "purpose": "chat"},
              "summarize": {"provider": "s", "model": "x", "purpose": "summarize"},
              "embed": {"provider": "s", "model": "x", "purpose": "embed"},
              "thinker": {"provider": "r", "model": "x", "purpose": "chat"}}
    settings = {"memory": {"tokenizer_model": "m"}, "people": {"reflect_every": 4, "reflections": 2, "reflect_model": "thinker"},
                "emotion": {"appraiser": "lexicon"}, "lore": {"seed": 1}}
    config = KernelConfig(modules=["models", "persona", "memory", "people", "emotion", "lore", "scripted"],
                          providers=providers, models=models, settings=settings)
    return Kernel(config, database=url).start()


@pytest.fixture(params=BACKENDS)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "duckdb":
        yield f"duckdb:///{tmp_path / 'tobio.duckdb'}"
    elif request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'tobio.sqlite'}"
    else:
        from conftest import _fresh_postgres, _postgres_url

        yield from _fresh_postgres(_postgres_url())


@pytest.fixture
def kernel(url: str, tmp_path: Path) -> Iterator[Kernel]:
    k = start(url)
    try:
        spawn(k, tmp_path, "tobio")
        yield k
    finally:
        k.close()


def spawn(kernel: Kernel, tmp_path: Path, name: str, channels: str = "[]") -> None:
    write(tmp_path / f"{name}-persona.yaml", f"name: {name.title()}\ndescription: A friendly artificial person.\n")
    agent = write(tmp_path / f"{name}.yaml",
                  f"name: {name}\ntype: persona\npersona: {name}-persona.yaml\nmodel: m\nstream: false\nchannels: {channels}\n")
    kernel.run(f"agent spawn {agent}")


def ask(kernel: Kernel, agent: str, text: str, user: str = "ada") -> str:
    from tobio.agents.conversation import exchange

    return kernel.call(exchange(kernel, agent, text, user=user, timeout=30)).content


def settle(kernel: Kernel) -> None:
    kernel.call(Memory.of(kernel).settle())
    kernel.call(PeopleModule.of(kernel).flush())
    wait_until(lambda: all(a.handled == a.delivered for a in kernel.agents.live.values()))
    time.sleep(0.05)
    kernel.call(kernel.flush())


def moment(kernel: Kernel) -> str:
    """Now, between two things said (rows are stamped with the kernel's naive-UTC clock)."""
    settle(kernel)
    at = utcnow().isoformat()
    time.sleep(0.05)
    return at


def prompt_of(kernel: Kernel, agent: str, text: str, user: str = "ada") -> list[dict[str, Any]]:
    """The messages `agent` would answer `text` from, in its DM with `user`."""

    async def go() -> list[dict[str, Any]]:
        target = kernel.agents.get(agent)
        me, channel = await kernel.agents.open_dm(user, agent)
        message = await me.say(channel, text, role="user")
        thread = kernel.transport.subscription(target.id, channel).thread_id
        return (await target.build_prompt(thread, message)).messages()

    return kernel.call(go())


def prompt_text(kernel: Kernel, agent: str, text: str, user: str = "ada") -> str:
    return "\n".join(str(m["content"]) for m in prompt_of(kernel, agent, text, user))


def normalised(snapshot: dict[str, Any], summaries: dict[str, str]) -> dict[str, Any]:
    """A replay's data with what differs by construction between a fork and its parent taken out: thread
    ids (their messages, in order, are kept), summary ids (their text is kept), lore timers' thread keys."""
    out = dict(snapshot)
    out["messages"] = sorted(v for v in snapshot["messages"].values())
    out["memories"] = sorted(summaries.get(m, m) if m.startswith("summary:") else m for m in snapshot["memories"])
    state = json.loads(json.dumps(snapshot["state"]))
    lore = state.get("modules", {}).get("lore")
    if isinstance(lore, dict):
        state["modules"]["lore"] = sorted(json.dumps(v, sort_keys=True) for v in lore.values())
    out["state"] = state
    out.pop("at")
    return out


def summary_texts(kernel: Kernel) -> dict[str, str]:
    return {f"summary:{i}": f"summary text {c}" for i, c in kernel.run("sql SELECT id, content FROM summaries").rows}


def test_a_fork_knows_what_was_said_before_not_after_and_both_go_on(kernel: Kernel, tmp_path: Path) -> None:
    kernel.run(f"lore import {write(tmp_path / 'coast.json', json.dumps(WORLD))} --name coast")
    kernel.run("lore attach coast --agent tobio")
    ask(kernel, "tobio", "Hi! My name is Ada and my dog is called Biscuit. Tell me about the lighthouse.")
    early = moment(kernel)
    ask(kernel, "tobio", "I live in Berlin.")
    ask(kernel, "tobio", "I moved to Paris.")
    ask(kernel, "tobio", "I love this wonderful sunny day!")
    people = PeopleModule.of(kernel)
    tobio = kernel.agents.get("tobio")
    wait_until(lambda: people.reflections.get((tobio.id, "ada")))
    thread = kernel.transport.subscription(tobio.id, "dm.ada.tobio").thread_id
    kernel.run(f"memory summarize {thread}")
    replies = [r["msg"] for r in kernel.run("agent history tobio -n 0").records() if r["from"] == "tobio"]
    kernel.run(f"memory forget tobio {replies[0]} --reason test")
    between = moment(kernel)
    ask(kernel, "tobio", "I live in Lisbon. Also my cat is called Zebulon.")
    ask(kernel, "tobio", "I hate this awful rain, it is terrible.")
    kernel.run(f"memory forget tobio {replies[1]} --reason later")
    harbour = {"entries": {"0": {"uid": 0, "key": ["harbour"], "content": "The harbour is closed.", "selective": False}}}
    kernel.run(f"lore import {write(tmp_path / 'harbour.json', json.dumps(harbour))} --name harbour")
    kernel.run("lore attach harbour --agent tobio")
    settle(kernel)

    out = kernel.run(f"agent fork tobio --at {between} --as tobio2")
    assert "forked tobio" in out.text and out.data["channels"] == {"dm.ada.tobio": "dm.ada.tobio2"}
    fork = kernel.agents.get("tobio2")
    known = people.known(fork.id, "ada")
    assert known["name"] == "Ada" and known["dog"] == "Biscuit" and known["home"] == "Paris" and "cat" not in known
    assert people.known(tobio.id, "ada")["home"] == "Lisbon" and people.known(tobio.id, "ada")["cat"] == "Zebulon"

    # Exactly as it was: the fork's replay at the fork point is its parent's, modulo ids.
    texts = summary_texts(kernel)
    theirs = kernel.run(f"agent replay tobio --at {between}").data
    ours = kernel.run(f"agent replay tobio2 --at {between}").data
    assert theirs["people"]["ada"] == known and theirs["people_past"]["ada"]["home"] and theirs["reflections"]
    assert theirs["lore"] and theirs["affect"] and any(m.startswith("summary:") for m in theirs["memories"])
    assert f"message:{replies[0]}" not in theirs["memories"] and f"message:{replies[1]}" in theirs["memories"]
    assert normalised(ours, texts) == normalised(theirs, texts)
    timers = ours["state"]["modules"]["lore"]  # lore's sticky clock, per thread: now per the fork's threads
    assert timers and {int(k) for k in timers} <= {int(k) for k in ours["messages"]}
    assert not {int(k) for k in timers} & {int(k) for k in theirs["messages"]}
    assert normalised(kernel.run(f"agent replay tobio2 --at {early}").data, texts) == normalised(
        kernel.run(f"agent replay tobio --at {early}").data, texts)  # before the fork point too

    # Its parent's replies before the fork point are its own words in its prompt; the person's are not.
    messages = prompt_of(kernel, "tobio2", "Do you remember what you said?")
    said = [m for m in messages if m["content"] == "Nice to meet you."]
    assert said and all(m["role"] == "assistant" for m in said)
    assert not any(m["role"] == "user" and str(m["content"]).startswith("tobio") for m in messages)  # not another speaker
    history = kernel.run("agent history tobio2").records()
    assert {r["from"] for r in history} <= {"ada", "tobio2"} and {r["from"] for r in kernel.run("agent history tobio").records()} == {"ada", "tobio"}

    # Nothing the parent learned after the fork point reaches the fork: prompt, recall, people notes.
    told = prompt_text(kernel, "tobio2", "Where do I live, and what is my cat called?")
    assert "Biscuit" in told and "Lisbon" not in told and "Zebulon" not in told and "rain" not in told
    hits = kernel.call(Memory.of(kernel).search(fork.id, "Zebulon cat Lisbon rain", k=20))
    assert not any("Zebulon" in h.item.text or "rain" in h.item.text for h in hits)
    # and what it recalls of its own earlier lines is its own too, as in its prompt (a restart reads them the same)
    index = kernel.call(Memory.of(kernel).index_for(fork.id))
    recalled = [i for i in index.items if i.kind == "message"]
    assert {i.sender for i in recalled} == {"ada", "tobio2"}, {i.sender for i in recalled}
    assert "Zebulon" in prompt_text(kernel, "tobio", "What is my cat called?")

    from tobio.lore.module import LoreModule

    store = kernel.modules.get(LoreModule).store
    assert store is not None
    assert store.books_for("tobio2", None)[1] == ["coast"] and store.books_for("tobio", None)[1] == ["coast", "harbour"]

    # Both go on, independently; the parent's record never changed.
    ask(kernel, "tobio2", "I work as a baker.")
    settle(kernel)
    assert people.known(fork.id, "ada").get("job") == "baker" and "job" not in people.known(tobio.id, "ada")
    assert kernel.run(f"agent replay tobio --at {between}").data == theirs
    listed = {r["name"]: r for r in kernel.run("agent ls --branches").records()}
    assert listed["tobio2"]["branch of"].startswith("tobio at ") and listed["tobio"]["branch of"] == ""
    assert "tobio2" in kernel.run("agent show tobio").data["branches"]


def test_fork_refuses_bad_requests_and_leaves_nothing(kernel: Kernel) -> None:
    ask(kernel, "tobio", "My name is Ada.")
    before = kernel.run("sql SELECT count(*) FROM threads").rows[0][0]
    for line, said in [("agent fork tobio --as t2", "--at TIME or --message ID"),
                       ("agent fork tobio --at now", "--as NEW"),
                       ("agent fork tobio --at now --as tobio", "taken"),
                       ("agent fork tobio --at now --as User", "person"),
                       ("agent fork ada --at now --as ada2", "person at a front end"),
                       ("agent fork tobio --at 2000-01-01T00:00:00 --as t3", "did not exist yet"),
                       ("agent fork tobio --message 999999 --as t4", "no message 999999")]:
        with pytest.raises((AgentError, CommandError), match=said):
            kernel.run(line)
    assert kernel.run("sql SELECT count(*) FROM threads").rows[0][0] == before


def test_only_a_person_forks_or_branches(kernel: Kernel) -> None:
    """A fork copies a mind, private conversations included: no agent may make one, of itself or another."""
    ask(kernel, "tobio", "My name is Ada.")
    for line in ("agent fork tobio --at now --as tobio3", "channel branch dm.ada.tobio --at now"):
        with pytest.raises(CommandError, match="agent"):
            kernel.run(line, caller="tobio")
    assert "tobio3" not in {r["name"] for r in kernel.run("agent ls --all").records()}
    assert kernel.run("sql SELECT count(*) FROM branches").rows[0][0] == 0


SCENE = "name: {name}\ntype: scripted\nchannels: [hall]\nreply_to: [ada]\nreplies: ['{name} hears {{text}}']\n"


def history_ids(kernel: Kernel, agent: str) -> list[int]:
    return [r["msg"] for r in kernel.run(f"agent history {agent} -n 0").records()]


def test_a_branched_scene_shares_its_past_and_goes_on_apart(url: str, tmp_path: Path) -> None:
    kernel = start(url)
    try:
        for name in ("ping", "pong"):
            kernel.run(f"agent spawn {write(tmp_path / (name + '.yaml'), SCENE.format(name=name))}")
        kernel.call(kernel.agents.ensure_user("ada", channels=("hall",)))

        def say(channel: str, text: str) -> None:
            kernel.run(f"channel post {channel} {text} --as ada")
            settle(kernel)

        say("hall", "the door creaks")
        between = moment(kernel)
        say("hall", "a dragon enters")
        shared = [i for i in history_ids(kernel, "ping") if i <= history_ids(kernel, "ping")[2]]

        out = kernel.run(f"channel branch hall --at {between}")
        assert out.data["channel"] == "hall.b1" and out.data["agents"] == {"ping": "ping.b1", "pong": "pong.b1"}
        assert out.data["people"] == ["ada"]
        say("hall.b1", "a cat enters")
        say("hall", "the dragon roars")

        for original, fork in (("ping", "ping.b1"), ("pong", "pong.b1")):
            mine, theirs = history_ids(kernel, fork), history_ids(kernel, original)
            assert mine[:3] == theirs[:3] == shared  # the same past, by reference: the same message rows
            assert mine[3:] and theirs[3:] and not set(mine[3:]) & set(theirs[3:])  # apart after it
        said = {(r["from"], r["content"]) for r in kernel.run("agent history ping.b1 -n 0").records()}
        assert ("ping.b1", "ping hears a cat enters") in said and ("ping.b1", "ping hears the door creaks") in said
        assert not any("dragon" in text for _, text in said)
        assert any("ping hears the dragon roars" == r["content"] for r in kernel.run("agent history ping -n 0").records())
        again = kernel.run(f"channel branch hall --at {between}").data  # a second branch of the same moment
        assert again["channel"] == "hall.b2"
        with pytest.raises(CommandError, match="no agent was in"):
            kernel.run("channel branch nowhere --at now")
    finally:
        kernel.close()


WORKER = """
import json, sys, time
from pathlib import Path
from test_fork import ask, settle, spawn, start, TABLES
from tobio.hooks import FORK

url, tmp = sys.argv[1], Path(sys.argv[2])
kernel = start(url)
spawn(kernel, tmp, "tobio")
ask(kernel, "tobio", "Hi! My name is Ada and my dog is called Biscuit.")
ask(kernel, "tobio", "I live in Lisbon.")
settle(kernel)
print(json.dumps({t: kernel.run(f"sql SELECT count(*) FROM {t}").rows[0][0] for t in TABLES}), flush=True)

def stall(conn, fork):
    print("inside", flush=True)  # memory, people and lore have written their rows: the transaction is open
    time.sleep(120)

kernel.hooks.add(FORK, stall)
kernel.run("agent fork tobio --at now --as tobio2")
"""
TABLES = ("agents", "threads", "pushes", "handled", "summaries", "people_facts", "memory_items", "steps", "branches",
          "lineage", "channels", "lore_attachments")


@pytest.mark.slow  # a second Python process
def test_a_fork_killed_half_way_leaves_nothing(url: str, tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys

    tests = Path(__file__).resolve().parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tests.parent), str(tests)])}
    script = write(tmp_path / "worker.py", WORKER)
    proc = subprocess.Popen([sys.executable, str(script), url, str(tmp_path)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line, proc.stderr.read() if proc.stderr else "worker died"
        before = json.loads(line)
        assert proc.stdout.readline().strip() == "inside", proc.stderr.read() if proc.stderr else ""
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    kernel = start(url)
    try:
        assert {t: kernel.run(f"sql SELECT count(*) FROM {t}").rows[0][0] for t in TABLES} == before
        assert "tobio2" not in {r["name"] for r in kernel.run("agent ls --all").records()}
        kernel.run("agent fork tobio --at now --as tobio2")  # the name is free, the fork is whole
        assert kernel.run("sql SELECT count(*) FROM branches").rows[0][0] == 1
    finally:
        kernel.close()


def test_a_fork_made_at_a_line_not_yet_answered_answers_it(kernel: Kernel, tmp_path: Path) -> None:
    """Forked at the person's line (`--message` of it), the fork answers that line itself, in its own chat;
    forked after the answer, it has nothing left to answer."""
    ask(kernel, "tobio", "Hello there.")
    ask(kernel, "tobio", "What should we do today?")
    settle(kernel)
    line = kernel.run("sql SELECT id FROM messages WHERE content = 'What should we do today?'").rows[0][0]
    kernel.run(f"agent fork tobio --message {line} --as tobio2")
    kernel.run("agent fork tobio --at now --as tobio3")
    wait_until(lambda: kernel.run("sql SELECT count(*) FROM messages WHERE channel = 'dm.ada.tobio2'").rows[0][0] == 1, 30)
    kernel.call(kernel.flush())
    answer = kernel.run("sql SELECT reply_to, content FROM messages WHERE channel = 'dm.ada.tobio2'").rows
    assert [row[0] for row in answer] == [line]  # the fork's own answer to the line it was forked at
    assert kernel.run("sql SELECT count(*) FROM messages WHERE channel = 'dm.ada.tobio3'").rows[0][0] == 0
    assert [r["name"] for r in kernel.run("agent ls").records() if r["unhandled"]] == []
