"""Reads and writes of swipes, each `fn(conn, …)` run on the kernel's DB thread in one transaction."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from tobio.db.history import HistoryItem
from tobio.db.tables import AgentRow, MessageRow, PushRow, StateRow, SummaryRow, ThreadRow
from tobio.messages import Message
from tobio.swipes.tables import SwipeStateRow, WithdrawnRow

_sender = AgentRow.alias("sender")
_COLUMNS = (MessageRow.c.id, MessageRow.c.channel, _sender.c.name, MessageRow.c.role, MessageRow.c.content,
            MessageRow.c.created_at, MessageRow.c.agent_id, MessageRow.c.thread_id, MessageRow.c.metadata)


@dataclass(frozen=True)
class Said:
    """A message with what it answers (`reply_to`) and whether it is withdrawn from every history now."""

    message: Message
    reply_to: int | None
    withdrawn: bool


def _withdrawn_now() -> sa.Select[Any]:
    return sa.select(WithdrawnRow.c.message_id).where(WithdrawnRow.c.restored_at.is_(None))


def _said(conn: Connection, query: sa.Select[Any]) -> list[Said]:
    withdrawn = sa.exists(_withdrawn_now().where(WithdrawnRow.c.message_id == MessageRow.c.id))
    query = query.add_columns(MessageRow.c.reply_to, withdrawn).outerjoin(_sender, _sender.c.id == MessageRow.c.agent_id)
    return [Said(Message(*row[:9]), row[9], bool(row[10])) for row in conn.execute(query)]


def last_said(conn: Connection, channel: str) -> Said | None:
    """The newest message on `channel` still in the histories (not withdrawn)."""
    query = (sa.select(*_COLUMNS).select_from(MessageRow)
             .where(MessageRow.c.channel == channel, MessageRow.c.id.not_in(_withdrawn_now()))
             .order_by(MessageRow.c.id.desc()).limit(1))
    found = _said(conn, query)
    return found[0] if found else None


def latest_turn(conn: Connection, channel: str, agent: str | None) -> tuple[Said | None, Said | None, list[Said]]:
    """(the newest message on `channel`, the message it answers when it is a reply (of `agent`), the
    replies to that: its alternatives); when the newest is not such a reply, (it, None, the replies to it)."""
    last = last_said(conn, channel)
    if last is None:
        return None, None, []
    if last.reply_to is not None and last.message.sender_id is not None and (agent is None or last.message.sender == agent):
        incoming = message(conn, last.reply_to)
        if incoming is not None:
            return last, incoming, answers(conn, last.reply_to, last.message.sender_id)
    return last, None, [r for r in answers(conn, last.message.id) if agent is None or r.message.sender == agent]


def message(conn: Connection, message_id: int) -> Said | None:
    found = _said(conn, sa.select(*_COLUMNS).select_from(MessageRow).where(MessageRow.c.id == message_id))
    return found[0] if found else None


def answers(conn: Connection, reply_to: int, agent_id: int | None = None) -> list[Said]:
    """Every reply to message `reply_to` (by `agent_id`), oldest first: the alternatives of one turn."""
    query = sa.select(*_COLUMNS).select_from(MessageRow).where(MessageRow.c.reply_to == reply_to).order_by(MessageRow.c.id)
    if agent_id is not None:
        query = query.where(MessageRow.c.agent_id == agent_id)
    return _said(conn, query)


def withdraw(conn: Connection, message_ids: list[int], reason: str, at: datetime, branch: str | None = None) -> list[int]:
    """Move every push of these messages out of the histories; returns the agent ids whose threads lost one."""
    if not message_ids:
        return []
    rows = conn.execute(sa.select(PushRow.c.thread_id, PushRow.c.message_id).where(PushRow.c.message_id.in_(message_ids))).all()
    if rows:
        conn.execute(sa.insert(WithdrawnRow), [{"thread_id": t, "message_id": m, "reason": reason, "branch": branch,
                                                "withdrawn_at": at, "restored_at": None} for t, m in rows])
        conn.execute(sa.delete(PushRow).where(PushRow.c.message_id.in_(message_ids)))
    return _owners(conn, sorted({t for t, _ in rows}))


def restore(conn: Connection, message_ids: list[int], at: datetime) -> list[int]:
    """Push these withdrawn messages again to the threads they were taken from; returns those threads' agents."""
    if not message_ids:
        return []
    pending = WithdrawnRow.c.message_id.in_(message_ids) & WithdrawnRow.c.restored_at.is_(None)
    rows = conn.execute(sa.select(WithdrawnRow.c.thread_id, WithdrawnRow.c.message_id).where(pending)).all()
    if rows:
        conn.execute(sa.insert(PushRow), [{"thread_id": t, "message_id": m} for t, m in sorted(set(rows))])
        conn.execute(sa.update(WithdrawnRow).where(pending).values(restored_at=at))
    return _owners(conn, sorted({t for t, _ in rows}))


