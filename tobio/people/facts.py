"""What the people module stores and passes around: a fact, and what one message says.

Apart from the rules that find them (extract.py), whose ~30 regular expressions take ~5 ms to compile:
the module's service and commands need these types at every start, the rules only when a message comes.
"""

from __future__ import annotations

from dataclasses import dataclass

ALWAYS_LIST = {"likes", "dislikes"}  # keys whose values accumulate instead of replacing


@dataclass(frozen=True)
class Fact:
    """One thing a person said about themselves: `key` (name, dog, home, job, likes…) and its value."""

    key: str
    value: str


@dataclass(frozen=True)
class Statement:
    """What one message says: facts, whether it corrects the agent, and values it denies
    ((key or None when only the value is named, value): "not Max", "my dog isn't called Max")."""

    facts: list[Fact]
    correction: bool = False
    denied: tuple[tuple[str | None, str], ...] = ()
    ended: tuple[tuple[str | None, str], ...] = ()  # no longer true, but was ("I don't live in Berlin anymore")
