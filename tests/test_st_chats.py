"""SillyTavern chats in and out: imported histories equal the file, at its times; exports give the file back."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tobio.config.schema import KernelConfig
from tobio.errors import AgentError, CommandError, ConfigError
from tobio.kernel import Kernel
from tobio.persona.stchat import parse_time, read_chat

from conftest import write
from helpers import wait_until

# Written here from the documented format (public/script.js saveChat, src/endpoints/chats.js), not by Tobio.
HEADER = {"user_name": "Ada", "character_name": "Mika", "create_date": "2023-6-19@14h20m05s",
          "chat_metadata": {"note_prompt": "", "timedWorldInfo": {"sticky": {}, "cooldown": {}}}}
SINGLE = [
    {"name": "Mika", "is_user": False, "is_system": False, "send_date": "June 19, 2023 2:20pm",
     "mes": "*Mika punches your ticket* Evening.", "extra": {}, "swipe_id": 0, "swipes": ["*Mika punches your ticket* Evening.", "Tickets!"],
     "swipe_info": [{"send_date": "June 19, 2023 2:20pm", "extra": {}}]},
    {"name": "Ada", "is_user": True, "is_system": False, "send_date": "June 19, 2023 2:21pm", "mes": "Where does this line go?",
     "extra": {}, "force_avatar": "User Avatars/ada.png"},
    {"name": "Mika", "is_user": False, "is_system": False, "send_date": "2023-06-19T14:25:30.000Z",
     "mes": "All the way to the coast.\nSix hours.", "extra": {"api": "openai", "model": "x"}, "gen_started": "2023-06-19T14:25:28.000Z"},
    {"name": "Ada", "is_user": True, "is_system": False, "send_date": 1687185000000, "mes": "And the tunnel?", "extra": {}},
    {"name": "Mika", "is_user": False, "is_system": False, "send_date": "2023-6-19 @14h 31m 02s 120ms", "mes": "Eleven minutes.",
     "extra": {}},
]
GROUP = [
    {"name": "Ada", "is_user": True, "is_system": False, "send_date": "March 3, 2024 9:00am", "mes": "Morning, both.", "extra": {}},
    {"name": "Mika", "is_user": False, "is_system": False, "send_date": "March 3, 2024 9:01am", "mes": "Morning.",
     "extra": {}, "original_avatar": "mika.png", "force_avatar": "characters/mika.png"},
    {"name": "Sol", "is_user": False, "is_system": False, "send_date": "March 3, 2024 9:02am", "mes": "Coffee?",
     "extra": {}, "original_avatar": "sol.png", "force_avatar": "characters/sol.png"},
    {"name": "SillyTavern System", "is_user": False, "is_system": True, "send_date": "March 3, 2024 9:03am",
     "mes": "Sol left the chat.", "extra": {"type": "narrator"}},
]


def jsonl(*lines: dict[str, Any]) -> str:
    return "".join(json.dumps(line) + "\n" for line in lines)


def start(url: str, tmp_path: Path, memory: bool = False) -> Kernel:
    providers = {"s": {"type": "scripted", "replies": ["Noted."], "embed_dim": 32},
                 "sum": {"type": "scripted", "replies": ["In short: {last}"], "embed_dim": 32}}
    models = {"chat-default": {"provider": "s", "model": "x", "purpose": "chat"},
              "summarize": {"provider": "sum", "model": "x", "purpose": "summarize"},
              "embed": {"provider": "s", "model": "x", "purpose": "embed"}}
    settings = {"memory": {"budget_tokens": 64, "summary_tokens": 16, "memory_tokens": 8, "reserve_tokens": 0, "k": 0,
                           "summarize_all_threads": True, "tokenizer_model": "chat-default"}} if memory else {}
    modules = ["persona", "lore"] + (["memory"] if memory else [])
    return Kernel(KernelConfig(modules=modules, providers=providers, models=models, base_dir=tmp_path, settings=settings),
                  database=url).start()


def spawn(kernel: Kernel, tmp_path: Path, name: str) -> Any:
    write(tmp_path / f"{name}-persona.yaml", f"name: {name.title()}\ndescription: A traveller.\n")
    agent = write(tmp_path / f"{name}.yaml", f"name: {name}\ntype: persona\npersona: {name}-persona.yaml\nchannels: [lobby]\nstream: false\n")
    kernel.run(f"agent spawn {agent}")
    return wait_until(lambda: kernel.agents.live.get(name))


def thread_of(kernel: Kernel, agent: str, channel: str) -> int:
    return next(row[0] for row in kernel.run(f"thread ls --agent {agent} --channel {channel}").rows)


def history(kernel: Kernel, thread: int) -> list[tuple[str, str, datetime]]:
    rows = kernel.run(f"sql SELECT a.name, m.content, m.created_at FROM pushes p JOIN messages m ON m.id = p.message_id "
                      f"JOIN agents a ON a.id = m.agent_id WHERE p.thread_id = {thread} ORDER BY m.id").rows
    return [(name, content, at if isinstance(at, datetime) else datetime.fromisoformat(str(at))) for name, content, at in rows]


def test_times_in_every_form_st_wrote() -> None:
    assert parse_time("June 19, 2023 2:20pm") == datetime(2023, 6, 19, 14, 20)
    assert parse_time("June 19, 2023 12:05am") == datetime(2023, 6, 19, 0, 5)
    assert parse_time("2023-06-19T14:25:30.000Z") == datetime(2023, 6, 19, 14, 25, 30)
    assert parse_time(1687185000000) == datetime(2023, 6, 19, 14, 30)
    assert parse_time("2024-7-12@01h31m37s") == datetime(2024, 7, 12, 1, 31, 37)
    assert parse_time("2023-6-19 @14h 31m 02s 120ms") == datetime(2023, 6, 19, 14, 31, 2, 120000)
    assert parse_time("yesterday") is None and parse_time(None) is None


def test_single_chat_round_trip_and_replay_on_imported_time(duckdb_url: str, tmp_path: Path) -> None:
    source = write(tmp_path / "Mika - 2023-6-19.jsonl", jsonl(HEADER, *SINGLE))
    kernel = start(duckdb_url, tmp_path)
    try:
        mika = spawn(kernel, tmp_path, "mika")
        out = kernel.run(f"transcript import '{source}' --user ada").text
        assert "imported 5 messages" in out and "st.mika" in out
        expected = [(("ada" if m["is_user"] else "mika"), m["mes"], parse_time(m["send_date"])) for m in SINGLE]
        for agent in ("mika", "ada"):  # each one's subjective history is the whole chat, at its times
            assert history(kernel, thread_of(kernel, agent, "st.mika")) == expected
        back = tmp_path / "back.jsonl"
        kernel.run(f"transcript export {thread_of(kernel, 'mika', 'st.mika')} {back}")
        assert [json.loads(line) for line in back.read_text().splitlines()] == [HEADER, *SINGLE]
        # Time travel to the middle of the imported chat: only what had been said by then.
        replay = kernel.run("agent replay mika --at 2023-06-19T14:22:00").data
        seen = [ids for ids in replay["messages"].values() if ids]
        assert len(seen) == 1 and len(seen[0]) == 2
        with pytest.raises(AgentError, match="did not exist yet"):
            kernel.run("agent replay mika --at 2023-06-19T14:00:00")
        # The conversation goes on: a new message reaches the imported thread, its history in the prompt.
        kernel.call(_say(kernel, "ada", "st.mika", "How long is the tunnel again?"))
        wait_until(lambda: mika.turns == 1)
        prompt = "\n".join(m["content"] for m in kernel.run("agent prompt mika --channel st.mika").data["messages"])
        assert "Eleven minutes." in prompt and "How long is the tunnel again?" in prompt
        with pytest.raises(CommandError, match="already has threads"):
            kernel.run(f"transcript import '{source}' --user ada")
    finally:
        kernel.close()


async def _say(kernel: Kernel, who: str, channel: str, text: str) -> None:
    person = await kernel.agents.ensure_user(who, (channel,))
    await kernel.transport.post(channel, text, sender=person, role="user")


def test_group_chat_import_export_and_backfill(duckdb_url: str, tmp_path: Path) -> None:
    chatter = [{"name": ("Mika", "Sol", "Ada")[i % 3], "is_user": i % 3 == 2, "is_system": False,
                "send_date": f"March 3, 2024 10:{i:02d}am", "mes": f"Line {i} about trains, tunnels and the long coast road.",
                "extra": {}} for i in range(40)]
    group = GROUP + chatter  # long enough that memory must summarise it
    source = write(tmp_path / "group.jsonl", jsonl(*group))
    kernel = start(duckdb_url, tmp_path, memory=True)
    try:
        spawn(kernel, tmp_path, "mika")
        spawn(kernel, tmp_path, "solveig")
        with pytest.raises(CommandError, match="no agent named sol:"):  # the narrator is the channel's voice
            kernel.run(f"transcript import {source} --user ada --channel tavern")
        out = kernel.run(f"transcript import {source} --user ada --channel tavern --as Sol=solveig 'SillyTavern System=mika' --backfill").text
        assert "imported 44 messages" in out and "summaries written" in out
        threads = {a: thread_of(kernel, a, "tavern") for a in ("ada", "mika", "solveig")}
        texts = [m["mes"] for m in group]
        for thread in threads.values():
            assert [content for _, content, _ in history(kernel, thread)] == texts
        assert kernel.run(f"sql SELECT count(*) FROM summaries WHERE thread_id = {threads['mika']}").rows[0][0] >= 1
        back = tmp_path / "group-back.jsonl"
        kernel.run(f"transcript export {threads['solveig']} {back}")
        assert [json.loads(line) for line in back.read_text().splitlines()] == group  # no header: a group chat
    finally:
        kernel.close()


def test_hostile_chat_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="nested"):
        read_chat(write(tmp_path / "deep.jsonl", '{"mes": ' + "[" * 100 + "]" * 100 + "}\n"))
    with pytest.raises(ConfigError, match="no messages"):
        read_chat(write(tmp_path / "empty.jsonl", json.dumps(HEADER) + "\n"))
    with pytest.raises(ConfigError, match="JSON object"):
        read_chat(write(tmp_path / "list.jsonl", "[1]\n"))
    chat = read_chat(write(tmp_path / "env.jsonl", jsonl({"name": "${USER}", "is_user": True, "mes": "$(id) ${HOME}"})))
    assert (chat.lines[0].name, chat.lines[0].text) == ("${USER}", "$(id) ${HOME}")


def test_a_live_conversation_exports_and_imports_again(duckdb_url: str, tmp_path: Path) -> None:
    kernel = start(duckdb_url, tmp_path)
    try:
        mika = spawn(kernel, tmp_path, "mika")
        for i, text in enumerate(["Hello there.", "What time is the last train?"], 1):
            kernel.call(_say(kernel, "ada", "lobby", text))
            wait_until(lambda i=i: mika.turns == i)
        original = thread_of(kernel, "mika", "lobby")
        out = tmp_path / "live.jsonl"
        kernel.run(f"transcript export {original} {out}")
        lines = [json.loads(line) for line in out.read_text().splitlines()]
        assert lines[0] == {"user_name": "ada", "character_name": "Mika", "create_date": lines[0]["create_date"], "chat_metadata": {}}
        assert [(m["name"], m["is_user"], m["mes"]) for m in lines[1:]] == [
            ("ada", True, "Hello there."), ("Mika", False, "Noted."), ("ada", True, "What time is the last train?"), ("Mika", False, "Noted.")]
        kernel.run(f"transcript import {out} --channel again")
        again = history(kernel, thread_of(kernel, "mika", "again"))
        before = history(kernel, original)
        assert [(n, c) for n, c, _ in again] == [(n, c) for n, c, _ in before]
        assert [t.replace(second=0, microsecond=0) for _, _, t in again] == [t.replace(second=0, microsecond=0) for _, _, t in before]
    finally:
        kernel.close()
