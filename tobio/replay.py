"""Time travel: what an agent had at time T, reconstructed from the database alone.

The messages pushed to its threads up to T, the summary that was current, its state_dict (from the
`state` table, where every superseded state is kept; a fork's before its fork point is its parent's), and what loaded modules add at the REPLAY hook
point (emotion: the affect decayed to T; memory, people, lore: what they held then). Nothing is read
from the live agent, so a replay after a restart, or of a killed agent, works the same.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from tobio.db.history import HistoryItem, agent_history
from tobio.db.migrations import utcnow
from tobio.db.tables import AgentRow, BranchRow, Row, StateRow, SummaryRow, ThreadRow
from tobio.errors import AgentError, CommandError
from tobio.hooks import REPLAY
from tobio.messages import Message
from tobio.swipes.store import as_it_stood

if TYPE_CHECKING:
    from tobio.kernel import Kernel

_RELATIVE = re.compile(r"^-(\d+(?:\.\d+)?)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_time(text: str, now: datetime | None = None) -> datetime:
    """ISO time (UTC), `now`, or relative to now: `-30s`, `-5m`, `-2h`, `-1d`."""
    now = now or utcnow()
    if text == "now":
        return now
    shown = repr(text) if len(text) <= 40 else repr(text[:37] + "...")
    match = _RELATIVE.match(text)
    if match:
        try:
            return now - timedelta(**{_UNITS[match.group(2)]: float(match.group(1))})
        except (OverflowError, ValueError):  # -99999999999d: before year 1
            raise CommandError(f"time out of range: {shown} (the calendar starts at year 1)") from None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise CommandError(f"not a time: {shown} (ISO like 2026-11-24T21:30:00, `now`, or -30s/-5m/-2h/-1d)") from None
    try:
        return value.replace(tzinfo=None) if value.tzinfo is None else value.astimezone().replace(tzinfo=None)
    except (OverflowError, ValueError, OSError):  # 0001-01-01T00:00+14:00 has no local time
        raise CommandError(f"time out of range: {shown}") from None


@dataclass
class ThreadView:
    """One thread as it stood at T."""

    id: int
    channel: str | None
    opened_at: datetime
    open: bool
    messages: list[Message] = field(default_factory=list)
    summary: str | None = None
    checkpoint: int | None = None


@dataclass
class Snapshot:
    """An agent's experience and inner state at one moment."""

    agent: str
    at: datetime
    threads: list[ThreadView]
    state: dict[str, Any]
    affect: dict[str, float] | None = None
    agent_id: int = 0
    extra: dict[str, Any] = field(default_factory=dict)  # what modules add (memory: what it could retrieve)

    def message_ids(self) -> dict[int, list[int]]:
        return {t.id: [m.id for m in t.messages] for t in self.threads}

    def summary_rows(self) -> list[tuple[Any, ...]]:
        return [
            (t.id, t.channel, "open" if t.open else "closed", len(t.messages),
             t.messages[-1].content[:60] if t.messages else "", t.summary or "")
            for t in self.threads
        ]


def _read(conn: Connection, name: str, at: datetime) -> tuple[Row, list[Row], list[HistoryItem], dict[int, tuple[str, int]], dict[str, Any]]:
    agent = conn.execute(sa.select(AgentRow).where(AgentRow.c.name == name)).first()
    if agent is None:
        raise AgentError(f"no agent named '{name}' (see `agent ls --all`)")
    if agent.created_at > at:
        raise AgentError(f"'{name}' did not exist yet at {at:%Y-%m-%d %H:%M:%S} (created {agent.created_at:%Y-%m-%d %H:%M:%S})")
    threads = list(conn.execute(
        sa.select(ThreadRow).where(ThreadRow.c.agent_id == agent.id, ThreadRow.c.opened_at <= at).order_by(ThreadRow.c.id)))
    history = as_it_stood(conn, agent.id, at, agent_history(conn, agent.id, until=at))  # swipes and edits undone after `at`
    summaries: dict[int, tuple[str, int]] = {}
    for thread_id, content, checkpoint in conn.execute(
        sa.select(SummaryRow.c.thread_id, SummaryRow.c.content, SummaryRow.c.checkpoint_message_id)
        .join(ThreadRow, ThreadRow.c.id == SummaryRow.c.thread_id)
        .where(ThreadRow.c.agent_id == agent.id, SummaryRow.c.created_at <= at)
        .order_by(SummaryRow.c.checkpoint_message_id)
    ):
        summaries[thread_id] = (content, checkpoint)  # the latest one wins
    return agent, threads, history, summaries, state_at(conn, agent, at)


