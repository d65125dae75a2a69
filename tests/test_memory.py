"""Memory: summaries chain, the prompt budget holds, retrieval is scoped to the agent, forget, commands."""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tobio.config.schema import KernelConfig
from tobio.db.history import thread_context
from tobio.errors import CommandError
from tobio.hooks import HISTORY_SOURCE, PROMPT
from tobio.kernel import Kernel
from tobio.memory.config import MemoryConfig
from tobio.memory.module import MemoryModule
from tobio.memory.service import Memory

from conftest import write

SMALL = dict(budget_tokens=200, summary_tokens=30, memory_tokens=40, reserve_tokens=0, k=3, tokenizer_model="m")


def start(url: str, load: bool = True, **settings: Any) -> Kernel:
    providers = {"s": {"type": "scripted", "replies": ["Ada answers: {last}"], "embed_dim": 64},
                 "sum": {"type": "scripted", "replies": ["In short: {last}"], "embed_dim": 64}}
    models = {"m": {"provider": "s", "model": "x", "purpose": "chat"},
              "summarize": {"provider": "sum", "model": "x", "purpose": "summarize"},
              "embed": {"provider": "s", "model": "x", "purpose": "embed"}}
    kernel = Kernel(KernelConfig(modules=["models", "persona", "scripted"], providers=providers, models=models), database=url).start()
    kernel.modules.register(type("TestMemory", (MemoryModule,), {"config": MemoryConfig(**{**SMALL, **settings})}))
    if load:
        kernel.run("mod load memory")
    return kernel


memory = Memory.of


@pytest.fixture
def kernel(duckdb_url: str) -> Iterator[Kernel]:
    k = start(duckdb_url)
    try:
        yield k
    finally:
        k.close()


async def _users(kernel: Kernel, *names: str, channel: str = "room") -> list[Any]:
    return [await kernel.agents.ensure_user(n, (channel,)) for n in names]


def say(kernel: Kernel, lines: list[tuple[str, str]], channel: str = "room") -> list[int]:
    """Post (sender, text) lines in order; returns message ids once memory has indexed them."""

    async def go() -> list[int]:
        ids = []
        for sender, text in lines:
            agent = kernel.agents.live[sender]
            ids.append((await kernel.transport.post(channel, text, sender=agent, role="user")).id)
        await memory(kernel).settle()
        return ids

    return kernel.call(go())


@pytest.mark.slow
def test_summaries_chain_without_losing_or_repeating_messages(duckdb_url: str) -> None:
    kernel = start(duckdb_url, summarize_all_threads=True)
    try:
        _chain(kernel)
    finally:
        kernel.close()


def _chain(kernel: Kernel) -> None:
    kernel.call(_users(kernel, "alice", "bob"))
    say(kernel, [("alice" if i % 2 else "bob", f"turn {i} we talk about topic{i % 9} and more words") for i in range(240)])
    for name in ("alice", "bob"):
        thread = kernel.run(f"sql SELECT id FROM threads WHERE name = '{name}@room'").rows[0][0]
        pushed = [r[0] for r in kernel.run(f"sql SELECT message_id FROM pushes WHERE thread_id = {thread} ORDER BY message_id").rows]
        spans = [r for r in kernel.run(f"memory summaries {name}").rows if r[0] == thread]
        assert len(spans) > 10
        covered: list[int] = []
        for _thread, _id, first, checkpoint, count, _tokens, _created, _content in spans:
            part = [m for m in pushed if first <= m <= checkpoint]
            assert part and part[0] == first and len(part) == count
            covered += part
        assert covered == pushed[: len(covered)]  # contiguous from the first message, none twice, none skipped
        checkpoints = [s[3] for s in spans]
        assert checkpoints == sorted(set(checkpoints))
        assert kernel.run(f"sql SELECT checkpoint_message_id FROM threads WHERE id = {thread}").rows[0][0] == checkpoints[-1]


def _ada(kernel: Kernel, tmp_path: Path) -> Any:
    write(tmp_path / "ada.yaml", "name: Ada\ndescription: A careful engineer.\npersonality: [precise]\n")
    agent_file = write(tmp_path / "agent.yaml", "name: ada\ntype: persona\npersona: ada.yaml\nmodel: m\nchannels: [room]\nstream: false\n")
    kernel.run(f"agent spawn {agent_file}")
    return kernel.agents.live["ada"]


