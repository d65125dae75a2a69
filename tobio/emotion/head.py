"""The learned appraisal head: a linear map from a message's MiniLM vector to the reader's valence,
arousal and dominance, trained on EmoBank (tobio/emotion/train.py).

The weights are data derived from EmoBank and carry its licence (CC-BY-SA 4.0), so they live in their
own file, data/emobank_head.json, with the attribution inside. A dot product of 384 numbers per message:
microseconds, on the vector memory computed anyway.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

HEAD_PATH = Path(__file__).with_name("data") / "emobank_head.json"
Array = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Head:
    """Ridge weights (d, 3) and intercept (3,) onto EmoBank's 1-5 V/A/D; `center` and `scale` turn a rating
    into a push in [-1, 1]; `context_weight` is the share of the messages before one in its appraisal."""

    weights: Array
    intercept: Array
    center: Array
    scale: Array
    context_weight: float = 0.0
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def dimension(self) -> int:
        return int(self.weights.shape[0])

    def ratings(self, vectors: Array) -> Array:
        """EmoBank-scale (1-5) V/A/D for each row of `vectors`, as a reader would rate it."""
        return np.asarray(vectors, dtype=np.float64) @ self.weights + self.intercept

    def push(self, vector: Array) -> tuple[float, float, float]:
        """One vector's V/A/D as a push in [-1, 1] each (0: what a neutral sentence gets)."""
        rated = self.ratings(np.asarray(vector, dtype=np.float64)[None, :])[0]
        p, a, d = np.clip((rated - self.center) / self.scale, -1.0, 1.0)
        return float(p), float(a), float(d)

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        data = {"meta": self.meta, "context_weight": self.context_weight,
                "center": self.center.round(6).tolist(), "scale": self.scale.round(6).tolist(),
                "intercept": self.intercept.round(6).tolist(),
                "weights": [[float(f"{w:.5g}") for w in row] for row in self.weights.T]}  # one row per dimension
        path.write_text(json.dumps(data, separators=(",", ":")) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: Path = HEAD_PATH) -> Head:
        data = json.loads(path.read_text(encoding="utf-8"))
        return cls(np.array(data["weights"], dtype=np.float64).T, np.array(data["intercept"], dtype=np.float64),
                   np.array(data["center"], dtype=np.float64), np.array(data["scale"], dtype=np.float64),
                   float(data["context_weight"]), dict(data["meta"]))


@lru_cache(maxsize=1)
def shipped() -> Head:
    """The head that ships with Tobio (loaded once)."""
    return Head.load(HEAD_PATH)
