"""The `models` module: providers and model bundles from the config, plus their commands."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tobio.hooks import COMPLETION_SOURCE
from tobio.models.registry import ModelRegistry
from tobio.models.runs import RunManager
from tobio.modules import DatabaseModule, Module

if TYPE_CHECKING:
    from tobio.kernel import Kernel


class ModelsModule(Module):
    """Providers (local, openai, scripted, plugins) and the bundles agents name; it owns both, and the runs."""

    name = "models"
    description = "Model providers and bundles; every run recorded with its steps."
    dependencies = (DatabaseModule,)

    async def module_init(self, kernel: Kernel) -> None:
        from tobio.models import commands

        self.registry = ModelRegistry(kernel)
        self.runs = RunManager(kernel)
        self.registry.configure(kernel.config.providers, kernel.config.models)
        await self.runs.expire_leftovers()
        commands.register(kernel.commands)
        kernel.hooks.add(COMPLETION_SOURCE, self.model_names, key="model")
        kernel.hooks.add(COMPLETION_SOURCE, self.provider_names, key="provider")
        kernel.hooks.add(COMPLETION_SOURCE, self.live_runs, key="run")

    async def module_exit(self, kernel: Kernel) -> None:
        await self.registry.close()

    # -- completion sources (`complete="model"` and so on) ------------------------------------------
    def model_names(self, _kernel: Kernel) -> list[tuple[str, str]]:
        return [(n, f"{m.spec.provider} {m.spec.model} · {m.spec.purpose}".replace("  ", " "))
                for n, m in sorted(self.registry.models.items())]

    def provider_names(self, _kernel: Kernel) -> list[tuple[str, str]]:
        return [(n, p.config.type) for n, p in sorted(self.registry.providers.items())]

    def live_runs(self, _kernel: Kernel) -> list[tuple[str, str]]:
        return [(str(i), f"{r.model.name} · {r.status}") for i, r in sorted(self.runs.live.items())]


def models_of(kernel: Kernel) -> ModelRegistry:
    """The loaded models module's bundles and providers (a clear error when it is not loaded)."""
    return kernel.modules.need(ModelsModule, "this").registry


def runs_of(kernel: Kernel) -> RunManager:
    """The loaded models module's runs."""
    return kernel.modules.need(ModelsModule, "this").runs
