"""The learned appraisal head: from a message's MiniLM vector and a few features of its words to the
reader's valence, arousal and dominance, trained on EmoBank (tobio/emotion/train.py).

Two parts, both in one file:
- a small network (one hidden ReLU layer) on the vector plus `features(text)` (VADER's four scores and
  the text's punctuation, shouting, negation and length): what a message is appraised with. On EmoBank's
  dev split it beat a linear map on the vector alone by 0.03-0.05 r on each dimension (train.py);
- a linear map on the vector alone (ridge), for what has a vector and no words: mood-congruent recall
  scores stored memories with it (module.py).

The weights are data derived from EmoBank and carry its licence (CC-BY-SA 4.0), so they live in their
own file, data/emobank_head.json, with the attribution inside. Per message: VADER on a bounded window of
the text and a 394 x 256 product, about 0.1 ms, on the vector memory computed anyway.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

HEAD_PATH = Path(__file__).with_name("data") / "emobank_head.json"
Array = npt.NDArray[np.float64]
FEATURES = ("vader_compound", "vader_pos", "vader_neg", "vader_neu", "exclamations", "questions", "caps_share",
            "negations", "log_words", "quoted")
_NEGATION = re.compile(r"\b(?:not|no|never|nothing|nobody|none|neither|nor|cannot)\b|n't", re.IGNORECASE)


def features(text: str) -> list[float]:
    """The words' share of the appraisal (FEATURES, in order): VADER's scores averaged over the bounded
    window the lexicon appraiser reads (appraise.pieces), and counts a lexicon misses."""
    from tobio.emotion.appraise import _vader, pieces

    window = pieces(text)
    scores = [_vader().polarity_scores(piece) for piece in window]
    vader = [sum(s[k] for s in scores) / len(scores) for k in ("compound", "pos", "neg", "neu")]
    shown = "".join(window)
    words = shown.split()
    caps = sum(1 for w in words if len(w) >= 2 and w.isupper())
    return [*vader, float(min(shown.count("!"), 10)), float(min(shown.count("?"), 10)), caps / max(1, len(words)),
            float(min(len(_NEGATION.findall(shown)), 10)), float(np.log1p(len(words))), float('"' in shown or "'" in shown)]


def _pack(a: Array) -> dict[str, Any]:
    """An array as float16 bytes in base64 (a quarter of the size of decimal text, and exact as stored)."""
    return {"shape": list(a.shape), "f16": base64.b64encode(a.astype("<f2").tobytes()).decode("ascii")}


def _unpack(d: dict[str, Any]) -> Array:
    raw = np.frombuffer(base64.b64decode(d["f16"]), dtype="<f2")
    return raw.astype(np.float64).reshape(d["shape"])


@dataclass(frozen=True)
class Network:
    """Inputs standardised by (`x_mean`, `x_scale`), one hidden ReLU layer, outputs unstandardised by
    (`y_mean`, `y_scale`) onto EmoBank's 1-5 scale."""

    x_mean: Array
    x_scale: Array
    w1: Array
    b1: Array
    w2: Array
    b2: Array
    y_mean: Array
    y_scale: Array

    def __call__(self, inputs: Array) -> Array:
        hidden = np.maximum(0.0, ((inputs - self.x_mean) / self.x_scale) @ self.w1 + self.b1)
        out: Array = (hidden @ self.w2 + self.b2) * self.y_scale + self.y_mean
        return out

    def as_json(self) -> dict[str, Any]:
        return {k: _pack(getattr(self, k)) for k in ("w1", "w2")} | {
            k: getattr(self, k).round(6).tolist() for k in ("x_mean", "x_scale", "b1", "b2", "y_mean", "y_scale")}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Network:
        plain = {k: np.array(data[k], dtype=np.float64) for k in ("x_mean", "x_scale", "b1", "b2", "y_mean", "y_scale")}
        return cls(w1=_unpack(data["w1"]), w2=_unpack(data["w2"]), **plain)


@dataclass(frozen=True)
class Head:
    """`network` rates a (vector, text); the ridge `weights` (d, 3) and `intercept` (3,) rate a vector alone.
    `center` and `scale` turn a rating into a push in [-1, 1]; `context_weight` is the share of the
    messages before one in its appraisal."""

    weights: Array
    intercept: Array
    center: Array
    scale: Array
    context_weight: float = 0.0
    meta: dict[str, Any] = field(default_factory=dict)
    network: Network | None = None

    @property
    def dimension(self) -> int:
        return int(self.weights.shape[0])

    def linear(self, vectors: Array) -> Array:
        """EmoBank-scale (1-5) V/A/D for each row of `vectors` from the vector alone (the ridge)."""
        return np.asarray(vectors, dtype=np.float64) @ self.weights + self.intercept

    def ratings(self, vectors: Array, texts: Sequence[str]) -> Array:
        """EmoBank-scale (1-5) V/A/D for each row of `vectors` and its text, as a reader would rate it."""
        vectors = np.asarray(vectors, dtype=np.float64)
        if self.network is None:
            return self.linear(vectors)
        return self.network(np.hstack([vectors, np.array([features(t) for t in texts], dtype=np.float64)]))

    def push(self, vector: Array, text: str) -> tuple[float, float, float]:
        """One message's V/A/D as a push in [-1, 1] each (0: what a neutral sentence gets)."""
        rated = self.ratings(np.asarray(vector, dtype=np.float64)[None, :], [text])[0]
        p, a, d = np.clip((rated - self.center) / self.scale, -1.0, 1.0)
        return float(p), float(a), float(d)

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        data = {"meta": self.meta, "context_weight": self.context_weight, "features": list(FEATURES),
                "center": self.center.round(6).tolist(), "scale": self.scale.round(6).tolist(),
                "intercept": self.intercept.round(6).tolist(),
                "weights": [[float(f"{w:.5g}") for w in row] for row in self.weights.T],  # one row per dimension
                "network": self.network.as_json() if self.network is not None else None}
        path.write_text(json.dumps(data, separators=(",", ":")) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: Path = HEAD_PATH) -> Head:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("network") is not None and data.get("features") != list(FEATURES):
            raise ValueError(f"{path}: its network was trained on other features ({data.get('features')}); retrain it")
        return cls(np.array(data["weights"], dtype=np.float64).T, np.array(data["intercept"], dtype=np.float64),
                   np.array(data["center"], dtype=np.float64), np.array(data["scale"], dtype=np.float64),
                   float(data["context_weight"]), dict(data["meta"]),
                   Network.from_json(data["network"]) if data.get("network") else None)


@lru_cache(maxsize=1)
def shipped() -> Head:
    """The head that ships with Tobio (loaded once)."""
    return Head.load(HEAD_PATH)
