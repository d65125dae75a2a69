"""The `persona` module: persona agents (artificial people) configured from persona files."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tobio.models.module import ModelsModule
from tobio.modules import Database, Module

if TYPE_CHECKING:
    from tobio.kernel import Kernel


class PersonaModule(Module):
    """Registers the `persona` agent type."""

    name = "persona"
    description = "Persona agents: artificial people from persona files, thinking with a model bundle."
    dependencies = (Database, ModelsModule)

    async def module_init(self, kernel: Kernel) -> None:
        from tobio.persona.agent import PersonaAgent

        kernel.agents.register_type(PersonaAgent, owner=self)
