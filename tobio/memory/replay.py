"""Memory's part of `agent replay`: what the agent could have retrieved at time T."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from tobio.db.tables import PushRow, SummaryRow, ThreadRow
from tobio.memory.tables import ForgottenRow, MemoryItemRow


def retrievable_at(conn: Connection, agent_id: int, at: object) -> list[str]:
    """Memory items (`message:ID`, `summary:ID`) the agent's retrieval could return at `at`: embedded
    messages pushed to it by then and summaries of its threads written by then, minus what it had been
    made to forget by then."""
    mine = sa.select(ThreadRow.c.id).where(ThreadRow.c.agent_id == agent_id)
    pushed = sa.select(PushRow.c.message_id).where(PushRow.c.thread_id.in_(mine))
    forgotten = sa.select(ForgottenRow.c.message_id).where(ForgottenRow.c.agent_id == agent_id, ForgottenRow.c.created_at <= at)
    summaries = sa.select(SummaryRow.c.id).where(SummaryRow.c.thread_id.in_(mine), SummaryRow.c.created_at <= at)
    query = sa.select(MemoryItemRow.c.kind, MemoryItemRow.c.source_id).where(
        MemoryItemRow.c.created_at <= at,
        sa.or_(
            sa.and_(MemoryItemRow.c.kind == "message", MemoryItemRow.c.source_id.in_(pushed),
                    MemoryItemRow.c.source_id.not_in(forgotten)),
            sa.and_(MemoryItemRow.c.kind == "summary", MemoryItemRow.c.source_id.in_(summaries)),
        ),
    ).order_by(MemoryItemRow.c.kind, MemoryItemRow.c.source_id)
    return [f"{kind}:{source}" for kind, source in conn.execute(query)]
