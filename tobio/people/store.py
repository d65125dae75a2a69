"""The people module's reads and writes, each a function `fn(conn, …)` run on the kernel's DB thread."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from tobio.db.tables import MessageRow
from tobio.memory.items import Item
from tobio.memory.tables import MemoryItemRow
from tobio.people.tables import PersonFactRow, ReflectionRow

REFLECTION = "reflection"  # the memory item kind of a reflection

FACT_COLUMNS = ("id", "agent_id", "person", "key", "value", "source", "message_id", "created_at", "superseded_at")
REFLECTION_COLUMNS = ("id", "agent_id", "person", "content", "upto_message_id", "created_at", "superseded_at")


@dataclass(frozen=True)
class FactVersion:
    """One stored version of a fact."""

    id: int
    agent_id: int
    person: str
    key: str
    value: str
    source: str
    message_id: int | None
    created_at: datetime
    superseded_at: datetime | None = None


def current_facts(conn: Connection) -> list[FactVersion]:
    """Every fact not superseded, of every agent (loaded once at start; the module keeps it current)."""
    query = sa.select(*[PersonFactRow.__table__.c[c] for c in FACT_COLUMNS]).where(
        PersonFactRow.superseded_at.is_(None)).order_by(PersonFactRow.id)
    return [FactVersion(*row) for row in conn.execute(query)]


def write_facts(conn: Connection, new: list[tuple[Any, ...]], superseded: list[int], at: datetime) -> None:
    """Supersede old versions and insert new ones in one transaction."""
    if superseded:
        conn.execute(sa.update(PersonFactRow.__table__).where(PersonFactRow.id.in_(superseded)).values(superseded_at=at))
    if new:
        conn.execute(sa.insert(PersonFactRow.__table__), [dict(zip(FACT_COLUMNS, row)) for row in new])


def facts_at(conn: Connection, agent_id: int, at: datetime, person: str | None = None) -> dict[str, dict[str, str]]:
    """What the agent believed about each person at `at`: {person: {key: value}}."""
    query = sa.select(PersonFactRow.person, PersonFactRow.key, PersonFactRow.value).where(
        PersonFactRow.agent_id == agent_id, PersonFactRow.created_at <= at,
        sa.or_(PersonFactRow.superseded_at.is_(None), PersonFactRow.superseded_at > at),
    ).order_by(PersonFactRow.id)
    if person is not None:
        query = query.where(PersonFactRow.person == person)
    out: dict[str, dict[str, str]] = {}
    for who, key, value in conn.execute(query):
        out.setdefault(who, {})[key] = value
    return out


def fact_history(conn: Connection, agent_id: int, person: str) -> list[FactVersion]:
    """Every version of every fact about `person`, oldest first."""
    query = sa.select(*[PersonFactRow.__table__.c[c] for c in FACT_COLUMNS]).where(
        PersonFactRow.agent_id == agent_id, PersonFactRow.person == person).order_by(PersonFactRow.id)
    return [FactVersion(*row) for row in conn.execute(query)]


def current_reflections(conn: Connection) -> list[tuple[int, int, str | None, str]]:
    """(id, agent_id, person, content) of every reflection not superseded, oldest first."""
    query = sa.select(ReflectionRow.id, ReflectionRow.agent_id, ReflectionRow.person, ReflectionRow.content).where(
        ReflectionRow.superseded_at.is_(None)).order_by(ReflectionRow.id)
    return [tuple(r) for r in conn.execute(query)]  # type: ignore[misc]


def write_reflections(conn: Connection, agent_id: int, person: str | None, rows: list[tuple[Any, ...]], at: datetime) -> None:
    """The new batch of reflections about `person` replaces the previous one (kept, superseded)."""
    who = ReflectionRow.person.is_(None) if person is None else ReflectionRow.person == person
    conn.execute(sa.update(ReflectionRow.__table__).where(ReflectionRow.agent_id == agent_id, who, ReflectionRow.superseded_at.is_(None))
                 .values(superseded_at=at))
    if rows:
        conn.execute(sa.insert(ReflectionRow.__table__), [dict(zip(REFLECTION_COLUMNS, row)) for row in rows])


def reflections_at(conn: Connection, agent_id: int, at: datetime) -> list[tuple[str | None, str]]:
    """(person, content) of the reflections the agent held at `at`."""
    query = sa.select(ReflectionRow.person, ReflectionRow.content).where(
        ReflectionRow.agent_id == agent_id, ReflectionRow.created_at <= at,
        sa.or_(ReflectionRow.superseded_at.is_(None), ReflectionRow.superseded_at > at),
    ).order_by(ReflectionRow.id)
    return [tuple(r) for r in conn.execute(query)]  # type: ignore[misc]


def reflection_items(conn: Connection, agent_id: int, model: str) -> list[tuple[Item, Any]]:
    """The agent's current reflections as memory items with their vectors (memory's source for kind
    `reflection`), each with the channel of the conversation it came from, so a thought about a
    private chat is recalled only there."""
    from tobio.memory.store import vector

    query = (
        sa.select(ReflectionRow.id, MemoryItemRow.created_at, MemoryItemRow.importance, MemoryItemRow.__table__.c.vector,
                  ReflectionRow.person, ReflectionRow.content, MessageRow.channel)
        .join(MemoryItemRow.__table__, sa.and_(MemoryItemRow.kind == REFLECTION, MemoryItemRow.source_id == ReflectionRow.id,
                                               MemoryItemRow.model == model))
        .outerjoin(MessageRow.__table__, MessageRow.id == ReflectionRow.upto_message_id)
        .where(ReflectionRow.agent_id == agent_id, ReflectionRow.superseded_at.is_(None))
        .order_by(ReflectionRow.id)
    )
    return [(Item(REFLECTION, r[0], r[1], r[2], r[4], r[5], r[6]), vector(r[3])) for r in conn.execute(query)]