def _words(messages: list[dict[str, Any]]) -> int:
    """Prompt tokens exactly as the scripted provider counts them."""
    return sum(len(re.findall(r"\w+", str(m["content"]))) for m in messages)


# The length. A turn's memory work does not grow with the thread (no re-read of its history, no
# per-turn scan of all memories), so this takes well under a minute; TOBIO_MEMORY_TURNS overrides it.
TURNS = int(os.environ.get("TOBIO_MEMORY_TURNS", "2000"))


@pytest.mark.slow
@pytest.mark.timeout(1200)  # 2,000 turns: it waits up to 900 s for them itself
def test_prompt_budget_holds_over_a_long_conversation(duckdb_url: str, tmp_path: Path) -> None:
    """Every prompt of a 2,000-turn conversation fits, while summaries are written in the background;
    the history memory works from (kept between turns, not re-read) is always exactly the thread's."""
    # Every turn here is one of two templates, so most memories repeat a message in the history and the
    # prompt skips them (the ranker, which prefers answers to a matching question, puts such repeats first):
    # the prompt fetches more hits until it has ones that say something new, and so recalls every turn.
    kernel = start(duckdb_url, budget_tokens=300, summary_tokens=40, memory_tokens=60)
    try:
        ada = _ada(kernel, tmp_path)
        ada.pause()  # we play ada's side: build her prompt each turn and post a reply, without model runs
        mem = memory(kernel)

        async def converse(turns: int) -> tuple[list[int], dict[str, Any], int, int]:
            (user,) = await _users(kernel, "user")
            thread = kernel.transport.subscription(ada.id, "room").thread_id
            sizes, checked, recalled = [], 0, 0
            for i in range(turns):
                generation = mem.summarizer.generation.get(thread, 0)
                incoming = await kernel.transport.post("room", f"question {i} about gears number {i % 13} and the old mill", sender=user, role="user")
                prompt = await ada.build_prompt(thread, incoming)
                sizes.append(_words(prompt.messages()))
                assert prompt.history[-1].id == incoming.id
                recalled += i >= 100 and len(prompt.notes["memory"]["memories"]) > 0
                if i % 50 == 49:
                    truth = await kernel.db.call(thread_context, thread, 10_000)
                    if mem.summarizer.generation.get(thread, 0) == generation:  # no summary written meanwhile
                        # The history is the newest of the messages after the latest checkpoint, none missing,
                        # with that checkpoint's summary (shortened to fit, perhaps).
                        ids = [m.id for m in truth.messages]
                        assert [m.id for m in prompt.history] == ids[len(ids) - len(prompt.history):]
                        assert prompt.summary == truth.summary or (
                            prompt.summary and truth.summary and prompt.summary.endswith(" …") and truth.summary.startswith(prompt.summary[:-2]))
                        checked += 1
                await kernel.transport.post("room", f"answer {i}: the mill had {i % 7} gears, all of them wooden", sender=ada)
            await mem.settle()
            return sizes, prompt.notes["memory"], checked, recalled

        sizes, notes, checked, recalled = kernel.call(converse(TURNS), timeout=900)
        assert len(sizes) == TURNS and max(sizes) <= 300
        assert recalled >= 0.95 * (TURNS - 100), f"memories recalled in only {recalled} of the last {TURNS - 100} prompts"
        assert checked >= TURNS // 50 // 3
        assert notes["summary"] and notes["memories"] and notes["prompt_tokens"] <= 300
        assert int(kernel.run("sql SELECT count(*) FROM summaries").rows[0][0]) > TURNS // 20
    finally:
        kernel.close()


