"""`memory people`, `memory facts`, `memory correct` and `people forget`: list, edit, correct and trace
what an agent knows about people. An agent may run them on its own beliefs only (`complete="agent"`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tobio.commands import Arg, Context, Result, table
from tobio.errors import CommandError
from tobio.people import store

if TYPE_CHECKING:
    from tobio.kernel import Kernel
    from tobio.people.facts import Fact
    from tobio.people.service import People


async def _agent_id(ctx: Context, name: str) -> int:
    from tobio.memory import store as memory_store  # when run: registering the commands does not import it

    live = ctx.kernel.agents.live.get(name)
    if live is not None:
        return live.id
    found = await ctx.kernel.db.call(memory_store.agent_id, name)
    if found is None:
        raise CommandError(f"no agent named '{name}' (see `agent ls`)")
    return found


def _pairs(items: list[str], flag: str) -> list[Fact]:
    from tobio.people.facts import Fact  # when run: registering the commands does not import it

    facts = []
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise CommandError(f"{flag} expects KEY=VALUE, got {item!r}")
        facts.append(Fact(key.strip().lower(), value.strip()))
    return facts


async def _history(ctx: Context, agent_id: int, person: str, note: str | None) -> Result:
    """Every version with both clocks: believed (since/until) and true (valid_from/valid_to), and retractions."""
    versions = await ctx.kernel.db.call(store.fact_history, agent_id, person)
    rows = [(v.id, v.key, v.value, v.source, v.message_id, round(v.confidence, 2), v.created_at, v.superseded_at,
             v.valid_from, v.valid_to, v.retracted_at, v.retracted_by) for v in versions]
    return table(["id", "key", "value", "source", "message", "confidence", "since", "until", "valid_from", "valid_to",
                  "retracted", "retracted_by"], rows, note=note)


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
        for fact in _pairs(set or [], "--set"):
            people.learn(agent_id, person, [fact], None, "command")
            changed.append(f"set {fact.key}")
        for key in forget or []:
            if not people.forget(agent_id, person, key.strip().lower()):
                raise CommandError(f"{agent} knows no '{key}' about {person}")
            changed.append(f"forgot {key}")
        await people.flush()
        if history:
            return await _history(ctx, agent_id, person, "; ".join(changed) or None)
        current = people.people_of(agent_id).get(person, {})
        rows = [(k, v.value, v.source, v.message_id, v.created_at) for k, v in current.items()]
        thoughts = people.reflections.get((agent_id, person), [])
        return table(["key", "value", "source", "message", "since"], rows, data={k: v.value for k, v in current.items()},
                     text="\n".join(f"thought: {t}" for t in thoughts) or None,
                     note="; ".join(changed) or (None if rows else f"{agent} knows nothing about {person}"))

    @group.command(
        "correct", Arg("agent", help="whose belief", complete="agent"), Arg("person", help="about whom (their agent name)"),
        Arg("facts", nargs="+", metavar="KEY=VALUE", help="the right values; the wrong ones are retracted (kept, marked)"),
        agents="agents",
    )
    async def correct(ctx: Context, agent: str, person: str, facts: list[str]) -> Result:
        """The agent got a fact wrong: retract what it believed (never true) and believe the right value."""
        from tobio.people.facts import Statement

        agent_id = await _agent_id(ctx, agent)
        wanted = _pairs(facts, "correct")
        known = people.known(agent_id, person)
        new = people.correct(agent_id, person, Statement(wanted, correction=True), None, source="command")
        await people.flush()
        notes = [f"{f.key}: {known[f.key]!r} retracted, now {f.value!r}" if f.key in known and known[f.key] != f.value
                 else f"{f.key}: {f.value!r}" for f in wanted]
        return await _history(ctx, agent_id, person, "; ".join(notes) if new else "nothing changed")

    people_group = kernel.commands.group("people", "What agents know about the people they talk with.")

    @people_group.command(
        "forget", Arg("agent", help="whose belief", complete="agent"), Arg("person", help="about whom (their agent name)"),
        Arg("keys", nargs="+", metavar="KEY", help="facts to retract"), agents="agents",
    )
    async def forget_(ctx: Context, agent: str, person: str, keys: list[str]) -> Result:
        """Retract facts about a person: kept and marked retracted, never in a prompt or recall again."""
        agent_id = await _agent_id(ctx, agent)
        missing = [k for k in keys if k.strip().lower() not in people.known(agent_id, person)]
        if missing:
            raise CommandError(f"{agent} knows no {', '.join(repr(k) for k in missing)} about {person}; nothing retracted")
        for key in keys:
            people.retract(agent_id, person, key.strip().lower(), None)
        await people.flush()
        return await _history(ctx, agent_id, person, f"retracted {', '.join(keys)}")


async def retract_from_message(kernel: Kernel, agent_id: int, message_id: int) -> list[str]:
    """`memory forget` of a message also retracts the facts learnt from it; returns 'person key=value' of each."""
    from tobio.people.module import PeopleModule

    try:
        people = PeopleModule.of(kernel)
    except LookupError:
        return []
    await people.flush()
    done = []
    for version in await kernel.db.call(store.facts_from, agent_id, message_id):
        current = people.facts.get(agent_id, {}).get(version.person, {}).get(version.key)
        if current is not None and current.id == version.id and version.source != "derived":
            people.retract(agent_id, version.person, version.key, None, recall=False)  # already forgotten
            done.append(f"{version.person} {version.key}={version.value}")
    await people.flush()
    return done
