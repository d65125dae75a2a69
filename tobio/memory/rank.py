"""A learned second stage for recall: a linear scorer over cheap features of the first stage's candidates.

The first stage (AgentIndex's weighted sum of embedding, BM25, sitting, date, recency and importance)
picks the `candidates` best items; this reorders them by w·(x - mean)/scale, with x the features below
(computed by `AgentIndex.features`). The weights are fitted (each evidence item's softmax against its
question's non-evidence candidates) by `python -m tobio.memory.rank_train` on LoCoMo's dev split only,
and judged by leave-one-conversation-out cross-validation (the numbers are in the weights' file).

Why these features: an answer usually follows the question that asks for it ("any fave styles?" →
"contemporary dance"), so the turn before an item and whether it asked something count; a question
names whose memory it wants ("What is Gina's favourite…"), so whether the item's sender is named, and
named first; an answer read together with the turn before it ("yes, I love it" after "any dance
styles?": the sum of their unit vectors against the query; CV recall@10 -0.0026 without); the mean
relevance of its sitting next to the best (-0.0013 without); the rest are the first stage's parts,
kept apart so their mix can depend on each other. Measured and not kept: pseudo-relevance feedback
(cosine with the centroid of the first stage's best 5, and Rocchio, query + centroid: no gain), a
when-question × every feature (+0.002, noise-sized).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)
RANKER_PATH = Path(__file__).with_name("data") / "ranker.json"

# Feature names by group (groups are what the ablation in rank_train switches off together), in column order.
GROUPS: dict[str, tuple[str, ...]] = {
    "first stage": ("score",),
    "dense": ("cosine", "cosine_scaled", "cosine_z"),
    "lexical": ("bm25_scaled", "bm25_log", "coverage"),
    "sitting": ("sitting_best", "sitting_cosine", "sitting_bm25"),
    "date": ("date", "year"),
    "prior": ("recency", "importance"),
    "neighbours": ("prev_cosine", "next_cosine", "prev_bm25", "next_bm25"),
    "answer": ("asks", "after_question", "after_question_cosine", "after_question_bm25"),
    "speaker": ("sender_named", "sender_subject", "subject_with_other", "names_subject"),
    "item": ("length", "temporal_words"),
    "when": ("when_temporal", "when_date"),
    "products": ("cosine_bm25", "cosine_sq", "bm25_sq"),
    "pair": ("pair_cosine",),
    "sitting mean": ("sitting_mean_cosine", "sitting_mean_bm25"),
}
FEATURES: tuple[str, ...] = tuple(name for names in GROUPS.values() for name in names)


@dataclass(frozen=True)
class Ranker:
    """Linear weights over standardised features; `candidates` is how many first-stage items it reorders."""

    features: tuple[str, ...]
    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray
    candidates: int

    def score(self, features: np.ndarray) -> np.ndarray:
        """One score per row of `features` (columns in `self.features` order); higher ranks first."""
        return np.asarray(((features - self.mean) / self.scale) @ self.weights, dtype=np.float64)

    def to_json(self, **about: object) -> str:
        return json.dumps({**about, "candidates": self.candidates, "features": list(self.features),
                           "mean": _rounded(self.mean), "scale": _rounded(self.scale), "weights": _rounded(self.weights)},
                          indent=1)

    @classmethod
    def from_json(cls, text: str) -> Ranker:
        data = json.loads(text)
        features = tuple(data["features"])
        mean, scale, weights = (np.asarray(data[key], dtype=np.float64) for key in ("mean", "scale", "weights"))
        if any(a.shape != (len(features),) for a in (mean, scale, weights)) or int(data["candidates"]) < 1:
            raise ValueError("a ranker file needs one mean, scale and weight per feature and candidates >= 1")
        return cls(features, mean, scale, weights, int(data["candidates"]))


def _rounded(values: np.ndarray) -> list[float]:
    return [round(float(v), 6) for v in values]


@lru_cache(maxsize=1)
def shipped() -> Ranker | None:
    """The weights in the package, if they are there and fit this code's features (else recall is first stage only)."""
    try:
        ranker = Ranker.from_json(RANKER_PATH.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("memory: recall ranker %s unreadable (%s); recall uses the first stage only", RANKER_PATH, exc)
        return None
    if ranker.features != FEATURES:
        log.warning("memory: recall ranker %s is for other features; retrain it (python -m tobio.memory.rank_train)", RANKER_PATH)
        return None
    return ranker
