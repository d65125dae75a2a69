"""Reading the next turn ahead: after a reply (and after a new summary), the embedded model reads how
the next prompt will open while the other side reads and types, instead of after their next line.

Replies still go first: a prefill that finds its turn already answered does nothing
(tobio/providers/kv_states.py). A provider without a cache of its own (a server) skips it.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from tobio.models.module import models_of
from tobio.providers.base import ProviderError
from tobio.turn.events import Event, SummaryWritten
from tobio.turn.history import from_source

if TYPE_CHECKING:
    from tobio.hooks import EventObserver
    from tobio.kernel import Kernel
    from tobio.messages import Message
    from tobio.turn.agent import TurnAgent
    from tobio.turn.prompt import Prompt


def read_ahead(agent: TurnAgent, thread_id: int) -> None:
    """Prefill the opening of the agent's next turn on `thread_id` as a background job: the last exchange,
    or after memory wrote a summary, the summary and the history it kept."""
    last = agent.last_turns.get(thread_id)
    model = models_of(agent.kernel).models.get(agent.config.model)
    if last is None or model is None or not model.provider.supports_prefill:
        return
    prompt, reply = last

    async def job() -> None:
        opening, moved = await next_opening(agent, prompt, reply)
        run = model.prefill(opening, params=prompt.params, thread_id=thread_id, agent_id=agent.id, history_moved=moved)
        if run is not None:
            with contextlib.suppress(ProviderError):  # recorded as a failed run; the next turn reads it all
                await run.wait()

    agent.kernel.tasks.spawn(job(), name=f"{agent.name}:prefill", kind="job", owner=agent.name)


async def next_opening(agent: TurnAgent, prompt: Prompt, reply: Message) -> tuple[list[dict[str, Any]], bool]:
    """This turn's prompt without its per-turn messages, plus the reply; from the new summary on if one
    was written since the prompt was built (the history source says so), and then whether it was."""
    context = await from_source(agent, prompt.thread_id)
    if context is not None and context.summary and context.summary != prompt.summary:
        kept = [m for m in context.messages if m.id < reply.id]
        return prompt.next_opening([*kept, reply], summary=context.summary), True
    return prompt.next_opening([*prompt.history, reply]), False


def after_summary(kernel: Kernel) -> EventObserver:
    """An EVENT subscriber: when a summary is written for a thread of a live turn agent, read its next
    opening ahead now, rather than on the next turn, which would otherwise re-read its whole kept history."""
    from tobio.turn.agent import TurnAgent  # the agent imports this file

    async def on_event(event: Event) -> None:
        if isinstance(event, SummaryWritten):
            agent = next((a for a in kernel.agents.live.values() if a.id == event.agent_id), None)
            if isinstance(agent, TurnAgent):
                agent.read_ahead(event.thread_id)

    return on_event
