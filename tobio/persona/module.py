"""The `persona` module: persona agents (artificial people) configured from persona files, and SillyTavern
chats in and out."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tobio.hooks import AGENT_TYPE, CHARACTERS, COMPLETION_SOURCE, EVENT, EventObserver
from tobio.models.module import ModelsModule
from tobio.modules import DatabaseModule, Module, on_first_call

if TYPE_CHECKING:
    from tobio.kernel import Kernel
    from tobio.turn.character import Character


class PersonaModule(Module):
    """Registers the `persona` agent type; reads a turn agent's next opening ahead after a new summary."""

    name = "persona"
    description = "Persona agents: artificial people from persona files, thinking with a model bundle; SillyTavern chats in and out."
    dependencies = (DatabaseModule, ModelsModule)

    async def module_init(self, kernel: Kernel) -> None:
        from tobio.persona import commands, transcript
        from tobio.persona.agent import PersonaAgent
        from tobio.persona.registry import PersonaRegistry

        self.kernel = kernel
        self.registry = PersonaRegistry(kernel)
        await self.registry.setup()
        kernel.hooks.add(AGENT_TYPE, PersonaAgent)
        kernel.hooks.add(COMPLETION_SOURCE, self.completions, key="persona")
        kernel.hooks.add(CHARACTERS, self.characters)

        def after_summary() -> EventObserver:  # turn/prefill.py's, imported by the first event: a start has none
            from tobio.turn.prefill import after_summary

            return after_summary(kernel)

        kernel.hooks.add(EVENT, on_first_call(after_summary))  # memory's SummaryWritten: prefill the new opening
        register_commands(kernel)
        commands.register(kernel, self.registry)
        transcript.register(kernel)

    def characters(self) -> list[tuple[str, Character]]:
        """Every current persona by key (lore lists their cards' own books through CHARACTERS)."""
        return [(key, persona) for key, (_, persona) in sorted(self.registry.current.items())]

    def completions(self, kernel: Kernel) -> list[tuple[str, str]]:
        """Persona keys for `complete="persona"`, with their version and name."""
        return [(key, f"v{version} · {persona.name}") for key, (version, persona) in sorted(self.registry.current.items())]


def register_commands(kernel: Kernel) -> None:
    """`agent prompt NAME`: exactly what the model would see for the agent's next reply."""
    from tobio.commands import Arg, Context, Result
    from tobio.errors import AgentError
    from tobio.turn.agent import TurnAgent

    @kernel.commands.group("agent").command(
        "prompt", Arg("name", help="an agent that answers with a model (persona …)", complete="agent"),
        Arg("--channel", help="which of its threads (default: the first)", complete="channel"),
        agents="agents",
    )
    async def prompt(ctx: Context, name: str, channel: str | None) -> Result:
        """Show the final prompt the agent's model would get now (persona, mood, memory, history)."""
        agent = ctx.kernel.agents.get(name)
        if not isinstance(agent, TurnAgent):
            raise AgentError(f"'{name}' is a {agent.type_name} agent; it answers without a prompt")
        subs = [s for s in ctx.kernel.transport.subscriptions_of(agent.id) if channel in (None, s.channel)]
        if not subs:
            raise AgentError(f"'{name}' has no thread{' on ' + channel if channel else ''} (see `thread ls --agent {name}`)")
        await ctx.kernel.flush()
        built = await agent.build_prompt(subs[0].thread_id)
        messages = built.messages()
        rows = [(i, m["role"], m["content"]) for i, m in enumerate(messages)]
        note = f"thread {subs[0].thread_id}; sampling {built.params or 'from the model bundle'}"
        fired = (built.notes.get("lore") or {}).get("fired") or []
        if fired:
            note += "; lore: " + ", ".join(f"{f['label']} ({f['reason']})" for f in fired)
        return Result(columns=["#", "role", "content"], rows=rows, note=note,
                      data={"messages": messages, "params": built.params, "notes": built.notes})
