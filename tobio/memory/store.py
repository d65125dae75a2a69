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
from tobio.db.history import latest_summary, thread_messages
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
    return conn.execute(sa.select(AgentRow.id).where(AgentRow.name == name)).scalar()


def _agent_messages(agent: int) -> sa.Select[Any]:
    return (
        sa.select(PushRow.message_id)
        .join(ThreadRow, ThreadRow.id == PushRow.thread_id)
        .where(ThreadRow.agent_id == agent)
    )


def agent_items(conn: Connection, agent: int, model: str) -> list[tuple[Item, np.ndarray]]:
    """Every memory this agent may retrieve, with its vector; messages carry their channel (for context)."""
    forgotten = sa.select(ForgottenRow.message_id).where(ForgottenRow.agent_id == agent)
    sender = AgentRow.alias("sender")
    messages = (
        sa.select(MemoryItemRow.source_id, MemoryItemRow.created_at, MemoryItemRow.importance,
                  MemoryItemRow.__table__.c.vector,
                  sender.name, MessageRow.content, MessageRow.channel)
        .join(MessageRow, MessageRow.id == MemoryItemRow.source_id)
        .outerjoin(sender, sender.id == MessageRow.agent_id)
        .where(MemoryItemRow.kind == "message", MemoryItemRow.model == model,
               MemoryItemRow.source_id.in_(_agent_messages(agent)), MemoryItemRow.source_id.not_in(forgotten))
        .order_by(MessageRow.id)  # the order live indexing adds them in
    )
    summaries = (
        sa.select(MemoryItemRow.source_id, MemoryItemRow.created_at, MemoryItemRow.importance,
                  MemoryItemRow.__table__.c.vector, SummaryRow.content, ThreadRow.channel)
        .join(SummaryRow, SummaryRow.id == MemoryItemRow.source_id)
        .join(ThreadRow, ThreadRow.id == SummaryRow.thread_id)
        .where(MemoryItemRow.kind == "summary", MemoryItemRow.model == model, ThreadRow.agent_id == agent)
    )
    out = [(Item("message", r[0], r[1], r[2], r[4], r[5], r[6]), vector(r[3])) for r in conn.execute(messages)]
    out += [(Item("summary", r[0], r[1], r[2], None, r[4], r[5]), vector(r[3])) for r in conn.execute(summaries)]
    return out