def _owners(conn: Connection, threads: list[int]) -> list[int]:
    if not threads:
        return []
    return sorted(set(conn.execute(sa.select(ThreadRow.c.agent_id).where(ThreadRow.c.id.in_(threads))).scalars()))


def save_state(conn: Connection, row: tuple[int, int, int, str, dict[str, Any], datetime]) -> None:
    conn.execute(sa.insert(SwipeStateRow).values(dict(zip(("id", "agent_id", "message_id", "kind", "state_dict", "created_at"), row))))


def saved_state(conn: Connection, agent_id: int, message_id: int, kind: str) -> dict[str, Any] | None:
    """The newest state saved for (agent, message, kind)."""
    rows = SwipeStateRow.c
    value = conn.execute(sa.select(rows.state_dict).where(rows.agent_id == agent_id, rows.message_id == message_id, rows.kind == kind)
                         .order_by(rows.id.desc()).limit(1)).scalar()
    return dict(value) if isinstance(value, dict) else None


def state_before(conn: Connection, agent_id: int, at: datetime) -> dict[str, Any] | None:
    """The agent's state as the `state` table last had it before `at` (a turn whose start was not seen
    by this process: its reply committed the state it ended with, superseding this one)."""
    value = conn.execute(sa.select(StateRow.c.state_dict).where(StateRow.c.agent_id == agent_id, StateRow.c.superseded_at <= at)
                         .order_by(StateRow.c.superseded_at.desc(), StateRow.c.id.desc()).limit(1)).scalar()
    return dict(value) if isinstance(value, dict) else None


def withdrawn_among(conn: Connection, message_ids: list[int]) -> set[int]:
    """Which of these messages are out of every history now."""
    if not message_ids:
        return set()
    return set(conn.execute(_withdrawn_now().where(WithdrawnRow.c.message_id.in_(message_ids))).scalars())


def after(conn: Connection, channel: str, message_id: int) -> list[int]:
    """Ids of the messages on `channel` after `message_id` still in the histories."""
    query = (sa.select(MessageRow.c.id).where(MessageRow.c.channel == channel, MessageRow.c.id > message_id,
                                              MessageRow.c.id.not_in(_withdrawn_now())).order_by(MessageRow.c.id))
    return list(conn.execute(query).scalars())


def state_at(conn: Connection, agent_id: int, at: datetime) -> dict[str, Any] | None:
    """The agent's state as it stood at `at` (None: it has not changed since, the current one is it)."""
    value = conn.execute(sa.select(StateRow.c.state_dict).where(StateRow.c.agent_id == agent_id, StateRow.c.created_at <= at,
                                                                StateRow.c.superseded_at > at)
                         .order_by(StateRow.c.id.desc()).limit(1)).scalar()
    return dict(value) if isinstance(value, dict) else None


def branch_names(conn: Connection) -> set[str]:
    return {b for b in conn.execute(sa.select(sa.distinct(WithdrawnRow.c.branch)).where(WithdrawnRow.c.branch.is_not(None))).scalars()}


def branches(conn: Connection, channel: str) -> list[tuple[Any, ...]]:
    """(branch, first message, messages, left at) of every branch an edit left on `channel`, oldest first."""
    rows = WithdrawnRow.c
    query = (sa.select(rows.branch, sa.func.min(rows.message_id), sa.func.count(sa.distinct(rows.message_id)), sa.func.min(rows.withdrawn_at))
             .join(MessageRow, MessageRow.c.id == rows.message_id)
             .where(rows.reason == "edit", MessageRow.c.channel == channel).group_by(rows.branch).order_by(sa.func.min(rows.withdrawn_at)))
    return [tuple(r) for r in conn.execute(query)]


