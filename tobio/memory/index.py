"""One agent's memories in RAM: vectors, BM25 postings, times and importance, scored in numpy.

The database is the record; this is a cache built from it (only what was pushed to the agent's
threads, minus what it was made to forget) and extended as new items are indexed. Scoring in numpy is
the portable path: the same on DuckDB, SQLite and PostgreSQL, and ~1 ms for thousands of memories.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np

from tobio.memory.bm25 import BM25
from tobio.memory.config import MemoryConfig
from tobio.memory.text import terms


@dataclass(frozen=True)
class Item:
    """A memory as the index holds it."""

    kind: str  # message | summary
    source_id: int
    created_at: datetime
    importance: float
    sender: str | None
    content: str


@dataclass(frozen=True)
class Hit:
    """A retrieved memory with the parts of its score."""

    item: Item
    score: float
    relevance: float
    recency: float
    importance: float


class AgentIndex:
    """Append-only arrays plus a mask for forgotten items."""

    def __init__(self, agent_id: int) -> None:
        self.agent_id = agent_id
        self.items: list[Item] = []
        self._vectors: list[np.ndarray] = []
        self._matrix: np.ndarray | None = None
        self._times: list[float] = []
        self._importance: list[float] = []
        self._alive: list[bool] = []
        self._keys: dict[tuple[str, int], int] = {}
        self.bm25 = BM25()

    def __len__(self) -> int:
        return sum(self._alive)

    def add(self, item: Item, vector: np.ndarray) -> None:
        key = (item.kind, item.source_id)
        if key in self._keys:
            return
        self._keys[key] = len(self.items)
        self.items.append(item)
        self._vectors.append(np.asarray(vector, dtype=np.float32))
        self._times.append(item.created_at.timestamp())
        self._importance.append(item.importance)
        self._alive.append(True)
        self.bm25.add(terms(item.content))
        self._matrix = None

    def forget(self, kind: str, source_id: int) -> None:
        position = self._keys.get((kind, source_id))
        if position is not None:
            self._alive[position] = False

    def search(
        self, query: str, vector: np.ndarray, config: MemoryConfig, k: int, exclude: set[tuple[str, int]] = frozenset()  # type: ignore[assignment]
    ) -> list[Hit]:
        """Top k by w_rel·relevance + w_rec·recency + w_imp·importance, each component in 0..1."""
        if not self.items or k <= 0:
            return []
        if self._matrix is None:
            self._matrix = np.vstack(self._vectors)
        cosine = self._matrix @ np.asarray(vector, dtype=np.float32)
        relevance = config.hybrid_alpha * _minmax(cosine)
        if config.hybrid_alpha < 1:
            lexical = self.bm25.scores(terms(query))
            top = float(lexical.max())
            if top > 0:
                relevance += (1 - config.hybrid_alpha) * lexical / top
        times = np.asarray(self._times)
        age_hours = (times.max() - times) / 3600.0  # subjective: relative to the agent's latest memory
        recency = np.power(0.5, age_hours / config.recency_half_life_hours)
        importance = np.asarray(self._importance, dtype=np.float32)
        score = config.w_relevance * relevance + config.w_recency * recency + config.w_importance * importance
        score = np.where(np.asarray(self._alive), score, -np.inf)
        for key in exclude:
            position = self._keys.get(key)
            if position is not None:
                score[position] = -np.inf
        count = min(k, len(score))
        best = np.argpartition(-score, count - 1)[:count]
        best = best[np.argsort(-score[best])]
        return [
            Hit(self.items[i], float(score[i]), float(relevance[i]), float(recency[i]), float(importance[i]))
            for i in best
            if np.isfinite(score[i])
        ]


def _minmax(values: np.ndarray) -> np.ndarray:
    low, high = float(values.min()), float(values.max())
    return (values - low) / (high - low) if high > low else np.zeros_like(values)
