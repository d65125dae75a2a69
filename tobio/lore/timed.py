"""Sticky, cooldown and match memory between turns (SillyTavern's `WorldInfoTimedEffects`), per thread.

Times are counts of the thread's messages: an effect starting at N with span S ends when the thread
has N + S messages. A sticky entry that ends goes on cooldown (protected: it survives a prompt built
again at the same count); an effect of an entry that changed or vanished ends.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tobio.lore.schema import Entry


@dataclass
class TimedState:
    """Per-thread memory of sticky and cooldown effects (start/end in thread message counts) and of
    entries that matched before (`@@keep_activate_after_match`, `@@dont_activate_after_match`)."""

    sticky: dict[str, dict[str, Any]] = field(default_factory=dict)
    cooldown: dict[str, dict[str, Any]] = field(default_factory=dict)
    matched: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"sticky": self.sticky, "cooldown": self.cooldown, "matched": self.matched}

    @classmethod
    def from_dict(cls, data: Any) -> TimedState:
        data = data if isinstance(data, dict) else {}
        return cls({k: v for k, v in dict(data.get("sticky") or {}).items() if isinstance(v, dict)},
                   {k: v for k, v in dict(data.get("cooldown") or {}).items() if isinstance(v, dict)},
                   [str(k) for k in data.get("matched") or []])


def check_timed(state: TimedState | None, live: dict[str, Entry], length: int) -> tuple[set[str], set[str]]:
    """Active sticky and cooldown keys, ending the effects whose time is up (ST's checkTimedEffects)."""
    if state is None:
        return set(), set()
    active: dict[str, set[str]] = {"sticky": set(), "cooldown": set()}
    for kind in ("sticky", "cooldown"):
        effects = getattr(state, kind)
        for key, effect in list(effects.items()):
            entry = live.get(key)
            start, end = int(effect.get("start", 0)), int(effect.get("end", 0))
            if length <= start and not effect.get("protected"):
                del effects[key]  # the chat did not move on (the same turn again)
            elif entry is None or entry.digest != effect.get("digest") or not getattr(entry, kind):
                if entry is None and length < end:
                    continue  # a book not attached right now: keep its clock running
                del effects[key]
            elif length >= end:
                del effects[key]
                if kind == "sticky" and entry.cooldown:  # a sticky entry that ends goes on cooldown
                    state.cooldown[key] = {"start": length, "end": length + entry.cooldown, "protected": True,
                                           "digest": entry.digest}
                    active["cooldown"].add(key)
            else:
                active[kind].add(key)
    return active["sticky"], active["cooldown"]


def remember(state: TimedState, fired: list[Entry], length: int) -> None:
    """Start the sticky and cooldown clocks of entries that fired; note matches decorators ask about."""
    for entry in fired:
        for kind in ("sticky", "cooldown"):
            span = getattr(entry, kind)
            effects = getattr(state, kind)
            if span and entry.key not in effects:
                effects[entry.key] = {"start": length, "end": length + span, "protected": False, "digest": entry.digest}
        if entry.key not in state.matched and (entry.decorator("keep_activate_after_match") or entry.decorator("dont_activate_after_match")):
            state.matched.append(entry.key)
