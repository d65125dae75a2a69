"""Edit and continue: change a message and go on from it; what came after it moves to a branch.

The edited message and everything said after it on its channel leave the histories (their pushes are
withdrawn under the branch's name, tables.py), so they stay readable with `message branch NAME`. Every
agent on the channel goes back to the state it was in when the message was said (its reply's sender
to the state its turn began with), and the new text is posted by the same sender, in the same role:
a person's edited line is answered as any line is. A summary memory already wrote over the old text
is append-only like the rest and stays as written: the command says which threads have one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tobio.db.migrations import utcnow
from tobio.errors import CommandError
from tobio.hooks import SWIPED
from tobio.messages import Message
from tobio.paths import slug
from tobio.swipes import store
from tobio.swipes.service import Swiped, Swipes, Turn

if TYPE_CHECKING:
    from tobio.agents.base import Agent
    from tobio.kernel import Kernel


@dataclass(frozen=True)
class Edited:
    """The edited message as posted, the branch what followed moved to, how many messages moved, and the
    threads whose summaries had already folded the old text in (they stay as written)."""

    message: Message
    branch: str
    moved: int
    summarised: list[str]


async def edit(kernel: Kernel, message_id: int, text: str, branch: str | None = None) -> Edited:
    """Replace message `message_id` by `text` and go on from there (see the module docstring)."""
    swipes = Swipes.of(kernel)
    await swipes.ready()
    await kernel.flush()
    db = kernel.db
    said = await db.call(store.message, message_id)
    if said is None:
        raise CommandError(f"no message {message_id}")
    channel = said.message.channel
    if said.withdrawn or channel is None:
        raise CommandError(f"message {message_id} is not in a conversation now (swiped away, or in a branch)")
    if not text.strip():
        raise CommandError("the edited message needs some text")
    sender = swipes.live(agent_id=said.message.sender_id) if said.message.sender_id is not None else None
    members = [sub.receiver for sub in kernel.transport.channels.get(channel, {}).values()]
    agents = [a for a in kernel.agents.live.values() if any(m is a for m in members)]
    for agent in agents:
        if agent.current is not None or not agent.inbox.empty():
            raise CommandError(f"{agent.name} is still answering on '{channel}'; wait or stop it before editing")
    taken = await db.call(store.branch_names)
    name = _branch_name(branch, message_id, taken)
    states = {a.id: await _state_then(kernel, swipes, a, said) for a in agents}
    moved = [message_id, *await db.call(store.after, channel, message_id)]
    summarised = await db.call(store.summarised, channel, message_id)
    owners = await db.call(store.withdraw, moved, "edit", utcnow(), name)
    for agent in agents:
        state = states[agent.id]
        if state is not None:
            kernel.agents.restore_state(agent, state)
        last_turns = getattr(agent, "last_turns", None)
        subscription = kernel.transport.subscription(agent.id, channel)
        if isinstance(last_turns, dict) and subscription is not None:
            last_turns.pop(subscription.thread_id, None)
        await kernel.agents.save_state(agent)
    await kernel.flush()
    changed = tuple(sorted({*owners, *(a.id for a in agents)}))
    await kernel.hooks.each(SWIPED, Swiped(said.message.sender_id or 0, channel, tuple(moved), (), changed))
    metadata = {"edit_of": message_id, "branch": name}
    if sender is not None:
        posted = await sender.say(channel, text, role=said.message.role, metadata=metadata)
    else:
        posted = await kernel.transport.post(channel, text, sender=None, role=said.message.role, metadata=metadata)
    return Edited(posted, name, len(moved), summarised)


def _branch_name(wanted: str | None, message_id: int, taken: set[str]) -> str:
    if wanted:
        name = slug(wanted, fallback="branch")
        if name in taken:
            raise CommandError(f"there is already a branch '{name}' (see `message branches CHANNEL`)")
        return name
    name, n = f"edit-{message_id}", 1
    while name in taken:
        n += 1
        name = f"edit-{message_id}-{n}"
    return name


async def _state_then(kernel: Kernel, swipes: Swipes, agent: Agent, said: store.Said) -> dict[str, Any] | None:
    """The state `agent` goes back to: its turn's start when the edited message is its own reply, else
    the state it was in when the message was said (None: unchanged since)."""
    if said.message.sender_id == agent.id and said.reply_to is not None:
        incoming = await kernel.db.call(store.message, said.reply_to)
        if incoming is not None:
            replies = await kernel.db.call(store.answers, said.reply_to, agent.id)
            return await swipes.before(agent, Turn(agent.id, said.message.channel or "", incoming.message, replies))
    return await kernel.db.call(store.state_at, agent.id, said.message.created_at)
