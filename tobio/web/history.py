"""What the page opens on: the agent the person usually talks with, and their conversation so far.

The page talks as the same person as the shell (`user`, channel `dm.user.AGENT`), so a chat started at
the prompt goes on in the browser, and the agent remembers it either way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from tobio.db.tables import AgentRow, MessageRow, PushRow

if TYPE_CHECKING:
    from tobio.kernel import Kernel

PAGE_USER = "user"  # the person at the shell, at a notebook's ask() and on this page
HISTORY_LIMIT = 50  # earlier messages shown when the page opens: enough to pick the thread up again


def talkers(kernel: Kernel) -> list[str]:
    """Agents one can talk with (not people at front ends), in the order they were spawned."""
    return [a.name for a in kernel.agents.live.values() if a.type_name != "user"]


def configured_agent(kernel: Kernel) -> str | None:
    """`settings: {web: {default_agent: NAME}}` in kernel.yaml, when the web module is loaded."""
    from tobio.web.module import WebModule

    module = kernel.modules.get(WebModule)
    return module.settings.default_agent if module is not None else None


def opening_agent(kernel: Kernel, wanted: str | None = None) -> tuple[str | None, str]:
    """The agent the page opens on, and a note when the one asked for is not running.

    `wanted` (or the default_agent setting) if it is live; else the first persona spawned (the one
    `./dev run` chats with); else the first agent of any kind. Never alphabetical: `echo` is a demo.
    """
    names = talkers(kernel)
    wanted = wanted or configured_agent(kernel)
    if wanted and wanted in names:
        return wanted, ""
    personas = [a.name for a in kernel.agents.live.values() if a.type_name == "persona"]
    candidates = personas or names
    chosen = candidates[0] if candidates else None
    note = f"default_agent '{wanted}' is not running" + (f"; talking with {chosen}" if chosen else "") if wanted else ""
    return chosen, note


def channel_for(agent: str) -> str:
    return f"dm.{PAGE_USER}.{agent}"


async def earlier_messages(kernel: Kernel, agent: str, last: int = HISTORY_LIMIT) -> list[tuple[str, str]]:
    """(sender, text) of the newest `last` messages between the person and `agent`, oldest first: those in
    the histories (a reply swiped away or a branch left by an edit is not)."""
    channel = channel_for(agent)

    def read(conn: Connection) -> list[tuple[str, str]]:
        query = (sa.select(AgentRow.c.name, MessageRow.c.content)
                 .select_from(MessageRow)
                 .outerjoin(AgentRow, AgentRow.c.id == MessageRow.c.agent_id)
                 .where(MessageRow.c.channel == channel,
                        sa.exists(sa.select(PushRow.c.message_id).where(PushRow.c.message_id == MessageRow.c.id)))
                 .order_by(MessageRow.c.id.desc()).limit(last))
        rows = conn.execute(query).all()
        return [(name or "kernel", content) for name, content in reversed(rows) if content]

    async def on_kernel_loop() -> list[tuple[str, str]]:
        await kernel.writer.flush()  # what was just said is on the page too
        return await kernel.db.call(read)

    return await kernel.acall(on_kernel_loop())
