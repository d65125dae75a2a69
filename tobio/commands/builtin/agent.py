"""`agent ls|show|spawn|fork|pause|resume|kill|state|history|replay`: agents and their inner life."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa

from tobio.agents.handling import unhandled_counts
from tobio.commands import Arg, Context, Group, Result, table
from tobio.db.literals import const
from tobio.db.tables import AgentRow, Row, StateRow, ThreadRow
from tobio.errors import AgentError, CommandError

NAME = Arg("name", help="agent name", complete="agent")


async def _row(ctx: Context, name: str) -> Row:
    def read(conn: sa.Connection) -> Row | None:
        return conn.execute(sa.select(AgentRow).where(AgentRow.c.name == name)).first()

    row = await ctx.kernel.db.call(read)
    if row is None:
        raise AgentError(f"no agent named '{name}' (see `agent ls --all`)")
    return row


async def _elsewhere(ctx: Context, op: str, name: str) -> str | None:
    """With several kernels, pause/resume/kill an agent that runs in another one (tobio/cluster/remote.py);
    None when it runs here, or this kernel runs alone."""
    cluster = ctx.kernel.cluster
    if cluster is None or name in ctx.kernel.agents.live:
        return None
    text: str = await cluster.remote.act(op, name)
    return text


def _branches(conn: sa.Connection) -> dict[int, tuple[int, str, Any, int | None, Any]]:
    """Each fork's parent and fork point (tobio/branching/fork.py: imported by the commands that ask, not
    by every start, which `agent ls` without `--branches` is)."""
    from tobio.branching.fork import branches_of

    return branches_of(conn)


def _branch_line(branch: tuple[int, str, Any, int | None, Any] | None) -> str:
    """`tobio at 2026-12-07 04:10:02 (after message 12)` for a fork, empty for an agent that is none."""
    if branch is None:
        return ""
    _parent_id, parent, at, message, _made = branch
    return f"{parent} at {at:%Y-%m-%d %H:%M:%S}" + (f" (after message {message})" if message is not None else "")


def register(root: Group) -> None:
    agent = root.group("agent", "Spawn, inspect and control agents.")

    @agent.command("ls", Arg("--all", flag=True, help="include killed agents"),
                   Arg("--branches", flag=True, help="also say what each fork branched from, and when"), agents="agents")
    async def ls(ctx: Context, all: bool, branches: bool) -> Result:
        """List agents with their type, status, channels and message counts.

        `inbox` and `handled` are this process's counts; `unhandled` is from the database: messages pushed
        to the agent's open threads that it has not handled yet (what a restart would give it again)."""
        kernel = ctx.kernel
        forks = await kernel.db.call(_branches) if branches else {}

        def read(conn: sa.Connection) -> list[Row]:
            query = sa.select(AgentRow).order_by(AgentRow.c.id)
            return list(conn.execute(query if all else query.where(AgentRow.c.status != const("killed"))))

        await kernel.writer.flush()  # handled marks nobody waited for count too
        unhandled = await kernel.db.call(unhandled_counts)
        kernels = await kernel.cluster.holders() if kernel.cluster is not None else {}  # agent id -> kernel running it
        rows: list[tuple[Any, ...]] = []
        ids: list[int] = []
        for row in await kernel.db.call(read):
            ids.append(row.id)
            live = kernel.agents.live.get(row.name)
            elsewhere = kernels.get(row.id) not in (None, "all")  # another kernel runs it: its status is the database's
            if not ctx.sees_agent(row.name):  # another agent: its name, type and status, as in agent SQL
                rows.append((row.name, row.type, "killed" if row.status == "killed" else "running" if live or elsewhere else "stopped",
                             "", "", "", "", *([kernels.get(row.id, "")] if kernels else [])))
                continue
            channels = ", ".join(s.channel for s in kernel.transport.subscriptions_of(row.id))
            status = live.status if live else row.status if row.status == "killed" or elsewhere else "stopped"
            rows.append((row.name, row.type, status, channels, live.inbox.qsize() if live else "", live.handled if live else "",
                         unhandled.get(row.id, 0), *([kernels.get(row.id, "")] if kernels else [])))
        if branches:  # what another agent branched from is not in an agent's view
            rows = [(*r, _branch_line(forks.get(row_id)) if ctx.sees_agent(r[0]) else "") for r, row_id in zip(rows, ids)]
        return table(["name", "type", "status", "channels", "inbox", "handled", "unhandled", *(["kernel"] if kernels else []),
                      *(["branch of"] if branches else [])], rows)

    @agent.command("show", NAME, agents="agents")
    async def show(ctx: Context, name: str) -> Result:
        """Show an agent's config, status, threads and current state."""
        row = await _row(ctx, name)
        live = ctx.kernel.agents.live.get(name)
        threads = [(s.thread_id, s.channel) for s in ctx.kernel.transport.subscriptions_of(row.id)]
        cluster = ctx.kernel.cluster
        if cluster is not None and live is None:  # it may run in another kernel: its threads as the database has them

            def open_threads(conn: sa.Connection) -> list[tuple[int, str]]:
                query = sa.select(ThreadRow.c.id, ThreadRow.c.channel).where(
                    ThreadRow.c.agent_id == row.id, ThreadRow.c.closed_at.is_(None), ThreadRow.c.channel.is_not(None))
                return [(int(t), str(c)) for t, c in conn.execute(query.order_by(ThreadRow.c.id))]

            threads = await ctx.kernel.db.call(open_threads)
        fields = [
            ("name", row.name), ("type", row.type), ("status", live.status if live else row.status),
            ("config file", row.config_file or "-"),
            ("threads", ", ".join(f"{t}:{c}" for t, c in threads) or "-"),
            ("config", row.config),
            # Elsewhere, its state as last saved (each reply saves it).
            ("state", ctx.kernel.agents.full_state(live) if live else row.state_dict),
            ("created", row.created_at), ("updated", row.updated_at),
        ]
        if cluster is not None:
            holder = (await cluster.holders()).get(row.id)
            fields.append(("kernel", f"{holder} (this one)" if holder == cluster.id else holder if holder is not None else "none"))
        from tobio.branching.fork import children_of

        forks = await ctx.kernel.db.call(_branches)
        if row.id in forks:
            fields.append(("branch of", _branch_line(forks[row.id])))
        children = await ctx.kernel.db.call(children_of, row.id)
        if children:
            fields.append(("branches", ", ".join(children)))
        return table(["field", "value"], fields, data={k: v for k, v in fields})

    @agent.command(
        "spawn",
        Arg("file", help="agent YAML file", complete="file"),
        Arg("--name", help="override the name in the file"),
        agents="agents",
    )
    async def spawn(ctx: Context, file: str, name: str | None) -> Result:
        """Spawn an agent from its YAML file (an agent may spawn only new agents, with no more than it may do)."""
        path = Path(file).expanduser()
        config = ctx.kernel.agents.load_config(path, by=ctx.caller)  # an agent's file is data
        if name:
            config = config.model_copy(update={"name": name})
        new = await ctx.kernel.agents.spawn(config, config_file=str(path.resolve()), by=ctx.caller)
        return Result(text=f"spawned {new.name} ({new.type_name}) in {', '.join(new.config.channels) or 'no channel'}")

    @agent.command(
        "fork", NAME,
        Arg("--at", help="the moment: ISO time (UTC), `now`, or relative as --at=-30s / -5m / -2h / -1d"),
        Arg("--message", type=int, help="fork right after this message (its id, as `agent history` shows)"),
        Arg("--as", help="the fork's name (required)"),
        agents="people",  # a fork copies a mind, its private conversations included: a person's decision
    )
    async def fork(ctx: Context, name: str, at: str | None, message: int | None, **kw: Any) -> Result:
        """Make a new agent whose whole mind is NAME's at a moment: state and mood, threads, summaries,
        memories, facts about people, lore timers. NAME never changes; the fork's DMs continue as
        `dm.USER.NEW` (talk to it with `chat NEW`), and its replay before the fork point is NAME's."""
        from tobio.branching.fork import Request, branch, moment_of
        from tobio.replay import parse_time

        new = kw.get("as")
        if not new:
            raise CommandError("name the fork: --as NEW")
        if (at is None) == (message is None):
            raise CommandError("give the moment: --at TIME or --message ID (one of them)")
        when = parse_time(at) if at is not None else await ctx.kernel.db.call(moment_of, message)
        made = await branch(ctx.kernel, Request(((name, new),), when, message))
        fork = made.forks[0]
        moved = ", ".join(f"{a} -> {b}" for a, b in fork.channels.items())
        text = (f"forked {name} at {when:%Y-%m-%d %H:%M:%S} as {new}: {len(fork.threads)} thread(s), "
                f"{len(fork.summaries)} summar{'y' if len(fork.summaries) == 1 else 'ies'}" + (f"; continues {moved}" if moved else ""))
        return Result(text=text, data={"agent": new, "parent": name, "at": when.isoformat(), "channels": fork.channels,
                                       "threads": {str(k): v for k, v in fork.threads.items()}})

    @agent.command("pause", NAME, agents="people")
    async def pause(ctx: Context, name: str) -> Result:
        """Pause an agent: messages still reach its threads and wait in its inbox. With several kernels, the one
        running it does it."""
        if (elsewhere := await _elsewhere(ctx, "pause", name)) is not None:
            return Result(text=elsewhere)
        await ctx.kernel.agents.pause(name)
        return Result(text=f"paused {name}")

    @agent.command("resume", NAME, agents="people")
    async def resume(ctx: Context, name: str) -> Result:
        """Resume a paused agent; it works through its inbox. With several kernels, the one running it does it."""
        if (elsewhere := await _elsewhere(ctx, "resume", name)) is not None:
            return Result(text=elsewhere)
        await ctx.kernel.agents.resume(name)
        return Result(text=f"resumed {name}")

    @agent.command("kill", NAME, agents="people")
    async def kill(ctx: Context, name: str) -> Result:
        """Stop an agent and close its threads; its history stays in the database. With several kernels, the one
        running it does it."""
        if (elsewhere := await _elsewhere(ctx, "kill", name)) is not None:
            return Result(text=elsewhere)
        await ctx.kernel.agents.kill(name)
        return Result(text=f"killed {name}")

    @agent.command("state", NAME, Arg("--history", flag=True, help="list every superseded state too"), agents="agents")
    async def state(ctx: Context, name: str, history: bool) -> Result:
        """Show an agent's current state_dict, or its whole history of states."""
        row = await _row(ctx, name)
        live = ctx.kernel.agents.live.get(name)
        current = ctx.kernel.agents.full_state(live) if live else row.state_dict
        if not history:
            return table(["key", "value"], sorted(current.items()), data=current)

        def read(conn: sa.Connection) -> list[Row]:
            return list(conn.execute(sa.select(StateRow).where(StateRow.c.agent_id == row.id).order_by(StateRow.c.id)))

        rows = [(s.created_at, s.superseded_at, s.state_dict) for s in await ctx.kernel.db.call(read)]
        rows.append((row.updated_at, None, current))
        return table(["from", "until", "state"], rows, title=f"states of {name}")

    @agent.command("history", NAME, Arg("--last", short="-n", type=int, default=50, help="show the last N messages"),
                   agents="agents")
    async def history(ctx: Context, name: str, last: int) -> Result:
        """What the agent received, in order, per thread (its subjective history)."""
        from tobio.db.history import agent_history

        row = await _row(ctx, name)
        items = await ctx.kernel.db.call(agent_history, row.id)
        shown = items[-last:] if last else items
        rows = [(i.thread_id, i.message.id, i.message.created_at, i.message.sender or "-", i.message.content) for i in shown]
        note = f"last {len(shown)} of {len(items)}" if len(shown) < len(items) else None
        return table(["thread", "msg", "at", "from", "content"], rows, note=note)

    @agent.command(
        "replay", NAME,
        Arg("--at", help="the moment: ISO time (UTC), `now`, or relative as --at=-30s / -5m / -2h / -1d"),
        Arg("--diff", nargs=2, metavar=("T1", "T2"), help="what changed between two moments"),
        agents="agents",
    )
    async def replay_(ctx: Context, name: str, at: str | None, diff: list[str] | None) -> Result:
        """What the agent had at a moment, from the database alone: messages, summary, state, mood."""
        from tobio.replay import diff as compare
        from tobio.replay import parse_time, replay

        if diff:
            t1, t2 = parse_time(diff[0]), parse_time(diff[1])
            rows = compare(await replay(ctx.kernel, name, t1), await replay(ctx.kernel, name, t2))
            return table(["what", f"at {t1:%H:%M:%S}", f"at {t2:%H:%M:%S}"], rows,
                         note=None if rows else "nothing changed")
        when = parse_time(at or "now")
        snap = await replay(ctx.kernel, name, when)
        text = f"state: {snap.state}" + (f"\naffect: {snap.affect}" if snap.affect else "")
        for key, value in snap.extra.items():
            text += f"\n{key}: {len(value) if isinstance(value, list) else value}"
        return table(["thread", "channel", "status", "messages", "last message", "summary"], snap.summary_rows(),
                     title=f"{name} at {when:%Y-%m-%d %H:%M:%S}", text=text,
                     data={"at": when.isoformat(), "state": snap.state, "affect": snap.affect,
                           "messages": snap.message_ids(), **snap.extra})

