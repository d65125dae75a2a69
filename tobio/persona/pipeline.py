"""Prompt assembly as a pipeline any LLM agent type can reuse: history, then every PROMPT hook.

An agent type that thinks with a model and has a persona (name, card, examples) gets memory, mood,
lore and per-person notes by calling `assemble` from its `on_message`, and turn-taking by asking
`Agent.hooks_say` before it answers: the modules plug in at tobio/hooks.py, not into the agent type.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from tobio.db.history import thread_context
from tobio.hooks import HISTORY_SOURCE, PROMPT
from tobio.messages import Message
from tobio.persona.prompt import Prompt

if TYPE_CHECKING:
    from tobio.kernel import Kernel
    from tobio.persona.schema import Persona


class PersonaBearer(Protocol):
    """What the pipeline and its hooks read from an agent: who it is and where it lives."""

    name: str
    id: int
    kernel: Kernel
    persona: Persona


async def assemble(agent: Any, thread_id: int, incoming: Message | None, *, context_messages: int = 12,
                   params: dict[str, Any] | None = None) -> Prompt:
    """The thread's latest summary and recent messages (or what a HISTORY_SOURCE supplies), then the
    PROMPT hooks in order. `incoming` is the message being answered, if any."""
    kernel = agent.kernel
    sources = kernel.hooks.get(HISTORY_SOURCE)
    if sources:  # memory: the whole unsummarised history, which its prompt hook then fits to budget
        context = await sources[-1](agent, thread_id)
    else:
        context = await kernel.db.call(thread_context, thread_id, context_messages)
    history = context.messages
    if incoming is not None and history and history[-1].id > incoming.id:
        # Handling a backlog (after a restart, or when slower than the channel): answer the message
        # as it stood, not with what was said after it in view. (The window is the thread's newest
        # messages, so what came just before it may be missing; the message itself never is.)
        history = [m for m in history if m.id < incoming.id] + [incoming]
    prompt = Prompt(agent, thread_id, incoming, context.summary, history, params=dict(params or {}))
    for step in kernel.hooks.get(PROMPT):
        await step(prompt)
    return prompt
