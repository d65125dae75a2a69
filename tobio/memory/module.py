"""The `memory` module: loads memory's schema, observes the transport, hooks persona prompts, adds commands."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from tobio.hooks import FORK, HISTORY_SOURCE, LAST, ON_MESSAGE, PROMPT, REPLAY, SWIPED
from tobio.memory.config import MemoryConfig
from tobio.models.module import ModelsModule
from tobio.modules import DatabaseModule, Module

if TYPE_CHECKING:
    from tobio.kernel import Kernel
    from tobio.memory.service import Memory


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
        from tobio.memory.context import make_hook, thread_history
        from tobio.memory.migrations import MIGRATIONS
        from tobio.memory.replay import make_replay_hook
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
        kernel.hooks.add(ON_MESSAGE, memory.observe)
        kernel.hooks.add(HISTORY_SOURCE, lambda _agent, thread_id: thread_history(memory, thread_id))
        kernel.hooks.add(PROMPT, make_hook(memory), order=LAST)  # it enforces the budget on what others added
        kernel.hooks.add(REPLAY, make_replay_hook(kernel))
        kernel.hooks.add(SWIPED, memory.swiped)
        from tobio.memory.fork import carry

        kernel.hooks.add(FORK, carry)  # what REPLAY reads, a fork carries
        commands.register(kernel, self.memory)

    async def module_exit(self, kernel: Kernel) -> None:
        if self.memory is not None:
            await self.memory.stop()

    def configure(self, **changes: Any) -> MemoryConfig:
        """Change settings of the running module (validated); returns the new config."""
        assert self.memory is not None, "memory module is not loaded"
        self.memory.config = MemoryConfig.model_validate({**self.memory.config.model_dump(), **changes})
        return self.memory.config
