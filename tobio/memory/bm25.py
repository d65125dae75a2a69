"""Okapi BM25 over a growing set of documents, with postings so a query touches only matching documents."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np


class BM25:
    """Incremental BM25 (k1, b as in Robertson & Zaragoza); `scores(query)` gives one score per document."""

    def __init__(self, k1: float = 1.2, b: float = 0.75) -> None:
        self.k1 = k1
        self.b = b
        self.postings: dict[str, list[tuple[int, int]]] = {}
        self.lengths: list[int] = []
        self._total = 0
        self._lengths_np: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.lengths)

    def add(self, words: list[str]) -> int:
        """Add a document (its terms); returns its index."""
        doc = len(self.lengths)
        for term, tf in Counter(words).items():
            self.postings.setdefault(term, []).append((doc, tf))
        self.lengths.append(len(words))
        self._total += len(words)
        self._lengths_np = None
        return doc

    def scores(self, query: list[str]) -> np.ndarray:
        n = len(self.lengths)
        out = np.zeros(n, dtype=np.float32)
        if not n:
            return out
        avg = self._total / n or 1.0
        if self._lengths_np is None:
            self._lengths_np = np.asarray(self.lengths, dtype=np.float32)
        for term in set(query):
            posting = self.postings.get(term)
            if not posting:
                continue
            idf = math.log(1 + (n - len(posting) + 0.5) / (len(posting) + 0.5))
            docs = np.fromiter((d for d, _ in posting), dtype=np.int64, count=len(posting))
            tfs = np.fromiter((t for _, t in posting), dtype=np.float32, count=len(posting))
            lengths = self._lengths_np[docs]
            out[docs] += idf * tfs * (self.k1 + 1) / (tfs + self.k1 * (1 - self.b + self.b * lengths / avg))
        return out
