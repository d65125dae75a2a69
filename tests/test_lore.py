"""World Info: activation semantics (SillyTavern's), the prompt hook, commands, and a real card's lorebook."""

from __future__ import annotations

import asyncio
import json
import random
from pathlib import Path
from typing import Any

import pytest

from tobio.config.schema import KernelConfig
from tobio.errors import ConfigError
from tobio.kernel import Kernel
from tobio.lore.engine import Activation, Engine, Settings, TimedState
from tobio.lore.schema import AND_ALL, AND_ANY, AT_DEPTH, NOT_ALL, NOT_ANY, parse_book, parse_decorators
from tobio.lore.store import read_world_file

from conftest import write
from helpers import wait_until

CARDS = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "cards"


def entry(uid: int, keys: list[str], content: str, **ext: Any) -> dict[str, Any]:
    """A SillyTavern World Info entry (the standalone file format)."""
    return {"uid": uid, "key": keys, "keysecondary": [], "comment": f"e{uid}", "content": content, "constant": False,
            "selective": True, "selectiveLogic": 0, "order": 100, "position": 0, "disable": False, **ext}


def world(*entries: dict[str, Any], **book: Any) -> dict[str, Any]:
    return {"entries": {str(e["uid"]): e for e in entries}, **book}


def run(raw: dict[str, Any], messages: list[str], *, state: TimedState | None = None, length: int = 1, seed: int = 0,
        turns: int = 0, **settings: Any) -> Activation:
    engine = Engine([parse_book("w", raw)], Settings(**settings), rng=random.Random(seed))
    return asyncio.run(engine.run(messages, chat_length=length, assistant_turns=turns, state=state))


def fired(activation: Activation) -> list[str]:
    return [f.entry.uid for f in activation.fired]


def test_plain_keys_are_case_insensitive_substrings_unless_told() -> None:
    raw = world(entry(1, ["Dragon"], "Dragons hoard gold."), entry(2, ["Castle"], "The castle is old.", caseSensitive=True),
                entry(3, ["cat"], "Cats.", matchWholeWords=True))
    assert fired(run(raw, ["I saw a DRAGON and a castle; concatenate"])) == ["1"]
    assert sorted(fired(run(raw, ["the Castle, the cat"]))) == ["2", "3"]


def test_regex_keys_slash_form_and_v3_use_regex() -> None:
    raw = world(entry(1, ["/\\bsw(or|ee)d\\b/i"], "A blade."), entry(2, ["[unclosed"], "never", use_regex=True),
                entry(3, ["\\x01hel+o"], "greeting", use_regex=True))  # \x01 starts a message, as in ST
    assert fired(run(raw, ["My SWORD is sharp"])) == ["1"]
    assert fired(run(raw, ["hellllo there"])) == ["3"]  # an invalid pattern never matches, and does not raise
    card = {"entries": [{"keys": ["colou?r"], "content": "paint", "use_regex": True, "enabled": True, "insertion_order": 1}]}
    assert [f.entry.uid for f in asyncio.run(Engine([parse_book("c", card)], Settings()).run(["what color?"], chat_length=1)).fired] == ["0"]


@pytest.mark.parametrize("logic,text,expected", [
    (AND_ANY, "apple and pear", True), (AND_ANY, "apple alone", False),
    (AND_ALL, "apple pear plum", True), (AND_ALL, "apple pear", False),
    (NOT_ANY, "apple alone", True), (NOT_ANY, "apple plum", False),
    (NOT_ALL, "apple pear", True), (NOT_ALL, "apple pear plum", False),
])
def test_secondary_key_logic(logic: int, text: str, expected: bool) -> None:
    raw = world(entry(1, ["apple"], "fruit", keysecondary=["pear", "plum"], selectiveLogic=logic))
    result = run(raw, [text])
    assert (fired(result) == ["1"]) is expected
    if not expected:
        assert "secondary keys not satisfied" in result.why()[0]["reason"]


def test_scan_depth_global_book_and_entry() -> None:
    raw = world(entry(1, ["lighthouse"], "Lit at dusk."), entry(2, ["lighthouse"], "Far back.", scanDepth=5))
    messages = ["newest", "second", "third: lighthouse"]  # newest first
    assert fired(run(raw, messages, scan_depth=2)) == ["2"]
    assert sorted(fired(run(raw, messages, scan_depth=3))) == ["1", "2"]
    card = {"scan_depth": 3, "entries": [{"keys": ["lighthouse"], "content": "x", "enabled": True, "insertion_order": 1}]}
    assert len(asyncio.run(Engine([parse_book("c", card)], Settings(scan_depth=1)).run(messages, chat_length=3)).fired) == 1


