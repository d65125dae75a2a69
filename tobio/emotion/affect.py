"""Affect as pleasure, arousal, dominance (PAD) in [-1, 1], decaying toward a baseline.

Updates saturate (a push toward +1 shrinks as the value nears +1), so no sequence of appraisals can
leave the range, and with decay between events the state converges instead of running away.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tobio.emotion.emotions import Emotion

DIMENSIONS = ("pleasure", "arousal", "dominance")

# Mehrabian's PAD octants, named for people rather than papers.
OCTANTS: dict[tuple[int, ...], str] = {
    (1, 1, 1): "exuberant", (1, 1, -1): "excited", (1, -1, 1): "relaxed", (1, -1, -1): "content",
    (-1, 1, 1): "angry", (-1, 1, -1): "anxious", (-1, -1, 1): "disdainful", (-1, -1, -1): "sad",
}


def _clamp(x: float) -> float:
    return max(-1.0, min(1.0, x))


@dataclass(frozen=True)
class Affect:
    """A point in PAD space."""

    pleasure: float = 0.0
    arousal: float = 0.0
    dominance: float = 0.0

    def nudged(self, delta: Affect) -> Affect:
        """Apply `delta` with saturation: each step covers its share of the distance left to ±1."""
        def step(value: float, d: float) -> float:
            room = (1.0 - value) if d > 0 else (1.0 + value)
            return _clamp(value + d * room)

        return Affect(*(step(getattr(self, k), getattr(delta, k)) for k in DIMENSIONS))

    def decayed(self, baseline: Affect, seconds: float, half_life_s: float) -> Affect:
        """Move toward `baseline`: halfway every `half_life_s` seconds."""
        if seconds <= 0 or half_life_s <= 0:
            return self
        keep = 0.5 ** (seconds / half_life_s)
        return Affect(*(getattr(baseline, k) + (getattr(self, k) - getattr(baseline, k)) * keep for k in DIMENSIONS))

    @property
    def intensity(self) -> float:
        return math.sqrt(sum(getattr(self, k) ** 2 for k in DIMENSIONS) / 3)

    @property
    def label(self) -> str:
        """A named emotion for the octant, or "calm" near the origin."""
        if self.intensity < 0.12:
            return "calm"
        signs = tuple(1 if getattr(self, k) >= 0 else -1 for k in DIMENSIONS)
        name = OCTANTS[signs]
        return f"very {name}" if self.intensity > 0.6 else f"slightly {name}" if self.intensity < 0.25 else name

    def as_dict(self) -> dict[str, float]:
        return {k: round(v, 4) for k, v in asdict(self).items()}


EMOTION_HALF_LIFE_S = 60.0  # an emotion's default half-life: it is gone in minutes, the mood lasts longer


@dataclass(frozen=True)
class Mood:
    """An agent's affect at a moment, the baseline it decays toward, and the emotions it feels then."""

    affect: Affect
    baseline: Affect
    at: datetime
    emotions: tuple[Emotion, ...] = ()

    def at_time(self, when: datetime, half_life_s: float, emotion_half_life_s: float = EMOTION_HALF_LIFE_S) -> Mood:
        """Decayed to `when` (never back in time): the mood toward its baseline, each emotion toward nothing."""
        from tobio.emotion.emotions import current

        later = max(when, self.at)
        return replace(self, affect=self.affect.decayed(self.baseline, (when - self.at).total_seconds(), half_life_s), at=later,
                       emotions=current(self.emotions, later, emotion_half_life_s))

    @property
    def strongest(self) -> Emotion | None:
        return max(self.emotions, key=lambda e: e.intensity, default=None)

    def to_state(self) -> dict[str, object]:
        state: dict[str, object] = {"affect": self.affect.as_dict(), "baseline": self.baseline.as_dict(), "at": self.at.isoformat()}
        if self.emotions:
            state["emotions"] = [e.to_state() for e in self.emotions]
        return state

    @classmethod
    def from_state(cls, state: dict[str, object]) -> Mood:
        from tobio.emotion.emotions import Emotion

        affect, baseline, emotions = state["affect"], state["baseline"], state.get("emotions") or []
        if not isinstance(affect, dict) or not isinstance(baseline, dict) or not isinstance(emotions, list):
            raise ValueError("a mood's state holds 'affect' and 'baseline' mappings (and an 'emotions' list)")
        return cls(Affect(**affect), Affect(**baseline), datetime.fromisoformat(str(state["at"])),
                   tuple(Emotion.from_state(e) for e in emotions))
