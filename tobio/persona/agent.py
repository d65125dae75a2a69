"""The persona agent: an LLM-driven artificial person. It answers what is pushed to its threads,
with a prompt built from its persona file and its thread's context, streaming the reply."""

from __future__ import annotations

import contextlib
import json
import re
from collections import OrderedDict
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from tobio.agents.base import Agent, AgentConfig
from tobio.config.schema import RelPath
from tobio.errors import AgentError
from tobio.hooks import HISTORY_SOURCE
from tobio.messages import Delivery, Message
from tobio.persona.echo import strip_echoes
from tobio.persona.freshness import fresh_reply
from tobio.persona.pipeline import assemble
from tobio.persona.prompt import Prompt
from tobio.persona.schema import Persona, load_persona
from tobio.providers.base import ProviderError
from tobio.models.module import models_of, runs_of

if TYPE_CHECKING:
    from tobio.persona.registry import PersonaRegistry

_SENTENCE_END = re.compile(r"[.!?…](?=\s|$)")
LAST_TURNS_KEPT = 64  # threads whose last turn an agent keeps to prefill from (least recently used dropped)


class PersonaAgentConfig(AgentConfig):
    """`type: persona`: who it is (a persona file), which model it thinks with, whom it answers."""

    type: Literal["persona"] = "persona"
    persona: RelPath
    model: str = Field("chat-default", description="the model bundle for replies")
    context_messages: int = Field(12, ge=1, le=500, description="recent messages of the thread in the prompt (with memory loaded, its token budget decides instead)")
    answer_agents: bool = Field(False, description="also answer other non-human agents (beware of endless loops)")
    stream: bool = True
    prefill: bool = Field(True, description="after each reply, read the next turn's opening into the model's cache "
                                            "in the background, so the next reply reads only what is new (the "
                                            "embedded model; a server's prefix cache needs no help)")
    params: dict[str, Any] = Field(default_factory=dict, description="sampling parameters over the bundle's")