def test_constant_entries_and_insertion_order() -> None:
    raw = world(entry(1, [], "Always here.", constant=True, order=5), entry(2, ["rain"], "It rains.", order=50),
                entry(3, ["rain"], "Umbrellas.", order=10))
    result = run(raw, ["rain today"])
    assert fired(result) == ["1", "3", "2"]  # prompt order: lowest order first, as SillyTavern builds it
    assert fired(run(raw, ["sunny"])) == ["1"]


def test_budget_keeps_highest_order_first_and_stops() -> None:
    words = " ".join(["word"] * 30)
    raw = world(entry(1, ["go"], words, order=10), entry(2, ["go"], words, order=90), entry(3, ["go"], "tiny", order=50))
    result = run(raw, ["go"], budget_tokens=40)
    assert fired(result) == ["3", "2"] and result.overflowed  # order 90 first, then 50; 10 no longer fits
    assert [r["entry"] for r in result.why() if "budget" in r["reason"]] == ["w.1"]


def test_recursion_is_bounded_and_can_be_excluded() -> None:
    raw = world(entry(1, ["start"], "mentions alpha"), entry(2, ["alpha"], "mentions beta"), entry(3, ["beta"], "mentions gamma"),
                entry(4, ["gamma"], "end"), entry(5, ["alpha"], "never by recursion", excludeRecursion=True),
                entry(6, ["beta"], "stops the chain", preventRecursion=True, order=1))
    assert fired(run(raw, ["start"])) == ["1"]  # SillyTavern's default: no recursion
    full = run(raw, ["start"], recursive=True, max_recursion_steps=10)
    assert set(fired(full)) == {"1", "2", "3", "4", "6"} and full.passes == 5
    bounded = run(raw, ["start"], recursive=True, max_recursion_steps=2)
    assert set(fired(bounded)) == {"1", "2"} and bounded.passes == 2
    no_book_recursion = world(*raw["entries"].values(), recursive_scanning=False)
    assert fired(run(no_book_recursion, ["start"], recursive=True)) == ["1"]
    book_recursion = world(*raw["entries"].values(), recursive_scanning=True)
    assert len(fired(run(book_recursion, ["start"]))) == 4  # the book asks for it; 3 passes by default


def test_probability_uses_the_seeded_rng() -> None:
    raw = world(*[entry(i, ["coin"], f"side {i}", probability=50) for i in range(40)])
    first = fired(run(raw, ["coin"], seed=7, budget_tokens=10_000))
    assert first == fired(run(raw, ["coin"], seed=7, budget_tokens=10_000))
    assert 5 < len(first) < 35
    assert fired(run(world(entry(1, ["coin"], "x", probability=0, useProbability=False)), ["coin"])) == ["1"]


def test_sticky_cooldown_and_delay_count_messages() -> None:
    raw = world(entry(1, ["storm"], "A storm rages.", sticky=2, cooldown=3), entry(2, ["calm"], "Calm.", delay=4))
    state = TimedState()
    assert fired(run(raw, ["a storm!"], state=state, length=1)) == ["1"]
    assert fired(run(raw, ["it passed"], state=state, length=2)) == ["1"]  # sticky: no key needed
    assert fired(run(raw, ["storm again"], state=state, length=3)) == []  # sticky over: cooldown 3 from here
    assert fired(run(raw, ["storm, calm"], state=state, length=5)) == ["2"]  # still cooling; delay passed
    assert fired(run(raw, ["storm"], state=state, length=6)) == ["1"]
    assert fired(run(raw, ["calm"], state=TimedState(), length=3)) == []  # delay: not before 4 messages
    dry = run(raw, ["it passed"], state=None, length=7)
    assert fired(dry) == []  # a dry run has no memory


