"""The example module (examples/diary.py) uses every extension point; loading, using and unloading it
leaves nothing behind, and it loads again cleanly. This is the newcomer's path through tobio/hooks.py."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from tobio.agents.conversation import exchange
from tobio.commands.complete import CommandCompleter, KernelSources
from tobio.config.schema import KernelConfig
from tobio.db.migrations import utcnow
from tobio.errors import ModuleError, TobioError
from tobio.hooks import CHARACTERS, EMBEDDED, HISTORY_SOURCE, MEMORY_SOURCE, ON_MESSAGE, POINTS, RECALL_BIAS
from tobio.kernel import Kernel
from tobio.messages import Message
from tobio.replay import replay
from tobio.turn.prompt import Prompt
from tobio.turn.steps import assemble

from conftest import write

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))
from diary import DiaryModule


@pytest.fixture
def kernel(duckdb_url: str, tmp_path: Path) -> Iterator[Kernel]:
    config = KernelConfig(
        modules=["models", "persona", "emotion", "diary"],  # any order: a provider type is looked up when first used
        providers={"e": {"type": "echo", "prefix": "You said: "}},
        models={"m": {"provider": "e", "model": "x", "purpose": "chat"}},
        log_level="WARNING",
    )
    k = Kernel(config, database=duckdb_url)
    k.modules.register(DiaryModule)
    k.start()
    agent = write(tmp_path / "sam-agent.yaml", "name: sam\ntype: diarist\ndescription: A diarist.\nmodel: m\ncommands: [sql]\n")
    k.run(f"agent spawn {agent}")
    try:
        yield k
    finally:
        k.close()


def ask(kernel: Kernel, text: str, user: str = "ada", timeout: float = 20, agent: str = "sam") -> str:
    return kernel.call(exchange(kernel, agent, text, user=user, timeout=timeout)).content


def test_every_extension_point_is_used_and_works(kernel: Kernel, tmp_path: Path) -> None:
    module = kernel.modules.loaded["diary"]
    used = {r.point for r in kernel.hooks.of(module)}
    # memory's own (its history, its recall, its vectors) and persona's (its registry's characters) are left out
    assert used == set(POINTS) - {HISTORY_SOURCE, MEMORY_SOURCE, CHARACTERS, EMBEDDED, RECALL_BIAS}

    # agent type + provider type + prompt pipeline: the diarist answers through the echo provider
    assert ask(kernel, "hello there") == "You said: hello there"
    assert ask(kernel, "and again") == "You said: and again"
    # its own turn: one line a reply; the module's REPLY_FILTER: the diary line is never read out
    assert ask(kernel, "one line\nand another") == "You said: one line"
    assert ask(kernel, "so (Your diary: you have talked with ada (3).) what?") == "You said: so what?"
    prompt = kernel.call(_prompt_of(kernel))
    assert "(Your diary: you have talked with ada (4).)" in str(prompt.messages())
    assert "emotion" in prompt.notes  # another module's PROMPT step reached the new agent type too

    # command with a completion source; EVENT: the replies it was told of
    shown = kernel.run("diary show sam")
    assert shown.rows == [("ada", 4)] and shown.note == "4 replies"
    completer = CommandCompleter(kernel.commands, KernelSources(kernel))
    assert [c.text.strip() for c in completer.complete("diary show s")] == ["sam"]

    # SQL_SCOPE: the agent reads its own diary rows, not another agent's
    kernel.run("agent spawn " + str(write(tmp_path / "tom.yaml", "name: tom\ntype: diarist\nmodel: m\n")))
    assert ask(kernel, "hi tom", user="ben", agent="tom") == "You said: hi tom"
    rows = kernel.run("sql SELECT partner, count(*) FROM diary_entries GROUP BY partner", caller="sam").rows
    assert rows == [("ada", 4)]

    # REPLAY: what the diary held at a time
    snapshot = kernel.call(replay(kernel, "sam", utcnow() + timedelta(seconds=1)))
    assert snapshot.extra["diary"] == {"ada": 4}

    # FORK and FORKED: a fork of sam carries its diary as it was, and has it in memory
    kernel.run("agent fork sam --at now --as sam2")
    assert kernel.run("diary show sam2").rows == [("ada", 4)]
    assert kernel.call(replay(kernel, "sam2", utcnow() + timedelta(seconds=1))).extra["diary"] == {"ada": 4}

    # SHOULD_ANSWER: do not disturb
    kernel.run("diary quiet sam on")
    with pytest.raises(TobioError, match="did not answer"):
        ask(kernel, "are you there?", timeout=1.5)
    kernel.run("diary quiet sam off")
    assert ask(kernel, "back?") == "You said: back?"


async def _prompt_of(kernel: Kernel) -> Prompt:
    sam = kernel.agents.get("sam")
    sub = kernel.transport.subscriptions_of(sam.id)[0]
    return await assemble(sam, sub.thread_id, None)


def test_a_failing_observer_fails_no_post_and_hides_nothing_from_the_others(kernel: Kernel) -> None:
    def broken(message: Message) -> None:
        raise RuntimeError("observer bug")

    kernel.hooks.add(ON_MESSAGE, broken, order=-1)  # runs before the diary's
    assert ask(kernel, "still there?") == "You said: still there?"
    assert kernel.run("diary show sam").rows == [("ada", 1)]


def test_unload_removes_everything_and_it_loads_again(kernel: Kernel) -> None:
    ask(kernel, "hi")
    module = kernel.modules.loaded["diary"]
    info = dict(kernel.run("mod info diary").rows)
    assert "diary show" in info["commands"] and "diary:tidy" in info["tasks"] and "prompt" in info["hooks"]
    task = next(t for t in kernel.tasks.list() if t.name == "diary:tidy")

    with pytest.raises(ModuleError, match=r"^mod unload diary: in use by agent sam \(type diarist\); model m \(provider e, type echo\)"):
        kernel.run("mod unload diary")  # rmmod's "in use": its agent type and its provider type are in use
    kernel.run("mod unload diary --force")  # kills sam and closes the echo provider first
    assert "sam" not in kernel.agents.live
    assert kernel.hooks.of(module) == []
    assert kernel.commands.get("diary") is None
    assert task.state == "cancelled"
    assert "diarist" not in kernel.agents.types
    with pytest.raises(TobioError):
        kernel.run("diary show sam")

    kernel.run("mod load diary")  # no "command already exists", no "already registered"
    assert "diarist" in kernel.agents.types and kernel.commands.get("diary") is not None


def test_a_failed_init_leaves_nothing_behind(duckdb_url: str) -> None:
    class Broken(DiaryModule):
        name = "broken-diary"

        async def module_init(self, kernel: Kernel) -> None:
            await super().module_init(kernel)
            raise RuntimeError("disk on fire")

    k = Kernel(KernelConfig(log_level="WARNING"), database=duckdb_url)
    k.modules.register(Broken)
    k.modules.register(DiaryModule)
    k.start()
    try:
        with pytest.raises(ModuleError, match="failed to initialise: disk on fire"):
            k.run("mod load broken-diary")
        assert k.commands.get("diary") is None and "diarist" not in k.agents.types
        assert not any(t.name == "diary:tidy" and t.state == "running" for t in k.tasks.list(include_finished=True))
        assert all(r.owner is None for r in k.hooks._entries)
        k.run("mod load diary")  # nothing of the failed attempt is in the way
    finally:
        k.close()
