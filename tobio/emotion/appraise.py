"""Appraisal: how much a message moves an agent's affect.

Where memory embeds messages (the default), a message is appraised from the MiniLM vector memory
computed for it (read in the context of the few messages before it in its channel) and a few features
of its words, by a small network trained on EmoBank's reader ratings (head.py, train.py); its Pearson r
with readers' valence / arousal / dominance on EmoBank's test split, and VADER's in the same run, are
in bench/emotion.py's output and the README. It costs about 0.1 ms a message, on the vector memory
computed anyway.

Where embeddings are off, the fallback is VADER (vaderSentiment): a lexicon-and-rules sentiment model, MIT licensed, tens of
microseconds per message, no model download and stable for years; its compound score drives
pleasure, its intensity and the text's shouting drive arousal, and being the target of hostility
lowers dominance. The `classify` model bundle can appraise instead (slower, needs a capable model).

VADER's cost grows with the square of a text's length (each word rescans the word list), and it runs
for every receiving persona, so a long message is appraised as a bounded window: up to WINDOW_PIECES
pieces of at most PIECE_CHARS characters (cut at sentence ends where possible), taken evenly from the
whole text, their scores averaged. A short message is scored whole, exactly as before.
"""

from __future__ import annotations

import asyncio
import re
from collections import OrderedDict, deque
from collections.abc import Sequence
from datetime import datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Literal, Protocol

from tobio.emotion.affect import Affect

if TYPE_CHECKING:
    from tobio.emotion.head import Head
    from tobio.models.bundle import Model

Direction = Literal["incoming", "outgoing"]
_SHOUT = re.compile(r"\b[A-Z]{3,}\b")
PIECE_CHARS = 480  # one piece VADER scores: a few sentences (its cost grows with the square of this)
WINDOW_PIECES = 6  # pieces of a long text that are scored
_SENTENCE_END = re.compile(r"[.!?\n]\s")


def pieces(text: str, size: int = PIECE_CHARS, most: int = WINDOW_PIECES) -> list[str]:
    """At most `most` pieces of at most `size` characters, spread evenly over `text` (the first and last
    included), each cut after a sentence end when one is near. Linear in `text`, bounded in output."""
    if len(text) <= size:
        return [text]
    count = min(most, -(-len(text) // size))
    step = (len(text) - size) / max(1, count - 1)
    out = []
    for i in range(count):
        start = int(i * step)
        chunk = text[start:start + size]
        if start:  # begin after a sentence end in the first third of the piece, when there is one
            cut = _SENTENCE_END.search(chunk, 0, size // 3)
            chunk = chunk[cut.end():] if cut else chunk
        out.append(chunk)
    return out


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


@lru_cache(maxsize=64)
def _read(text: str) -> tuple[float, float]:
    """(VADER compound, excitement) of a bounded window of `text`. Cached: one message is appraised once
    for each agent that receives it, and scoring it once is enough (a str's hash is computed once)."""
    window = pieces(text)
    compound = sum(_vader().polarity_scores(piece)["compound"] for piece in window) / len(window)
    shown = "".join(window)  # the excitement of what was read, not of the whole length
    excitement = min(1.0, shown.count("!") * 0.15 + sum(1 for _ in zip(range(8), _SHOUT.finditer(shown))) * 0.2)
    return compound, excitement


class LexiconAppraiser:
    """VADER-based appraisal; `gain` scales how strongly one message moves the affect."""

    def __init__(self, gain: float = 0.35) -> None:
        self.gain = gain

    def score(self, text: str, direction: Direction) -> Affect:
        compound, excitement = _read(text)
        arousal = (abs(compound) * 0.6 + excitement) - 0.15  # neutral chat calms a little
        # Hostility aimed at the agent lowers its sense of control; warmth raises it a little.
        dominance = compound * (0.5 if direction == "incoming" else 0.2)
        weight = 1.0 if direction == "incoming" else 0.5  # one's own words move one less
        return Affect(compound * self.gain * weight, arousal * self.gain * weight, dominance * self.gain * weight)

    async def appraise(self, text: str, direction: Direction) -> Affect:
        if len(text) > PIECE_CHARS:  # a long text costs milliseconds even bounded: not on the kernel's loop
            return await asyncio.to_thread(self.score, text, direction)
        return self.score(text, direction)


CONTEXT_MESSAGES = 3  # messages before one in its channel that it is read with
CONTEXT_GAP_S = 6 * 3600.0  # a longer pause ends a conversation: what came before is no context
CHANNELS_KEPT = 1024  # channels whose recent vectors are kept (least recently used dropped)


class LearnedAppraiser:
    """The EmoBank head on memory's vectors. A message is read with the few before it in its channel: its
    vector mixed with theirs (newest weighing most) by the context weight chosen on EmoBank's dev split."""

    def __init__(self, head: Head, gain: float = 0.35) -> None:
        self.head = head
        self.gain = gain
        self._recent: OrderedDict[str, deque[tuple[datetime, Sequence[float]]]] = OrderedDict()

    def read(self, channel: str, vector: Sequence[float], at: datetime, text: str) -> Affect:
        """What a reader feels on reading this message (`text`, and memory's `vector` of it) here (each of
        P, A, D in [-1, 1]); remembers it as context for the next message on `channel`."""
        import numpy as np

        recent = self._recent.pop(channel, None) or deque(maxlen=CONTEXT_MESSAGES)
        self._recent[channel] = recent
        if len(self._recent) > CHANNELS_KEPT:
            self._recent.popitem(last=False)
        mine = np.asarray(vector, dtype=np.float64)
        before = [(np.asarray(v, dtype=np.float64), 0.5 ** age) for age, (when, v) in enumerate(reversed(recent))
                  if abs((at - when).total_seconds()) <= CONTEXT_GAP_S]
        recent.append((at, vector))
        weight = self.head.context_weight
        if before and weight:
            context = sum(v * w for v, w in before) / sum(w for _, w in before)
            mine = (1 - weight) * mine + weight * context
        return Affect(*self.head.push(mine, text))

    def score(self, read: Affect, direction: Direction) -> Affect:
        """The push on the mood: one's own words move one half as much as another's."""
        weight = self.gain * (1.0 if direction == "incoming" else 0.5)
        return Affect(read.pleasure * weight, read.arousal * weight, read.dominance * weight)


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