def test_decorators_are_parsed_honoured_and_unknown_ones_kept() -> None:
    honoured, unknown, content = parse_decorators("@@depth 2\n@@role assistant\n@@risu_thing 4\n@@@scan_depth 1\n@@foo\nBody\n@@not")
    assert [str(d) for d in honoured] == ["@@depth 2", "@@role assistant", "@@scan_depth 1"]
    assert [str(d) for d in unknown] == ["@@risu_thing 4", "@@foo"]
    assert content == "Body\n@@not"
    raw = {"entries": [
        {"keys": ["x"], "content": "@@depth 0\n@@role user\nInjected.", "enabled": True, "insertion_order": 1},
        {"keys": ["zzz"], "content": "@@activate\nAlways.", "enabled": True, "insertion_order": 2},
        {"keys": ["x"], "content": "@@dont_activate\nNever.", "enabled": True, "insertion_order": 3},
        {"keys": ["x"], "content": "@@exclude_keys y\nNot with y.", "enabled": True, "insertion_order": 4},
        {"keys": ["x"], "content": "@@additional_keys q, r\nNeeds q or r.", "enabled": True, "insertion_order": 5},
        {"keys": ["x"], "content": "@@activate_only_after 2\nLater.", "enabled": True, "insertion_order": 6},
    ]}
    book = parse_book("d", raw)
    assert (book.entries[0].position, book.entries[0].depth, book.entries[0].role) == (AT_DEPTH, 0, 1)
    engine = Engine([book], Settings())
    got = asyncio.run(engine.run(["x r"], chat_length=1, assistant_turns=2))
    assert [f.content for f in got.fired] == ["Injected.", "Always.", "Not with y.", "Needs q or r.", "Later."]
    got = asyncio.run(engine.run(["x y"], chat_length=1, assistant_turns=0))
    assert [f.content for f in got.fired] == ["Injected.", "Always."]


def test_world_file_import_is_capped(tmp_path: Path) -> None:
    deep = "[" * 200 + "]" * 200
    with pytest.raises(ConfigError, match="nested"):
        read_world_file(write(tmp_path / "deep.json", '{"entries": {"0": ' + deep + "}}"))
    with pytest.raises(ConfigError, match="lorebook"):
        read_world_file(write(tmp_path / "list.json", "[1, 2]"))
    big = tmp_path / "big.json"
    big.write_bytes(b" " * (9 * 1024 * 1024))
    with pytest.raises(ConfigError, match="bytes"):
        read_world_file(big)
    text = '{"entries": {"0": {"uid": 0, "key": ["${HOME}"], "content": "${HOME} $(id)"}}}'
    raw = read_world_file(write(tmp_path / "env.json", text))
    assert raw["entries"]["0"]["content"] == "${HOME} $(id)"  # data, never expanded


# --- the module: prompt hook, steps, commands, real cards ------------------------------------------


def start(url: str, tmp_path: Path, **lore: Any) -> Kernel:
    config = KernelConfig(modules=["persona", "lore"], providers={"s": {"type": "scripted", "replies": ["Fine."]}},
                          models={"chat-default": {"provider": "s", "model": "x"}}, base_dir=tmp_path,
                          settings={"lore": lore} if lore else {})
    return Kernel(config, database=url).start()


def persona_agent(kernel: Kernel, tmp_path: Path, persona: str, name: str, channel: str = "room") -> Any:
    agent_file = write(tmp_path / f"{name}.yaml", f"name: {name}\ntype: persona\npersona: {persona}\nchannels: [{channel}]\nstream: false\n")
    kernel.run(f"agent spawn {agent_file}")
    return wait_until(lambda: kernel.agents.live.get(name) if getattr(kernel.agents.live.get(name), "persona_key", None) else None)


def say(kernel: Kernel, who: str, text: str, channel: str = "room") -> None:
    async def go() -> None:
        person = await kernel.agents.ensure_user(who, (channel,))
        await kernel.transport.post(channel, text, sender=person, role="user")

    kernel.call(go())


def prompt_text(kernel: Kernel, agent: str) -> str:
    return "\n".join(str(m["content"]) for m in kernel.run(f"agent prompt {agent}").data["messages"])


