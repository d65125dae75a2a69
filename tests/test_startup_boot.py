"""The kernel's boot of its modules imports what a start needs, and the rest when first used.

Each module registers its hooks and commands at every start; their files are imported by the first call
(the first turn, replay, fork, swipe or command), so a one-shot command imports none of them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from test_startup import one_shot_starts

from tobio.modules import on_first_call

# What a one-shot `agent ls` imported before (with the fact types, 29 of the 80 files imported at boot; callgrind 2.126 G -> 2.031 G
# instructions for the whole start): the turn's stages, memory's store and tables, the hooks' files, the affect and
# the persona files' macros.
DEFERRED = ("tobio.turn.prompt", "tobio.turn.steps", "tobio.turn.events", "tobio.turn.prefill", "tobio.turn.freshness",
            "tobio.turn.reply", "tobio.turn.macros", "tobio.turn.history",
            "tobio.memory.store", "tobio.memory.tables", "tobio.memory.items", "tobio.memory.summarizer",
            "tobio.memory.context", "tobio.memory.replay", "tobio.memory.fork", "tobio.people.hook", "tobio.people.replay",
            "tobio.people.swiped", "tobio.people.fork", "tobio.lore.fork", "tobio.emotion.affect", "tobio.emotion.appraise",
            "tobio.emotion.emotions", "tobio.emotion.personality",
            # and the swipe service, forks and histories, which the core's commands and retry's snapshot import when used
            "tobio.swipes.service", "tobio.swipes.store", "tobio.branching.fork", "tobio.db.history")

PROBE = f"""
import sys
sys.argv = ["tobio-shell", "-c", "agent ls"]
from shell.app import main
code = main()
print(sorted(m for m in {DEFERRED!r} if m in sys.modules), code)
"""


@pytest.mark.slow
def test_a_one_shot_command_imports_no_hook_or_turn_file(tmp_path: Path) -> None:
    expected = {"first": "['tobio.memory.tables'] 0", "second": "[] 0"}  # the first start creates memory's tables
    for start, stdout in one_shot_starts(tmp_path, PROBE):
        assert "echo" in stdout and "tobio" in stdout, f"{start} start: {stdout}"  # both agents spawned or restored
        assert stdout.strip().splitlines()[-1] == expected[start], f"{start} start imported:\n{stdout}"


def test_a_hook_builds_its_implementation_once_at_its_first_call() -> None:
    built: list[int] = []
    seen: list[str] = []

    def people_hook() -> Callable[[str], Awaitable[None]]:
        built.append(1)

        async def step(arg: str) -> None:
            seen.append(arg)

        return step

    hook = on_first_call(people_hook)
    assert hook.__name__ == "people_hook" and built == []  # named for `mod info`; nothing built yet
    asyncio.run(hook("a"))
    asyncio.run(hook("b"))
    assert built == [1] and seen == ["a", "b"]
