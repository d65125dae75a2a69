"""Where per-turn text goes in a prompt: an Injection at a depth counted up from the newest message.

Where text goes decides what a provider can cache: the system prompt and the history form a prefix that
stays the same from turn to turn; text that changes every turn (mood, recalled memories, triggered lore,
notes on the person) goes next to the newest message, so only the end of the prompt is new.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

ROLES = ("system", "user", "assistant")
AFTER_NEWEST = 0  # after the newest message (SillyTavern's depth 0)
NEXT_TO_NEWEST = 1  # just above the newest message: per-turn text (mood, recalled memories, triggered lore)


@dataclass
class Injection:
    """Text placed `depth` messages above the newest one (0: after it), as `role`.

    `instruction`: it tells the agent how to act (the mood line, the reminder) rather than what is so
    (memories, notes on people, World Info); a reply's sentences copied from it are cut (echo.py)."""

    depth: int
    role: str
    content: str
    instruction: bool = False


def inject(out: list[dict[str, Any]], start: int, injections: list[Injection]) -> list[dict[str, Any]]:
    """`out` with `injections` placed among its messages from index `start` on (the history), each at
    its depth; deepest first, so each depth's index is counted on the history alone. Those of one depth
    and role become one message, as SillyTavern joins them."""
    if not injections:
        return out
    grouped: dict[tuple[int, str], list[str]] = {}
    for item in injections:
        if item.content:
            grouped.setdefault((max(0, item.depth), item.role if item.role in ROLES else "system"), []).append(item.content)
    history = out[start:]
    for (depth, role), texts in sorted(grouped.items(), key=lambda kv: -kv[0][0]):
        at = max(0, len(history) - depth) if depth <= len(history) else 0
        history.insert(at, {"role": role, "content": "\n".join(texts)})
    return out[:start] + history