@pytest.mark.skipif(not CARDS.is_dir(), reason=f"the real cards are not at {CARDS}")
def test_sakana_lorebook_fires_on_its_keys_in_a_real_prompt(duckdb_url: str, tmp_path: Path) -> None:
    kernel = start(duckdb_url, tmp_path)
    try:
        out = kernel.run(f"persona import {CARDS / 'contest_Assistant_Sakana.png'}").text
        assert "persona 'sakana'" in out
        agent = persona_agent(kernel, tmp_path, "personas/sakana.yaml", "sakana")
        books = {row[0]: row for row in kernel.run("lore ls").rows}
        assert books["card:sakana"][2] == 14
        quiet = prompt_text(kernel, "sakana")
        assert "Hello World" not in quiet and "{{user}}" not in quiet  # macros filled in everywhere
        say(kernel, "ada", "Could you help me with some money problems?")
        wait_until(lambda: agent.turns == 1)
        shown = kernel.run("agent prompt sakana")
        messages = shown.data["messages"]
        text = "\n".join(m["content"] for m in messages)
        assert "spent it all on Gacha games" in text  # the "Money" entry
        assert "lore: " in (shown.note or "") and "Money" in (shown.note or "")  # which entries fired, and why
        assert "{{user}}" not in text and "{{char}}" not in text and "ada: Money?" in text
        lore = next(m for m in messages if "Gacha" in m["content"])
        assert lore["role"] == "system" and messages.index(lore) == len(messages) - 2  # next to the newest message, not the system prompt
        assert "Gacha" not in messages[0]["content"]
        say(kernel, "ada", "Please write a python function for me, Kiana Kaslana")
        wait_until(lambda: agent.turns == 2)
        text = prompt_text(kernel, "sakana")
        assert "Program Hello World in Python" in text and "I am not Kiana Kaslana" in text
        kernel.call(kernel.writer.flush())
        steps = kernel.run("sql SELECT run_id, message_id, result FROM steps WHERE kind = 'lore' ORDER BY id").rows
        assert len(steps) == 2 and all(run_id is not None for run_id, _, _ in steps)
        labels = [f["label"] for f in json.loads(steps[1][2])["fired"]] if isinstance(steps[1][2], str) else [
            f["label"] for f in steps[1][2]["fired"]]
        assert "Programming Example" in labels and "Kiana Kaslana (Gag)" in labels
        run_show = kernel.run(f"run show {steps[1][0]}").rows
        assert any("lore" in str(field) for field, _ in run_show)
        replay = kernel.run("agent replay sakana --at now").data
        assert replay["lore"][0]["message"] == steps[1][1]
        why = kernel.run('lore test "I need money, baka" --agent sakana').data
        assert {"card:sakana.8", "card:sakana.6"} <= set(why["fired"])
    finally:
        kernel.close()


def test_standalone_world_import_attach_versions_and_export(duckdb_url: str, tmp_path: Path) -> None:
    raw = world(entry(0, ["harbor", "/dock(s|yard)/i"], "The harbor freezes in winter; {{char}} hates it.", order=20),
                entry(1, ["tide"], "@@depth 2\n@@role assistant\nTides are high at dusk.", order=30),
                entry(2, [], "The town is called Vell.", constant=True, position=0),
                entry(3, ["harbor"], "Only with ships.", keysecondary=["ship"], selectiveLogic=AND_ALL))
    source = write(tmp_path / "My Coast (v2)!.json", json.dumps(raw))
    write(tmp_path / "vela-persona.yaml", "name: Vela\ndescription: A sailor.\n")
    kernel = start(duckdb_url, tmp_path, seed=3)
    try:
        out = kernel.run(f"lore import '{source}'").text
        assert "lorebook 'my-coast-v2' (version 1, 4 entries)" in out
        assert kernel.run(f"lore import '{source}'").text.startswith("imported lorebook 'my-coast-v2' (version 1")  # same content
        vela = persona_agent(kernel, tmp_path, "vela-persona.yaml", "vela", channel="quay")
        kernel.run("lore attach my-coast-v2 --channel quay")
        say(kernel, "ada", "Meet me at the dockyard when the tide turns.", channel="quay")
        wait_until(lambda: vela.turns == 1)
        messages = kernel.run("agent prompt vela").data["messages"]
        assert messages[0]["content"].startswith("The town is called Vell.\nYou are Vela.")  # constant: stable system prompt
        near = [m for m in messages if "harbor freezes" in m["content"]]
        assert near and near[0]["content"].startswith("The harbor freezes in winter; Vela hates it.") and near[0]["role"] == "system"
        tide = next(m for m in messages if m["content"] == "Tides are high at dusk.")
        assert tide["role"] == "assistant"
        assert "Only with ships." not in "\n".join(m["content"] for m in messages)
        why = {r["entry"]: r for r in kernel.run('lore test "harbor" --book my-coast-v2').data["why"]}
        assert why["my-coast-v2.3"]["fired"] is False and "AND ALL" in why["my-coast-v2.3"]["reason"]
        assert why["my-coast-v2.0"]["fired"] and why["my-coast-v2.0"]["reason"] == "key 'harbor'"
        rows = kernel.run("lore show my-coast-v2").rows
        assert any("@@depth 2 @@role assistant" in str(row[7]) for row in rows)
        kernel.run("lore export my-coast-v2 " + str(tmp_path / "back.json"))
        assert json.loads((tmp_path / "back.json").read_text()) == raw
        raw["entries"]["0"]["content"] = "Changed."
        write(tmp_path / "coast.json", json.dumps(raw))
        assert "version 2" in kernel.run(f"lore import {tmp_path / 'coast.json'} --name my-coast-v2").text
        assert [r[0] for r in kernel.run("lore history my-coast-v2").rows] == [1, 2]
        kernel.run("lore detach my-coast-v2 --channel quay")
        assert "Tides" not in "\n".join(m["content"] for m in kernel.run("agent prompt vela").data["messages"])
        kernel.run("lore attach my-coast-v2 --agent vela")
    finally:
        kernel.close()
    kernel = start(duckdb_url, tmp_path)  # books, versions and attachments survive a restart
    try:
        assert kernel.run("lore ls").rows[0][:4] == ("my-coast-v2", 2, 4, "agent vela")
    finally:
        kernel.close()


