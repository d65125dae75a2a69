"""`TurnAgent`: an agent that answers with a model, one turn at a time, through the stages of the turn.

should_answer -> build_prompt (history, PROMPT steps) -> generate -> filter (its `filters`, then
REPLY_FILTER) -> post -> events (ReplyPosted) and a read-ahead of the next turn. An agent type is a
configuration of it: who it is (`persona`, any Character), its config, its filters, and any stage it
overrides (persona agents let the model run commands before generating).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field

from tobio.agents.base import Agent, AgentConfig
from tobio.errors import AgentError
from tobio.hooks import REPLY_FILTER, ReplyFilter
from tobio.messages import Delivery, Message
from tobio.models.module import models_of, runs_of

if TYPE_CHECKING:
    from tobio.turn.character import Character
    from tobio.turn.prompt import Prompt
    from tobio.turn.reply import Reply

LAST_TURNS_KEPT = 64  # threads whose last turn an agent keeps to prefill from (least recently used dropped)


class TurnConfig(AgentConfig):
    """What every agent that answers with a model is configured with."""

    model: str = Field("chat-default", description="the model bundle for replies")
    context_messages: int = Field(12, ge=1, le=500, description="recent messages of the thread in the prompt (with memory loaded, its token budget decides instead)")
    answer_agents: bool = Field(False, description="also answer other non-human agents (beware of endless loops)")
    stream: bool = True
    prefill: bool = Field(True, description="after each reply, read the next turn's opening into the model's cache "
                                            "in the background, so the next reply reads only what is new (the "
                                            "embedded model; a server's prefix cache needs no help)")
    params: dict[str, Any] = Field(default_factory=dict, description="sampling parameters over the bundle's")


# The type's own filters, each importing its file at its first reply: an agent restored by a start that runs no
# turn (`tobio-shell -c "agent ls"`) needs none of the turn's files (prompt, steps, reply, freshness, events).
async def trim_cut_off(reply: Reply) -> None:
    """turn/reply.py's `trim_cut_off`."""
    from tobio.turn import reply as replies

    await replies.trim_cut_off(reply)


async def cut_echoes(reply: Reply) -> None:
    """turn/reply.py's `cut_echoes`."""
    from tobio.turn import reply as replies

    await replies.cut_echoes(reply)


async def freshen(reply: Reply) -> None:
    """turn/freshness.py's `freshen`."""
    from tobio.turn import freshness

    await freshness.freshen(reply)


class TurnAgent(Agent):
    """Answers people (UserAgents and kernel posts); other agents only with `answer_agents`."""

    type_name = "turn"
    Config: ClassVar[type[AgentConfig]] = TurnConfig
    config: TurnConfig
    persona: Character  # who it is: set by the agent type before its first turn
    filters: ClassVar[tuple[ReplyFilter, ...]] = (trim_cut_off, cut_echoes, freshen)
    """The type's own reply filters, in order, before the REPLY_FILTER hooks."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.turns = 0
        self.last_run: int | None = None
        # Each thread's last prompt and the reply it got: what the next turn's prompt will open with.
        self.last_turns: OrderedDict[int, tuple[Prompt, Message]] = OrderedDict()

    @classmethod
    def check_config(cls, kernel: Any, config: AgentConfig) -> None:
        """An agent whose model bundle does not exist could only fail on its first message."""
        assert isinstance(config, TurnConfig)
        bundles = models_of(kernel).models
        if config.model not in bundles:
            known = ", ".join(sorted(bundles)) or "none: load the models module"
            raise AgentError(f"agent '{config.name}': no model bundle named '{config.model}' (known: {known})")

    def state_dict(self) -> dict[str, Any]:
        return {"turns": self.turns, "last_run": self.last_run}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.turns = int(state.get("turns", 0))
        self.last_run = state.get("last_run")

    # -- the stages --------------------------------------------------------------------------------
    async def should_answer(self, delivery: Delivery) -> bool:
        """People get an answer; in a channel with a floor, only from the member it picks."""
        sender = delivery.message.sender
        if sender == self.name or delivery.message.channel is None:
            return False
        verdict = await self.hooks_say(delivery)  # floors, do-not-disturb
        if verdict is not None:
            return verdict
        if sender is None:
            return True  # posted by the kernel / an operator
        other = self.kernel.agents.live.get(sender)
        return other is None or other.type_name == "user" or self.config.answer_agents

    def refresh(self) -> None:
        """Called before each prompt is built (a persona agent picks up `persona set` here)."""

    async def build_prompt(self, thread_id: int, incoming: Message | None = None) -> Prompt:
        """The thread's history, then whatever loaded modules add (steps.py)."""
        from tobio.turn.steps import assemble

        self.refresh()
        return await assemble(self, thread_id, incoming, context_messages=self.config.context_messages,
                              params=self.config.params)

    async def generate(self, prompt: Prompt, channel: str, messages: list[dict[str, Any]] | None = None) -> Reply:
        """Run the model on the prompt's messages (or `messages`); stream the draft to the channel's
        listeners when configured."""
        from tobio.turn.reply import Reply

        messages = prompt.messages() if messages is None else messages
        model = models_of(self.kernel).get(self.config.model)
        last = self.last_turns.get(prompt.thread_id)
        moved = last is not None and prompt.summary is not None and prompt.summary != last[0].summary
        run = model.run(messages, params=prompt.params, thread_id=prompt.thread_id, agent_id=self.id, history_moved=moved)
        self.last_run = run.id
        if self.config.stream:
            text, stream_id = await self.relay(channel, run.deltas())
            return Reply(prompt, messages, run, text, {"stream_id": stream_id})
        await run.wait()
        return Reply(prompt, messages, run, run.text)

    async def filter(self, reply: Reply) -> None:
        """The type's own filters (errors fail the turn), then the modules' (errors are logged)."""
        for step in self.filters:
            await step(reply)
        await self.kernel.hooks.each(REPLY_FILTER, reply)

    async def post(self, channel: str, reply: Reply) -> Message:
        """Post the reply with the turn already counted: the state commits with the reply and its mark."""
        self.last_run, self.turns = reply.run.id, self.turns + 1
        metadata = {"run_id": reply.run.id, **({"stream_id": reply.notes["stream_id"]} if "stream_id" in reply.notes else {})}
        message = await self.say(channel, reply.text, metadata=metadata)
        await runs_of(self.kernel).link(reply.run, message.id)
        return message

    async def on_message(self, delivery: Delivery) -> bool | None:
        from tobio.turn.events import ReplyPosted, publish

        if not await self.should_answer(delivery):
            return False
        channel = self.answer_channel(delivery)
        assert channel is not None
        prompt = await self.build_prompt(delivery.thread_id, delivery.message)
        reply = await self.generate(prompt, channel)
        await self.filter(reply)
        message = await self.post(channel, reply)
        self.last_turns[delivery.thread_id] = (prompt, message)
        self.last_turns.move_to_end(delivery.thread_id)
        while len(self.last_turns) > LAST_TURNS_KEPT:
            self.last_turns.popitem(last=False)
        self.read_ahead(delivery.thread_id)
        await publish(self.kernel, ReplyPosted(self.id, delivery.thread_id, message, reply.run.id))
        return True

    def read_ahead(self, thread_id: int) -> None:
        """Prefill the next turn's opening on `thread_id` in the background (prefill.py)."""
        if self.config.prefill:
            from tobio.turn import prefill

            prefill.read_ahead(self, thread_id)
