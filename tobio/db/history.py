"""Reconstructing what an agent experienced: the hot read path, each a single query.

An agent's subjective history is the messages pushed to its threads, never a guess from which
channels it was in. `pushes` is keyed (thread_id, message_id), so per-thread reads are index range scans.

A fork's past lines are its parent's (the same message rows, shared by reference: tobio/branching); read
in the fork's threads they carry the fork's name, so its prompt shows them as its own words. Whose words
are a thread's owner's own never changes once the thread exists (a fork's `lineage` is written with its
threads), so it is looked up once per thread and kept, and not at all while the database has no fork:
the hot statements stay as they were.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from tobio.db.tables import AgentRow, LineageRow, MessageRow, PushRow, SummaryRow, ThreadRow
from tobio.messages import Message

_sender = AgentRow.alias("sender")
_MESSAGE_COLUMNS = (
    MessageRow.c.id, MessageRow.c.channel, _sender.c.name, MessageRow.c.role, MessageRow.c.content,
    MessageRow.c.created_at, MessageRow.c.agent_id, MessageRow.c.thread_id, MessageRow.c.metadata,
)
assert _MESSAGE_COLUMNS[8] is MessageRow.c.metadata


def _message(row: Sequence[Any]) -> Message:
    return Message(*row[: len(_MESSAGE_COLUMNS)])


@dataclass(frozen=True)
class Selves:
    """A fork's thread: its owner's name, and whose words up to when are its own (its ancestors')."""

    name: str
    ancestors: dict[int, datetime]

    def said(self, sender_id: int | None, at: datetime) -> bool:
        """Whether a line its sender said at `at` is the owner's own (an ancestor's, before the fork point)."""
        upto = self.ancestors.get(sender_id) if sender_id is not None else None
        return upto is not None and at <= upto

    def own(self, messages: list[Message]) -> list[Message]:
        """`messages` with the ancestors' lines before their fork points under the owner's name."""
        for message in messages:
            if self.said(message.sender_id, message.created_at):
                message.sender = self.name
        return messages


def agent_selves(conn: Connection, agent_id: int) -> Selves | None:
    """Whose earlier words the agent holds as its own (None: not a fork). One query; for reads of an
    agent's whole memory, not the per-turn path (`selves` keeps its answers per thread)."""
    rows = conn.execute(
        sa.select(AgentRow.c.name, LineageRow.c.ancestor_id, LineageRow.c.upto)
        .join(LineageRow, LineageRow.c.agent_id == AgentRow.c.id).where(AgentRow.c.id == agent_id)
    ).all()
    return Selves(rows[0][0], {int(a): upto for _, a, upto in rows}) if rows else None


_KEPT = 4096  # threads whose answer is kept, per database
_RECHECK_S = 30.0  # how long "nothing here is a fork" is trusted (another kernel on the database may fork)


@dataclass
class _Known:
    """Per database: whether any fork exists (and since when that is known), and each thread's answer."""

    forks: bool = False
    checked: float = float("-inf")
    threads: OrderedDict[int, Selves | None] = field(default_factory=OrderedDict)


_known: weakref.WeakKeyDictionary[Engine, _Known] = weakref.WeakKeyDictionary()
_known_lock = threading.Lock()


def forked(engine: Engine) -> None:
    """A fork was made on this database (tobio/branching): threads are looked up from now on."""
    with _known_lock:
        _known.setdefault(engine, _Known()).forks = True


def selves(conn: Connection, thread_id: int) -> Selves | None:
    """Whose past words the owner of `thread_id` reads as its own (None: only its own, not a fork).
    Costs nothing on a database without forks (checked again every _RECHECK_S), one lookup per thread
    on one with them."""
    with _known_lock:
        known = _known.setdefault(conn.engine, _Known())
        if thread_id in known.threads:
            known.threads.move_to_end(thread_id)
            return known.threads[thread_id]
        look = known.forks or time.monotonic() - known.checked > _RECHECK_S
    if not known.forks:
        if not look:
            return None
        any_fork = conn.execute(sa.select(LineageRow.c.agent_id).limit(1)).first() is not None
        with _known_lock:
            known.forks, known.checked = known.forks or any_fork, time.monotonic()
        if not any_fork:
            return None
    rows = conn.execute(
        sa.select(AgentRow.c.name, LineageRow.c.ancestor_id, LineageRow.c.upto)
        .select_from(sa.join(ThreadRow, AgentRow, AgentRow.c.id == ThreadRow.c.agent_id)
                     .outerjoin(LineageRow, LineageRow.c.agent_id == ThreadRow.c.agent_id))
        .where(ThreadRow.c.id == thread_id)
    ).all()
    found = Selves(rows[0][0], {int(a): u for _, a, u in rows}) if rows and rows[0][1] is not None else None
    if rows:  # a thread not written yet is asked again next time
        with _known_lock:
            known.threads[thread_id] = found
            while len(known.threads) > _KEPT:
                known.threads.popitem(last=False)
    return found


def _as_read_in(conn: Connection, thread_id: int, messages: list[Message]) -> list[Message]:
    found = selves(conn, thread_id) if messages else None
    return found.own(messages) if found is not None else messages


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
    items = [HistoryItem(row[0], _message(row[1:])) for row in conn.execute(query)]
    for thread in {item.thread_id for item in items}:
        _as_read_in(conn, thread, [item.message for item in items if item.thread_id == thread])
    return items


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
    return _as_read_in(conn, thread_id, [_message(row) for row in rows])


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
# pushed after its checkpoint. Two statements cost twice the per-statement overhead (bench/history.py:
# 1.4x raw SQL as two, under 1x as one, measured when duckdb-engine compiled every statement anew).
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


def _context_rows(conn: Connection, thread_id: int, last: int) -> Sequence[Sequence[Any]]:
    # Compiled once: SQLAlchemy caches it (on DuckDB too: Tobio's dialect keeps the statement cache on).
    return conn.execute(_CONTEXT, {"thread": thread_id, "last": last}).all()


def thread_context(conn: Connection, thread_id: int, last: int = 50) -> ThreadContext:
    """Latest summary of the thread plus (up to) the last `last` messages after its checkpoint."""
    rows = _context_rows(conn, thread_id, last) if last > 0 else []
    if not rows:  # nothing after the checkpoint (or nothing at all): the summary alone
        summary = latest_summary(conn, thread_id)
        return ThreadContext(summary[0] if summary else None, summary[1] if summary else None, [])
    width = len(_MESSAGE_COLUMNS)
    return ThreadContext(rows[0][width], rows[0][width + 1], _as_read_in(conn, thread_id, [_message(row) for row in rows]))
