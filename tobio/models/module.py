"""The `models` module: providers and model bundles from the config, plus their commands."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tobio.modules import Database, Module

if TYPE_CHECKING:
    from tobio.kernel import Kernel


class ModelsModule(Module):
    """Providers (local, openai, scripted, plugins) and the bundles agents name."""

    name = "models"
    description = "Model providers and bundles; every run recorded with its steps."
    dependencies = (Database,)

    async def module_init(self, kernel: Kernel) -> None:
        from tobio.models import commands

        kernel.models.configure(kernel.config.providers, kernel.config.models)
        await kernel.runs.expire_leftovers()
        commands.register(kernel.commands, owner=self)

    async def module_exit(self, kernel: Kernel) -> None:
        await kernel.models.close()
