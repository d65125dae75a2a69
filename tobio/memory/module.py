"""The `memory` module: loads memory's schema, observes the transport, hooks persona prompts, adds commands."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from tobio.hooks import FORK, HISTORY_SOURCE, LAST, ON_MESSAGE, PROMPT, REPLAY, SWIPED, PromptStep
from tobio.memory.config import MemoryConfig
from tobio.models.module import ModelsModule
from tobio.modules import DatabaseModule, Module, on_first_call

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from tobio.agents.base import Agent
    from tobio.branching.fork import Fork
    from tobio.db.history import ThreadContext
    from tobio.kernel import Kernel
    from tobio.memory.service import Memory
    from tobio.replay import Snapshot


class MemoryModule(Module):
    """Recursive summaries within a token budget and long-term retrieval, per agent.

    Settings: `settings: {memory: {...}}` in kernel.yaml (a MemoryConfig), `MemoryModule.config` for
    every kernel in code, or `configure(**changes)` on the loaded module.
    """

    name = "memory"
    description = "Recursive thread summaries within a token budget; retrieval by relevance, recency, importance."
    dependencies = (DatabaseModule, ModelsModule)
    config: ClassVar[MemoryConfig] = MemoryConfig()
    Settings = MemoryConfig  # `settings: {memory: {...}}` in kernel.yaml

    def __init__(self) -> None:
        self.memory: Memory | None = None

    async def module_init(self, kernel: Kernel) -> None:
        from tobio.db.migrations import migrate
        from tobio.memory import commands
        from tobio.memory.migrations import MIGRATIONS
        from tobio.memory.service import Memory

        def setup(conn: Any) -> None:
            migrate(conn, MIGRATIONS, prefix="memory.")
            kernel.db.track_ids(conn, "memory_items")
            kernel.db.track_ids(conn, "memory_forgotten")

        await kernel.db.call(setup)
        # kernel.yaml's settings.memory when given, else the class-level config (tests override that).
        self.memory = Memory(kernel, self.settings if "memory" in kernel.config.settings else type(self).config)
        self.memory.start()
        memory = self.memory

        def prompt_step() -> PromptStep:  # context.py's: the budgeted history and the recalled memories
            from tobio.memory.context import make_hook

            return make_hook(memory)

        kernel.hooks.add(ON_MESSAGE, memory.observe)
        kernel.hooks.add(HISTORY_SOURCE, self.history)
        kernel.hooks.add(PROMPT, on_first_call(prompt_step), order=LAST)  # it enforces the budget on what others added
        kernel.hooks.add(REPLAY, self.replay)
        kernel.hooks.add(SWIPED, memory.swiped)
        kernel.hooks.add(FORK, carry)  # what REPLAY reads, a fork carries
        commands.register(kernel, self.memory)

    # The hooks import their files when first called (context.py, replay.py, fork.py and what they import: the
    # store, its tables, the turn's prompt): a start that runs no turn, replay or fork does not import them.
    async def history(self, agent: Agent, thread_id: int) -> ThreadContext:
        """context.py's `thread_history`: a persona prompt's summary and messages."""
        from tobio.memory.context import thread_history

        assert self.memory is not None
        return await thread_history(self.memory, thread_id)

    async def replay(self, snapshot: Snapshot) -> None:
        """replay.py's: the memories retrievable at the snapshot's time."""
        from tobio.memory.replay import retrievable_at

        assert self.memory is not None
        snapshot.extra["memories"] = await self.memory.kernel.db.call(retrievable_at, snapshot.agent_id, snapshot.at)

    async def module_exit(self, kernel: Kernel) -> None:
        if self.memory is not None:
            await self.memory.stop()

    def configure(self, **changes: Any) -> MemoryConfig:
        """Change settings of the running module (validated); returns the new config."""
        assert self.memory is not None, "memory module is not loaded"
        self.memory.config = MemoryConfig.model_validate({**self.memory.config.model_dump(), **changes})
        return self.memory.config


def carry(conn: Connection, fork: Fork) -> None:
    """fork.py's `carry`, imported by the first fork."""
    from tobio.memory import fork as forks

    forks.carry(conn, fork)
