"""What happened, told to every module that subscribes (the EVENT point), after it is durable.

datasette's `track_event`: a module learns that a summary was written or a reply posted from a typed
event sent after the write commits, instead of calling into the module that wants to know (memory used
to call the persona agent's read-ahead itself). Subscribers check the event's type and ignore the rest;
one that raises is logged under its module's name and the others still hear of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from tobio.hooks import EVENT

if TYPE_CHECKING:
    from tobio.kernel import Kernel
    from tobio.messages import Message


@dataclass(frozen=True)
class Event:
    """Something that happened to an agent's thread; `name` is how logs and tests call it."""

    name: ClassVar[str] = "event"
    agent_id: int
    thread_id: int


@dataclass(frozen=True)
class ReplyPosted(Event):
    """An agent's reply is durable (the turn's last stage)."""

    name: ClassVar[str] = "reply_posted"
    message: Message
    run_id: int | None


@dataclass(frozen=True)
class SummaryWritten(Event):
    """Memory folded the thread's oldest messages into a new summary: the next prompt opens with it."""

    name: ClassVar[str] = "summary_written"
    summary_id: int
    content: str


async def publish(kernel: Kernel, event: Event) -> None:
    """Tell every EVENT subscriber, in order. Send only what is committed."""
    await kernel.hooks.each(EVENT, event)