def test_a_prompt_reads_past_hits_that_repeat_the_history(duckdb_url: str, tmp_path: Path) -> None:
    """Thirty older copies of a line the history shows outrank the one memory that says something new; the
    first six hits are all repeats, so the prompt reads further down the hits and recalls the new one."""
    kernel = start(duckdb_url, budget_tokens=300, memory_tokens=60, summarize=False)
    try:
        ada = _ada(kernel, tmp_path)
        ada.pause()

        async def go() -> dict[str, Any]:
            (user,) = await _users(kernel, "user")
            thread = kernel.transport.subscription(ada.id, "room").thread_id
            await kernel.transport.post("room", "the cat sleeps by the gears", sender=user, role="user")
            for _ in range(30):
                await kernel.transport.post("room", "the old mill has twelve wooden gears", sender=user, role="user")
            await memory(kernel).settle()
            incoming = await kernel.transport.post("room", "how many gears has the old mill?", sender=user, role="user")
            prompt = await ada.build_prompt(thread, incoming)
            return dict(prompt.notes["memory"])

        notes = kernel.call(go())
        first = int(kernel.run("sql SELECT min(id) FROM messages WHERE content = 'the cat sleeps by the gears'").rows[0][0])
        assert notes["fetched"] > 2 * 3 and notes["repeats_skipped"] >= 2 * 3
        assert f"message:{first}" in notes["memories"]
    finally:
        kernel.close()


@pytest.mark.slow
def test_live_persona_prompts_stay_in_budget(duckdb_url: str, tmp_path: Path) -> None:
    """End to end: the provider's own prompt token count never passes the budget."""
    kernel = start(duckdb_url, budget_tokens=200)
    try:
        ada = _ada(kernel, tmp_path)

        async def converse(turns: int) -> None:
            (user,) = await _users(kernel, "user")
            for i in range(turns):
                await kernel.transport.post("room", f"tell me about gear {i} of the old mill please", sender=user, role="user")
                while ada.turns <= i:
                    await asyncio.sleep(0.001)
            await memory(kernel).settle()

        kernel.call(converse(60), timeout=120)
        kernel.call(kernel.writer.flush())
        # every run counted, resamples of the parroting scripted replies (tobio/turn/freshness.py) too
        worst, replies = kernel.run("sql SELECT max(prompt_tokens), count(message_id) FROM runs WHERE purpose = 'chat'").rows[0]
        assert replies == 60 and worst <= 200
        assert "Earlier in this conversation" in str(kernel.run("agent prompt ada"))
    finally:
        kernel.close()


def test_agent_never_retrieves_what_was_not_pushed_to_it(kernel: Kernel) -> None:
    async def setup() -> None:
        await _users(kernel, "alice", "bob", channel="room")
        await _users(kernel, "carol", "dave", channel="secret")

    kernel.call(setup())
    say(kernel, [("alice", "the treasure is under the oak tree"), ("bob", "lovely weather today")])
    say(kernel, [("carol", "the treasure is really buried in the cellar"), ("dave", "treasure treasure cellar")], channel="secret")
    kernel.call(kernel.transport.subscribe(kernel.agents.live["alice"], "secret"))  # joins late: sees only what comes next
    say(kernel, [("carol", "anyway the treasure map is lost")], channel="secret")
    hits = kernel.run('memory search alice "where is the treasure cellar" -k 10').data
    alice = kernel.agents.live["alice"].id
    pushed = {r[0] for r in kernel.run(
        f"sql SELECT p.message_id FROM pushes p JOIN threads t ON t.id = p.thread_id WHERE t.agent_id = {alice}").rows}
    assert hits and {h["id"] for h in hits if h["kind"] == "message"} <= pushed
    assert not any("cellar" in h["content"] for h in hits)
    assert any("map is lost" in h["content"] for h in hits)
    bob_hits = kernel.run('memory search bob "treasure" -k 10').data
    assert {h["content"] for h in bob_hits} <= {"the treasure is under the oak tree", "lovely weather today"}


def test_forget_is_recorded_and_honoured(kernel: Kernel) -> None:
    kernel.call(_users(kernel, "alice", "bob"))
    ids = say(kernel, [("bob", "my password is swordfish"), ("alice", "noted about the swordfish")])
    assert ids[0] in {h["id"] for h in kernel.run('memory search alice "swordfish password"').data}
    out = kernel.run(f"memory forget alice {ids[0]} --reason 'asked to'")
    assert "no longer retrieve" in out.text
    assert ids[0] not in {h["id"] for h in kernel.run('memory search alice "swordfish password"').data}
    assert ids[0] in {h["id"] for h in kernel.run('memory search bob "swordfish password"').data}  # bob did not forget
    assert kernel.run("sql SELECT message_id, reason, requested_by FROM memory_forgotten").rows == [(ids[0], "asked to", "user")]
    assert kernel.run(f"sql SELECT count(*) FROM messages WHERE id = {ids[0]}").rows == [(1,)]  # never deleted
    # Survives a cold index (rebuilt from the database).
    memory(kernel).indexes.clear()
    assert ids[0] not in {h["id"] for h in kernel.run('memory search alice "swordfish password"').data}
    with pytest.raises(CommandError, match="never pushed"):
        kernel.run("memory forget alice 99999")


