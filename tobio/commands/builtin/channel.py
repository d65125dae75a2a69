"""`channel ls|sub|unsub|post|create|branch`: where messages go and who receives them."""

from __future__ import annotations

import sqlalchemy as sa

from tobio.commands import Arg, Context, Group, Result, table
from tobio.db.tables import MessageRow
from tobio.errors import AgentError, CommandError

CHANNEL = Arg("channel", help="channel name", complete="channel")
AGENT = Arg("agent", help="agent name", complete="agent")


def register(root: Group) -> None:
    channel = root.group("channel", "Channels: list, subscribe agents, post.")

    @channel.command("ls", agents="agents")
    async def ls(ctx: Context) -> Result:
        """List channels with their subscribers and message counts."""
        transport = ctx.kernel.transport

        def counts(conn: sa.Connection) -> dict[str, int]:
            query = sa.select(MessageRow.c.channel, sa.func.count()).group_by(MessageRow.c.channel)
            return {name: n for name, n in conn.execute(query)}

        await ctx.kernel.flush()
        counted = await ctx.kernel.db.call(counts)
        rows = []
        for name in transport.known_channels():
            if not ctx.sees_channel(name):  # an agent lists the channels it is on
                continue
            subs = transport.channels.get(name, {})
            rows.append((name, len(subs), ", ".join(sorted(s.receiver.name for s in subs.values())), counted.get(name, 0)))
        return table(["channel", "subscribers", "who", "messages"], rows)

    @channel.command("create", Arg("channel", help="new channel name"), Arg("--topic", default="", help="what it is for"),
                     agents="agents")
    async def create(ctx: Context, channel: str, topic: str) -> Result:
        """Create an empty channel."""
        created = await ctx.kernel.transport.create_channel(channel, topic)
        return Result(text=f"created {channel}" if created else f"{channel} already exists")

    @channel.command("sub", AGENT, CHANNEL, agents="people")  # joining a channel would open another's DM
    async def sub(ctx: Context, agent: str, channel: str) -> Result:
        """Subscribe an agent to a channel (opens a new thread)."""
        target = ctx.kernel.agents.get(agent)
        thread_id = await ctx.kernel.transport.subscribe(target, channel)
        return Result(text=f"{agent} subscribed to {channel} (thread {thread_id})")

    @channel.command("unsub", AGENT, CHANNEL, agents="agents")
    async def unsub(ctx: Context, agent: str, channel: str) -> Result:
        """Unsubscribe an agent from a channel (closes its thread)."""
        target = ctx.kernel.agents.get(agent)
        thread_id = await ctx.kernel.transport.unsubscribe(target.id, channel)
        if thread_id is None:
            raise AgentError(f"{agent} is not subscribed to {channel}")
        return Result(text=f"{agent} left {channel} (thread {thread_id} closed)")

    @channel.command(
        "branch", CHANNEL,
        Arg("--at", help="the moment: ISO time (UTC), `now`, or relative as --at=-30s / -5m / -2h / -1d"),
        Arg("--message", type=int, help="branch right after this message (its id)"),
        Arg("--suffix", help="added to the channel's and each agent's name (default: the first free b1, b2, ...)"),
        agents="people",  # it forks other agents' minds
    )
    async def branch(ctx: Context, channel: str, at: str | None, message: int | None, suffix: str | None) -> Result:
        """Branch a scene: fork everyone who was in CHANNEL at a moment (`agent fork`, each as NAME.SUFFIX)
        into CHANNEL.SUFFIX, so it can go on differently; the people in it join the branch with its past.
        Both branches continue independently; the original never changes."""
        from tobio.branching.fork import Request, branch, moment_of
        from tobio.branching.scene import cast_at, free_suffix
        from tobio.replay import parse_time
        from tobio.transport import check_channel_name

        if (at is None) == (message is None):
            raise CommandError("give the moment: --at TIME or --message ID (one of them)")
        await ctx.kernel.flush()
        when = parse_time(at) if at is not None else await ctx.kernel.db.call(moment_of, message)
        cast, people = await ctx.kernel.db.call(cast_at, channel, when)
        if not cast:
            raise CommandError(f"no agent was in {channel} at {when:%Y-%m-%d %H:%M:%S}")
        suffix = suffix or await ctx.kernel.db.call(free_suffix, channel, cast)
        check_channel_name(f"{channel}.{suffix}")
        made = await branch(ctx.kernel, Request(tuple((name, f"{name}.{suffix}") for name in cast), when, message,
                                                ((channel, f"{channel}.{suffix}"),)))
        forks = ", ".join(f"{f.parent} -> {f.name}" for f in made.forks)
        text = f"branched {channel} at {when:%Y-%m-%d %H:%M:%S} as {channel}.{suffix}: {forks}" + (
            f"; with {', '.join(people)}" if people else "")
        return Result(text=text, data={"channel": f"{channel}.{suffix}", "at": when.isoformat(),
                                       "agents": {f.parent: f.name for f in made.forks}, "people": people})

    @channel.command(
        "post",
        CHANNEL,
        Arg("text", nargs="+", help="message text (quote it or not)"),
        Arg("--as", help="post as this agent (default: the kernel)", complete="agent"),
        # An agent posts as itself, with its own role: never as someone else, never as the system.
        Arg("--role", default="user", choices=("user", "assistant", "system"), help="message role",
            reach="fixed", agent_value="assistant"),
        agents="agents",
    )
    async def post(ctx: Context, channel: str, text: list[str], role: str, **kw: str | None) -> Result:
        """Post a message to a channel; it is pushed to every subscriber's thread."""
        sender_name = kw.get("as")
        sender = ctx.agent if ctx.agent is not None else ctx.kernel.agents.get(sender_name) if sender_name else None
        content = " ".join(text)
        if not content.strip():
            raise CommandError("nothing to post")
        message = await ctx.kernel.transport.post(channel, content, sender=sender, role=role)
        receivers = len(ctx.kernel.transport.channels.get(channel, {}))
        return Result(text=f"posted message {message.id} to {channel} ({receivers} receiving threads)", data=message.to_dict())
