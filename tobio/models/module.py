"""The `models` module: providers and model bundles from the config, plus their commands."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any

from tobio.hooks import COMPLETION_SOURCE, PROVIDER_TYPE, Registration
from tobio.models.registry import ModelRegistry
from tobio.models.runs import Run, RunManager
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

    # -- use of other modules' provider types (`mod unload` asks) -------------------------------------
    @staticmethod
    def _provider_types(added: list[Registration[Any]]) -> list[str]:
        return [r.key for r in added if r.point is PROVIDER_TYPE and r.key is not None]

    def holds(self, kernel: Kernel, added: list[Registration[Any]]) -> list[str]:
        """The models on a provider whose type is among `added`: their module cannot go under them."""
        uses = []
        for kind in self._provider_types(added):
            for provider, models in self.registry.on_provider_type(kind).items():
                uses.append(f"{'models' if len(models) > 1 else 'model'} {', '.join(models)} (provider {provider}, type {kind})")
        return uses

    async def release(self, kernel: Kernel, added: list[Registration[Any]]) -> None:
        """Cancel the runs on those providers and close them; the models stay configured, and their next
        use looks the type up again (a clear error until a module adds it back)."""
        for kind in self._provider_types(added):
            providers = set(self.registry.providers.of_type(kind))
            running = [run for run in self.runs.live.values() if run.model.spec.provider in providers]
            for run in running:
                run.cancel()
            streaming = [run for run in running if run.status == "in_progress"]  # wait() would start a queued one
            if streaming:  # let them stop before their provider closes under them
                await asyncio.wait([asyncio.ensure_future(_ended(run)) for run in streaming], timeout=5)
            await self.registry.providers.close_type(kind)

    # -- completion sources (`complete="model"` and so on) ------------------------------------------
    def model_names(self, _kernel: Kernel) -> list[tuple[str, str]]:
        return [(n, f"{m.spec.provider} {m.spec.model} · {m.spec.purpose}".replace("  ", " "))
                for n, m in sorted(self.registry.models.items())]

    def provider_names(self, _kernel: Kernel) -> list[tuple[str, str]]:
        providers = self.registry.providers
        return [(n, providers.type_of(n)) for n in sorted(providers)]  # listing builds none

    def live_runs(self, _kernel: Kernel) -> list[tuple[str, str]]:
        return [(str(i), f"{r.model.name} · {r.status}") for i, r in sorted(self.runs.live.items())]


async def _ended(run: Run) -> None:
    """Wait for a cancelled run to finish, however it ends."""
    with contextlib.suppress(Exception):
        await run.wait()


def models_of(kernel: Kernel) -> ModelRegistry:
    """The loaded models module's bundles and providers (a clear error when it is not loaded)."""
    return kernel.modules.need(ModelsModule, "this").registry


def runs_of(kernel: Kernel) -> RunManager:
    """The loaded models module's runs."""
    return kernel.modules.need(ModelsModule, "this").runs
