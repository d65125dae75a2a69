"""A persona's greeting: the card's first message, as SillyTavern opens a chat.

The prompt itself is the turn's (tobio/turn/prompt.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tobio.turn.character import speaking_name
from tobio.turn.macros import MacroEnv

if TYPE_CHECKING:
    from tobio.persona.agent import PersonaAgent


def greeting(agent: PersonaAgent, user: str = "User", choice: int = 0) -> str | None:
    """The persona's first message to `user`: greeting `choice` (0 the card's `first_mes`, 1… its
    alternate greetings), macros filled in; None when the persona has none."""
    persona = agent.persona
    return persona.greeting_text(MacroEnv(char=speaking_name(persona), user=user, seed=f"greeting:{agent.name}"), choice)
