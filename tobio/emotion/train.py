"""Train the learned appraisal head on EmoBank: `python -m tobio.emotion.train MIRROR [--out FILE]`.

EmoBank (Buechel & Hahn 2017, CC-BY-SA 4.0) has 10,062 English sentences rated for valence, arousal
and dominance (1-5, Self-Assessment Manikin) by readers and by writers; its `split` column fixes
train 8,062 / dev 1,000 / test 1,000. The head (head.py) maps the MiniLM vector that memory already
computes for every message, plus a few features of its words, to the *reader's* ratings (an agent
appraises what it reads), through one hidden layer; a ridge on the vector alone is fitted beside it.
Alpha, the weight of the sentences before one (its context) and the network's epochs are chosen on dev;
test is never looked at here (bench/emotion.py reports it). Numpy only: no scikit-learn, no torch.

What it learns from is chosen on dev too, by r with the *reader's* ratings: a network that learns
emobank.csv's ratings (readers' and writers' weighted together, less noisy) predicts readers better on
dev (r 0.615 / 0.439 / 0.279 for V/A/D; 0.613 / 0.431 / 0.281 in the spoken form below) than one that
learns the readers' alone (0.614 / 0.413 / 0.280; 0.614 / 0.419 / 0.279), so that is the default (`--target`).

Memory embeds a message as "name: text" (memory/text.py), so the network also learns from each sentence
in that form (names taking turns): on dev, against readers, that raised r on the spoken form from
0.605 / 0.386 / 0.260 to 0.613 / 0.431 / 0.281 and left the plain form's mean r as it was.

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

from tobio.emotion.head import HEAD_PATH, Head, Network, features

Array = npt.NDArray[np.float64]
ALPHAS = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)
CONTEXT_WEIGHTS = (0.0, 0.1, 0.2, 0.3, 0.5)
HIDDEN, DROPOUT, DECAY, RATE, BATCH, EPOCHS = 256, 0.5, 1e-3, 3e-4, 64, 30  # chosen on dev among 4 settings (REPORT)
EMBEDDER = "all-MiniLM-L6-v2"
# Names for the spoken form of the training sentences (bench/emotion.py reads its test as "ada", not among them).
SPEAKERS = ("ben", "caroline", "melanie", "joanna", "nate", "sam", "maria", "john", "li", "omar", "priya", "tom",
            "eva", "kofi", "yuki", "lucas")


@dataclass(frozen=True)
class Corpus:
    """EmoBank's sentences in file order, with reader ratings (V, A, D) and split."""

    ids: list[str]
    texts: list[str]
    splits: list[str]
    ratings: Array  # (n, 3) reader V, A, D
    combined: Array | None = None  # (n, 3) emobank.csv's V, A, D: readers' and writers' ratings weighted together

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
    one CSV of id,split,V,A,D,text rows with reader ratings (a sample such as tests/data/emobank_sample.csv),
    and cV,cA,cD columns with emobank.csv's combined ratings."""
    if mirror.is_file():
        rows = list(csv.DictReader(io.StringIO(mirror.read_text(encoding="utf-8"))))
        sample_combined = (np.array([[float(r["c" + k] or "nan") for k in "VAD"] for r in rows])
                           if rows and "cV" in rows[0] else None)
        return Corpus([r["id"] for r in rows], [r["text"] for r in rows], [r["split"] for r in rows],
                      np.array([[float(r[k] or "nan") for k in "VAD"] for r in rows]), sample_combined)
    reader = {row["id"]: row for row in csv.DictReader(io.StringIO(_read(mirror, "reader.csv")))}
    rows = [row for row in csv.DictReader(io.StringIO(_read(mirror, "emobank.csv"))) if row["id"] in reader]
    ratings = np.array([[float(reader[r["id"]][k]) for k in "VAD"] for r in rows])
    combined = np.array([[float(r[k]) for k in "VAD"] for r in rows])
    return Corpus([r["id"] for r in rows], [r["text"] for r in rows], [r["split"] for r in rows], ratings, combined)


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