def insert_items(conn: Connection, db: Database, rows: Sequence[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Insert items not already there (a backfill may race the live indexer); returns those inserted."""
    if not rows:
        return []
    existing: set[tuple[str, int]] = set()
    for kind in {r[1] for r in rows}:
        ids = [r[2] for r in rows if r[1] == kind]
        query = sa.select(MemoryItemRow.source_id).where(MemoryItemRow.kind == kind, MemoryItemRow.source_id.in_(ids),
                                                        MemoryItemRow.model == rows[0][5])
        existing |= {(kind, i) for i in conn.execute(query).scalars()}
    fresh = [r for r in rows if (r[1], r[2]) not in existing]
    db.bulk_insert(conn, "memory_items", ITEM_COLUMNS, fresh)
    return fresh


def receivers(conn: Connection, message_ids: Sequence[int]) -> list[tuple[int, int, int]]:
    """(message_id, agent_id, thread_id) for every push of these messages."""
    query = (
        sa.select(PushRow.message_id, ThreadRow.agent_id, PushRow.thread_id)
        .join(ThreadRow, ThreadRow.id == PushRow.thread_id)
        .where(PushRow.message_id.in_(list(message_ids)))
    )
    return [tuple(r) for r in conn.execute(query)]  # type: ignore[misc]


def unindexed_messages(conn: Connection, model: str, agent: int | None, limit: int) -> list[Message]:
    """The oldest messages with content and no embedding by `model` (for backfill)."""
    done = sa.select(MemoryItemRow.source_id).where(MemoryItemRow.kind == "message", MemoryItemRow.model == model)
    query = (
        sa.select(MessageRow.id, MessageRow.channel, AgentRow.name, MessageRow.role, MessageRow.content, MessageRow.created_at)
        .outerjoin(AgentRow, AgentRow.id == MessageRow.agent_id)
        .where(MessageRow.content != "", MessageRow.id.not_in(done))
        .order_by(MessageRow.id)
        .limit(limit)
    )
    if agent is not None:
        query = query.where(MessageRow.id.in_(_agent_messages(agent)))
    return [Message(*r) for r in conn.execute(query)]


def count_unindexed(conn: Connection, model: str, agent: int | None) -> int:
    done = sa.select(MemoryItemRow.source_id).where(MemoryItemRow.kind == "message", MemoryItemRow.model == model)
    query = sa.select(sa.func.count()).select_from(MessageRow).where(MessageRow.content != "", MessageRow.id.not_in(done))
    if agent is not None:
        query = query.where(MessageRow.id.in_(_agent_messages(agent)))
    return int(conn.execute(query).scalar() or 0)


def threads_of(conn: Connection, agent: int | None) -> list[tuple[int, int]]:
    """(thread_id, agent_id) of every thread, or one agent's."""
    query = sa.select(ThreadRow.id, ThreadRow.agent_id).order_by(ThreadRow.id)
    if agent is not None:
        query = query.where(ThreadRow.agent_id == agent)
    return [tuple(r) for r in conn.execute(query)]  # type: ignore[misc]


def thread_state(conn: Connection, thread_id: int) -> tuple[int, int | None, str | None] | None:
    """(agent_id, checkpoint, latest summary) of a thread, None if there is no such thread."""
    agent = conn.execute(sa.select(ThreadRow.agent_id).where(ThreadRow.id == thread_id)).scalar()
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
    conn.execute(sa.update(ThreadRow).where(ThreadRow.id == thread_id).values(checkpoint_message_id=checkpoint))


def summaries(conn: Connection, agent: int | None = None, thread_id: int | None = None) -> list[tuple[Any, ...]]:
    """(thread, id, first, checkpoint, messages, tokens, created_at, content), oldest first."""
    query = (
        sa.select(SummaryRow.thread_id, SummaryRow.id, SummarySpanRow.first_message_id, SummaryRow.checkpoint_message_id,
                  SummarySpanRow.messages, SummarySpanRow.tokens, SummaryRow.created_at, SummaryRow.content)
        .outerjoin(SummarySpanRow, SummarySpanRow.summary_id == SummaryRow.id)
        .join(ThreadRow, ThreadRow.id == SummaryRow.thread_id)
        .order_by(SummaryRow.thread_id, SummaryRow.checkpoint_message_id)
    )
    if agent is not None:
        query = query.where(ThreadRow.agent_id == agent)
    if thread_id is not None:
        query = query.where(SummaryRow.thread_id == thread_id)
    return [tuple(r) for r in conn.execute(query)]


def was_pushed(conn: Connection, agent: int, message_id: int) -> bool:
    return conn.execute(_agent_messages(agent).where(PushRow.message_id == message_id).limit(1)).first() is not None


def forget(conn: Connection, row: tuple[Any, ...]) -> None:
    conn.execute(sa.insert(ForgottenRow).values(dict(zip(("id", "agent_id", "message_id", "reason", "requested_by", "created_at"), row))))


def stats(conn: Connection) -> list[tuple[str, Any]]:
    """Counts for `memory stats`."""
    def count(query: sa.Select[Any]) -> int:
        return int(conn.execute(query).scalar() or 0)

    items = sa.select(sa.func.count()).select_from(MemoryItemRow)
    return [
        ("embedded messages", count(items.where(MemoryItemRow.kind == "message"))),
        ("embedded summaries", count(items.where(MemoryItemRow.kind == "summary"))),
        ("summaries", count(sa.select(sa.func.count()).select_from(SummaryRow))),
        ("summarised threads", count(sa.select(sa.func.count(sa.distinct(SummaryRow.thread_id))))),
        ("forgotten", count(sa.select(sa.func.count()).select_from(ForgottenRow))),
        ("messages", count(sa.select(sa.func.count()).select_from(MessageRow))),
    ]


def created_at(conn: Connection, message_id: int) -> datetime | None:
    return conn.execute(sa.select(MessageRow.created_at).where(MessageRow.id == message_id)).scalar()
