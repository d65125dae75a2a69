"""Installed packages' entry points (Tobio's modules, provider types), read once per process.

Reading them opens every installed distribution's metadata (~10 ms on a venv of 130 packages), and a
start wants two groups: one read serves both. `TOBIO_LOAD_PLUGINS` (comma-separated names, or empty
for none) limits which third-party entry points count; Tobio's own (`tobio.…`) always do.
"""

from __future__ import annotations

import os
from functools import cache
from importlib.metadata import EntryPoint, EntryPoints, entry_points

GROUPS = ("tobio.modules", "tobio.providers")


@cache
def _installed() -> dict[str, EntryPoints]:
    found = entry_points()  # every group, one read
    return {group: found.select(group=group) for group in GROUPS}


def plugin_entry_points(group: str) -> list[EntryPoint]:
    """The entry points of `group` that this process may load (`TOBIO_LOAD_PLUGINS` read now)."""
    allowed = os.environ.get("TOBIO_LOAD_PLUGINS")
    names = None if allowed is None else {n.strip() for n in allowed.split(",") if n.strip()}
    found = _installed()[group] if group in GROUPS else entry_points(group=group)
    return [ep for ep in found if names is None or ep.name in names or ep.value.startswith("tobio.")]
