"""The `lore` module: World Info (lorebooks) in the prompts of agents that answer with a model, and lorebook
commands. A persona's own book (its card's `character_book`) joins when the agent has one."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from tobio.hooks import FORK, FORKED, ON_MESSAGE, PROMPT, REPLAY, ForkedObserver, PromptStep
from tobio.memory.module import MemoryModule
from tobio.modules import DatabaseModule, Module, on_first_call

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from tobio.branching.fork import Fork
    from tobio.kernel import Kernel
    from tobio.lore.hook import LoreHook
    from tobio.lore.store import LoreStore
    from tobio.replay import Snapshot


class LoreSettings(BaseModel):
    """`settings: {lore: {...}}` in kernel.yaml. Defaults are SillyTavern's."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)
    scan_depth: int = Field(2, ge=0, le=1000, description="newest messages scanned for keys (a book or entry may say otherwise)")
    budget_tokens: int = Field(512, ge=1, description="most tokens of lore in one prompt")
    budget_share: float = Field(0.25, gt=0, le=1, description="with memory loaded: at most this share of memory's prompt budget")
    recursive: bool = Field(False, description="entries that fired can trigger others (a book's recursive_scanning decides for its entries)")
    max_recursion_steps: int = Field(3, ge=1, le=20, description="scan passes per prompt, the first included")
    case_sensitive: bool = False
    match_whole_words: bool = False
    seed: int | None = Field(None, description="seed probability and inclusion-group rolls (tests, reproducible runs)")


class LoreModule(Module):
    """Lorebooks from cards and SillyTavern World Info files, activated by keys in the recent chat."""

    name = "lore"
    description = "World Info: lorebook entries enter prompts when their keys come up."
    dependencies = (DatabaseModule,)
    optional_dependencies = (MemoryModule,)  # its token budget and tokenizer, when loaded
    Settings = LoreSettings

    def __init__(self) -> None:
        self.store: LoreStore | None = None
        self.hook: LoreHook | None = None
        self._overrides: dict[str, Any] = {}

    def settings_now(self) -> LoreSettings:
        base = self.settings if isinstance(self.settings, LoreSettings) else LoreSettings()
        return base.model_copy(update=self._overrides) if self._overrides else base

    def configure(self, **changes: Any) -> LoreSettings:
        """Change settings of the running module (validated); returns them."""
        LoreSettings.model_validate({**self.settings_now().model_dump(), **changes})
        self._overrides.update(changes)
        return self.settings_now()

    async def module_init(self, kernel: Kernel) -> None:
        from tobio.lore import commands
        from tobio.lore.hook import LoreHook, lore_steps
        from tobio.lore.store import LoreStore

        self.store = LoreStore(kernel)
        await self.store.setup()
        self.hook = LoreHook(kernel, self)
        step: PromptStep = self.hook  # a callable object: say which point's type it has
        kernel.hooks.add(PROMPT, step)
        kernel.hooks.add(ON_MESSAGE, self.hook.observe)

        async def replay(snapshot: Snapshot) -> None:
            snapshot.extra["lore"] = await kernel.db.call(lore_steps, snapshot.agent_id, snapshot.at)

        kernel.hooks.add(REPLAY, replay)
        store = self.store

        def forked() -> ForkedObserver:  # fork.py, imported by the first fork: a start makes none
            from tobio.lore.fork import make_forked_hook

            return make_forked_hook(store)

        kernel.hooks.add(FORK, carry)  # what REPLAY and the prompt step read, a fork carries
        kernel.hooks.add(FORKED, on_first_call(forked))
        commands.register(kernel, self)


def carry(conn: Connection, fork: Fork) -> None:
    """fork.py's `carry`, imported by the first fork."""
    from tobio.lore import fork as forks

    forks.carry(conn, fork)
