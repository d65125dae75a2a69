"""The `people` module: per-person memory (Letta's "human" block) and reflections, for persona agents."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from tobio.hooks import (
    FORK,
    FORKED,
    ON_MESSAGE,
    PROMPT,
    REPLAY,
    REPLY_FILTER,
    SWIPED,
    ForkedObserver,
    PromptStep,
    ReplayStep,
    ReplyFilter,
    SwipeObserver,
)
from tobio.memory.module import MemoryModule
from tobio.models.module import ModelsModule
from tobio.modules import DatabaseModule, Module, on_first_call
from tobio.turn.placement import NEXT_TO_NEWEST

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from tobio.branching.fork import Fork
    from tobio.kernel import Kernel
    from tobio.people.reflection import Reflector
    from tobio.people.service import People


class PeopleSettings(BaseModel):
    """`settings: {people: {...}}` in kernel.yaml."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)
    rules: bool = Field(True, description="learn facts with the built-in rules (\"my name is…\", \"I live in…\")")
    model_extract: bool = Field(False, description="also ask the `json` bundle for facts (needs a capable model)")
    extract_model: str = Field("json", description="bundle (or purpose) for model extraction")
    depth: int = Field(NEXT_TO_NEWEST, ge=0, le=20, description="where the block goes: messages above the newest (0: after it)")
    in_prompt: bool = True
    sign: bool = Field(False, description="head the note with the agent's own name (\"Notes for Tobio\"); off: measured, the model then calls the user by its own name")
    used_to_turns: int = Field(20, ge=0, description="for this many messages after a change (\"I moved to Paris\"), the note also says what it used to be (0: never)")
    check_replies: bool = Field(True, description="a reply to a question about a held fact (their name, dog, home…, or the agent's own name) must state it and nothing known wrong, else it is answered from the record (bench/person.py)")
    reflect_every: int = Field(20, ge=0, description="reflect after this many messages from a person (0: never)")
    reflections: int = Field(3, ge=1, le=10, description="thoughts per reflection")
    reflect_model: str = Field("", description="bundle that writes reflections (empty: the agent's own chat model)")
    reflections_in_memory: bool = Field(False, description="also index reflections for memory's recall (bench/person.py: facts no better, so off)")


class PeopleModule(Module):
    """Facts per (agent, person) from rules and optionally a model; versioned; in prompts and replay."""

    name = "people"
    description = "What each agent knows about each person it talks with, and its reflections on them; versioned."
    dependencies = (DatabaseModule, ModelsModule, MemoryModule)
    Settings = PeopleSettings
    settings: PeopleSettings

    def __init__(self) -> None:
        self.people: People | None = None
        self.reflector: Reflector | None = None

    async def module_init(self, kernel: Kernel) -> None:
        from tobio.db.migrations import migrate
        from tobio.people import commands
        from tobio.people.migrations import MIGRATIONS
        from tobio.people.reflection import Reflector
        from tobio.people.service import People

        def setup(conn: Any) -> None:
            migrate(conn, MIGRATIONS, prefix="people.")
            kernel.db.track_ids(conn, "people_facts")
            kernel.db.track_ids(conn, "people_reflections")

        self.people = people = People(kernel, self.settings)
        await people.load(before=setup)
        self.reflector = Reflector(kernel, people, self.settings)
        people.listeners.append(self.reflector.on_message)
        if self.settings.model_extract:
            people.listeners.append(self._model_extract)
        kernel.hooks.add(ON_MESSAGE, people.observe)
        settings = self.settings

        # Each hook below imports its file when first called (on_first_call): a start runs none of them.
        def people_hook() -> PromptStep:
            from tobio.people.hook import make_hook

            return make_hook(people, settings.depth, settings.sign, settings.used_to_turns)

        def check_reply() -> ReplyFilter:
            from tobio.people.hook import make_filter

            return make_filter(people, settings.used_to_turns)

        def replay() -> ReplayStep:
            from tobio.people.replay import make_replay_hook

            return make_replay_hook(kernel, people)

        def unlearn_withdrawn() -> SwipeObserver:
            from tobio.people.swiped import make_hook

            return make_hook(people)  # words that left a history teach nothing

        def forked() -> ForkedObserver:
            from tobio.people.fork import make_forked_hook

            return make_forked_hook(people)

        if settings.in_prompt:
            kernel.hooks.add(PROMPT, on_first_call(people_hook))
        if settings.check_replies:
            kernel.hooks.add(REPLY_FILTER, on_first_call(check_reply))
        commands.register(kernel, people)
        kernel.hooks.add(REPLAY, on_first_call(replay))
        kernel.hooks.add(SWIPED, on_first_call(unlearn_withdrawn))
        kernel.hooks.add(FORK, carry)  # what REPLAY reads, a fork carries
        kernel.hooks.add(FORKED, on_first_call(forked))

    def _model_extract(self, agent: Any, person: str, message: Any) -> None:
        from tobio.people.model_extract import model_facts

        assert self.people is not None
        self.people.kernel.tasks.spawn(model_facts(self.people.kernel, self.people, agent, person, message, self.settings.extract_model),
                                       name="people:extract", kind="job", module=self)

    async def module_exit(self, kernel: Kernel) -> None:
        if self.people is not None:
            await self.people.flush()

    @staticmethod
    def of(kernel: Kernel) -> People:
        """The running people service of `kernel` (benches, notebooks, tests)."""
        module = kernel.modules.get(PeopleModule)
        if module is None or module.people is None:
            raise LookupError("the people module is not loaded (mod load people)")
        return module.people


def carry(conn: Connection, fork: Fork) -> None:
    """fork.py's `carry`, imported by the first fork."""
    from tobio.people import fork as forks

    forks.carry(conn, fork)
