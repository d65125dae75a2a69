"""Reconstructing what an agent experienced: the hot read path, each a single query.

An agent's subjective history is the messages pushed to its threads, never a guess from which
channels it was in. `pushes` is keyed (thread_id, message_id), so per-thread reads are index range scans.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from tobio.db.tables import AgentRow, MessageRow, PushRow, SummaryRow, ThreadRow
from tobio.messages import Message

_sender = AgentRow.alias("sender")
_MESSAGE_COLUMNS = (
    MessageRow.c.id, MessageRow.c.channel, _sender.c.name, MessageRow.c.role, MessageRow.c.content,
    MessageRow.c.created_at, MessageRow.c.agent_id, MessageRow.c.thread_id, MessageRow.c.metadata,
)


def _message(row: Sequence[Any]) -> Message:
    return Message(*row[: len(_MESSAGE_COLUMNS)])


@dataclass(frozen=True)
class HistoryItem:
    """One message as received: in which of the agent's threads."""

    thread_id: int
    message: Message


def agent_history(
    conn: Connection, agent_id: int, *, until: datetime | None = None, thread_id: int | None = None
) -> list[HistoryItem]:
    """Everything pushed to the agent's threads (optionally up to `until`), by thread then message order."""
    query = (
        sa.select(PushRow.c.thread_id, *_MESSAGE_COLUMNS)
        .join(ThreadRow, ThreadRow.c.id == PushRow.c.thread_id)
        .join(MessageRow, MessageRow.c.id == PushRow.c.message_id)
        .outerjoin(_sender, _sender.c.id == MessageRow.c.agent_id)
        .where(ThreadRow.c.agent_id == agent_id)
        .order_by(PushRow.c.thread_id, PushRow.c.message_id)
    )
    if until is not None:
        query = query.where(MessageRow.c.created_at <= until)
    if thread_id is not None:
        query = query.where(PushRow.c.thread_id == thread_id)
    return [HistoryItem(row[0], _message(row[1:])) for row in conn.execute(query)]


_THREAD_MESSAGES = sa.select(*_MESSAGE_COLUMNS).select_from(
    sa.join(PushRow, MessageRow, MessageRow.c.id == PushRow.c.message_id).outerjoin(_sender, _sender.c.id == MessageRow.c.agent_id)
)


def thread_messages(
    conn: Connection, thread_id: int, *, after: int | None = None, last: int | None = None, first: int | None = None
) -> list[Message]:
    """Messages pushed to one thread, oldest first; `after` a message id, `last` keeps only the newest n,
    `first` only the oldest n."""
    query = _THREAD_MESSAGES.where(PushRow.c.thread_id == thread_id)
    if after is not None:
        query = query.where(PushRow.c.message_id > after)
    if last is not None:
        rows = conn.execute(query.order_by(PushRow.c.message_id.desc()).limit(last)).all()[::-1]
    else:
        query = query.order_by(PushRow.c.message_id)
        rows = conn.execute(query if first is None else query.limit(first)).all()
    return [_message(row) for row in rows]


@dataclass(frozen=True)
class ThreadContext:
    """What a thread's owner has in mind: the latest summary and the messages after its checkpoint."""

    summary: str | None
    checkpoint: int | None
    messages: list[Message]


def latest_summary(conn: Connection, thread_id: int) -> tuple[str, int] | None:
    """(content, checkpoint message id) of the thread's newest summary, if it has one."""
    row = conn.execute(
        sa.select(SummaryRow.c.content, SummaryRow.c.checkpoint_message_id)
        .where(SummaryRow.c.thread_id == thread_id)
        .order_by(SummaryRow.c.checkpoint_message_id.desc())
        .limit(1)
    ).first()
    return (row[0], row[1]) if row else None


# The hot path of every turn as ONE statement: the newest summary (a CTE) and the newest `n` messages
# pushed after its checkpoint. Two statements cost twice the per-statement overhead of duckdb-engine,
# which compiles each one anew (bench/history.py: 1.4x raw SQL as two, under 1x as one).
_SUMMARY = (
    sa.select(SummaryRow.c.content, SummaryRow.c.checkpoint_message_id)
    .where(SummaryRow.c.thread_id == sa.bindparam("thread"))
    .order_by(SummaryRow.c.checkpoint_message_id.desc())
    .limit(1)
    .cte("latest_summary")
)
_CHECKPOINT = sa.select(_SUMMARY.c.checkpoint_message_id).scalar_subquery()
_RECENT = (
    sa.select(PushRow.c.message_id)
    .where(PushRow.c.thread_id == sa.bindparam("thread"), PushRow.c.message_id > sa.func.coalesce(_CHECKPOINT, -1))
    .order_by(PushRow.c.message_id.desc())
    .limit(sa.bindparam("last", type_=sa.Integer))
    .subquery("recent")
)
_CONTEXT = (
    sa.select(*_MESSAGE_COLUMNS, sa.select(_SUMMARY.c.content).scalar_subquery(), _CHECKPOINT)
    .select_from(
        sa.join(_RECENT, MessageRow, MessageRow.c.id == _RECENT.c.message_id).outerjoin(_sender, _sender.c.id == MessageRow.c.agent_id)
    )
    .order_by(MessageRow.c.id)
)


def thread_context(conn: Connection, thread_id: int, last: int = 50) -> ThreadContext:
    """Latest summary of the thread plus (up to) the last `last` messages after its checkpoint."""
    rows = conn.execute(_CONTEXT, {"thread": thread_id, "last": last}).all() if last > 0 else []
    if not rows:  # nothing after the checkpoint (or nothing at all): the summary alone
        summary = latest_summary(conn, thread_id)
        return ThreadContext(summary[0] if summary else None, summary[1] if summary else None, [])
    width = len(_MESSAGE_COLUMNS)
    return ThreadContext(rows[0][width], rows[0][width + 1], [_message(row) for row in rows])