@pytest.mark.slow
def test_commands_and_backfill(duckdb_url: str) -> None:
    kernel = start(duckdb_url, load=False)
    try:
        kernel.call(_users(kernel, "alice", "bob"))

        async def post() -> None:
            for i in range(60):
                await kernel.transport.post("room", f"old line {i} about boats and rivers", sender=kernel.agents.live["alice"], role="user")
            await kernel.writer.flush()

        kernel.call(post())  # before memory is loaded: nothing indexed
        kernel.run("mod load memory")
        assert "memory" in [r[0] for r in kernel.run("mod ls").rows]
        progress: list[Any] = []
        result = kernel.run("memory backfill --wait", emit=progress.append)
        assert result.data["done"] == 60 and result.data["summaries"] > 0 and progress
        stats = dict(kernel.run("memory stats").rows)
        assert stats["embedded messages"] == 60 and stats["summaries"] == result.data["summaries"]
        assert stats["embedded summaries"] == stats["summaries"]
        assert kernel.run("memory backfill --wait").data["done"] == 0  # idempotent
        thread = kernel.run("sql SELECT id FROM threads WHERE name = 'bob@room'").rows[0][0]
        made = kernel.run(f"memory summarize {thread}")
        assert made.data["thread_id"] == thread and made.text.startswith("In short")
        rows = kernel.run('memory search bob "boats rivers" -k 4').rows
        assert len(rows) == 4 and rows[0][0] >= rows[-1][0]
        with pytest.raises(CommandError):
            kernel.run("memory search nobody x")
        assert "memory.m001_memory" in [r[0] for r in kernel.run("sql SELECT name FROM schema_migrations").rows]
        kernel.run("mod unload memory")
        assert "memory" not in kernel.commands.children
    finally:
        kernel.close()


def test_thread_tails_are_bounded_and_a_dropped_one_is_read_again(kernel: Kernel, monkeypatch: pytest.MonkeyPatch) -> None:
    """The summarizer keeps recent messages per thread; with many threads it keeps only the most recently used."""
    from tobio.memory import summarizer as module

    monkeypatch.setattr(module, "MAX_TAILS", 2)
    summarizer = memory(kernel).summarizer
    for thread_id in (1, 2, 3):
        summarizer.keep_tail(thread_id, 0, None, None, [], None, True)
    assert list(summarizer.tails) == [2, 3]
    assert summarizer.tail(1) is None  # dropped: the next prompt reads the thread again
    assert summarizer.tail(2) is not None  # a hit makes it the most recently used
    summarizer.keep_tail(4, 0, None, None, [], None, True)
    assert list(summarizer.tails) == [2, 4]


def test_hooks_before_memory_see_the_whole_unsummarised_history(duckdb_url: str, tmp_path: Path) -> None:
    """Memory supplies the history a persona prompt starts from; earlier hooks see it, memory's fits it to budget."""
    kernel = start(duckdb_url, budget_tokens=4000, summary_tokens=100, memory_tokens=100)  # room: no summary yet
    try:
        ada = _ada(kernel, tmp_path)
        ada.pause()
        seen: list[int] = []

        async def count_history(prompt: Any) -> None:
            seen.append(len(prompt.history))

        counting = kernel.hooks.add(PROMPT, count_history)

        async def converse() -> Any:
            (user,) = await _users(kernel, "user")
            thread = kernel.transport.subscription(ada.id, "room").thread_id
            incoming = None
            for i in range(30):  # more than the persona's own context_messages (12)
                incoming = await kernel.transport.post("room", f"note {i}", sender=user, role="user")
            return await ada.build_prompt(thread, incoming)

        prompt = kernel.call(converse())
        assert seen == [30]
        assert prompt.history and prompt.history[-1].content == "note 29"
        kernel.hooks.remove(counting)
        kernel.run("mod unload memory")
        assert kernel.hooks.get(HISTORY_SOURCE) == ()  # unloading memory gives the persona its own read back
    finally:
        kernel.close()
