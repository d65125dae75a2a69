"""The people module's reads and writes, each a function `fn(conn, …)` run on the kernel's DB thread."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from tobio.db.tables import MessageRow
from tobio.people.tables import PersonFactRow, ReflectionRow

if TYPE_CHECKING:
    from tobio.memory.items import Item

REFLECTION = "reflection"  # the memory item kind of a reflection

FACT_COLUMNS = ("id", "agent_id", "person", "key", "value", "source", "message_id", "created_at", "superseded_at",
                "valid_from", "valid_to", "confidence", "retracted_at", "retracted_by")
# How sure the agent is of a fact, by how it learnt it: told it by a command, corrected by the person
# ("no, my dog is called Rex"), a rule on what they said, a model's reading, or derived from counts.
CONFIDENCE = {"command": 1.0, "correction": 0.95, "rule": 0.8, "model": 0.6, "derived": 0.5}
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
    created_at: datetime  # when the agent came to believe it
    superseded_at: datetime | None = None  # when it stopped believing it (a newer version, or a retraction)
    valid_from: datetime | None = None  # when it became true for the person
    valid_to: datetime | None = None  # when it stopped being true (a later fact contradicted it)
    confidence: float = 0.8
    retracted_at: datetime | None = None  # the person said it was wrong: never true
    retracted_by: int | None = None  # the message that said so


@dataclass(frozen=True)
class Change:
    """How `write_facts` ends a version: `retract` (never true, said wrong by message `by`) or superseded
    by a newer one (true until `at`)."""

    id: int
    retract: bool = False
    by: int | None = None

def _version(row: Any) -> FactVersion:
    values = dict(zip(FACT_COLUMNS, row))
    values["confidence"] = float(values["confidence"] if values["confidence"] is not None else CONFIDENCE["rule"])
    return FactVersion(**values)


def current_facts(conn: Connection) -> list[FactVersion]:
    """Every fact not superseded nor retracted, of every agent (loaded once at start; the module keeps it current)."""
    query = sa.select(*[PersonFactRow.c[c] for c in FACT_COLUMNS]).where(
        PersonFactRow.c.superseded_at.is_(None), PersonFactRow.c.retracted_at.is_(None)).order_by(PersonFactRow.c.id)
    return [_version(row) for row in conn.execute(query)]


def retracted(conn: Connection) -> list[tuple[int, str, str, str]]:
    """(agent_id, person, key, value) of every retracted fact: values a reply must not bring back."""
    rows = PersonFactRow.c
    query = sa.select(rows.agent_id, rows.person, rows.key, rows.value).where(rows.retracted_at.is_not(None)).order_by(rows.id)
    return [(int(a), str(p), str(k), str(v)) for a, p, k, v in conn.execute(query)]


def write_facts(conn: Connection, new: list[tuple[Any, ...]], ended: list[Change], at: datetime) -> None:
    """End old versions (superseded: true until `at`; retracted: never true) and insert new ones, in one transaction."""
    rows = PersonFactRow.c
    closed = [c.id for c in ended if not c.retract]
    if closed:
        conn.execute(sa.update(PersonFactRow).where(rows.id.in_(closed), rows.superseded_at.is_(None)).values(superseded_at=at))
        conn.execute(sa.update(PersonFactRow).where(rows.id.in_(closed), rows.valid_to.is_(None)).values(valid_to=at))
    for change in ended:
        if change.retract:
            conn.execute(sa.update(PersonFactRow).where(rows.id == change.id, rows.superseded_at.is_(None)).values(superseded_at=at))
            conn.execute(sa.update(PersonFactRow).where(rows.id == change.id, rows.retracted_at.is_(None))
                         .values(retracted_at=at, retracted_by=change.by))
    if new:
        conn.execute(sa.insert(PersonFactRow), [dict(zip(FACT_COLUMNS, row)) for row in new])


def facts_from(conn: Connection, agent_id: int, message_id: int) -> list[FactVersion]:
    """The facts learnt from one message and not retracted yet (what `memory forget` of it retracts)."""
    query = sa.select(*[PersonFactRow.c[c] for c in FACT_COLUMNS]).where(
        PersonFactRow.c.agent_id == agent_id, PersonFactRow.c.message_id == message_id,
        PersonFactRow.c.retracted_at.is_(None)).order_by(PersonFactRow.c.id)
    return [_version(row) for row in conn.execute(query)]


def facts_at(conn: Connection, agent_id: int, at: datetime, person: str | None = None) -> dict[str, dict[str, str]]:
    """What the agent believed about each person at `at`: {person: {key: value}}."""
    query = sa.select(PersonFactRow.c.person, PersonFactRow.c.key, PersonFactRow.c.value).where(
        PersonFactRow.c.agent_id == agent_id, PersonFactRow.c.created_at <= at,
        sa.or_(PersonFactRow.c.superseded_at.is_(None), PersonFactRow.c.superseded_at > at),
        sa.or_(PersonFactRow.c.retracted_at.is_(None), PersonFactRow.c.retracted_at > at),
    ).order_by(PersonFactRow.c.id)
    if person is not None:
        query = query.where(PersonFactRow.c.person == person)
    out: dict[str, dict[str, str]] = {}
    for who, key, value in conn.execute(query):
        out.setdefault(who, {})[key] = value
    return out


def past_at(conn: Connection, agent_id: int, at: datetime) -> dict[str, dict[str, list[str]]]:
    """What the agent knew at `at` had been true before and had changed: {person: {key: ["Berlin (from … to …)"]}}
    (retracted ones are not: they were never true)."""
    rows = PersonFactRow.c
    query = sa.select(rows.person, rows.key, rows.value, rows.valid_from, rows.valid_to).where(
        rows.agent_id == agent_id, rows.created_at <= at, rows.valid_to.is_not(None), rows.valid_to <= at,
        sa.or_(rows.retracted_at.is_(None), rows.retracted_at > at),
    ).order_by(rows.id)
    out: dict[str, dict[str, list[str]]] = {}
    for who, key, value, start, end in conn.execute(query):
        out.setdefault(who, {}).setdefault(key, []).append(f"{value} (from {start:%Y-%m-%d %H:%M:%S} to {end:%Y-%m-%d %H:%M:%S})")
    return out


def fact_history(conn: Connection, agent_id: int, person: str) -> list[FactVersion]:
    """Every version of every fact about `person`, oldest first."""
    query = sa.select(*[PersonFactRow.c[c] for c in FACT_COLUMNS]).where(
        PersonFactRow.c.agent_id == agent_id, PersonFactRow.c.person == person).order_by(PersonFactRow.c.id)
    return [_version(row) for row in conn.execute(query)]


def current_reflections(conn: Connection) -> list[tuple[int, int, str | None, str]]:
    """(id, agent_id, person, content) of every reflection not superseded, oldest first."""
    query = sa.select(ReflectionRow.c.id, ReflectionRow.c.agent_id, ReflectionRow.c.person, ReflectionRow.c.content).where(
        ReflectionRow.c.superseded_at.is_(None)).order_by(ReflectionRow.c.id)
    return [(int(i), int(a), p, str(c)) for i, a, p, c in conn.execute(query)]


def write_reflections(conn: Connection, agent_id: int, person: str | None, rows: list[tuple[Any, ...]], at: datetime) -> None:
    """The new batch of reflections about `person` replaces the previous one (kept, superseded)."""
    who = ReflectionRow.c.person.is_(None) if person is None else ReflectionRow.c.person == person
    conn.execute(sa.update(ReflectionRow).where(ReflectionRow.c.agent_id == agent_id, who, ReflectionRow.c.superseded_at.is_(None))
                 .values(superseded_at=at))
    if rows:
        conn.execute(sa.insert(ReflectionRow), [dict(zip(REFLECTION_COLUMNS, row)) for row in rows])


def reflections_at(conn: Connection, agent_id: int, at: datetime) -> list[tuple[str | None, str]]:
    """(person, content) of the reflections the agent held at `at`."""
    query = sa.select(ReflectionRow.c.person, ReflectionRow.c.content).where(
        ReflectionRow.c.agent_id == agent_id, ReflectionRow.c.created_at <= at,
        sa.or_(ReflectionRow.c.superseded_at.is_(None), ReflectionRow.c.superseded_at > at),
    ).order_by(ReflectionRow.c.id)
    return [(p, str(c)) for p, c in conn.execute(query)]


def reflection_items(conn: Connection, agent_id: int, model: str) -> list[tuple[Item, Any]]:
    """The agent's current reflections as memory items with their vectors (memory's source for kind
    `reflection`), each with the channel of the conversation it came from, so a thought about a
    private chat is recalled only there."""
    from tobio.memory.items import Item  # with recall: a start reads facts, not memory's tables
    from tobio.memory.store import vector
    from tobio.memory.tables import MemoryItemRow

    query = (
        sa.select(ReflectionRow.c.id, MemoryItemRow.c.created_at, MemoryItemRow.c.importance, MemoryItemRow.c.vector,
                  ReflectionRow.c.person, ReflectionRow.c.content, MessageRow.c.channel)
        .join(MemoryItemRow, sa.and_(MemoryItemRow.c.kind == REFLECTION, MemoryItemRow.c.source_id == ReflectionRow.c.id,
                                     MemoryItemRow.c.model == model))
        .outerjoin(MessageRow, MessageRow.c.id == ReflectionRow.c.upto_message_id)
        .where(ReflectionRow.c.agent_id == agent_id, ReflectionRow.c.superseded_at.is_(None))
        .order_by(ReflectionRow.c.id)
    )
    return [(Item(REFLECTION, r[0], r[1], r[2], r[4], r[5], r[6]), vector(r[3])) for r in conn.execute(query)]
