"""Train the learned appraisal head on EmoBank: `python -m tobio.emotion.train MIRROR [--out FILE]`.

EmoBank (Buechel & Hahn 2017, CC-BY-SA 4.0) has 10,062 English sentences rated for valence, arousal
and dominance (1-5, Self-Assessment Manikin) by readers and by writers; its `split` column fixes
train 8,062 / dev 1,000 / test 1,000. The head is a ridge regression from the MiniLM vector that memory
already computes for every message to the *reader's* ratings (an agent appraises what it reads). Alpha
and the weight of the sentences before one (its context) are chosen on dev; test is never looked at
here (bench/emotion.py reports it). Numpy's least squares: no scikit-learn.

MIRROR is EmoBank's repository: a git directory (read with `git show HEAD:corpus/...`) or a checkout.
Embeddings are cached beside the output (`--cache`), since embedding 10k sentences takes minutes.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from tobio.emotion.head import HEAD_PATH, Head

Array = npt.NDArray[np.float64]
ALPHAS = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)
CONTEXT_WEIGHTS = (0.0, 0.1, 0.2, 0.3, 0.5)
EMBEDDER = "all-MiniLM-L6-v2"


@dataclass(frozen=True)
class Corpus:
    """EmoBank's sentences in file order, with reader ratings (V, A, D) and split."""

    ids: list[str]
    texts: list[str]
    splits: list[str]
    ratings: Array  # (n, 3) reader V, A, D

    def where(self, split: str) -> npt.NDArray[np.intp]:
        return np.array([i for i, s in enumerate(self.splits) if s == split], dtype=np.intp)

    def previous(self) -> list[int]:
        """For each sentence, the index of the one before it in the same document (-1 for none): ids are
        DOCUMENT_START_END, and the corpus lists a document's sentences in order."""
        out = []
        for i, sid in enumerate(self.ids):
            doc = sid.rsplit("_", 2)[0]
            out.append(i - 1 if i and self.ids[i - 1].rsplit("_", 2)[0] == doc else -1)
        return out


def _read(mirror: Path, name: str) -> str:
    """corpus/NAME from a checkout, or from a git directory's HEAD."""
    path = mirror / "corpus" / name
    if path.is_file():
        return path.read_text(encoding="utf-8")
    done = subprocess.run(["git", "-C", str(mirror), "show", f"HEAD:corpus/{name}"], capture_output=True, text=True)
    if done.returncode:
        raise FileNotFoundError(f"{mirror} is not EmoBank (no corpus/{name}): {done.stderr.strip()}")
    return done.stdout


def load_corpus(mirror: Path) -> Corpus:
    """The sentences that have reader ratings (all of emobank.csv's), with their split. `mirror` may also be
    one CSV of id,split,V,A,D,text rows with reader ratings (a sample such as tests/data/emobank_sample.csv)."""
    if mirror.is_file():
        rows = list(csv.DictReader(io.StringIO(mirror.read_text(encoding="utf-8"))))
        return Corpus([r["id"] for r in rows], [r["text"] for r in rows], [r["split"] for r in rows],
                      np.array([[float(r[k] or "nan") for k in "VAD"] for r in rows]))
    reader = {row["id"]: row for row in csv.DictReader(io.StringIO(_read(mirror, "reader.csv")))}
    rows = [row for row in csv.DictReader(io.StringIO(_read(mirror, "emobank.csv"))) if row["id"] in reader]
    ratings = np.array([[float(reader[r["id"]][k]) for k in "VAD"] for r in rows])
    return Corpus([r["id"] for r in rows], [r["text"] for r in rows], [r["split"] for r in rows], ratings)


def embed(texts: Sequence[str], cache: Path | None) -> Array:
    """MiniLM vectors as memory computes them (llama.cpp), cached by the texts' content."""
    import hashlib

    key = hashlib.sha256("\n".join(texts).encode()).hexdigest()[:16]
    if cache is not None and cache.is_file():
        stored = np.load(cache)
        if str(stored["key"]) == key:
            return np.asarray(stored["vectors"], dtype=np.float64)
    from tobio.providers.embedder import load_embedder

    embedder = load_embedder(EMBEDDER)
    try:
        vectors = np.concatenate([embedder.encode(list(texts[i:i + 256]), normalize_embeddings=True)
                                  for i in range(0, len(texts), 256)]).astype(np.float64)
    finally:
        embedder.close()
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(cache, key=key, vectors=vectors.astype(np.float32))
    return vectors