def branch_messages(conn: Connection, branch: str) -> list[Message]:
    """The messages an edit moved to `branch`, oldest first (readable: they are never deleted)."""
    ids = sa.select(WithdrawnRow.c.message_id).where(WithdrawnRow.c.branch == branch)
    return [s.message for s in _said(conn, sa.select(*_COLUMNS).select_from(MessageRow).where(MessageRow.c.id.in_(ids))
                                        .order_by(MessageRow.c.id))]


def alternatives_in(conn: Connection, thread_id: int) -> dict[int, tuple[list[str], int]]:
    """For each message in the thread's history whose turn has more than one reply: (the texts of all its
    alternatives, oldest first, and its own place among them). SillyTavern's `swipes` and `swipe_id`."""
    mine, alt = MessageRow, MessageRow.alias("alt")
    query = (sa.select(mine.c.id, alt.c.id, alt.c.content)
             .select_from(PushRow.join(mine, mine.c.id == PushRow.c.message_id)
                          .join(alt, sa.and_(alt.c.reply_to == mine.c.reply_to, alt.c.agent_id == mine.c.agent_id)))
             .where(PushRow.c.thread_id == thread_id, mine.c.reply_to.is_not(None))
             .order_by(mine.c.id, alt.c.id))
    groups: dict[int, list[tuple[int, str]]] = {}
    for message_id, alt_id, content in conn.execute(query):
        groups.setdefault(message_id, []).append((alt_id, content))
    return {m: ([c for _, c in g], [i for i, _ in g].index(m)) for m, g in groups.items() if len(g) > 1}


def summarised(conn: Connection, channel: str, message_id: int) -> list[str]:
    """Names of the threads on `channel` whose summaries already fold in message `message_id`."""
    query = (sa.select(sa.distinct(ThreadRow.c.name)).join(SummaryRow, SummaryRow.c.thread_id == ThreadRow.c.id)
             .where(ThreadRow.c.channel == channel, SummaryRow.c.checkpoint_message_id >= message_id).order_by(ThreadRow.c.name))
    return list(conn.execute(query).scalars())


def as_it_stood(conn: Connection, agent_id: int, at: datetime, history: list[HistoryItem]) -> list[HistoryItem]:
    """`history` (what is pushed to the agent's threads now, up to `at`) as it stood at `at`: a reply
    withdrawn later (a swipe, an edit) was still there then, and one withdrawn then and chosen back later
    was not. For `agent replay`, which reads the record as it was, not as it was rewritten."""
    if not sa.inspect(conn).has_table(WithdrawnRow.name):  # no swipe or edit ever made here
        return history
    spans: dict[tuple[int, int], list[tuple[datetime, datetime | None]]] = {}
    for thread_id, message_id, withdrawn_at, restored_at in conn.execute(
        sa.select(WithdrawnRow.c.thread_id, WithdrawnRow.c.message_id, WithdrawnRow.c.withdrawn_at, WithdrawnRow.c.restored_at)
        .join(ThreadRow, ThreadRow.c.id == WithdrawnRow.c.thread_id).where(ThreadRow.c.agent_id == agent_id)
    ):
        spans.setdefault((thread_id, message_id), []).append((withdrawn_at, restored_at))
    if not spans:
        return history

    def out_at(key: tuple[int, int]) -> bool:
        return any(gone <= at and (back is None or back > at) for gone, back in spans.get(key, ()))

    kept = [item for item in history if not out_at((item.thread_id, item.message.id))]
    present = {(item.thread_id, item.message.id) for item in history}
    missing = [key for key in spans if key not in present and not out_at(key)]  # withdrawn after `at`, not back
    if missing:
        query = sa.select(*_COLUMNS).select_from(MessageRow).where(MessageRow.c.id.in_(sorted({m for _, m in missing})),
                                                                  MessageRow.c.created_at <= at)
        found = {said.message.id: said.message for said in _said(conn, query)}
        kept += [HistoryItem(thread_id, found[message_id]) for thread_id, message_id in missing if message_id in found]
    return sorted(kept, key=lambda item: (item.thread_id, item.message.id))