def spoken_texts(texts: Sequence[str]) -> list[str]:
    """The sentences as memory embeds a message, "name: text" (memory/text.py), names taking turns."""
    return [f"{SPEAKERS[i % len(SPEAKERS)]}: {text}" for i, text in enumerate(texts)]


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


class Trainer:
    """One hidden ReLU layer trained with Adam on standardised inputs and targets (squared error, dropout
    on the hidden layer, L2 decay), seeded: the same data gives the same network."""

    def __init__(self, inputs: Array, targets: Array, hidden: int = HIDDEN, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)
        self.x_mean, self.x_scale = inputs.mean(axis=0), inputs.std(axis=0) + 1e-6
        self.y_mean, self.y_scale = targets.mean(axis=0), targets.std(axis=0) + 1e-6
        self.x = (inputs - self.x_mean) / self.x_scale
        self.y = (targets - self.y_mean) / self.y_scale
        d, k = inputs.shape[1], targets.shape[1]
        self.params = [self.rng.normal(0, d ** -0.5, (d, hidden)), np.zeros(hidden),
                       self.rng.normal(0, hidden ** -0.5, (hidden, k)), np.zeros(k)]
        self.moments = [(np.zeros_like(p), np.zeros_like(p)) for p in self.params]
        self.steps = 0

    def epoch(self) -> None:
        w1, b1, w2, b2 = self.params
        order = self.rng.permutation(len(self.x))
        for start in range(0, len(order), BATCH):
            rows = order[start:start + BATCH]
            x, y = self.x[rows], self.y[rows]
            hidden = np.maximum(0.0, x @ w1 + b1)
            keep = (self.rng.random(hidden.shape) > DROPOUT) / (1 - DROPOUT)
            dropped = hidden * keep
            error = 2 * (dropped @ w2 + b2 - y) / len(rows)
            back = (error @ w2.T) * keep * (hidden > 0)
            grads = [x.T @ back + DECAY * w1, back.sum(axis=0), dropped.T @ error + DECAY * w2, error.sum(axis=0)]
            self.steps += 1
            for param, grad, (m, v) in zip(self.params, grads, self.moments):
                m *= 0.9
                m += 0.1 * grad
                v *= 0.999
                v += 0.001 * grad * grad
                param -= RATE * (m / (1 - 0.9 ** self.steps)) / (np.sqrt(v / (1 - 0.999 ** self.steps)) + 1e-8)

    def network(self) -> Network:
        w1, b1, w2, b2 = (p.copy() for p in self.params)
        return Network(self.x_mean, self.x_scale, w1, b1, w2, b2, self.y_mean, self.y_scale)


def inputs(vectors: Array, texts: Sequence[str]) -> Array:
    """What the network reads: the vector, then `features(text)`."""
    return np.hstack([vectors, np.array([features(t) for t in texts], dtype=np.float64)])


def train_network(x: Array, y: Array, dev_xs: Sequence[Array], dev_y: Array,
                  epochs: int = EPOCHS) -> tuple[Network, int, list[list[float]]]:
    """A network trained on (x, y), kept at the epoch whose mean r over V/A/D on dev (each of `dev_xs`, the
    same sentences written differently, against `dev_y`) is highest; that epoch and its r per dimension
    on each of `dev_xs`."""
    trainer = Trainer(x, y)
    best: tuple[float, Network, int, list[list[float]]] | None = None
    for epoch in range(1, epochs + 1):
        trainer.epoch()
        network = trainer.network()
        rs = [[pearson(predicted[:, k], dev_y[:, k]) for k in range(y.shape[1])] for predicted in map(network, dev_xs)]
        if best is None or float(np.mean(rs)) > best[0]:
            best = (float(np.mean(rs)), network, epoch, rs)
    assert best is not None
    return best[1], best[2], best[3]


