"""The `memory` module: loads memory's schema, observes the transport, hooks persona prompts, adds commands."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from tobio.memory.config import MemoryConfig
from tobio.models.module import ModelsModule
from tobio.modules import Database, Module

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
    dependencies = (Database, ModelsModule)
    config: ClassVar[MemoryConfig] = MemoryConfig()
    Settings = MemoryConfig  # `settings: {memory: {...}}` in kernel.yaml

    def __init__(self) -> None:
        self.memory: Memory | None = None
        self._unobserve: Any = None

    async def module_init(self, kernel: Kernel) -> None:
        from tobio.db.migrations import migrate
        from tobio.memory import commands
        from tobio.memory.context import make_hook, thread_history
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
        self._unobserve = kernel.transport.observe(self.memory.observe)
        memory = self.memory
        kernel.agents.set_history_source(lambda _agent, thread_id: thread_history(memory, thread_id), owner=self)
        kernel.agents.add_prompt_hook(make_hook(memory), owner=self, last=True)  # it enforces the budget
        commands.register(kernel, self.memory, owner=self)
        from tobio.memory.replay import make_replay_hook

        kernel.replay_hooks.append((self, make_replay_hook(kernel)))

    async def module_exit(self, kernel: Kernel) -> None:
        if self._unobserve is not None:
            self._unobserve()
        if self.memory is not None:
            await self.memory.stop()

    def configure(self, **changes: Any) -> MemoryConfig:
        """Change settings of the running module (validated); returns the new config."""
        assert self.memory is not None, "memory module is not loaded"
        self.memory.config = MemoryConfig.model_validate({**self.memory.config.model_dump(), **changes})
        return self.memory.config
