"""The persona agent: an LLM-driven artificial person, a configuration of the turn (tobio/turn/agent.py).
It answers what is pushed to its threads with a prompt built from its persona file and its thread's
context, streaming the reply; it may run whitelisted commands before it answers."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Literal

from tobio.config.schema import RelPath
from tobio.models.module import models_of
from tobio.persona.schema import Persona, load_persona
from tobio.turn.agent import TurnAgent, TurnConfig

if TYPE_CHECKING:
    from tobio.persona.registry import PersonaRegistry
    from tobio.turn.prompt import Prompt
    from tobio.turn.reply import Reply


class PersonaAgentConfig(TurnConfig):
    """`type: persona`: who it is (a persona file), which model it thinks with, whom it answers."""

    type: Literal["persona"] = "persona"
    persona: RelPath


class PersonaAgent(TurnAgent):
    """A persona file's person: its card, greetings and versions (`persona set`), and tool use."""

    type_name = "persona"
    Config = PersonaAgentConfig
    config: PersonaAgentConfig

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.persona: Persona = load_persona(self.config.persona)
        self.persona_key: str | None = None  # set once the registry knows it (on_start)
        self._read: Persona | None = self.persona  # the file as read just now: the first on_start needs no second parse

    def _registry(self) -> PersonaRegistry | None:
        from tobio.persona.module import PersonaModule

        module = self.kernel.modules.get(PersonaModule)
        return module.registry if module is not None else None

    async def on_start(self) -> None:
        registry = self._registry()
        if registry is not None:
            read, self._read = self._read, None
            self.persona_key, self.persona = await registry.from_file(self.config.persona, read)

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

    def refresh(self) -> None:
        """Use the newest version of the persona (a `persona set` shows up on the next turn)."""
        registry = self._registry()
        if registry is not None and self.persona_key in registry.current:
            self.persona = registry.current[self.persona_key][1]

    async def generate(self, prompt: Prompt, channel: str, messages: list[dict[str, Any]] | None = None) -> Reply:
        """With `commands:`, the model may run them first; a run that asks for none is the reply."""
        messages = prompt.messages() if messages is None else messages
        if self.config.commands:
            model = models_of(self.kernel).get(self.config.model)
            messages, answered = await self._use_commands(model, messages, prompt)
            if answered is not None:
                from tobio.turn.reply import Reply  # at the first reply: a start need not import it

                self.last_run = answered.id
                return Reply(prompt, messages, answered, answered.text)
        return await super().generate(prompt, channel, messages)

    async def _use_commands(self, model: Any, messages: list[dict[str, Any]], prompt: Prompt,
                            rounds: int = 3) -> tuple[list[dict[str, Any]], Any]:
        """Let the model run whitelisted commands before it answers. Returns the messages to answer from,
        and the run that already answered (when the model asked for no command), else None."""
        from tobio.persona import tools

        allowed = list(self.config.commands)
        native = model.provider.supports_tools
        trigger_id = prompt.incoming.id if prompt.incoming is not None else None
        if not native:
            messages = [{**messages[0], "content": messages[0]["content"] + "\n" + tools.text_protocol(allowed)}, *messages[1:]]
        for _ in range(rounds):
            run = model.run(messages, params=prompt.params, thread_id=prompt.thread_id, agent_id=self.id,
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


def _messages_on(conn: Any, channel: str) -> int:
    import sqlalchemy as sa

    from tobio.db.tables import MessageRow

    return int(conn.execute(sa.select(sa.func.count()).select_from(MessageRow)
                            .where(MessageRow.c.channel == channel)).scalar() or 0)
