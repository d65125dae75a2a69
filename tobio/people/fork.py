"""The people module's part of a fork: every version of every fact and reflection its parent held by the
fork point, as it stood then (what was superseded, ended or retracted later is current again for the
fork), and the memory items of those reflections."""

from __future__ import annotations

from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from tobio.branching.fork import Fork, carry_rows, mapped, until_fork
from tobio.memory.tables import MemoryItemRow
from tobio.people import store
from tobio.people.tables import PersonFactRow, ReflectionRow

if TYPE_CHECKING:
    from tobio.hooks import ForkedObserver
    from tobio.people.service import People


def carry(conn: Connection, fork: Fork) -> None:
    facts = PersonFactRow.c
    carry_rows(conn, fork, PersonFactRow, sa.and_(facts.agent_id == fork.parent_id, facts.created_at <= fork.at),
               agent_id=sa.literal(fork.agent_id, facts.agent_id.type), superseded_at=until_fork(facts.superseded_at, fork.at),
               valid_to=until_fork(facts.valid_to, fork.at), retracted_at=until_fork(facts.retracted_at, fork.at),
               retracted_by=sa.case((facts.retracted_at > fork.at, sa.null()), else_=facts.retracted_by))
    thoughts = ReflectionRow.c
    reflections = carry_rows(conn, fork, ReflectionRow, sa.and_(thoughts.agent_id == fork.parent_id, thoughts.created_at <= fork.at),
                             agent_id=sa.literal(fork.agent_id, thoughts.agent_id.type),
                             superseded_at=until_fork(thoughts.superseded_at, fork.at))
    if reflections:
        items = sa.and_(MemoryItemRow.c.kind == store.REFLECTION, MemoryItemRow.c.source_id.in_(list(reflections)))
        carry_rows(conn, fork, MemoryItemRow, items, source_id=mapped(MemoryItemRow.c.source_id, reflections))


def held(conn: Connection, agent_id: int) -> tuple[list[store.FactVersion], list[tuple[str, str, str]], list[tuple[int, str | None, str]]]:
    """What one agent holds now: current facts, retracted (person, key, value), current reflections."""
    facts = PersonFactRow.c
    current = sa.select(*[facts[c] for c in store.FACT_COLUMNS]).where(
        facts.agent_id == agent_id, facts.superseded_at.is_(None), facts.retracted_at.is_(None)).order_by(facts.id)
    gone = sa.select(facts.person, facts.key, facts.value).where(facts.agent_id == agent_id, facts.retracted_at.is_not(None))
    thoughts = sa.select(ReflectionRow.c.id, ReflectionRow.c.person, ReflectionRow.c.content).where(
        ReflectionRow.c.agent_id == agent_id, ReflectionRow.c.superseded_at.is_(None)).order_by(ReflectionRow.c.id)
    return ([store.FactVersion(**{**dict(zip(store.FACT_COLUMNS, r)), "confidence": float(r[11] if r[11] is not None else store.CONFIDENCE["rule"])})
             for r in conn.execute(current)],
            [(str(p), str(k), str(v)) for p, k, v in conn.execute(gone)],
            [(int(i), p, str(c)) for i, p, c in conn.execute(thoughts)])


def make_forked_hook(people: People) -> ForkedObserver:
    async def forked(fork: Fork) -> None:
        """The fork's current facts and reflections join what the module keeps in memory (as `load` does for all)."""
        facts, gone, thoughts = await people.kernel.db.call(held, fork.agent_id)
        for fact in facts:
            people.facts.setdefault(fork.agent_id, {}).setdefault(fact.person, {})[fact.key] = fact
        for who, key, value in gone:
            people._gone.setdefault((fork.agent_id, who, key), set()).add(value)
        for reflection_id, person, content in thoughts:
            people.reflections.setdefault((fork.agent_id, person), []).append(content)
            people.reflection_ids.setdefault((fork.agent_id, person), []).append(reflection_id)

    return forked
