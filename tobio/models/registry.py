"""The kernel's providers and model bundles, built from `providers:` and `models:` in the config.

A provider's type is looked up when a model on it is first used, not when `models` starts: a module that
adds a type (PROVIDER_TYPE) may be listed anywhere in `modules:`, or loaded later with `mod load`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

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
DEFAULT_PROVIDERS: dict[str, dict[str, Any]] = {"local": {"type": "local", "description": "embedded llama.cpp (chat and embeddings)"}}
DEFAULT_MODELS: dict[str, dict[str, Any]] = {
    "chat-default": {"provider": "local", "model": "smollm2", "purpose": "chat",
                     "params": {"temperature": 0.3, "max_tokens": 96, "repeat_penalty": 1.15}},
    "json-fix": {"provider": "local", "model": "smollm2", "purpose": "json", "params": {"temperature": 0.1, "max_tokens": 256}},
    "summarize": {"provider": "local", "model": "smollm2", "purpose": "summarize", "params": {"temperature": 0.2, "max_tokens": 160}},
    "classify": {"provider": "local", "model": "smollm2", "purpose": "classify", "params": {"temperature": 0.0, "max_tokens": 32}},
    "embed": {"provider": "local", "model": "all-MiniLM-L6-v2", "purpose": "embed"},
}


class Providers(Mapping[str, Provider]):
    """The configured providers by name. Each is built from its type on first access (building loads no
    weights), so the type only has to be registered by then; `close_type` drops the ones of a type whose
    module is leaving, and the next access looks the type up again."""

    def __init__(self, kernel: Kernel, entries: dict[str, dict[str, Any]]) -> None:
        self.kernel = kernel
        self.entries = entries
        self.built: dict[str, Provider] = {}

    def type_of(self, name: str) -> str:
        return str(self.entries[name].get("type", ""))

    def __getitem__(self, name: str) -> Provider:
        provider = self.built.get(name)
        if provider is None:
            if name not in self.entries:
                raise KeyError(name)
            provider = self.built[name] = self._build(name)
        return provider

    def __contains__(self, name: object) -> bool:
        return name in self.entries  # configured is enough: asking must not build it

    def __iter__(self) -> Iterator[str]:
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    def _build(self, name: str) -> Provider:
        kind = self.type_of(name)
        cls = self.kernel.hooks.lookup(PROVIDER_TYPE, kind) or provider_type(kind)
        if cls is None:
            known = sorted({*provider_types(), *self.kernel.hooks.keyed(PROVIDER_TYPE)})
            raise ProviderSetupError(
                f"provider '{name}': unknown type {kind!r} (known: {', '.join(known)}; `mod load` the module that adds it)")
        try:
            config = cls.Config.model_validate(self.entries[name])
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors(include_url=False))
            raise ProviderSetupError(f"provider '{name}' (type {kind}): {problems}") from None
        return cls(name, config)

    def of_type(self, kind: str) -> list[str]:
        """Names of the configured providers of type `kind`, built or not."""
        return [name for name in self.entries if self.type_of(name) == kind]

    async def close_type(self, kind: str) -> None:
        """Close and forget the built providers of type `kind` (the module that registered it is leaving)."""
        for name in self.of_type(kind):
            provider = self.built.pop(name, None)
            if provider is not None:
                await _close(provider)

    async def close(self) -> None:
        for provider in self.built.values():
            await _close(provider)
        self.built.clear()


async def _close(provider: Provider) -> None:
    try:
        await provider.close()
    except Exception as exc:  # a provider that fails to close must not keep the others open
        log.error("provider %s failed to close: %s", provider.name, exc)


class ModelRegistry:
    """Live providers by name and model bundles by name."""

    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self.providers = Providers(kernel, {})
        self.models: dict[str, Model] = {}

    def configure(self, providers: dict[str, dict[str, Any]], models: dict[str, ModelSpec]) -> None:
        """Bind bundles to the configured providers; no provider is built, no weights load here."""
        self.providers.entries.update({**DEFAULT_PROVIDERS, **providers})
        # The defaults are always there (nothing loads until used); the config overrides them by name.
        specs = {name: ModelSpec.model_validate(spec) for name, spec in DEFAULT_MODELS.items()}
        specs.update(models)
        for name, spec in specs.items():
            self.add(name, spec)

    def add(self, name: str, spec: ModelSpec) -> Model:
        if spec.provider not in self.providers:
            raise ProviderSetupError(
                f"model '{name}' names provider '{spec.provider}', which is not configured (have: {', '.join(self.providers)})"
            )
        self.models[name] = Model(self.kernel, name, spec, self.providers)
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

    def on_provider_type(self, kind: str) -> dict[str, list[str]]:
        """Provider name -> the models on it, for the providers of type `kind` that back a model."""
        backing = {name: [m for m, model in self.models.items() if model.spec.provider == name]
                   for name in self.providers.of_type(kind)}
        return {name: models for name, models in backing.items() if models}

    async def close(self) -> None:
        await self.providers.close()
        self.models.clear()
