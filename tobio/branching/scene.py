"""Who was in a scene at a moment (`channel branch` forks the agents and brings the people along)."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from tobio.db.tables import AgentRow, ChannelRow, ThreadRow
from tobio.errors import CommandError
from tobio.principal import name_key

MOST_SUFFIXES = 1000


def cast_at(conn: Connection, channel: str, at: datetime) -> tuple[list[str], list[str]]:
    """(agents, people) with a thread on `channel` open at `at`, in the order they joined."""
    query = (sa.select(AgentRow.c.name, AgentRow.c.type).join(ThreadRow, ThreadRow.c.agent_id == AgentRow.c.id)
             .where(ThreadRow.c.channel == channel, ThreadRow.c.opened_at <= at,
                    sa.or_(ThreadRow.c.closed_at.is_(None), ThreadRow.c.closed_at > at))
             .order_by(ThreadRow.c.id))
    agents: list[str] = []
    people: list[str] = []
    for name, kind in conn.execute(query):
        group = people if kind == "user" else agents
        if name not in group:
            group.append(name)
    return agents, people


def free_suffix(conn: Connection, channel: str, agents: list[str]) -> str:
    """The first `bN` free both as `CHANNEL.bN` and as `NAME.bN` for every agent."""
    channels = set(conn.execute(sa.select(ChannelRow.c.name).where(ChannelRow.c.name.like(f"{channel}.b%"))).scalars())
    taken = {name_key(n) for n in conn.execute(sa.select(AgentRow.c.name)).scalars()}
    for n in range(1, MOST_SUFFIXES + 1):
        suffix = f"b{n}"
        if f"{channel}.{suffix}" not in channels and not any(name_key(f"{a}.{suffix}") in taken for a in agents):
            return suffix
    raise CommandError(f"{channel} has {MOST_SUFFIXES} branches already; name one with --suffix")
