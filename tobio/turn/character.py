"""Who an agent is, as far as its prompt is concerned: what the turn reads from it.

A persona (tobio/persona/schema.py, from a persona file or an imported card) is one; `Sketch` is the
smallest one, a name and a line of description, for agent types that need no persona file.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from tobio.turn.macros import MacroEnv


class Character(Protocol):
    """What a prompt says about who the agent is. `env` fills in card macros ({{char}}, {{user}} …)."""

    @property
    def name(self) -> str: ...

    @property
    def description(self) -> str: ...

    @property
    def personality(self) -> Sequence[str]: ...

    @property
    def example_dialogue(self) -> Sequence[Any]: ...  # items with `.user` and `.reply`

    @property
    def card(self) -> dict[str, Any]: ...  # an imported card's fields (`data.nickname`, books …), or {}

    def system_prompt(self, extra: list[str] | None = None, env: MacroEnv | None = None,
                      before: list[str] | None = None) -> str: ...

    def example_messages(self, env: MacroEnv | None = None) -> list[dict[str, str]]: ...

    def post_history(self, env: MacroEnv | None = None) -> str: ...


def speaking_name(character: Character) -> str:
    """What `{{char}}` stands for: a card's nickname when it has one, else the name."""
    data = character.card.get("data")
    nickname = data.get("nickname") if isinstance(data, dict) else None
    return nickname if isinstance(nickname, str) and nickname.strip() else character.name


@dataclass(frozen=True)
class Sketch:
    """A character from a name and a description: no examples, no card."""

    name: str
    description: str = ""
    personality: tuple[str, ...] = ()
    example_dialogue: tuple[Any, ...] = ()
    card: dict[str, Any] = field(default_factory=dict)

    def system_prompt(self, extra: list[str] | None = None, env: MacroEnv | None = None,
                      before: list[str] | None = None) -> str:
        lines = [*(before or []), f"You are {self.name}. {self.description}".strip(), *(extra or [])]
        return "\n".join(line for line in lines if line)

    def example_messages(self, env: MacroEnv | None = None) -> list[dict[str, str]]:
        return []

    def post_history(self, env: MacroEnv | None = None) -> str:
        return ""
