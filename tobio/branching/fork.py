"""`agent fork` and `channel branch`: new agents whose whole mind is others' as it stood at a moment.

What a fork carries is what `agent replay` reads, as of the fork point: the state_dict then (mood and
module state inside it), its threads (the parent's threads opened by then, with their pushes up to
then: references to the same messages, never copies of them), their summaries, and whatever each
loaded module contributes at the FORK hook point (memory, people and lore carry their own rows). All of
it is written in ONE transaction, so a fork killed half-way leaves nothing behind. The parent never
changes. Rows are copied with `INSERT … SELECT` in the database (`carry_rows`), never through Python.
Only the state at the fork point is carried, not its history: before the fork point, `agent replay`
reads a fork's state from its parent (tobio/replay.py, through `branches`).

The fork's DM threads (`dm.USER.PARENT`) continue as `dm.USER.FORK`, so talking to the fork continues
that conversation; a branched channel continues as the new channel. Threads on any other channel are
closed as the fork is made: it remembers them, it does not follow them (it would hear its parent).
Everything pushed up to the fork point counts as handled: the branch continues from there.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from pydantic import ValidationError
from sqlalchemy.engine import Connection

from tobio.config.schema import name_adapter
from tobio.db.history import forked
from tobio.db.migrations import utcnow
from tobio.db.tables import (
    AgentRow,
    BranchRow,
    ChannelRow,
    HandledRow,
    LineageRow,
    MessageRow,
    PushRow,
    Row,
    StateRow,
    SummaryRow,
    ThreadRow,
)
from tobio.errors import AgentError
from tobio.hooks import FORK, FORKED, Hooks
from tobio.principal import is_person_name, name_key

if TYPE_CHECKING:
    from tobio.kernel import Kernel

Reserve = Callable[[str, int], int]


@dataclass
class Fork:
    """One agent's fork while it is made: what the FORK steps carry their rows by."""

    parent_id: int
    parent: str
    agent_id: int
    name: str
    at: datetime
    reserve: Reserve = field(repr=False)
    message_id: int | None = None
    made_at: datetime = field(default_factory=utcnow)
    channels: dict[str, str] = field(default_factory=dict)  # the parent's channel -> the fork's
    threads: dict[int, int] = field(default_factory=dict)  # the parent's thread id -> the fork's
    summaries: dict[int, int] = field(default_factory=dict)  # the parent's summary id -> the fork's
    state: dict[str, Any] = field(default_factory=dict)  # the fork's state_dict (a step may re-key what it holds)

    def ids(self, table: str, count: int) -> int:
        """The first of `count` fresh ids of `table` (a reserved block; callable on the DB thread)."""
        return self.reserve(table, count) if count > 0 else 0


@dataclass(frozen=True)
class Request:
    """What to fork: (parent, new name) pairs, the moment, and channels that continue under a new name."""

    agents: tuple[tuple[str, str], ...]
    at: datetime
    message_id: int | None = None
    channels: tuple[tuple[str, str], ...] = ()


@dataclass
class Made:
    """A committed branching: the forks, and the users' threads on the new channels."""

    forks: list[Fork]
    user_threads: list[tuple[int, str, int]]  # (user agent id, channel, thread id)


def dm_twin(channel: str | None, parent: str, name: str) -> str | None:
    """`dm.USER.PARENT` -> `dm.USER.NAME` (the fork's private channel with the same person)."""
    if channel is None or not channel.startswith("dm.") or not channel.endswith(f".{parent}"):
        return None
    user = channel[3:-len(parent) - 1]
    return f"dm.{user}.{name}" if user else None


def moment_of(conn: Connection, message_id: int) -> datetime:
    """When message `message_id` was posted: a fork `--message ID` is made as of then, that message included."""
    at = conn.execute(sa.select(MessageRow.c.created_at).where(MessageRow.c.id == message_id)).scalar()
    if at is None:
        raise AgentError(f"no message {message_id} (see `agent history NAME`)")
    moment: datetime = at
    return moment


def mapped(column: sa.ColumnElement[Any], ids: dict[int, int]) -> sa.ColumnElement[Any]:
    """`column` with the parent's ids replaced by the fork's (a CASE over the map, evaluated in the database)."""
    return sa.case(ids, value=column, else_=column) if ids else column


