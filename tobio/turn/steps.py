"""Prompt assembly: the history, then every PROMPT step in order (memory, lore, people, emotion …).

Any agent type that thinks with a model gets memory, mood, lore and per-person notes by building its
prompt here: the modules plug in at tobio/hooks.py, not into the agent type. A step that raises is
logged under its module's name and the prompt goes on without it (PROMPT isolates errors).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tobio.hooks import PROMPT
from tobio.messages import Message
from tobio.turn.history import thread_history
from tobio.turn.prompt import Prompt

if TYPE_CHECKING:
    from tobio.turn.agent import TurnAgent


async def assemble(agent: TurnAgent, thread_id: int, incoming: Message | None, *, context_messages: int = 12,
                   params: dict[str, Any] | None = None) -> Prompt:
    """The thread's history (see history.py), then the PROMPT steps. `incoming` is the message being
    answered, if any (None: what the agent would see now, for `agent prompt`)."""
    context = await thread_history(agent, thread_id, context_messages)
    history = context.messages
    if incoming is not None and history and history[-1].id > incoming.id:
        # Handling a backlog (after a restart, or when slower than the channel): answer the message
        # as it stood, not with what was said after it in view. (The window is the thread's newest
        # messages, so what came just before it may be missing; the message itself never is.)
        history = [m for m in history if m.id < incoming.id] + [incoming]
    prompt = Prompt(agent, thread_id, incoming, context.summary, history, params=dict(params or {}))
    await agent.kernel.hooks.each(PROMPT, prompt)
    return prompt
