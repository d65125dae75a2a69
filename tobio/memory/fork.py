"""Memory's part of a fork: what its REPLAY reads that the kernel does not carry. Embedded messages are
shared (an item per message, found through the fork's pushes); the fork gets its own copies of the items
of its summaries, their spans, and what the agent had been made to forget by the fork point."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from tobio.branching.fork import Fork, carry_rows, mapped
from tobio.memory.tables import ForgottenRow, MemoryItemRow, SummarySpanRow


def carry(conn: Connection, fork: Fork) -> None:
    """Items and spans of the fork's summaries (ids mapped), and its parent's forgettings up to the fork point."""
    if fork.summaries:
        items = sa.and_(MemoryItemRow.c.kind == "summary", MemoryItemRow.c.source_id.in_(list(fork.summaries)))
        carry_rows(conn, fork, MemoryItemRow, items, source_id=mapped(MemoryItemRow.c.source_id, fork.summaries))
        spans = sa.select(mapped(SummarySpanRow.c.summary_id, fork.summaries), mapped(SummarySpanRow.c.thread_id, fork.threads),
                          SummarySpanRow.c.first_message_id, SummarySpanRow.c.last_message_id, SummarySpanRow.c.messages,
                          SummarySpanRow.c.tokens).where(SummarySpanRow.c.summary_id.in_(list(fork.summaries)))
        conn.execute(sa.insert(SummarySpanRow).from_select([c.name for c in SummarySpanRow.columns], spans))
    forgotten = sa.and_(ForgottenRow.c.agent_id == fork.parent_id, ForgottenRow.c.created_at <= fork.at)
    carry_rows(conn, fork, ForgottenRow, forgotten, agent_id=sa.literal(fork.agent_id, ForgottenRow.c.agent_id.type))