def carry_rows(conn: Connection, fork: Fork, table: sa.Table, where: sa.ColumnElement[bool],
               **changed: sa.ColumnElement[Any]) -> dict[int, int]:
    """Copy the rows of `table` matching `where` for the fork with ONE `INSERT … SELECT` (nothing passes
    through Python): fresh ids from a reserved block, in the old ids' order, and the columns in
    `changed` computed (the fork's agent id, mapped ids, a supersession that came after the fork point
    undone). Returns old id -> new id."""
    old_ids = list(conn.execute(sa.select(table.c.id).where(where).order_by(table.c.id)).scalars())
    if not old_ids:
        return {}
    first = fork.ids(table.name, len(old_ids))
    fresh = sa.literal(first, table.c.id.type) + sa.func.row_number().over(order_by=table.c.id) - 1
    columns = [fresh.label("id") if c.name == "id" else changed[c.name].label(c.name) if c.name in changed else c
               for c in table.columns]
    conn.execute(sa.insert(table).from_select([c.name for c in table.columns], sa.select(*columns).where(where)))
    return {old: first + index for index, old in enumerate(old_ids)}


def until_fork(column: sa.ColumnElement[Any], at: datetime) -> sa.ColumnElement[Any]:
    """A time that came after the fork point did not happen for the fork: NULL then (not superseded yet)."""
    return sa.case((column > at, sa.null()), else_=column)


def _check_names(conn: Connection, request: Request) -> dict[str, Row]:
    """Every parent exists, is not a person, existed at the fork point; every new name is free and valid."""
    taken = {name_key(n): n for n in conn.execute(sa.select(AgentRow.c.name)).scalars()}
    parents: dict[str, Row] = {}
    new_keys: set[str] = set()
    for parent, name in request.agents:
        row = conn.execute(sa.select(AgentRow).where(AgentRow.c.name == parent)).first()
        if row is None:
            raise AgentError(f"no agent named '{parent}' (see `agent ls --all`)")
        if row.type == "user":
            raise AgentError(f"'{parent}' is a person at a front end; only agents are forked")
        if row.created_at > request.at:
            raise AgentError(f"'{parent}' did not exist yet at {request.at:%Y-%m-%d %H:%M:%S}")
        try:
            name_adapter().validate_python(name)
        except ValidationError:
            raise AgentError(f"bad agent name {name!r}: letters, digits, '_', '.', '-' (not first), at most 64") from None
        key = name_key(name)
        if is_person_name(name):
            raise AgentError(f"'{name}' is the name of the person at a front end; an agent cannot take it")
        if key in taken:
            raise AgentError(f"'{name}' is taken (by '{taken[key]}'); choose another name for the fork")
        if key in new_keys:
            raise AgentError(f"two forks would be named '{name}'")
        new_keys.add(key)
        parents[parent] = row
    return parents


def _state_at(conn: Connection, parent: Row, at: datetime) -> dict[str, Any]:
    """The parent's state_dict at `at` (the `state` table keeps every superseded one, with its times)."""
    state = conn.execute(
        sa.select(StateRow.c.state_dict).where(StateRow.c.agent_id == parent.id, StateRow.c.created_at <= at,
                                               StateRow.c.superseded_at > at).order_by(StateRow.c.id.desc()).limit(1)
    ).scalar()
    return dict(state if state is not None else parent.state_dict or {})


def _copy_thread(conn: Connection, old: Row, new_id: int, owner: int, name: str, channel: str | None,
                 closed_at: datetime | None, at: datetime) -> None:
    """A thread of `owner` whose past is `old`'s up to `at`: its pushes by reference (one INSERT … SELECT,
    the messages stay where they are), its handling cursor at the last of them."""
    conn.execute(sa.insert(ThreadRow).values(id=new_id, agent_id=owner, channel=channel, name=f"{name}@{channel}"[:160],
                                             opened_at=old.opened_at, closed_at=closed_at, checkpoint_message_id=None))
    shared = (sa.select(sa.literal(new_id, ThreadRow.c.id.type), PushRow.c.message_id)
              .join(MessageRow, MessageRow.c.id == PushRow.c.message_id)
              .where(PushRow.c.thread_id == old.id, MessageRow.c.created_at <= at))
    conn.execute(sa.insert(PushRow).from_select(["thread_id", "message_id"], shared))
    conn.execute(sa.insert(HandledRow).values(thread_id=new_id, message_id=_handled_at(conn, old.agent_id, new_id, at)))


