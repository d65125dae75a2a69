"""Memory's reads and writes, each a function `fn(conn, …)` run on the kernel's DB thread.

Scoping rule, enforced here and nowhere else: an agent's memories are the messages pushed to *its*
threads (pushes ⋈ threads on agent_id) and the summaries of its threads, minus what it forgot.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from tobio.db.database import Database
from tobio.db.history import agent_selves, latest_summary, thread_messages
from tobio.db.tables import AgentRow, MessageRow, PushRow, SummaryRow, ThreadRow
from tobio.memory.items import Item
from tobio.memory.tables import ForgottenRow, MemoryItemRow, SummarySpanRow
from tobio.messages import Message

if TYPE_CHECKING:
    import numpy as np

ITEM_COLUMNS = ("id", "kind", "source_id", "created_at", "importance", "model", "vector")
SPAN_COLUMNS = ("summary_id", "thread_id", "first_message_id", "last_message_id", "messages", "tokens")


def vector(value: Any) -> np.ndarray:
    """DuckDB hands back a list, the JSON path a string."""
    import numpy as np  # with the first index load, not at start-up

    return np.asarray(json.loads(value) if isinstance(value, str) else value, dtype=np.float32)


def agent_id(conn: Connection, name: str) -> int | None:
    return conn.execute(sa.select(AgentRow.c.id).where(AgentRow.c.name == name)).scalar()


def _agent_messages(agent: int) -> sa.Select[Any]:
    return (
        sa.select(PushRow.c.message_id)
        .join(ThreadRow, ThreadRow.c.id == PushRow.c.thread_id)
        .where(ThreadRow.c.agent_id == agent)
    )


def agent_items(conn: Connection, agent: int, model: str) -> list[tuple[Item, np.ndarray]]:
    """Every memory this agent may retrieve, with its vector; messages carry their channel (for context)."""
    forgotten = sa.select(ForgottenRow.c.message_id).where(ForgottenRow.c.agent_id == agent)
    sender = AgentRow.alias("sender")
    messages = (
        sa.select(MemoryItemRow.c.source_id, MemoryItemRow.c.created_at, MemoryItemRow.c.importance,
                  MemoryItemRow.c.vector,
                  sender.c.name, MessageRow.c.content, MessageRow.c.channel, MessageRow.c.agent_id, MessageRow.c.created_at)
        .join(MessageRow, MessageRow.c.id == MemoryItemRow.c.source_id)
        .outerjoin(sender, sender.c.id == MessageRow.c.agent_id)
        .where(MemoryItemRow.c.kind == "message", MemoryItemRow.c.model == model,
               MemoryItemRow.c.source_id.in_(_agent_messages(agent)), MemoryItemRow.c.source_id.not_in(forgotten))
        .order_by(MessageRow.c.id)  # the order live indexing adds them in
    )
    summaries = (
        sa.select(MemoryItemRow.c.source_id, MemoryItemRow.c.created_at, MemoryItemRow.c.importance,
                  MemoryItemRow.c.vector, SummaryRow.c.content, ThreadRow.c.channel)
        .join(SummaryRow, SummaryRow.c.id == MemoryItemRow.c.source_id)
        .join(ThreadRow, ThreadRow.c.id == SummaryRow.c.thread_id)
        .where(MemoryItemRow.c.kind == "summary", MemoryItemRow.c.model == model, ThreadRow.c.agent_id == agent)
    )
    own = agent_selves(conn, agent)  # a fork recalls its parent's earlier lines as its own, as its prompt shows them
    out = [(Item("message", r[0], r[1], r[2], own.name if own and own.said(r[7], r[8]) else r[4], r[5], r[6]), vector(r[3]))
           for r in conn.execute(messages)]
    out += [(Item("summary", r[0], r[1], r[2], None, r[4], r[5]), vector(r[3])) for r in conn.execute(summaries)]
    return out


def insert_items(conn: Connection, db: Database, rows: Sequence[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Insert items not already there (a backfill may race the live indexer); returns those inserted."""
    if not rows:
        return []
    existing: set[tuple[str, int]] = set()
    for kind in {r[1] for r in rows}:
        ids = [r[2] for r in rows if r[1] == kind]
        query = sa.select(MemoryItemRow.c.source_id).where(MemoryItemRow.c.kind == kind, MemoryItemRow.c.source_id.in_(ids),
                                                        MemoryItemRow.c.model == rows[0][5])
        existing |= {(kind, i) for i in conn.execute(query).scalars()}
    fresh = [r for r in rows if (r[1], r[2]) not in existing]
    db.bulk_insert(conn, "memory_items", ITEM_COLUMNS, fresh)
    return fresh


def receivers(conn: Connection, message_ids: Sequence[int]) -> list[tuple[int, int, int]]:
    """(message_id, agent_id, thread_id) for every push of these messages."""
    query = (
        sa.select(PushRow.c.message_id, ThreadRow.c.agent_id, PushRow.c.thread_id)
        .join(ThreadRow, ThreadRow.c.id == PushRow.c.thread_id)
        .where(PushRow.c.message_id.in_(list(message_ids)))
    )
    return [tuple(r) for r in conn.execute(query)]


def unindexed_messages(conn: Connection, model: str, agent: int | None, limit: int) -> list[Message]:
    """The oldest messages with content and no embedding by `model` (for backfill)."""
    done = sa.select(MemoryItemRow.c.source_id).where(MemoryItemRow.c.kind == "message", MemoryItemRow.c.model == model)
    query = (
        sa.select(MessageRow.c.id, MessageRow.c.channel, AgentRow.c.name, MessageRow.c.role, MessageRow.c.content, MessageRow.c.created_at)
        .outerjoin(AgentRow, AgentRow.c.id == MessageRow.c.agent_id)
        .where(MessageRow.c.content != "", MessageRow.c.id.not_in(done))
        .order_by(MessageRow.c.id)
        .limit(limit)
    )
    if agent is not None:
        query = query.where(MessageRow.c.id.in_(_agent_messages(agent)))
    return [Message(*r) for r in conn.execute(query)]


