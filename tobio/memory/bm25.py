"""Okapi BM25 over a growing set of documents, with postings so a query touches only matching documents."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping

import numpy as np


class _Posting:
    """One term's documents and term frequencies, in numpy arrays grown by doubling (`n` used)."""

    __slots__ = ("docs", "tfs", "n")

    def __init__(self) -> None:
        self.docs = np.empty(2, dtype=np.int64)
        self.tfs = np.empty(2, dtype=np.float32)
        self.n = 0

    def append(self, doc: int, tf: float) -> None:
        n = self.n
        if n == len(self.docs):
            self.docs = grow(self.docs, n)
            self.tfs = grow(self.tfs, n)
        self.docs[n] = doc
        self.tfs[n] = tf
        self.n = n + 1

    def find(self, doc: int) -> int:
        """Where `doc` is in the arrays (it must be there)."""
        return int(np.flatnonzero(self.docs[: self.n] == doc)[0])

    def remove(self, doc: int) -> None:
        """Drop `doc`, moving the last entry into its place (postings are unordered)."""
        at, last = self.find(doc), self.n - 1
        self.docs[at] = self.docs[last]
        self.tfs[at] = self.tfs[last]
        self.n = last


class BM25:
    """Incremental BM25 (k1, b as in Robertson & Zaragoza); `scores(query)` gives one score per document.

    A document is a list of terms or a term → weight mapping: weights below 1 let context (the turns
    before a message) count for less than the message's own words, with the same saturation.
    Adding is amortised O(terms of the document) and scoring touches only the queried terms' postings
    (plus one zeroed array of scores): everything is kept in numpy arrays grown by doubling. A document
    can be replaced in place (`replace`), touching only the postings of the terms that changed.
    """

    def __init__(self, k1: float = 1.2, b: float = 0.75) -> None:
        self.k1 = k1
        self.b = b
        self.postings: dict[str, _Posting] = {}
        self._lengths = np.empty(64, dtype=np.float32)
        self._n = 0

    def __len__(self) -> int:
        return self._n

    @property
    def lengths(self) -> np.ndarray:
        """Each document's length (sum of its term weights)."""
        return self._lengths[: self._n]

    def add(self, words: list[str] | Mapping[str, float]) -> int:
        """Add a document (its terms, or term → weight); returns its index."""
        doc = self._n
        counts = words if isinstance(words, Mapping) else Counter(words)
        postings = self.postings
        for term, tf in counts.items():
            posting = postings.get(term)
            if posting is None:
                posting = postings[term] = _Posting()
            posting.append(doc, tf)
        length = float(sum(counts.values()))
        if doc == len(self._lengths):
            self._lengths = grow(self._lengths, doc)
        self._lengths[doc] = length
        self._n = doc + 1
        return doc

    def replace(self, doc: int, old: Mapping[str, float], new: Mapping[str, float]) -> None:
        """Make document `doc`, which was added (or last replaced) as `old`, the term → weight mapping `new`.

        Terms only in `old` drop the document from their postings (so document frequencies stay
        right), terms only in `new` get it, shared terms whose weight changed are updated in place:
        afterwards the scores are those of an index that was given `new` in the first place.
        """
        postings = self.postings
        for term in old:
            if term not in new:
                posting = postings[term]
                posting.remove(doc)
                if not posting.n:
                    del postings[term]
        for term, tf in new.items():
            before = old.get(term)
            if before is None:
                found = postings.get(term)
                if found is None:
                    found = postings[term] = _Posting()
                found.append(doc, tf)
            elif before != tf:
                posting = postings[term]
                posting.tfs[posting.find(doc)] = tf
        self._lengths[doc] = float(sum(new.values()))

    def scores(self, query: list[str]) -> np.ndarray:
        n = self._n
        out = np.zeros(n, dtype=np.float32)
        if not n:
            return out
        all_lengths = self._lengths
        # summed afresh (~10 µs at 20k documents) rather than kept as a running total: the same value
        # however the documents were added and replaced, and no drift from adding and subtracting
        avg = float(all_lengths[:n].sum(dtype=np.float64)) / n or 1.0
        for term in set(query):
            posting = self.postings.get(term)
            if posting is None or not posting.n:
                continue
            m = posting.n
            idf = math.log(1 + (n - m + 0.5) / (m + 0.5))
            docs = posting.docs[:m]
            tfs = posting.tfs[:m]
            lengths = all_lengths[docs]
            out[docs] += idf * tfs * (self.k1 + 1) / (tfs + self.k1 * (1 - self.b + self.b * lengths / avg))
        return out


def grow(array: np.ndarray, used: int) -> np.ndarray:
    """A copy of `array` with twice the room along its first axis (the first `used` rows kept)."""
    bigger = np.empty((max(2 * len(array), 1), *array.shape[1:]), dtype=array.dtype)
    bigger[:used] = array[:used]
    return bigger