def _handled_at(conn: Connection, parent_id: int, thread_id: int, at: datetime) -> int:
    """Where the parent's handling cursor stood at `at` in the thread whose pushes `thread_id` now has: before
    the first message it answered only after `at` (it was still waiting then, and the fork answers it and what
    followed), else after the last message. A fork made between a line and its answer answers that line."""
    pushed = sa.select(PushRow.c.message_id).where(PushRow.c.thread_id == thread_id)
    pending = conn.execute(
        sa.select(sa.func.min(MessageRow.c.reply_to))
        .where(MessageRow.c.agent_id == parent_id, MessageRow.c.created_at > at, MessageRow.c.reply_to.in_(pushed))
    ).scalar()
    before = pushed.where(PushRow.c.message_id < pending) if pending is not None else pushed
    return int(conn.execute(sa.select(sa.func.max(before.subquery().c.message_id))).scalar() or 0)


def _carry_core(conn: Connection, fork: Fork, parent: Row, dms: bool) -> None:
    """The kernel's own part: threads with their pushes and cursors, and summaries."""
    threads = list(conn.execute(sa.select(ThreadRow).where(ThreadRow.c.agent_id == parent.id, ThreadRow.c.opened_at <= fork.at)
                                .order_by(ThreadRow.c.id)))
    first = fork.ids("threads", len(threads))
    for index, thread in enumerate(threads):
        new_id = first + index
        fork.threads[thread.id] = new_id
        channel, closed = thread.channel, thread.closed_at
        if closed is None or closed > fork.at:  # open at the fork point
            twin = dm_twin(channel, parent.name, fork.name) if dms else None
            if twin is not None and channel is not None:
                fork.channels.setdefault(channel, twin)
            moved = fork.channels.get(channel) if channel is not None else None
            channel, closed = (moved, None) if moved else (channel, fork.made_at)
        _copy_thread(conn, thread, new_id, fork.agent_id, fork.name, channel, closed, fork.at)
    summaries = sa.and_(SummaryRow.c.thread_id.in_(list(fork.threads)), SummaryRow.c.created_at <= fork.at)
    fork.summaries = carry_rows(conn, fork, SummaryRow, summaries, thread_id=mapped(SummaryRow.c.thread_id, fork.threads))


def _record(conn: Connection, fork: Fork, parent: Row) -> None:
    """The fork's agent row (its mind began with its parent's: same created_at), lineage and branch rows."""
    config = dict(parent.config or {})
    config["name"] = fork.name
    config["channels"] = [fork.channels[c] for c in config.get("channels") or [] if c in fork.channels]
    conn.execute(sa.insert(AgentRow).values(
        id=fork.agent_id, name=fork.name, type=parent.type, config=config, config_file=None, status="running",
        state_dict=fork.state, created_at=parent.created_at, updated_at=fork.at))
    ancestors = [(fork.parent_id, fork.at)] + [
        (a, min(t, fork.at)) for a, t in conn.execute(
            sa.select(LineageRow.c.ancestor_id, LineageRow.c.upto).where(LineageRow.c.agent_id == fork.parent_id))]
    conn.execute(sa.insert(LineageRow), [{"agent_id": fork.agent_id, "ancestor_id": a, "upto": t} for a, t in ancestors])
    conn.execute(sa.insert(BranchRow).values(agent_id=fork.agent_id, parent_agent_id=fork.parent_id, fork_at=fork.at,
                                             message_id=fork.message_id, channels=fork.channels, created_at=fork.made_at))


def _carry_users(conn: Connection, channels: dict[str, str], at: datetime, reserve: Reserve,
                 forked: set[int]) -> list[tuple[int, str, int]]:
    """The people in a continued channel at the fork point get a thread on its continuation, with its past."""
    out: list[tuple[int, str, int]] = []
    for old_channel, new_channel in channels.items():
        threads = list(conn.execute(
            sa.select(ThreadRow, AgentRow.c.name.label("owner")).join(AgentRow, AgentRow.c.id == ThreadRow.c.agent_id)
            .where(ThreadRow.c.channel == old_channel, AgentRow.c.type == "user", ThreadRow.c.opened_at <= at,
                   sa.or_(ThreadRow.c.closed_at.is_(None), ThreadRow.c.closed_at > at)).order_by(ThreadRow.c.id)))
        for thread in threads:
            if thread.agent_id in forked:
                continue
            new_id = reserve("threads", 1)
            _copy_thread(conn, thread, new_id, thread.agent_id, thread.owner, new_channel, None, at)
            out.append((thread.agent_id, new_channel, new_id))
    return out


