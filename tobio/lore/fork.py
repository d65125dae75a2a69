"""The lore module's part of a fork: its REPLAY reads the `lore` steps (which entries fired for which
reply); its prompt step reads the sticky/cooldown timers (per thread, in the agent's module state) and
the books attached to the agent and its channels. A fork gets each as it stood at the fork point."""

from __future__ import annotations

from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from tobio.branching.fork import Fork, carry_rows
from tobio.db.tables import StepRow
from tobio.lore.hook import STATE_KEY
from tobio.lore.store import LoreAttachRow

if TYPE_CHECKING:
    from tobio.hooks import ForkedObserver
    from tobio.lore.store import LoreStore


def carry(conn: Connection, fork: Fork) -> None:
    """Timers re-keyed to the fork's threads; the parent's lore steps; the books attached then."""
    timers = (fork.state.get("modules") or {}).get(STATE_KEY)
    if isinstance(timers, dict):
        fork.state["modules"][STATE_KEY] = {str(fork.threads.get(int(k), k)) if str(k).isdigit() else k: v
                                            for k, v in timers.items()}
    steps = StepRow.c
    carry_rows(conn, fork, StepRow, sa.and_(steps.agent_id == fork.parent_id, steps.kind == "lore", steps.created_at <= fork.at),
               agent_id=sa.literal(fork.agent_id, steps.agent_id.type))
    attached = LoreAttachRow.c
    then = sa.and_(attached.attached_at <= fork.at, sa.or_(attached.detached_at.is_(None), attached.detached_at > fork.at))
    rows = [("agent", fork.parent, fork.name)] + [("channel", old, new) for old, new in fork.channels.items()]
    for kind, old, new in rows:
        books = list(conn.execute(sa.select(attached.book).where(then, attached.kind == kind, attached.target == old)
                                  .order_by(attached.id)).scalars())
        have = set(conn.execute(sa.select(attached.book).where(attached.kind == kind, attached.target == new,
                                                               attached.detached_at.is_(None))).scalars())
        books = [b for b in books if b not in have]  # a branched channel's books come once, with its first fork
        if books:
            first = fork.ids("lore_attachments", len(books))
            conn.execute(sa.insert(LoreAttachRow), [
                {"id": first + i, "book": b, "kind": kind, "target": new, "attached_at": fork.made_at, "detached_at": None}
                for i, b in enumerate(books)])


def make_forked_hook(store: LoreStore) -> ForkedObserver:
    async def forked(fork: Fork) -> None:
        """The books now attached to the fork and its channels join the store's list."""
        targets = [("agent", fork.name)] + [("channel", c) for c in fork.channels.values()]

        def read(conn: Connection) -> list[tuple[str, str, str]]:
            query = sa.select(LoreAttachRow.c.book, LoreAttachRow.c.kind, LoreAttachRow.c.target).where(
                LoreAttachRow.c.detached_at.is_(None),
                sa.or_(*[sa.and_(LoreAttachRow.c.kind == k, LoreAttachRow.c.target == t) for k, t in targets]),
            ).order_by(LoreAttachRow.c.id)
            return [(str(b), str(k), str(t)) for b, k, t in conn.execute(query)]

        for entry in await store.kernel.db.call(read):
            if entry not in store.attached:
                store.attached.append(entry)

    return forked
