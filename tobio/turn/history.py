"""The history a prompt starts from: the last HISTORY_SOURCE's (memory: the whole unsummarised thread,
which its prompt step then fits to budget), else the thread's latest summary and its newest messages."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tobio.db.history import ThreadContext, thread_context
from tobio.hooks import HISTORY_SOURCE

if TYPE_CHECKING:
    from tobio.agents.base import Agent


async def from_source(agent: Agent, thread_id: int) -> ThreadContext | None:
    """What the history source added last says (None: no source, or it failed and was logged)."""
    return await agent.kernel.hooks.last(HISTORY_SOURCE, agent, thread_id)


async def thread_history(agent: Agent, thread_id: int, newest: int) -> ThreadContext:
    """The source's history, else the thread's latest summary and `newest` messages after it."""
    context = await from_source(agent, thread_id)
    if context is None:
        context = await agent.kernel.db.call(thread_context, thread_id, newest)
    return context
