"""An agent's view, enforced by the command tree for every command an agent runs.

Each Command declares whether agents may run it at all (`agents="agents"`; the default, undeclared,
is no), and each of its Args what an agent may name there (`reach`): itself, a channel it is on, one
of its threads or runs, its own persona, or nothing but the default. The tree checks those before the
handler runs (`within_view`), so a handler never sees another agent's name from an agent, just as the
agent SQL sandbox never shows it another agent's rows. Modules add their own kinds with `add_reach`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from tobio.errors import CommandError

if TYPE_CHECKING:
    from tobio.commands.context import Context
    from tobio.commands.tree import Arg, Command

# (ctx, arg, value) -> the value to use, or raise CommandError; called only for an agent caller.
Reach = Callable[["Context", "Arg", Any], Awaitable[Any]]
_REACHES: dict[str, Reach] = {}
# An argument that completes these names refers to someone's things: an agent may only name its own.
# "task" has no check registered: naming a kernel task (anyone's) is refused to agents outright.
BY_COMPLETION = {"agent": "self", "channel": "channel", "thread": "thread", "run": "run", "persona": "persona",
                 "task": "task"}


def add_reach(name: str, check: Reach) -> None:
    """Register a kind of reach (a module's own resource, e.g. lorebooks)."""
    _REACHES[name] = check


async def can_reach(ctx: Context, kind: str, value: Any) -> bool:
    """Whether the caller may name `value` as a `kind` (for listings that show only what is in view)."""
    if ctx.caller.privileged:
        return True
    from tobio.commands.tree import Arg

    check = _REACHES.get(kind)
    if check is None:
        return False
    try:
        await check(ctx, Arg(kind), value)
    except CommandError:
        return False
    return True


def reach_of(arg: Arg) -> str | None:
    return arg.reach or BY_COMPLETION.get(arg.complete or "")


def _who(ctx: Context) -> str:
    return f"agent '{ctx.caller.name}'"


async def within_view(command: Command, ctx: Context, kwargs: dict[str, Any]) -> dict[str, Any]:
    """Refuse or narrow an agent's call to what its view allows; the person never comes here."""
    if command.agents != "agents":
        raise CommandError(f"{_who(ctx)} may not run '{command.path}': it is for people only")
    if ctx.agent is None:
        raise CommandError(f"{_who(ctx)} is not a running agent")
    out = dict(kwargs)
    for arg in command.args:
        kind = reach_of(arg)
        if kind is None or kind == "any":
            continue
        check = _REACHES.get(kind)
        if check is None:  # a reach nobody registered: nothing can be proven about it
            raise CommandError(f"{_who(ctx)} may not run '{command.path}' ({arg.dest}: unknown reach '{kind}')")
        value = out.get(arg.dest)
        if isinstance(value, list):
            out[arg.dest] = [await check(ctx, arg, item) for item in value]
        else:
            out[arg.dest] = await check(ctx, arg, value)
    return out


async def _self(ctx: Context, arg: Arg, value: Any) -> Any:
    """An agent's name: only the caller's own; left out, it means the caller."""
    if value is None:
        return ctx.caller.name
    if str(value) != ctx.caller.name:
        raise CommandError(f"{arg.dest}: {_who(ctx)} may only name itself, not '{_short(value)}'")
    return value


async def _channel(ctx: Context, arg: Arg, value: Any) -> Any:
    if value is None:
        return None
    if not ctx.sees_channel(str(value)):
        raise CommandError(f"{arg.dest}: {_who(ctx)} is not on channel '{_short(value)}'")
    return value


async def _owned(ctx: Context, arg: Arg, value: Any, table: sa.Table, what: str) -> Any:
    if value is None:
        return None
    agent = ctx.agent
    assert agent is not None

    def owner(conn: sa.Connection) -> Any:
        return conn.execute(sa.select(table.c.agent_id).where(table.c.id == int(value))).scalar()

    await ctx.kernel.flush()
    if await ctx.kernel.db.call(owner) != agent.id:
        raise CommandError(f"{arg.dest}: {_who(ctx)} has no {what} {_short(value)}")
    return value


async def _thread(ctx: Context, arg: Arg, value: Any) -> Any:
    from tobio.db.tables import ThreadRow

    return await _owned(ctx, arg, value, ThreadRow, "thread")


async def _run(ctx: Context, arg: Arg, value: Any) -> Any:
    from tobio.db.tables import RunRow

    return await _owned(ctx, arg, value, RunRow, "run")


async def _persona(ctx: Context, arg: Arg, value: Any) -> Any:
    """The caller's own persona, or one it brought in itself (its first version was recorded by it)."""
    if value is None:
        return None
    agent = ctx.agent
    if getattr(agent, "persona_key", None) == value:
        return value
    from tobio.persona.module import PersonaModule

    module = ctx.kernel.modules.get(PersonaModule)
    registry = getattr(module, "registry", None)
    if registry is not None:
        versions = await registry.versions(str(value))
        if versions and versions[0].changed_by == ctx.caller.label:
            return value
    raise CommandError(f"{arg.dest}: {_who(ctx)} may only name its own persona, not '{_short(value)}'")


async def _persona_write(ctx: Context, arg: Arg, value: Any) -> Any:
    """As `persona`, and no other live agent uses it: a change must not reach anyone else."""
    value = await _persona(ctx, arg, value)
    if value is not None and not _sole_user(ctx, str(value)):
        raise CommandError(f"{arg.dest}: {_who(ctx)} shares persona '{_short(value)}' with other agents; only a person may change it")
    return value


def _sole_user(ctx: Context, key: str) -> bool:
    """No other live agent thinks with persona `key` (changing it would change them)."""
    return all(getattr(a, "persona_key", None) != key for a in ctx.kernel.agents.live.values() if a is not ctx.agent)


async def _fixed(ctx: Context, arg: Arg, value: Any) -> Any:
    """Agents leave it as it is (or give the value an agent gets); `agent_value` replaces it for them."""
    allowed = {arg.default, arg.agent_value, None, False} if not arg.flag else {False, None}
    if value not in allowed:
        raise CommandError(f"{arg.dest}: {_who(ctx)} may not set {arg.name} ({_short(value)})")
    return arg.agent_value if arg.agent_value is not None else value


def _short(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 40 else text[:37] + "..."


for _name, _check in (("self", _self), ("channel", _channel), ("thread", _thread), ("run", _run),
                      ("persona", _persona), ("persona_write", _persona_write), ("fixed", _fixed)):
    add_reach(_name, _check)