def state_at(conn: Connection, agent: Row, at: datetime) -> dict[str, Any]:
    """The agent's state_dict at `at`: the superseded one current then, else its current one; a fork's
    before its fork point is its parent's then (a fork carries the state at the fork point, not the past)."""
    state = conn.execute(
        sa.select(StateRow.c.state_dict).where(StateRow.c.agent_id == agent.id, StateRow.c.created_at <= at, StateRow.c.superseded_at > at)
        .order_by(StateRow.c.id.desc()).limit(1)
    ).scalar()
    if state is not None:
        return dict(state)
    branch = conn.execute(sa.select(BranchRow.c.parent_agent_id, BranchRow.c.fork_at).where(BranchRow.c.agent_id == agent.id)).first()
    if branch is not None and at < branch.fork_at:
        parent = conn.execute(sa.select(AgentRow).where(AgentRow.c.id == branch.parent_agent_id)).first()
        if parent is not None:
            return state_at(conn, parent, at)
    return dict(agent.state_dict or {})


async def replay(kernel: Kernel, name: str, at: datetime) -> Snapshot:
    """The agent `name` as it was at `at` (UTC)."""
    await kernel.flush()
    agent, threads, history, summaries, state = await kernel.db.call(_read, name, at)
    views = {t.id: ThreadView(t.id, t.channel, t.opened_at, t.closed_at is None or t.closed_at > at) for t in threads}
    for item in history:
        if item.thread_id in views:
            views[item.thread_id].messages.append(item.message)
    for thread_id, (content, checkpoint) in summaries.items():
        if thread_id in views:
            views[thread_id].summary, views[thread_id].checkpoint = content, checkpoint
    snapshot = Snapshot(name, at, list(views.values()), state, None, agent.id)
    await kernel.hooks.each(REPLAY, snapshot)  # emotion adds the affect; memory, people and lore what they knew
    return snapshot


def diff(before: Snapshot, after: Snapshot) -> list[tuple[str, Any, Any]]:
    """What changed between two snapshots: per thread message counts, summaries, state keys, affect."""
    rows: list[tuple[str, Any, Any]] = []
    old = {t.id: t for t in before.threads}
    for thread in after.threads:
        prev = old.get(thread.id)
        n_before = len(prev.messages) if prev else 0
        if n_before != len(thread.messages):
            new_texts = [m.content for m in thread.messages[n_before:]]
            rows.append((f"thread {thread.id} ({thread.channel}) messages", n_before, f"{len(thread.messages)} (+{'; '.join(new_texts)[:120]})"))
        if prev is None:
            rows.append((f"thread {thread.id} ({thread.channel})", "-", "opened"))
        elif prev.open and not thread.open:
            rows.append((f"thread {thread.id} ({thread.channel})", "open", "closed"))
        if (prev.summary if prev else None) != thread.summary:
            rows.append((f"thread {thread.id} summary", prev.summary if prev else None, thread.summary))
    for key in sorted(set(before.state) | set(after.state)):
        if key != "modules" and before.state.get(key) != after.state.get(key):
            rows.append((f"state.{key}", before.state.get(key), after.state.get(key)))
    if before.affect != after.affect:
        rows.append(("affect", before.affect, after.affect))
    for key in sorted(set(before.extra) | set(after.extra)):
        was, now = before.extra.get(key), after.extra.get(key)
        if was != now:
            if isinstance(was, list) and isinstance(now, list):
                rows.append((key, len(was), f"{len(now)} ({len(now) - len(was):+d})"))
            else:
                rows.append((key, was, now))
    return rows
