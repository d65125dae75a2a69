"""Provider types, found through the `tobio.providers` entry-point group (built-ins included)."""

from __future__ import annotations

import logging
from functools import lru_cache
from typing import Any

from tobio.providers.base import ChatRequest, Chunk, Provider, ProviderConfig, ProviderError

log = logging.getLogger(__name__)
ENTRY_POINT_GROUP = "tobio.providers"

__all__ = ["ChatRequest", "Chunk", "Provider", "ProviderConfig", "ProviderError", "provider_type", "provider_types"]


@lru_cache(maxsize=1)
def provider_types() -> dict[str, Any]:
    """Every provider type's entry point (not imported yet: `openai` alone costs ~0.5 s to import)."""
    from tobio.plugins import plugin_entry_points

    return {ep.name: ep for ep in plugin_entry_points(ENTRY_POINT_GROUP)}


@lru_cache(maxsize=None)
def provider_type(name: str) -> type[Provider] | None:
    """The provider class for a type name, imported on first use; None if unknown or broken."""
    ep = provider_types().get(name)
    if ep is None:
        return None
    try:
        cls = ep.load()
    except Exception as exc:  # a broken plugin must not stop the kernel
        log.error("provider entry point %s (%s) failed to import: %s", ep.name, ep.value, exc)
        return None
    if not (isinstance(cls, type) and issubclass(cls, Provider)):
        log.error("provider entry point %s (%s) does not name a Provider subclass", ep.name, ep.value)
        return None
    return cls
