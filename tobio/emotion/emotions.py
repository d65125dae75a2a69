"""Named, short-lived emotions apart from the mood (ALMA, Gebhard 2005, after OCC).

An appraised event (a message read or said) becomes one OCC emotion: the category whose PAD direction
(ALMA's table) is closest to the appraisal's, with the appraisal's strength as its intensity, and a
cause ("Ada: you are useless…"). Emotions decay fast (seconds to minutes); each one pulls the slower mood
toward its PAD point when it arises. Both are kept in the agent's state, so they are in its history and
replays.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from tobio.emotion.affect import DIMENSIONS, Affect

Direction = Literal["incoming", "outgoing"]

# ALMA's PAD mapping of OCC emotions (Gebhard 2005, table 2), those a conversation can cause.
PAD: dict[str, tuple[float, float, float]] = {
    "joy": (0.40, 0.20, 0.10), "distress": (-0.40, -0.20, -0.50), "hope": (0.20, 0.20, -0.10),
    "fear": (-0.64, 0.60, -0.43), "relief": (0.20, -0.30, 0.40), "disappointment": (-0.30, 0.10, -0.40),
    "gratitude": (0.40, 0.20, -0.30), "anger": (-0.51, 0.59, 0.25), "admiration": (0.50, 0.30, -0.20),
    "reproach": (-0.30, -0.10, 0.40), "pride": (0.40, 0.30, 0.30), "shame": (-0.30, 0.10, -0.60),
    "gratification": (0.60, 0.50, 0.40), "remorse": (-0.30, 0.10, -0.60),
}
# What another's words can make one feel, and what one's own can. OCC attributes another's act to them
# (gratitude, anger, admiration, reproach) or feels its consequence (joy, distress); the prospect-based ones
# (hope, fear, relief, disappointment) need an expectation a single message does not show, so another's
# words never name them: an insult read with low dominance is anger at its sender, not fear.
ABOUT_OTHER = ("joy", "distress", "gratitude", "anger", "admiration", "reproach")
ABOUT_SELF = ("joy", "distress", "hope", "fear", "relief", "disappointment", "pride", "shame", "gratification", "remorse")
FADED = 0.1  # an emotion below this intensity is gone (a neutral remark of one's own reads as ~0.06)
MOST = 6  # emotions kept at once (the strongest)
CAUSE_CHARS = 60


@dataclass(frozen=True)
class Emotion:
    """One emotion: its OCC name, its intensity (0-1) at `at`, what caused it, and when it arose."""

    name: str
    intensity: float
    cause: str
    at: datetime
    source: str = ""  # who caused it ("" for oneself)
    arose: datetime | None = None  # when it arose (None: at `at`)

    @property
    def since(self) -> datetime:
        return self.arose or self.at

    @property
    def direction(self) -> Affect:
        return Affect(*PAD[self.name])

    def now(self, when: datetime, half_life_s: float) -> float:
        """Its intensity at `when`: halving every `half_life_s`."""
        seconds = max(0.0, (when - self.at).total_seconds())
        return float(self.intensity * 0.5 ** (seconds / half_life_s))

    def phrase(self) -> str:
        """How the agent is told of it: "anger at Ada (for "you are useless…")"."""
        target = {"anger": "at", "gratitude": "towards", "admiration": "for", "reproach": "towards"}.get(self.name)
        who = f" {target} {self.source}" if target and self.source else ""
        said = self.cause.removeprefix(f"{self.source}: ") if who else self.cause  # the name once is enough
        return f'{self.name}{who} (because of "{said}")'

    def to_state(self) -> dict[str, Any]:
        return {"name": self.name, "intensity": round(self.intensity, 4), "cause": self.cause, "at": self.at.isoformat(),
                "source": self.source, "arose": self.since.isoformat()}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Emotion:
        arose = state.get("arose")
        return cls(str(state["name"]), float(state["intensity"]), str(state["cause"]), datetime.fromisoformat(str(state["at"])),
                   str(state.get("source", "")), datetime.fromisoformat(str(arose)) if arose else None)


def cause_of(sender: str | None, text: str) -> str:
    """A short quote of what caused an emotion."""
    words = " ".join(text.split())
    quote = words if len(words) <= CAUSE_CHARS else words[: CAUSE_CHARS - 1].rsplit(" ", 1)[0] + "…"
    return f"{sender}: {quote}" if sender else quote


def name_for(push: Affect, direction: Direction) -> str:
    """The OCC category whose PAD direction is closest (cosine) to the appraisal's push."""
    candidates = ABOUT_OTHER if direction == "incoming" else ABOUT_SELF
    norm = math.sqrt(sum(getattr(push, k) ** 2 for k in DIMENSIONS)) or 1.0

    def cosine(name: str) -> float:
        vector = PAD[name]
        dot = sum(v * float(getattr(push, k)) for v, k in zip(vector, DIMENSIONS))
        return dot / (norm * math.sqrt(sum(v * v for v in vector)))

    return max(candidates, key=cosine)


def arise(push: Affect, direction: Direction, cause: str, source: str, at: datetime) -> Emotion | None:
    """The emotion an appraisal causes, or None when it is too weak to be one (a neutral remark)."""
    intensity = min(1.0, push.intensity * math.sqrt(3))  # the push's length, 0-1
    if intensity < FADED:
        return None
    return Emotion(name_for(push, direction), intensity, cause, at, source if direction == "incoming" else "")


def current(emotions: tuple[Emotion, ...], when: datetime, half_life_s: float) -> tuple[Emotion, ...]:
    """Those still felt at `when`, strongest first, with their intensities decayed to then (at most MOST)."""
    alive = [(e.now(when, half_life_s), e) for e in emotions if e.at <= when]
    kept = sorted(((i, e) for i, e in alive if i >= FADED), key=lambda pair: -pair[0])[:MOST]
    return tuple(Emotion(e.name, i, e.cause, when, e.source, e.since) for i, e in kept)