def test_lore_shares_memorys_budget(duckdb_url: str, tmp_path: Path) -> None:
    long = " ".join(["ice"] * 200)
    source = write(tmp_path / "w.json", json.dumps(world(entry(0, ["cold"], long, order=1), entry(1, ["cold"], "Short fact.", order=9))))
    write(tmp_path / "vela-persona.yaml", "name: Vela\ndescription: A sailor.\n")
    config = KernelConfig(modules=["persona", "memory", "lore"], providers={"s": {"type": "scripted", "replies": ["Fine."]}},
                          models={"chat-default": {"provider": "s", "model": "x"}, "summarize": {"provider": "s", "model": "x"},
                                  "embed": {"provider": "s", "model": "x", "purpose": "embed"}},
                          base_dir=tmp_path, settings={"memory": {"budget_tokens": 400, "k": 0}})
    kernel = Kernel(config, database=duckdb_url).start()
    try:
        kernel.run(f"lore import {source}")
        vela = persona_agent(kernel, tmp_path, "vela-persona.yaml", "vela", channel="quay")
        kernel.run("lore attach w --agent vela")
        say(kernel, "ada", "So cold today.", channel="quay")
        wait_until(lambda: vela.turns == 1)
        module = kernel.modules.loaded["lore"]
        assert module.hook.budget(vela) == 100  # a quarter of memory's prompt budget
        text = "\n".join(m["content"] for m in kernel.run("agent prompt vela").data["messages"])
        assert "Short fact." in text and "ice ice" not in text  # the long entry does not fit the lore budget
    finally:
        kernel.close()


def test_character_filter_names() -> None:
    raw = world(entry(1, ["x"], "only Mika", characterFilter={"isExclude": False, "names": ["Mika"], "tags": []}),
                entry(2, ["x"], "never Mika", characterFilter={"isExclude": True, "names": ["mika"], "tags": []}))
    book = parse_book("w", raw)
    for who, expected in (({"mika", "Mika"}, ["1"]), ({"sol"}, ["2"]), (None, ["1", "2"])):
        got = asyncio.run(Engine([book], Settings()).run(["x"], chat_length=1, character=who))
        assert sorted(fired(got)) == expected


def test_inclusion_groups_override_weight_and_scoring() -> None:
    raw = world(entry(1, ["tea"], "green", group="drink", order=10), entry(2, ["tea"], "black", group="drink", order=20,
                groupOverride=True), entry(3, ["tea"], "oolong", group="drink", order=30))
    assert fired(run(raw, ["tea"])) == ["2"]
    rolled = {tuple(fired(run(world(entry(1, ["tea"], "a", group="g"), entry(2, ["tea"], "b", group="g")), ["tea"], seed=s)))
              for s in range(20)}
    assert rolled == {("1",), ("2",)}  # one winner per group, by a weighted roll
    scored = world(entry(1, ["tea", "milk"], "milk tea", group="g", useGroupScoring=True),
                   entry(2, ["tea"], "plain", group="g", useGroupScoring=True))
    assert all(fired(run(scored, ["tea with milk"], seed=s)) == ["1"] for s in range(10))


def test_lore_test_without_a_target_uses_every_book(duckdb_url: str, tmp_path: Path) -> None:
    kernel = start(duckdb_url, tmp_path)
    try:
        kernel.run(f"lore import {write(tmp_path / 'a.json', json.dumps(world(entry(0, ['moon'], 'Two moons.'))))}")
        kernel.run(f"lore import {write(tmp_path / 'b.json', json.dumps(world(entry(0, ['sun'], 'One sun.'))))}")
        result = kernel.run('lore test "the sun and the moon"')
        assert sorted(result.data["fired"]) == ["a.0", "b.0"]
        assert [row[2] for row in result.rows] == ["fires", "fires"]
    finally:
        kernel.close()


@pytest.mark.skipif(not CARDS.is_dir(), reason=f"the real cards are not at {CARDS}")
def test_a_cards_book_imports_as_a_standalone_lorebook(tmp_path: Path) -> None:
    raw = read_world_file(CARDS / "contest_Assistant_Sakana.png")
    assert raw["name"] == "Sakana-WI" and len(parse_book("sakana-wi", raw).entries) == 14
