"""`memory people AGENT` and `memory facts AGENT NAME`: list, edit and trace what an agent knows about people."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tobio.commands import Arg, Context, Result, table
from tobio.errors import CommandError
from tobio.memory import store as memory_store
from tobio.people import store
from tobio.people.extract import Fact

if TYPE_CHECKING:
    from tobio.kernel import Kernel
    from tobio.people.service import People


async def _agent_id(ctx: Context, name: str) -> int:
    live = ctx.kernel.agents.live.get(name)
    if live is not None:
        return live.id
    found = await ctx.kernel.db.call(memory_store.agent_id, name)
    if found is None:
        raise CommandError(f"no agent named '{name}' (see `agent ls`)")
    return found


def register(kernel: Kernel, people: People) -> None:
    """Under the memory module's `memory` group (this module depends on it); the people module owns these."""
    group = kernel.commands.group("memory", "What agents remember: summaries and long-term retrieval.")

    @group.command("people", Arg("agent", help="whose view of people", complete="agent"), agents="agents")
    async def people_(ctx: Context, agent: str) -> Result:
        """The people an agent knows: name they gave, facts, relationship, feeling."""
        agent_id = await _agent_id(ctx, agent)
        rows = []
        for person, facts in sorted(people.people_of(agent_id).items()):
            values = {k: v.value for k, v in facts.items()}
            told = len([k for k in values if k not in ("relationship", "feeling")])
            last = max(v.created_at for v in facts.values()) if facts else None
            rows.append((person, values.get("name", ""), told, values.get("relationship", ""), values.get("feeling", ""), last))
        return table(["person", "name", "facts", "relationship", "feeling", "updated"], rows,
                     data=[dict(zip(["person", "name", "facts", "relationship", "feeling"], r[:5])) for r in rows],
                     note=None if rows else f"{agent} knows nobody yet")

    @group.command(
        "facts", Arg("agent", help="whose knowledge", complete="agent"), Arg("person", help="about whom (their agent name)"),
        Arg("--set", nargs="*", metavar="KEY=VALUE", help="set facts (a new version; the old one is kept, superseded)"),
        Arg("--forget", nargs="*", metavar="KEY", help="stop believing these facts"),
        Arg("--history", flag=True, help="every version, superseded ones too"),
        agents="agents",  # its own beliefs: `agent` reaches the caller alone
    )
    async def facts_(ctx: Context, agent: str, person: str, set: list[str] | None, forget: list[str] | None,
                     history: bool) -> Result:
        """What an agent knows about one person; edit with --set key=value / --forget key."""
        agent_id = await _agent_id(ctx, agent)
        changed = []
        for item in set or []:
            key, sep, value = item.partition("=")
            if not sep or not key.strip() or not value.strip():
                raise CommandError(f"--set expects KEY=VALUE, got {item!r}")
            people.learn(agent_id, person, [Fact(key.strip().lower(), value.strip())], None, "command")
            changed.append(f"set {key.strip().lower()}")
        for key in forget or []:
            if not people.forget(agent_id, person, key.strip().lower()):
                raise CommandError(f"{agent} knows no '{key}' about {person}")
            changed.append(f"forgot {key}")
        await people.flush()
        if history:
            versions = await ctx.kernel.db.call(store.fact_history, agent_id, person)
            versions_rows = [(v.id, v.key, v.value, v.source, v.message_id, v.created_at, v.superseded_at) for v in versions]
            return table(["id", "key", "value", "source", "message", "since", "until"], versions_rows,
                         note="; ".join(changed) or None)
        current = people.people_of(agent_id).get(person, {})
        rows = [(k, v.value, v.source, v.message_id, v.created_at) for k, v in current.items()]
        thoughts = people.reflections.get((agent_id, person), [])
        return table(["key", "value", "source", "message", "since"], rows, data={k: v.value for k, v in current.items()},
                     text="\n".join(f"thought: {t}" for t in thoughts) or None,
                     note="; ".join(changed) or (None if rows else f"{agent} knows nothing about {person}"))