def count_unindexed(conn: Connection, model: str, agent: int | None) -> int:
    done = sa.select(MemoryItemRow.c.source_id).where(MemoryItemRow.c.kind == "message", MemoryItemRow.c.model == model)
    query = sa.select(sa.func.count()).select_from(MessageRow).where(MessageRow.c.content != "", MessageRow.c.id.not_in(done))
    if agent is not None:
        query = query.where(MessageRow.c.id.in_(_agent_messages(agent)))
    return int(conn.execute(query).scalar() or 0)


def threads_of(conn: Connection, agent: int | None) -> list[tuple[int, int]]:
    """(thread_id, agent_id) of every thread, or one agent's."""
    query = sa.select(ThreadRow.c.id, ThreadRow.c.agent_id).order_by(ThreadRow.c.id)
    if agent is not None:
        query = query.where(ThreadRow.c.agent_id == agent)
    return [tuple(r) for r in conn.execute(query)]


def thread_state(conn: Connection, thread_id: int) -> tuple[int, int | None, str | None] | None:
    """(agent_id, checkpoint, latest summary) of a thread, None if there is no such thread."""
    agent = conn.execute(sa.select(ThreadRow.c.agent_id).where(ThreadRow.c.id == thread_id)).scalar()
    if agent is None:
        return None
    latest = latest_summary(conn, thread_id)
    return (agent, latest[1], latest[0]) if latest else (agent, None, None)


def unsummarised(conn: Connection, thread_id: int, limit: int) -> tuple[tuple[int, int | None, str | None] | None, list[Message]]:
    """thread_state and the messages after its checkpoint, in one round trip."""
    state = thread_state(conn, thread_id)
    return state, ([] if state is None else messages_after(conn, thread_id, state[1], limit))


def messages_after(conn: Connection, thread_id: int, after: int | None, limit: int) -> list[Message]:
    """The first `limit` messages pushed to the thread after message `after`, oldest first."""
    return thread_messages(conn, thread_id, after=after, first=limit)


def write_summary(conn: Connection, summary: tuple[Any, ...], span: tuple[Any, ...]) -> None:
    """The summary, its span and the thread's new checkpoint, in one transaction."""
    summary_id, thread_id, checkpoint, content, created_at = summary
    conn.execute(sa.insert(SummaryRow).values(id=summary_id, thread_id=thread_id, checkpoint_message_id=checkpoint,
                                              content=content, created_at=created_at))
    conn.execute(sa.insert(SummarySpanRow).values(dict(zip(SPAN_COLUMNS, span))))
    conn.execute(sa.update(ThreadRow).where(ThreadRow.c.id == thread_id).values(checkpoint_message_id=checkpoint))


def summaries(conn: Connection, agent: int | None = None, thread_id: int | None = None) -> list[tuple[Any, ...]]:
    """(thread, id, first, checkpoint, messages, tokens, created_at, content), oldest first."""
    query = (
        sa.select(SummaryRow.c.thread_id, SummaryRow.c.id, SummarySpanRow.c.first_message_id, SummaryRow.c.checkpoint_message_id,
                  SummarySpanRow.c.messages, SummarySpanRow.c.tokens, SummaryRow.c.created_at, SummaryRow.c.content)
        .outerjoin(SummarySpanRow, SummarySpanRow.c.summary_id == SummaryRow.c.id)
        .join(ThreadRow, ThreadRow.c.id == SummaryRow.c.thread_id)
        .order_by(SummaryRow.c.thread_id, SummaryRow.c.checkpoint_message_id)
    )
    if agent is not None:
        query = query.where(ThreadRow.c.agent_id == agent)
    if thread_id is not None:
        query = query.where(SummaryRow.c.thread_id == thread_id)
    return [tuple(r) for r in conn.execute(query)]


def was_pushed(conn: Connection, agent: int, message_id: int) -> bool:
    return conn.execute(_agent_messages(agent).where(PushRow.c.message_id == message_id).limit(1)).first() is not None


def forget(conn: Connection, row: tuple[Any, ...]) -> None:
    conn.execute(sa.insert(ForgottenRow).values(dict(zip(("id", "agent_id", "message_id", "reason", "requested_by", "created_at"), row))))


def stats(conn: Connection) -> list[tuple[str, Any]]:
    """Counts for `memory stats`."""
    def count(query: sa.Select[Any]) -> int:
        return int(conn.execute(query).scalar() or 0)

    items = sa.select(sa.func.count()).select_from(MemoryItemRow)
    return [
        ("embedded messages", count(items.where(MemoryItemRow.c.kind == "message"))),
        ("embedded summaries", count(items.where(MemoryItemRow.c.kind == "summary"))),
        ("summaries", count(sa.select(sa.func.count()).select_from(SummaryRow))),
        ("summarised threads", count(sa.select(sa.func.count(sa.distinct(SummaryRow.c.thread_id))))),
        ("forgotten", count(sa.select(sa.func.count()).select_from(ForgottenRow))),
        ("messages", count(sa.select(sa.func.count()).select_from(MessageRow))),
    ]


def created_at(conn: Connection, message_id: int) -> datetime | None:
    return conn.execute(sa.select(MessageRow.c.created_at).where(MessageRow.c.id == message_id)).scalar()
