"""`thread ls|show`: the threads of experience, one per agent per subscription."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from tobio.commands import Arg, Context, Group, Result, table
from tobio.db.tables import AgentRow, PushRow, Row, ThreadRow
from tobio.errors import CommandError

if TYPE_CHECKING:
    from tobio.db.history import ThreadContext


def register(root: Group) -> None:
    thread = root.group("thread", "Threads: one agent's contiguous experience of a channel.")

    @thread.command(
        "ls",
        Arg("--agent", help="only this agent's threads", complete="agent"),
        Arg("--channel", help="only threads on this channel", complete="channel"),
        Arg("--open", flag=True, help="only open threads"),
        agents="agents",  # --agent is the calling agent itself (its reach, from complete="agent")
    )
    async def ls(ctx: Context, agent: str | None, channel: str | None, open: bool) -> Result:
        """List threads with their owner, channel, status and number of messages received."""
        await ctx.kernel.flush()

        def read(conn: sa.Connection) -> list[tuple[Any, ...]]:
            pushes = sa.select(PushRow.c.thread_id, sa.func.count().label("n")).group_by(PushRow.c.thread_id).subquery()
            query = (
                sa.select(ThreadRow.c.id, AgentRow.c.name, ThreadRow.c.channel, ThreadRow.c.opened_at, ThreadRow.c.closed_at,
                          sa.func.coalesce(pushes.c.n, 0), ThreadRow.c.checkpoint_message_id)
                .join(AgentRow, AgentRow.c.id == ThreadRow.c.agent_id)
                .outerjoin(pushes, pushes.c.thread_id == ThreadRow.c.id)
                .order_by(ThreadRow.c.id)
            )
            if agent:
                query = query.where(AgentRow.c.name == agent)
            if channel:
                query = query.where(ThreadRow.c.channel == channel)
            if open:
                query = query.where(ThreadRow.c.closed_at.is_(None))
            return [tuple(r) for r in conn.execute(query)]

        rows = await ctx.kernel.db.call(read)
        return table(["thread", "agent", "channel", "opened", "closed", "messages", "checkpoint"], rows)

    @thread.command(
        "show",
        Arg("id", type=int, help="thread id", complete="thread"),
        Arg("--last", short="-n", type=int, default=50, help="show the last N messages after the checkpoint"),
        agents="agents",
    )
    async def show(ctx: Context, id: int, last: int) -> Result:
        """Show a thread's context: its latest summary and the messages after the checkpoint."""
        from tobio.db.history import thread_context

        await ctx.kernel.flush()

        def read(conn: sa.Connection) -> tuple[Row, ThreadContext] | None:
            row = conn.execute(sa.select(ThreadRow).where(ThreadRow.c.id == id)).first()
            return (row, thread_context(conn, id, last)) if row else None

        found = await ctx.kernel.db.call(read)
        if found is None:
            raise CommandError(f"no thread {id} (see `thread ls`)")
        row, context = found
        rows = [(m.id, m.created_at, m.sender or "-", m.role, m.content) for m in context.messages]
        title = f"thread {id} ({row.name}{', closed' if row.closed_at else ''})"
        text = f"summary up to message {context.checkpoint}: {context.summary}" if context.summary else None
        return table(["msg", "at", "from", "role", "content"], rows, title=title, text=text)
