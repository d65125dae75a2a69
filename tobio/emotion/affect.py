"""Affect as pleasure, arousal, dominance (PAD) in [-1, 1], decaying toward a baseline.

Updates saturate (a push toward +1 shrinks as the value nears +1), so no sequence of appraisals can
leave the range, and with decay between events the state converges instead of running away.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from datetime import datetime

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


@dataclass(frozen=True)
class Mood:
    """An agent's affect at a moment, with the baseline it decays toward."""

    affect: Affect
    baseline: Affect
    at: datetime

    def at_time(self, when: datetime, half_life_s: float) -> Mood:
        return replace(self, affect=self.affect.decayed(self.baseline, (when - self.at).total_seconds(), half_life_s), at=max(when, self.at))

    def to_state(self) -> dict[str, object]:
        return {"affect": self.affect.as_dict(), "baseline": self.baseline.as_dict(), "at": self.at.isoformat()}

    @classmethod
    def from_state(cls, state: dict[str, object]) -> Mood:
        affect, baseline = state["affect"], state["baseline"]
        if not isinstance(affect, dict) or not isinstance(baseline, dict):
            raise ValueError("a mood's state holds 'affect' and 'baseline' mappings")
        return cls(Affect(**affect), Affect(**baseline), datetime.fromisoformat(str(state["at"])))
