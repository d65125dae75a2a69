"""The kernel's providers and model bundles, built from `providers:` and `models:` in the config."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from tobio.config.schema import ModelSpec
from tobio.errors import ProviderSetupError
from tobio.hooks import PROVIDER_TYPE
from tobio.models.bundle import Model
from tobio.providers import provider_type, provider_types
from tobio.providers.base import Provider

if TYPE_CHECKING:
    from tobio.kernel import Kernel

log = logging.getLogger(__name__)

# Used when the config names none: everything runs in-process, offline, with no API key.
DEFAULT_PROVIDERS: dict[str, dict[str, Any]] = {"local": {"type": "local", "description": "embedded llama.cpp + sentence-transformers"}}
DEFAULT_MODELS: dict[str, dict[str, Any]] = {
    "chat-default": {"provider": "local", "model": "smollm2", "purpose": "chat",
                     "params": {"temperature": 0.3, "max_tokens": 96, "repeat_penalty": 1.15}},
    "json-fix": {"provider": "local", "model": "smollm2", "purpose": "json", "params": {"temperature": 0.1, "max_tokens": 256}},
    "summarize": {"provider": "local", "model": "smollm2", "purpose": "summarize", "params": {"temperature": 0.2, "max_tokens": 160}},
    "classify": {"provider": "local", "model": "smollm2", "purpose": "classify", "params": {"temperature": 0.0, "max_tokens": 32}},
    "embed": {"provider": "local", "model": "all-MiniLM-L6-v2", "purpose": "embed"},
}


class ModelRegistry:
    """Live providers by name and model bundles by name."""

    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self.providers: dict[str, Provider] = {}
        self.models: dict[str, Model] = {}

    def configure(self, providers: dict[str, dict[str, Any]], models: dict[str, ModelSpec]) -> None:
        """Instantiate providers (lazily: no weights load here) and bind bundles to them."""
        for name, entry in {**DEFAULT_PROVIDERS, **providers}.items():
            kind = str(entry.get("type", ""))
            cls = self.kernel.hooks.lookup(PROVIDER_TYPE, kind) or provider_type(kind)
            if cls is None:
                known = sorted({*provider_types(), *self.kernel.hooks.keyed(PROVIDER_TYPE)})
                raise ProviderSetupError(
                    f"provider '{name}': unknown type {kind!r} (known: {', '.join(known)}; a module that adds one "
                    f"must be loaded before models)")
            self.providers[name] = cls(name, cls.Config.model_validate(entry))
        # The defaults are always there (nothing loads until used); the config overrides them by name.
        specs = {name: ModelSpec.model_validate(spec) for name, spec in DEFAULT_MODELS.items()}
        specs.update(models)
        for name, spec in specs.items():
            self.add(name, spec)

    def add(self, name: str, spec: ModelSpec) -> Model:
        provider = self.providers.get(spec.provider)
        if provider is None:
            raise ProviderSetupError(
                f"model '{name}' names provider '{spec.provider}', which is not configured (have: {', '.join(self.providers)})"
            )
        self.models[name] = Model(self.kernel, name, spec, provider)
        return self.models[name]

    def get(self, name: str) -> Model:
        model = self.models.get(name)
        if model is None:
            raise ProviderSetupError(f"no model named '{name}' (see `model ls`)")
        return model

    def get_for(self, purpose: str, default: Model | None = None) -> Model:
        """The bundle for a purpose: the one named like it, else the first with that purpose."""
        named = {"json": "json-fix", "chat": "chat-default"}.get(purpose, purpose)
        if named in self.models:
            return self.models[named]
        for model in self.models.values():
            if model.spec.purpose == purpose:
                return model
        if default is not None:
            return default
        raise ProviderSetupError(f"no model with purpose '{purpose}' is configured (see `model ls`)")

    async def close(self) -> None:
        for provider in self.providers.values():
            try:
                await provider.close()
            except Exception as exc:  # noqa: BLE001 - shutting down the rest matters more
                log.error("provider %s failed to close: %s", provider.name, exc)
        self.providers.clear()
        self.models.clear()