def ridge(x: Array, y: Array, alpha: float) -> tuple[Array, Array]:
    """Weights (d, k) and intercept (k,) minimising |y - xW - b|² + alpha |W|² (intercept not penalised)."""
    mx, my = x.mean(axis=0), y.mean(axis=0)
    xc = x - mx
    weights = np.linalg.solve(xc.T @ xc + alpha * np.eye(x.shape[1]), xc.T @ (y - my))
    return weights, my - mx @ weights


def pearson(a: Array, b: Array) -> float:
    return float(np.corrcoef(a, b)[0, 1])


def in_context(vectors: Array, previous: Sequence[int], weight: float) -> Array:
    """Each vector mixed with the one before it in its document (weight `weight`), the way the module mixes
    a message with the messages before it in its channel."""
    out = vectors.copy()
    if weight:
        for i, j in enumerate(previous):
            if j >= 0:
                out[i] = (1 - weight) * vectors[i] + weight * vectors[j]
    return out


def fit(corpus: Corpus, vectors: Array) -> tuple[Head, dict[str, Any]]:
    """The head with alpha (per dimension) and context weight chosen on dev (with dev's correlations for
    the train-only fit), then fitted again on train and dev together with those choices."""
    train, dev = corpus.where("train"), corpus.where("dev")
    both = np.concatenate([train, dev])
    previous = corpus.previous()
    y = corpus.ratings
    best: dict[str, Any] = {}
    weights = np.zeros((vectors.shape[1], 3))
    intercept = np.zeros(3)
    for k, name in enumerate("vad"):
        scores = {}
        for alpha in ALPHAS:
            w, b = ridge(vectors[train], y[train, k:k + 1], alpha)
            scores[alpha] = (pearson(vectors[dev] @ w[:, 0] + b[0], y[dev, k]), w, b)
        alpha = max(scores, key=lambda a: scores[a][0])
        weights[:, k], intercept[k] = scores[alpha][1][:, 0], scores[alpha][2][0]
        best[f"alpha_{name}"] = alpha
    dev_context = {}
    for weight in CONTEXT_WEIGHTS:
        mixed = in_context(vectors, previous, weight)[dev] @ weights + intercept
        dev_context[weight] = float(np.mean([pearson(mixed[:, k], y[dev, k]) for k in range(3)]))
    context = max(dev_context, key=lambda w: dev_context[w])
    predicted = in_context(vectors, previous, context)[dev] @ weights + intercept
    best.update({f"dev_r_{n}": round(pearson(predicted[:, k], y[dev, k]), 4) for k, n in enumerate("vad")})
    best["context_weight"] = context
    for k, name in enumerate("vad"):  # the final weights: train + dev, the alphas chosen above
        w, b = ridge(vectors[both], y[both, k:k + 1], best[f"alpha_{name}"])
        weights[:, k], intercept[k] = w[:, 0], b[0]
    # Deltas: a prediction's distance from the scale's neutral 3, in units of the train ratings' spread.
    spread = y[train].std(axis=0)
    head = Head(weights, intercept, center=np.full(3, 3.0), scale=2.5 * spread, context_weight=context,
                meta={"embedder": EMBEDDER, "trained_on": "EmoBank train+dev splits (alpha and context weight chosen on dev), reader ratings",
                      "license": "CC-BY-SA 4.0 (weights derived from EmoBank, Buechel & Hahn 2017)", **best})
    return head, best


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mirror", type=Path, nargs="?", default=Path("/work/.mirror/JULIELab+EmoBank/repo"),
                        help="EmoBank's repository (git directory or checkout)")
    parser.add_argument("--out", type=Path, default=HEAD_PATH, help="where to write the head (JSON)")
    parser.add_argument("--cache", type=Path, default=None, help="embeddings cache (.npz); none by default")
    args = parser.parse_args(argv)
    corpus = load_corpus(args.mirror)
    vectors = embed(corpus.texts, args.cache)
    head, report = fit(corpus, vectors)
    head.save(args.out)
    json.dump(report, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
