"""Installed packages' entry points (Tobio's modules, provider types), read once per process.

Reading them opens every installed distribution's metadata (~5-10 ms on a venv of 120 packages), and a
start wants two groups: one read serves both. `TOBIO_LOAD_PLUGINS` (comma-separated names, or empty
for none) limits which third-party entry points count; Tobio's own (`tobio.…`) always do. With it empty
nothing third-party can count, so Tobio's own come from `BUILTIN` (pyproject.toml's entry points, which
a test keeps equal) and the metadata is not read at all.
"""

from __future__ import annotations

import os
from functools import cache
from importlib.metadata import EntryPoint, EntryPoints, entry_points

GROUPS = ("tobio.modules", "tobio.providers")
BUILTIN: dict[str, dict[str, str]] = {  # group -> name -> "module:attribute": pyproject.toml's, in its metadata's order
    "tobio.modules": {
        "emotion": "tobio.emotion.module:EmotionModule",
        "lore": "tobio.lore.module:LoreModule",
        "memory": "tobio.memory.module:MemoryModule",
        "models": "tobio.models.module:ModelsModule",
        "people": "tobio.people.module:PeopleModule",
        "persona": "tobio.persona.module:PersonaModule",
        "scenes": "tobio.scenes.module:ScenesModule",
        "scripted": "tobio.agents.scripted:ScriptedModule",
        "web": "tobio.web.module:WebModule",
    },
    "tobio.providers": {
        "local": "tobio.providers.local:LocalProvider",
        "openai": "tobio.providers.openai:OpenAIProvider",
        "scripted": "tobio.providers.scripted:ScriptedProvider",
    },
}


@cache
def _installed() -> dict[str, EntryPoints]:
    found = entry_points()  # every group, one read
    return {group: found.select(group=group) for group in GROUPS}


def _builtin(group: str) -> list[EntryPoint]:
    return [EntryPoint(name, value, group) for name, value in BUILTIN.get(group, {}).items()]


def plugin_entry_points(group: str) -> list[EntryPoint]:
    """The entry points of `group` that this process may load (`TOBIO_LOAD_PLUGINS` read now)."""
    allowed = os.environ.get("TOBIO_LOAD_PLUGINS")
    names = None if allowed is None else {n.strip() for n in allowed.split(",") if n.strip()}
    if names is not None and not names and group in BUILTIN:
        return _builtin(group)  # no third-party plugin may count: no need to read every package's metadata
    found = _installed()[group] if group in GROUPS else entry_points(group=group)
    return [ep for ep in found if names is None or ep.name in names or ep.value.startswith("tobio.")]
