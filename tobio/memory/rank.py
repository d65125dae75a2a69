"""A learned second stage for recall: a linear scorer plus boosted trees over cheap features of the first stage's candidates.

The first stage (AgentIndex's weighted sum of embedding, BM25, sitting, date, recency and importance)
picks the `candidates` best items; this reorders them by w·(x - mean)/scale, with x the features below
(computed by `AgentIndex.features`), plus the sum of small regression trees over x where the model has
them: the trees catch what a weighted sum cannot (a feature that matters only when another is high).
Both are fitted by `python -m tobio.memory.rank_train` on LoCoMo's dev split only (the weights by each
evidence item's softmax against its question's non-evidence candidates, the trees by LightGBM's
lambdarank on top of them), and judged by leave-one-conversation-out cross-validation (the numbers are
in the model's file). The trees are plain node arrays walked in numpy, so recall needs no LightGBM.

Why these features: an answer usually follows the question that asks for it ("any fave styles?" →
"contemporary dance"), so the turn before an item and whether it asked something count; a question
names whose memory it wants ("What is Gina's favourite…"), so whether the item's sender is named, and
named first; an answer read together with the turn before it ("yes, I love it" after "any dance
styles?": the sum of their unit vectors against the query; CV recall@10 -0.0026 without); the mean
relevance of its sitting next to the best (-0.0013 without); the rest are the first stage's parts,
kept apart so their mix can depend on each other. Measured and not kept: pseudo-relevance feedback
(cosine with the centroid of the first stage's best 5, and Rocchio, query + centroid: no gain; Rocchio
for the candidates themselves, query + 0.3 or 0.7 of the centroid: fewer evidence turns among them,
linear recall@10 -0.003 and -0.008; RM3, the best 5's rarest terms as a second BM25 query: no gain), a
when-question × every feature (+0.002, noise-sized), spreading more questions over sittings (those
naming plural things, "what kinds of", "names": -0.003), and a turn read with the turns around it (±1,
±2 in its sitting) with the share of its words that are the speaker's own "I/my/we" (whole-search
recall@10 with the trees, paired on the same indexes: +0.0043 ± 0.0033 once, -0.0027 ± 0.0030 with
the questions embedded one at a time, whose vectors differ by ~1e-4 in cosine: what the search's
leave-one-conversation-out moves by from such noise alone, 0.8376-0.8409 for the same model).
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
CHUNK = 2048  # rows the trees score at once

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
class Trees:
    """Regression trees over the raw features whose leaves are summed: one row per tree in each node array.

    A node sends a row left when its feature is <= the threshold (a NaN goes where `default_left` says),
    and a leaf points to itself, so `depth` rounds of one lookup per tree walk every row down every tree
    at once (the candidates x trees matrix of node numbers), with numpy only.
    """

    feature: np.ndarray  # (trees, nodes) column of each split (0 at leaves)
    threshold: np.ndarray  # (trees, nodes) float64
    default_left: np.ndarray  # (trees, nodes) bool: where a NaN goes
    left: np.ndarray  # (trees, nodes) node number; a leaf is its own child
    right: np.ndarray
    value: np.ndarray  # (trees, nodes) a leaf's output (0 at splits)
    depth: int

    def __post_init__(self) -> None:
        # flattened (node t*nodes + i), with each node's two children side by side (right, left): a step down
        # is one 1-D lookup of node*2 + went_left, and the splits are decided all at once beforehand
        nodes = self.feature.shape[1] if self.feature.ndim == 2 else 0
        offset = (np.arange(len(self.feature)) * nodes)[:, None]
        children = np.stack([(self.right + offset).ravel(), (self.left + offset).ravel()], axis=1).ravel()
        for name, value in (("_children", children), ("_feature", self.feature.ravel()), ("_roots", offset.ravel()),
                            ("_threshold", self.threshold.ravel()[:, None]), ("_default_left", self.default_left.ravel()[:, None]),
                            ("_value", self.value.ravel())):
            object.__setattr__(self, name, np.ascontiguousarray(value))

    def score(self, features: np.ndarray) -> np.ndarray:
        """Every row's sum of leaf values: all splits decided at once (nodes x rows), then `depth` steps down."""
        rows = len(features)
        if rows > CHUNK:  # nodes x rows decisions: bounded, for scoring a whole data set at once
            return np.concatenate([self.score(features[i : i + CHUNK]) for i in range(0, rows, CHUNK)])
        x = np.ascontiguousarray(features.T, dtype=np.float64)[self._feature]  # type: ignore[attr-defined]
        went_left = x <= self._threshold  # type: ignore[attr-defined]
        if np.isnan(features).any():
            went_left = np.where(np.isnan(x), self._default_left, went_left)  # type: ignore[attr-defined]
        decided = went_left.ravel()
        node = np.repeat(self._roots[:, None], rows, axis=1)  # type: ignore[attr-defined]
        column = np.arange(rows)
        for _ in range(self.depth):
            node = self._children[node * 2 + decided[node * rows + column]]  # type: ignore[attr-defined]
        return np.asarray(self._value[node].sum(axis=0), dtype=np.float64)  # type: ignore[attr-defined]

    def to_dict(self) -> dict[str, object]:
        return {"depth": self.depth, "feature": self.feature.tolist(), "threshold": self.threshold.tolist(),
                "default_left": self.default_left.astype(int).tolist(), "left": self.left.tolist(),
                "right": self.right.tolist(), "value": self.value.tolist()}

    @classmethod
    def from_dict(cls, data: dict[str, object], columns: int) -> Trees:
        def array(key: str, dtype: type) -> np.ndarray:
            return np.asarray(data[key], dtype=dtype)

        feature, left, right = array("feature", np.int64), array("left", np.int64), array("right", np.int64)
        threshold, value, default_left = array("threshold", np.float64), array("value", np.float64), array("default_left", bool)
        depth = int(data["depth"])  # type: ignore[call-overload]
        shape = feature.shape
        if (len(shape) != 2 or any(a.shape != shape for a in (threshold, default_left, left, right, value)) or depth < 0
                or (feature.size and (feature.min() < 0 or feature.max() >= columns))
                or (left.size and (min(left.min(), right.min()) < 0 or max(left.max(), right.max()) >= shape[1]))):
            raise ValueError("a ranker's trees need node arrays of one shape, features and children in range")
        return cls(feature, threshold, default_left, left, right, value, depth)


