"""Provider types, found through the `tobio.providers` entry-point group (built-ins included)."""

from __future__ import annotations

import logging
import os
from functools import lru_cache

from tobio.providers.base import ChatRequest, Chunk, Provider, ProviderConfig, ProviderError

log = logging.getLogger(__name__)
ENTRY_POINT_GROUP = "tobio.providers"

__all__ = ["ChatRequest", "Chunk", "Provider", "ProviderConfig", "ProviderError", "provider_types"]


@lru_cache(maxsize=1)
def provider_types() -> dict[str, type[Provider]]:
    """Every provider type: built-ins plus installed plugins (limited by TOBIO_LOAD_PLUGINS)."""
    from importlib.metadata import entry_points

    allowed = os.environ.get("TOBIO_LOAD_PLUGINS")
    names = None if allowed is None else {n.strip() for n in allowed.split(",") if n.strip()}
    found: dict[str, type[Provider]] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if names is not None and ep.name not in names and not ep.value.startswith("tobio."):
            continue
        try:
            cls = ep.load()
        except Exception as exc:  # noqa: BLE001 - a broken plugin must not stop the kernel
            log.error("provider entry point %s (%s) failed to import: %s", ep.name, ep.value, exc)
            continue
        found[getattr(cls, "type_name", "") or ep.name] = cls
    return found
