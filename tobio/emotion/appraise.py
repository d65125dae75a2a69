"""Appraisal: how much a message moves an agent's affect.

The default is VADER (vaderSentiment): a lexicon-and-rules sentiment model, MIT licensed, tens of
microseconds per message, no model download and stable for years; its compound score drives
pleasure, its intensity and the text's shouting drive arousal, and being the target of hostility
lowers dominance. The `classify` model bundle can appraise instead (slower, needs a capable model).
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import TYPE_CHECKING, Literal, Protocol

from tobio.emotion.affect import Affect

if TYPE_CHECKING:
    from tobio.models.bundle import Model

Direction = Literal["incoming", "outgoing"]
_SHOUT = re.compile(r"\b[A-Z]{3,}\b")


class Appraiser(Protocol):
    async def appraise(self, text: str, direction: Direction) -> Affect: ...


@lru_cache(maxsize=1)
def _vader() -> _Polarity:
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    analyzer: _Polarity = SentimentIntensityAnalyzer()  # vaderSentiment ships no type hints
    return analyzer


class _Polarity(Protocol):
    """What Tobio uses of vaderSentiment's SentimentIntensityAnalyzer."""

    def polarity_scores(self, text: str) -> dict[str, float]: ...


class LexiconAppraiser:
    """VADER-based appraisal; `gain` scales how strongly one message moves the affect."""

    def __init__(self, gain: float = 0.35) -> None:
        self.gain = gain

    def score(self, text: str, direction: Direction) -> Affect:
        scores = _vader().polarity_scores(text)
        compound = scores["compound"]
        excitement = min(1.0, text.count("!") * 0.15 + len(_SHOUT.findall(text)) * 0.2)
        arousal = (abs(compound) * 0.6 + excitement) - 0.15  # neutral chat calms a little
        # Hostility aimed at the agent lowers its sense of control; warmth raises it a little.
        dominance = compound * (0.5 if direction == "incoming" else 0.2)
        weight = 1.0 if direction == "incoming" else 0.5  # one's own words move one less
        return Affect(compound * self.gain * weight, arousal * self.gain * weight, dominance * self.gain * weight)

    async def appraise(self, text: str, direction: Direction) -> Affect:
        return self.score(text, direction)


class ModelAppraiser:
    """Asks the `classify` bundle for an emotion label and maps it to a PAD delta."""

    LABELS = {"joy": (0.8, 0.5, 0.4), "anger": (-0.7, 0.8, 0.5), "fear": (-0.7, 0.7, -0.6), "sadness": (-0.7, -0.4, -0.4),
              "surprise": (0.2, 0.8, 0.0), "disgust": (-0.6, 0.3, 0.3), "neutral": (0.0, -0.2, 0.0)}

    def __init__(self, model: Model, gain: float = 0.35) -> None:
        self.model = model
        self.gain = gain

    async def appraise(self, text: str, direction: Direction) -> Affect:
        label = await self.model.classify(text, list(self.LABELS), instruction="Which emotion does this message express?")
        p, a, d = self.LABELS[label]
        weight = self.gain * (1.0 if direction == "incoming" else 0.5)
        return Affect(p * weight, a * weight, d * weight)