def make(conn: Connection, hooks: Hooks, request: Request, reserve: Reserve, dms: bool) -> Made:
    """The whole branching in one transaction (run on the DB thread): forks, users' threads, new channels."""
    at = request.at
    forked(conn.engine)  # history reads look for forks' own words from now on (harmless if this rolls back)
    parents = _check_names(conn, request)
    channels = dict(request.channels)
    existing = set(conn.execute(sa.select(ChannelRow.c.name).where(ChannelRow.c.name.in_(list(channels.values())))).scalars())
    if existing:
        raise AgentError(f"channel '{sorted(existing)[0]}' exists already; choose another name for the branch")
    forks: list[Fork] = []
    for parent_name, name in request.agents:
        parent = parents[parent_name]
        fork = Fork(parent.id, parent.name, reserve("agents", 1), name, at, reserve, request.message_id,
                    channels=dict(channels))
        fork.state = _state_at(conn, parent, at)
        _carry_core(conn, fork, parent, dms)
        hooks.collect(FORK, conn, fork)  # memory, people, lore: their rows as of the fork point
        _record(conn, fork, parent)
        forks.append(fork)
    for fork in forks:
        channels.update({old: new for old, new in fork.channels.items() if old not in channels})
    user_threads = _carry_users(conn, channels, at, reserve, {f.agent_id for f in forks})
    fresh = sorted(set(channels.values()) - set(conn.execute(sa.select(ChannelRow.c.name).where(
        ChannelRow.c.name.in_(list(channels.values())))).scalars()))
    if fresh:
        made = forks[0].made_at if forks else utcnow()
        conn.execute(sa.insert(ChannelRow), [{"name": c, "topic": "", "created_at": made} for c in fresh])
    return Made(forks, user_threads)


def _reserver(kernel: Kernel) -> Reserve:
    """Id blocks for the DB thread, taken on the kernel's loop (the only allocator), which is free: it
    is awaiting the fork's transaction."""
    loop = asyncio.get_running_loop()

    def reserve(table: str, count: int) -> int:
        done: concurrent.futures.Future[int] = concurrent.futures.Future()

        def take() -> None:
            try:
                done.set_result(kernel.db.next_ids(table, count))
            except BaseException as exc:  # handed to the waiting DB thread
                done.set_exception(exc)

        loop.call_soon_threadsafe(take)
        return done.result(timeout=60)

    return reserve


async def branch(kernel: Kernel, request: Request, *, dms: bool = True) -> Made:
    """Make the forks (one transaction), tell the modules, then start the new agents on their threads."""
    if request.at > utcnow():
        raise AgentError(f"{request.at:%Y-%m-%d %H:%M:%S} is in the future; a fork is made from what happened")
    await kernel.flush()  # everything up to now is in the database before it is read
    made = await kernel.db.call(make, kernel.hooks, request, _reserver(kernel), dms)
    for fork in made.forks:
        await kernel.hooks.each(FORKED, fork)
    for fork in made.forks:
        await kernel.agents.start_stored(fork.name)
    live = {agent.id: agent for agent in kernel.agents.live.values()}
    for user_id, channel, thread_id in made.user_threads:
        if user_id in live:
            kernel.transport.restore(live[user_id], channel, thread_id)
    return made


def branches_of(conn: Connection) -> dict[int, tuple[int, str, datetime, int | None, datetime]]:
    """agent id -> (parent id, parent name, fork point, message, made at) of every fork."""
    query = (sa.select(BranchRow.c.agent_id, BranchRow.c.parent_agent_id, AgentRow.c.name, BranchRow.c.fork_at,
                       BranchRow.c.message_id, BranchRow.c.created_at)
             .join(AgentRow, AgentRow.c.id == BranchRow.c.parent_agent_id))
    return {row[0]: (row[1], row[2], row[3], row[4], row[5]) for row in conn.execute(query)}


def children_of(conn: Connection, agent_id: int) -> list[str]:
    """Names of the agents forked from `agent_id`."""
    query = (sa.select(AgentRow.c.name).join(BranchRow, BranchRow.c.agent_id == AgentRow.c.id)
             .where(BranchRow.c.parent_agent_id == agent_id).order_by(AgentRow.c.id))
    return list(conn.execute(query).scalars())
