"""How a persona agent's prompt is assembled, and the hook modules use to add to it.

Memory replaces the recent history with a budgeted one and adds retrieved memories; emotion adds a
mood line and adjusts sampling. Each hook is `async def hook(prompt: Prompt) -> None` and edits the
Prompt in place; they run in registration order.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tobio.messages import Message

if TYPE_CHECKING:
    from tobio.persona.agent import PersonaAgent

PromptHook = Callable[["Prompt"], Awaitable[None]]


@dataclass
class Prompt:
    """Everything that becomes the model's messages for one reply."""

    agent: PersonaAgent
    thread_id: int
    incoming: Message | None
    summary: str | None = None
    history: list[Message] = field(default_factory=list)
    system_extra: list[str] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)
    notes: dict[str, Any] = field(default_factory=dict)  # what hooks did, for `agent prompt`

    def messages(self) -> list[dict[str, Any]]:
        """Chat Completions messages: system, example dialogue, then the history in chat roles."""
        persona = self.agent.persona
        extra = ([f"Earlier in this conversation: {self.summary}"] if self.summary else []) + self.system_extra
        out: list[dict[str, Any]] = [{"role": "system", "content": persona.system_prompt(extra)}]
        out += persona.example_messages()
        others = {m.sender for m in self.history if m.sender != self.agent.name}
        named = len(others) > 1  # several speakers: say who said what
        for message in self.history:
            if message.sender == self.agent.name:
                out.append({"role": "assistant", "content": message.content})
            else:
                who = message.sender or "Narrator"
                out.append({"role": "user", "content": f"{who}: {message.content}" if named else message.content})
        return out