@dataclass(frozen=True)
class Ranker:
    """Linear weights over standardised features, plus (when fitted) trees over the raw features that correct
    the linear score; `candidates` is how many first-stage items it reorders."""

    features: tuple[str, ...]
    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray
    candidates: int
    trees: Trees | None = None

    def linear(self, features: np.ndarray) -> np.ndarray:
        """The linear part alone (what the trees were fitted on top of)."""
        return np.asarray(((features - self.mean) / self.scale) @ self.weights, dtype=np.float64)

    def score(self, features: np.ndarray) -> np.ndarray:
        """One score per row of `features` (columns in `self.features` order); higher ranks first."""
        linear = self.linear(features)
        return linear if self.trees is None else linear + self.trees.score(features)

    def to_json(self, **about: object) -> str:
        head = json.dumps({**about, "candidates": self.candidates, "features": list(self.features),
                           "mean": _rounded(self.mean), "scale": _rounded(self.scale), "weights": _rounded(self.weights)},
                          indent=1)
        if self.trees is None:
            return head
        # the trees' node arrays one tree a line: readable, and a tenth of the size of one number a line
        rows = {key: "[\n" + ",\n".join(json.dumps(row) for row in values) + "]" if isinstance(values, list) else json.dumps(values)
                for key, values in self.trees.to_dict().items()}
        trees = "{\n" + ",\n".join(f"  {json.dumps(key)}: {text}" for key, text in rows.items()) + "}"
        return head[:-2] + ',\n "trees": ' + trees + "\n}"

    @classmethod
    def from_json(cls, text: str) -> Ranker:
        data = json.loads(text)
        features = tuple(data["features"])
        mean, scale, weights = (np.asarray(data[key], dtype=np.float64) for key in ("mean", "scale", "weights"))
        if any(a.shape != (len(features),) for a in (mean, scale, weights)) or int(data["candidates"]) < 1:
            raise ValueError("a ranker file needs one mean, scale and weight per feature and candidates >= 1")
        trees = Trees.from_dict(data["trees"], len(features)) if data.get("trees") is not None else None
        return cls(features, mean, scale, weights, int(data["candidates"]), trees)


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