def fit(corpus: Corpus, vectors: Array, epochs: int = EPOCHS, target: str = "reader",
        spoken: Array | None = None) -> tuple[Head, dict[str, Any]]:
    """The head with alpha (per dimension), context weight and the network's epochs chosen on dev (with
    dev's correlations for the train-only fits), then fitted again on train and dev together with those
    choices. `target`: the reader's ratings, or emobank.csv's readers and writers combined. `spoken`: the
    vectors of the same sentences as memory embeds a message ("name: text"); the network then learns from
    both forms and its epochs are chosen on both."""
    train, dev = corpus.where("train"), corpus.where("dev")
    both = np.concatenate([train, dev])
    previous = corpus.previous()
    y = corpus.ratings if target == "reader" else corpus.combined
    if y is None:
        raise ValueError(f"this corpus has no {target} ratings")
    best: dict[str, Any] = {"target": target}
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
        best[f"dev_r_{name}_linear"] = round(scores[alpha][0], 4)
    dev_context = {}
    for weight in CONTEXT_WEIGHTS:
        mixed = in_context(vectors, previous, weight)[dev] @ weights + intercept
        dev_context[weight] = float(np.mean([pearson(mixed[:, k], y[dev, k]) for k in range(3)]))
    context = max(dev_context, key=lambda w: dev_context[w])
    best["context_weight"] = context
    mixed_vectors = in_context(vectors, previous, context)
    x = inputs(mixed_vectors, corpus.texts)
    forms = [x]
    if spoken is not None:  # the words' features are the same: memory's vector has the name, the text does not
        forms.append(np.hstack([in_context(spoken, previous, context), x[:, vectors.shape[1]:]]))
    # Whatever it learns from, the network is judged by how well it predicts readers: its epochs (and
    # which target ships) are chosen by r with the readers' ratings on dev.
    _, chosen, dev_rs = train_network(np.vstack([f[train] for f in forms]), np.vstack([y[train]] * len(forms)),
                                      [f[dev] for f in forms], corpus.ratings[dev], epochs)
    best["epochs"] = chosen
    for suffix, rs in zip(("", "_spoken"), dev_rs):
        best.update({f"dev_r_{n}{suffix}": round(r, 4) for n, r in zip("vad", rs)})
    for k, name in enumerate("vad"):  # the final weights: train + dev, the alphas chosen above
        w, b = ridge(vectors[both], y[both, k:k + 1], best[f"alpha_{name}"])
        weights[:, k], intercept[k] = w[:, 0], b[0]
    trainer = Trainer(np.vstack([f[both] for f in forms]), np.vstack([y[both]] * len(forms)))
    for _ in range(chosen):
        trainer.epoch()
    # Deltas: a prediction's distance from the scale's neutral 3, in units of the readers' spread on train
    # (whatever the head learned from, a push means what it meant when it learned the readers' alone).
    spread = corpus.ratings[train].std(axis=0)
    head = Head(weights, intercept, center=np.full(3, 3.0), scale=2.5 * spread, context_weight=context,
                meta={"embedder": EMBEDDER,
                      "trained_on": f"EmoBank train+dev splits (alpha, context weight and epochs chosen on dev), {target} ratings",
                      "license": "CC-BY-SA 4.0 (weights derived from EmoBank, Buechel & Hahn 2017)", **best},
                network=trainer.network())
    return head, best


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mirror", type=Path, nargs="?", default=Path("/work/.mirror/JULIELab+EmoBank/repo"),
                        help="EmoBank's repository (git directory or checkout)")
    parser.add_argument("--out", type=Path, default=HEAD_PATH, help="where to write the head (JSON)")
    parser.add_argument("--cache", type=Path, default=None, help="embeddings cache (.npz); none by default")
    parser.add_argument("--target", choices=("reader", "combined"), default="combined",
                        help="the ratings learned: readers' and writers' combined (default), or the reader's alone")
    args = parser.parse_args(argv)
    corpus = load_corpus(args.mirror)
    vectors = embed(corpus.texts, args.cache)
    spoken = embed(spoken_texts(corpus.texts), args.cache.with_name(f"{args.cache.stem}-spoken.npz") if args.cache else None)
    head, report = fit(corpus, vectors, target=args.target, spoken=spoken)
    head.save(args.out)
    json.dump(report, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