class PersonaAgent(Agent):
    """Answers people (UserAgents and kernel posts); other agents only with `answer_agents`."""

    type_name = "persona"
    Config = PersonaAgentConfig
    config: PersonaAgentConfig

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.persona: Persona = load_persona(self.config.persona)
        self.persona_key: str | None = None  # set once the registry knows it (on_start)
        self.turns = 0
        self.last_run: int | None = None
        # Each thread's last prompt and the reply it got: what the next turn's prompt will open with.
        self._last_turns: OrderedDict[int, tuple[Prompt, Message]] = OrderedDict()

    @classmethod
    def check_config(cls, kernel: Any, config: AgentConfig) -> None:
        """A persona whose model bundle does not exist could only fail on its first message."""
        assert isinstance(config, PersonaAgentConfig)
        bundles = models_of(kernel).models
        if config.model not in bundles:
            known = ", ".join(sorted(bundles)) or "none: load the models module"
            raise AgentError(f"agent '{config.name}': no model bundle named '{config.model}' (known: {known})")

    def _registry(self) -> PersonaRegistry | None:
        from tobio.persona.module import PersonaModule

        module = self.kernel.modules.get(PersonaModule)
        return module.registry if module is not None else None

    async def on_start(self) -> None:
        registry = self._registry()
        if registry is not None:
            self.persona_key, self.persona = await registry.from_file(self.config.persona)

    async def greet(self, channel: str, person: str) -> None:
        """Say the card's first message (macros filled in for `person`) when the conversation is new,
        as SillyTavern opens a chat; a channel that already has messages is not greeted again."""
        from tobio.persona.prompt import greeting

        text = greeting(self, person)
        if not text:
            return
        await self.kernel.flush()
        said = await self.kernel.db.call(_messages_on, channel)
        if said == 0:
            await self.say(channel, text)

    def refresh_persona(self) -> None:
        """Use the newest version of the persona (a `persona set` shows up on the next turn)."""
        registry = self._registry()
        if registry is not None and self.persona_key in registry.current:
            self.persona = registry.current[self.persona_key][1]

    def state_dict(self) -> dict[str, Any]:
        return {"turns": self.turns, "last_run": self.last_run}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.turns = int(state.get("turns", 0))
        self.last_run = state.get("last_run")

    async def should_answer(self, delivery: Delivery) -> bool:
        """People get an answer; in a channel with a floor, only from the member it picks."""
        sender = delivery.message.sender
        if sender == self.name or delivery.message.channel is None:
            return False
        verdict = await self.hooks_say(delivery)  # turn-taking (scenes' floors)
        if verdict is not None:
            return verdict
        if sender is None:
            return True  # posted by the kernel / an operator
        other = self.kernel.agents.live.get(sender)
        return other is None or other.type_name == "user" or self.config.answer_agents

    async def build_prompt(self, thread_id: int, incoming: Message | None = None) -> Prompt:
        """The thread's latest summary and recent messages, then whatever loaded modules add."""
        self.refresh_persona()
        return await assemble(self, thread_id, incoming, context_messages=self.config.context_messages,
                              params=self.config.params)

    async def on_message(self, delivery: Delivery) -> bool | None:
        if not await self.should_answer(delivery):
            return False
        channel = delivery.message.channel
        assert channel is not None
        model = models_of(self.kernel).get(self.config.model)
        prompt = await self.build_prompt(delivery.thread_id, delivery.message)
        messages = prompt.messages()
        if self.config.commands:
            messages, answered = await self._use_commands(model, messages, prompt, delivery.thread_id, delivery.message.id)
            if answered is not None:  # the model answered without asking for a command: that is the reply
                said = strip_echoes(answered.text, prompt.instructions()) or answered.text
                await self._reply(channel, answered, said, {"run_id": answered.id})
                return True
        last = self._last_turns.get(delivery.thread_id)
        moved = last is not None and prompt.summary is not None and prompt.summary != last[0].summary
        run = model.run(messages, params=prompt.params, thread_id=delivery.thread_id, agent_id=self.id, history_moved=moved)
        self.last_run = run.id
        if self.config.stream:
            text, stream_id = await self.relay(channel, run.deltas())
            run, text = await fresh_reply(self, prompt, messages, run, text)  # a resample replaces the streamed draft
            message = await self._reply(channel, run, text, {"run_id": run.id, "stream_id": stream_id})
        else:
            await run.wait()
            run, text = await fresh_reply(self, prompt, messages, run, run.text)
            message = await self._reply(channel, run, text, {"run_id": run.id})
        self._last_turns[delivery.thread_id] = (prompt, message)
        self._last_turns.move_to_end(delivery.thread_id)
        while len(self._last_turns) > LAST_TURNS_KEPT:
            self._last_turns.popitem(last=False)
        self.read_ahead(delivery.thread_id)
        return True

    async def _reply(self, channel: str, run: Any, text: str, metadata: dict[str, Any]) -> Message:
        """Post the reply with the turn already counted: the state commits with the reply and its mark."""
        self.last_run, self.turns = run.id, self.turns + 1
        message = await self.say(channel, tidy(text), metadata=metadata)
        await runs_of(self.kernel).link(run, message.id)
        return message

    def read_ahead(self, thread_id: int) -> None:
        """Prefill the next turn's opening on `thread_id` as a background job: the embedded model reads the
        last exchange (or, after memory wrote a summary, the summary and the history it kept) while the other
        side reads and types, instead of after their next line arrives. Called after each reply, and by
        memory after it summarises a thread. Replies still go first: a prefill that finds its turn already
        answered does nothing (tobio/providers/kv_states.py)."""
        last = self._last_turns.get(thread_id)
        model = models_of(self.kernel).models.get(self.config.model)
        if not self.config.prefill or last is None or model is None or not model.provider.supports_prefill:
            return
        prompt, reply = last

        async def prefill() -> None:
            opening, moved = await self._next_opening(prompt, reply)
            run = model.prefill(opening, params=prompt.params, thread_id=thread_id, agent_id=self.id, history_moved=moved)
            if run is not None:
                with contextlib.suppress(ProviderError):  # recorded as a failed run; the next turn reads it all
                    await run.wait()

        self.kernel.tasks.spawn(prefill(), name=f"{self.name}:prefill", kind="job", owner=self.name)

    async def _next_opening(self, prompt: Prompt, reply: Message) -> tuple[list[dict[str, Any]], bool]:
        """This turn's prompt without its per-turn messages, plus the reply; from the new summary on if one
        was written since the prompt was built (the history source says so), and then whether it was."""
        sources = self.kernel.hooks.get(HISTORY_SOURCE)
        if sources:
            context = await sources[-1](self, prompt.thread_id)
            if context.summary and context.summary != prompt.summary:
                kept = [m for m in context.messages if m.id < reply.id]
                return prompt.next_opening([*kept, reply], summary=context.summary), True
        return prompt.next_opening([*prompt.history, reply]), False

    async def _use_commands(self, model: Any, messages: list[dict[str, Any]], prompt: Prompt, thread_id: int,
                            trigger_id: int, rounds: int = 3) -> tuple[list[dict[str, Any]], Any]:
        """Let the model run whitelisted commands before it answers. Returns the messages to answer from,
        and the run that already answered (when the model asked for no command), else None."""
        from tobio.persona import tools

        allowed = list(self.config.commands)
        native = model.provider.supports_tools
        if not native:
            messages = [{**messages[0], "content": messages[0]["content"] + "\n" + tools.text_protocol(allowed)}, *messages[1:]]
        for _ in range(rounds):
            run = model.run(messages, params=prompt.params, thread_id=thread_id, agent_id=self.id,
                            tools=[tools.tool_definition(allowed)] if native else None)
            await run.wait()
            asked = tools.requested_command(run)
            if asked is None:
                return messages, run
            command, call_id = asked
            output = await tools.execute(self, command, run, trigger_id)
            if call_id is not None:
                messages = messages + [
                    {"role": "assistant", "content": run.text or None, "tool_calls": [
                        {"id": call_id, "type": "function", "function": {"name": "run_command", "arguments": json.dumps({"command": command})}}]},
                    {"role": "tool", "tool_call_id": call_id, "content": output},
                ]
            else:
                messages = messages + [{"role": "assistant", "content": run.text},
                                       {"role": "user", "content": f"Output of `{command}`:\n{output}\nNow answer."}]
        return messages, None


def tidy(text: str) -> str:
    """Trim a reply cut off by the token limit back to its last whole sentence."""
    text = text.strip()
    ends = [m.end() for m in _SENTENCE_END.finditer(text)]
    if ends and ends[-1] < len(text) and ends[-1] > len(text) // 3:
        return text[: ends[-1]]
    return text


def _messages_on(conn: Any, channel: str) -> int:
    import sqlalchemy as sa

    from tobio.db.tables import MessageRow

    return int(conn.execute(sa.select(sa.func.count()).select_from(MessageRow)
                            .where(MessageRow.c.channel == channel)).scalar() or 0)
