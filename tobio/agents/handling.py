"""The durable record of handling: which pushed messages each agent has dealt with.

Delivery is at least once: a push is durable before it reaches an inbox, and on start every agent's
inbox is rebuilt, in order, from the pushes it has not handled. Handling is idempotent: an agent's
handling cursor (`handled.message_id`, one row per thread) moves in the same transaction as its reply and its
state, so after a crash a message is either answered and marked, or neither, and is handled again.
Hence exactly one reply per message. Messages an agent sees and chooses not to answer (floors,
`reply_to`, `ignore`) move the cursor too: "seen, not answered", told apart by having no message
whose `reply_to` is theirs.

A cursor per thread, not a mark per push: an agent handles its inbox in order and a thread's messages
arrive in id order (see writer.py), so one id per thread says everything, and marking costs one
coalesced UPDATE per batch instead of one per push.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from tobio.db.literals import const
from tobio.db.tables import AgentRow, HandledRow, MessageRow, PushRow, ThreadRow
from tobio.db.writer import Set
from tobio.messages import Delivery, Message

CURSOR = ("message_id",)
_sender = AgentRow.alias("sender")


def cursor_set(thread_id: int, message_id: int) -> Set:
    """The writer `set` that records everything in `thread_id` up to `message_id` as handled."""
    return ("handled", "thread_id", CURSOR, thread_id, (message_id,))


def _unhandled(*columns: sa.ColumnElement[Any]) -> sa.Select[Any]:
    """Pushes to open threads after their cursor, not counting the thread owner's own messages."""
    return (
        sa.select(*columns)
        .select_from(PushRow)
        .join(ThreadRow, ThreadRow.c.id == PushRow.c.thread_id)
        .join(MessageRow, MessageRow.c.id == PushRow.c.message_id)
        .outerjoin(HandledRow, HandledRow.c.thread_id == PushRow.c.thread_id)
        .where(
            ThreadRow.c.closed_at.is_(None),
            PushRow.c.message_id > sa.func.coalesce(HandledRow.c.message_id, const(0)),
            sa.or_(MessageRow.c.agent_id.is_(None), MessageRow.c.agent_id != ThreadRow.c.agent_id),
        )
    )


def unhandled_deliveries(conn: Connection, agent_id: int | None = None) -> dict[int, list[Delivery]]:
    """Every agent's (or one agent's) unhandled pushes, oldest first: agent id -> deliveries to put
    back in its inbox."""
    query = _unhandled(
        ThreadRow.c.agent_id, PushRow.c.thread_id, MessageRow.c.id, MessageRow.c.channel, _sender.c.name, MessageRow.c.role,
        MessageRow.c.content, MessageRow.c.created_at, MessageRow.c.agent_id, MessageRow.c.thread_id, MessageRow.c.metadata,
    ).outerjoin(_sender, _sender.c.id == MessageRow.c.agent_id).order_by(PushRow.c.message_id, PushRow.c.thread_id)
    if agent_id is not None:
        query = query.where(ThreadRow.c.agent_id == const(agent_id))
    out: dict[int, list[Delivery]] = {}
    for agent_id, thread_id, *fields in conn.execute(query):
        out.setdefault(agent_id, []).append(Delivery(Message(*fields), thread_id))
    return out


def unhandled_counts(conn: Connection) -> dict[int, int]:
    """agent id -> how many pushes to its open threads it has not handled (from the database alone)."""
    query = _unhandled(ThreadRow.c.agent_id, sa.func.count()).group_by(ThreadRow.c.agent_id)
    return {agent_id: count for agent_id, count in conn.execute(query)}
