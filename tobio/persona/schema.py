"""Persona files (configs/personas/*.yaml): who an artificial person is."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from tobio.config import load_yaml, validate


class Exchange(BaseModel):
    """One example exchange: what someone says and how the persona answers."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    user: str
    reply: str


class Mood(BaseModel):
    """Baseline affect: pleasure, arousal, dominance in [-1, 1]."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    pleasure: float = Field(0.2, ge=-1, le=1)
    arousal: float = Field(0.0, ge=-1, le=1)
    dominance: float = Field(0.0, ge=-1, le=1)


class Persona(BaseModel):
    """Everything the prompt says about who the agent is."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    name: str
    description: str = ""
    personality: list[str] = Field(default_factory=list)
    speaking_style: str = ""
    example_dialogue: list[Exchange] = Field(default_factory=list)
    goals: list[str] = Field(default_factory=list)
    relationships: dict[str, str] = Field(default_factory=dict)
    initial_mood: Mood = Field(default_factory=Mood)
    greeting: str | None = None
    card: dict[str, Any] = Field(
        default_factory=dict,
        description="what an imported Character Card had that a persona has no field for, kept verbatim for export",
    )

    def system_prompt(self, extra: list[str] | None = None) -> str:
        """A short system prompt: small models follow short, concrete instructions best."""
        lines = [f"You are {self.name}. {self.description}".strip()]
        if self.personality:
            lines.append(f"Personality: {', '.join(self.personality)}.")
        if self.speaking_style:
            lines.append(f"Speaking style: {self.speaking_style}")
        if self.goals:
            lines.append(f"Your goals: {'; '.join(self.goals)}.")
        for who, relation in self.relationships.items():
            lines.append(f"{who}: {relation}")
        lines.extend(extra or [])
        lines.append(f"Stay in character as {self.name}. Answer in one to three short sentences.")
        return "\n".join(lines)

    def example_messages(self) -> list[dict[str, str]]:
        out: list[dict[str, str]] = []
        for exchange in self.example_dialogue:
            out += [{"role": "user", "content": exchange.user}, {"role": "assistant", "content": exchange.reply}]
        return out


def load_persona(path: str | Path) -> Persona:
    """Load and validate a persona file; errors name file, line and field."""
    data, smap = load_yaml(path)
    return validate(Persona, data, smap)
