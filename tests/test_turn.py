"""The turn as a core layer: hook points declare how they are called and what an error does, so a broken
module costs only its own contribution; modules below persona import only core."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from tobio.config.schema import KernelConfig
from tobio.errors import TobioError
from tobio.hooks import PROMPT, Hooks, OnError, Point, Rule
from tobio.kernel import Kernel
from tobio.modules import Module
from tobio.turn.events import Event, ReplyPosted, SummaryWritten, publish
from tobio.turn.prompt import Prompt

from conftest import write
from helpers import wait_until

ROOT = Path(__file__).resolve().parent.parent

Ask = Callable[[int], Awaitable["str | None"]]
FIRST: Point[Ask] = Point("t_first", "test", Rule.FIRST)
LAST_WINS: Point[Ask] = Point("t_last", "test", Rule.LAST)
EACH_FAILS: Point[Callable[[list[int]], Awaitable[None]]] = Point("t_each_fail", "test", Rule.EACH, OnError.FAIL)
EACH: Point[Callable[[list[int]], Awaitable[None]]] = Point("t_each", "test", Rule.EACH)
OBSERVE: Point[Callable[[list[int]], None]] = Point("t_observe", "test", Rule.EACH)
COLLECT: Point[Callable[[int], int]] = Point("t_collect", "test", Rule.COLLECT)


class Owner(Module):
    name = "third-party"


def test_each_point_is_called_by_its_own_rule() -> None:
    hooks = Hooks()
    owner = Owner()

    async def none(x: int) -> str | None:
        return None

    async def boom(x: int) -> str | None:
        raise RuntimeError("bug")

    async def say(x: int) -> str | None:
        return f"said {x}"

    async def later(x: int) -> str | None:
        return "later"

    for fn in (none, boom, say, later):
        hooks.add(FIRST, fn, owner=owner)
    assert asyncio.run(hooks.first(FIRST, 1)) == "said 1"  # None is no opinion; an error is none either
    assert hooks.failures["t_first:third-party"] == 1

    assert asyncio.run(hooks.last(LAST_WINS, 1)) is None  # nobody: the caller's default applies
    hooks.add(LAST_WINS, say)
    hooks.add(LAST_WINS, later)
    assert asyncio.run(hooks.last(LAST_WINS, 1)) == "later"
    hooks.add(LAST_WINS, boom, owner=owner)
    assert asyncio.run(hooks.last(LAST_WINS, 1)) is None  # the last one failed: logged, the default applies

    seen: list[int] = []

    async def add_one(out: list[int]) -> None:
        out.append(1)

    async def broken(out: list[int]) -> None:
        raise RuntimeError("each bug")

    async def add_two(out: list[int]) -> None:
        out.append(2)

    for fn in (add_one, broken, add_two):
        hooks.add(EACH, fn, owner=owner)
        hooks.add(EACH_FAILS, fn, owner=owner)
    asyncio.run(hooks.each(EACH, seen))
    assert seen == [1, 2]  # isolated: the others still ran, in order
    with pytest.raises(RuntimeError, match="each bug"):  # a FAIL point fails its caller
        asyncio.run(hooks.each(EACH_FAILS, []))

    def note(out: list[int]) -> None:
        out.append(3)

    def crash(out: list[int]) -> None:
        raise ValueError("observer bug")

    async def not_plain(out: list[int]) -> None:  # an async observer would never run: refused, logged
        out.append(99)

    hooks.add(OBSERVE, crash)
    hooks.add(OBSERVE, not_plain)  # type: ignore[arg-type]
    hooks.add(OBSERVE, note)
    observed: list[int] = []
    hooks.notify(OBSERVE, observed)
    assert observed == [3]

    hooks.add(COLLECT, lambda x: x * 2)
    hooks.add(COLLECT, lambda x: 1 // 0)
    hooks.add(COLLECT, lambda x: x + 1)
    assert hooks.collect(COLLECT, 5) == [10, 6]

    with pytest.raises(TobioError, match="is called 'all in order', not 'first answer'"):
        asyncio.run(hooks.first(EACH, []))  # type: ignore[arg-type]


class BrokenStep(Module):
    """A third-party module whose prompt step always raises."""

    name = "broken-step"

    async def module_init(self, kernel: Kernel) -> None:
        kernel.hooks.add(PROMPT, self.step)

    async def step(self, prompt: Prompt) -> None:
        prompt.system_extra.append("half an edit")
        raise RuntimeError("prompt step bug")


def test_a_raising_prompt_step_is_isolated(duckdb_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    write(tmp_path / "ada.yaml", "name: Ada\ndescription: An engineer.\n")
    agent = write(tmp_path / "agent.yaml", "name: ada\ntype: persona\npersona: ada.yaml\nchannels: [room]\nstream: false\n"
                                           "max_failures: 2\n")
    config = KernelConfig(modules=["persona", "emotion"], log_level="WARNING",
                          providers={"s": {"type": "scripted", "replies": ["One.", "Two.", "Three.", "Four."]}},
                          models={"chat-default": {"provider": "s", "model": "x"}})
    kernel = Kernel(config, database=duckdb_url)
    kernel.modules.register(BrokenStep)
    kernel.start()
    try:
        kernel.run("mod load broken-step")
        kernel.run(f"agent spawn {agent}")
        with caplog.at_level(logging.ERROR, logger="tobio.hooks"):
            for n in range(4):  # twice max_failures: a failing turn would have paused it
                kernel.run(f"channel post room hello {n}")
                wait_until(lambda: kernel.agents.live["ada"].turns == n + 1)
        ada = kernel.agents.live["ada"]
        assert ada.status == "running" and ada.failures == 0
        replies = [row[0] for row in kernel.run("sql SELECT content FROM messages WHERE role = 'assistant' ORDER BY id").rows]
        assert replies == ["One.", "Two.", "Three.", "Four."]
        logged = [r for r in caplog.records if "prompt step bug" in (r.exc_text or str(r.exc_info))]
        assert len(logged) == 4 and all("module 'broken-step'" in r.getMessage() for r in logged)
        assert kernel.hooks.failures["prompt:broken-step"] == 4
        built = kernel.run("agent prompt ada").data
        assert "emotion" in built["notes"]  # the other modules' steps still ran
    finally:
        kernel.close()


def test_events_reach_every_subscriber_after_a_failing_one(duckdb_url: str) -> None:
    from tobio.hooks import EVENT

    kernel = Kernel(KernelConfig(log_level="WARNING"), database=duckdb_url).start()
    heard: list[str] = []

    async def broken(event: Event) -> None:
        raise RuntimeError("subscriber bug")

    async def listen(event: Event) -> None:
        heard.append(event.name)

    try:
        kernel.hooks.add(EVENT, broken)
        kernel.hooks.add(EVENT, listen)
        kernel.call(publish(kernel, SummaryWritten(1, 2, 3, "a summary")))
        assert heard == ["summary_written"] and ReplyPosted.name == "reply_posted"
    finally:
        kernel.close()


def test_modules_below_persona_import_only_core() -> None:
    """memory, people, emotion and lore's prompt step reach the turn through tobio/turn and tobio/hooks."""
    files = [*ROOT.glob("tobio/memory/*.py"), *ROOT.glob("tobio/people/*.py"), *ROOT.glob("tobio/emotion/*.py"),
             ROOT / "tobio/lore/hook.py", ROOT / "tobio/lore/module.py", ROOT / "tobio/memory/service.py"]
    found = [f"{f.relative_to(ROOT)}:{n}" for f in files for n, line in enumerate(f.read_text().splitlines(), 1)
             if re.search(r"\btobio\.persona\b", line)]
    assert found == []
