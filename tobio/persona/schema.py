"""Persona files (configs/personas/*.yaml): who an artificial person is."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from tobio.config import load_data_yaml, validate

if TYPE_CHECKING:
    from tobio.turn.macros import MacroEnv


class Exchange(BaseModel):
    """One example exchange: what someone says and how the persona answers."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)
    user: str
    reply: str


class InitialMood(BaseModel):
    """Baseline affect: pleasure, arousal, dominance in [-1, 1]."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)
    pleasure: float = Field(0.2, ge=-1, le=1)
    arousal: float = Field(0.0, ge=-1, le=1)
    dominance: float = Field(0.0, ge=-1, le=1)


class BigFive(BaseModel):
    """Personality traits, each 0-1 (0.5: the middle of people). They set the baseline mood (Mehrabian's
    equations), and neuroticism how far events move it and how slowly it returns (tobio/emotion/personality.py)."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)
    openness: float = Field(0.5, ge=0, le=1)
    conscientiousness: float = Field(0.5, ge=0, le=1)
    extraversion: float = Field(0.5, ge=0, le=1)
    agreeableness: float = Field(0.5, ge=0, le=1)
    neuroticism: float = Field(0.5, ge=0, le=1)


class Persona(BaseModel):
    """Everything the prompt says about who the agent is."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)
    name: str
    description: str = ""
    personality: list[str] = Field(default_factory=list)
    speaking_style: str = ""
    example_dialogue: list[Exchange] = Field(default_factory=list)
    goals: list[str] = Field(default_factory=list)
    relationships: dict[str, str] = Field(default_factory=dict)
    initial_mood: InitialMood = Field(default_factory=InitialMood)
    big_five: BigFive = Field(default_factory=BigFive)
    greeting: str | None = None
    card: dict[str, Any] = Field(
        default_factory=dict,
        description="what an imported Character Card had that a persona has no field for, kept verbatim for export",
    )

    def system_prompt(self, extra: list[str] | None = None, env: MacroEnv | None = None, before: list[str] | None = None) -> str:
        """A short system prompt: small models follow short, concrete instructions best. With `env`, card
        macros are filled in and an imported card's own `system_prompt` leads."""
        fill = _filler(env)
        lines = [fill(text) for text in before or []]
        card_prompt = self._card_text("system_prompt")
        if card_prompt:
            lines.append(fill(card_prompt))
        lines.append(fill(f"You are {self.name}. {self.description}".strip()))
        if self.personality:
            lines.append(fill(f"Personality: {', '.join(self.personality)}."))
        if self.speaking_style:
            lines.append(fill(f"Speaking style: {self.speaking_style}"))
        if self.goals:
            lines.append(fill(f"Your goals: {'; '.join(self.goals)}."))
        for who, relation in self.relationships.items():
            lines.append(fill(f"{who}: {relation}"))
        lines.extend(extra or [])
        lines.append(f"Stay in character as {self.name}. Answer in one to three short sentences.")
        return "\n".join(line for line in lines if line)

    def example_messages(self, env: MacroEnv | None = None) -> list[dict[str, str]]:
        """Each example exchange as a user turn and a reply (a reply with no question stands alone)."""
        fill = _filler(env)
        out: list[dict[str, str]] = []
        for exchange in self.example_dialogue:
            if exchange.user.strip():
                out.append({"role": "user", "content": fill(exchange.user)})
            out.append({"role": "assistant", "content": fill(exchange.reply)})
        return out

    def post_history(self, env: MacroEnv | None = None) -> str:
        """An imported card's post-history instructions, macros filled in ('' when it has none)."""
        return _filler(env)(self._card_text("post_history_instructions")).strip()

    def greetings(self) -> list[str]:
        """The greeting, then the card's alternate greetings: the choices for a first message."""
        data = self._card_data()
        alternates: list[Any] = data["alternate_greetings"] if isinstance(data.get("alternate_greetings"), list) else []
        return [g for g in [self.greeting or "", *alternates] if isinstance(g, str) and g.strip()]

    def greeting_text(self, env: MacroEnv, choice: int = 0) -> str | None:
        """Greeting number `choice` (0: the main one; 1…: alternates) with its macros filled in."""
        options = self.greetings()
        if not options:
            return None
        from tobio.turn.macros import apply_macros  # with the first prompt or greeting: reading a file needs none

        return apply_macros(options[choice % len(options)], env)

    def _card_data(self) -> dict[str, Any]:
        return self.card["data"] if isinstance(self.card.get("data"), dict) else {}

    def _card_text(self, key: str) -> str:
        value = self._card_data().get(key)
        return value if isinstance(value, str) else ""


def _filler(env: MacroEnv | None) -> Callable[[str], str]:
    if env is None:
        return lambda text: text
    from tobio.turn.macros import apply_macros

    return lambda text: apply_macros(text, env)


def load_persona(path: str | Path) -> Persona:
    """Load and validate a persona file; errors name file, line and field, never the value.

    A persona file is data, often imported from someone else: `${VAR}` stays text and no tag
    (`!include` or any other) is followed, so it cannot pull in the environment or other files.
    """
    data, smap = load_data_yaml(path)
    return validate(Persona, data, smap, echo_values=False)
