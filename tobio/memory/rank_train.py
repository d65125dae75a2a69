"""Fit the recall ranker (rank.py) and say honestly how well it does on conversations it did not see.

    python bench/locomo.py --train-ranker features.npz        # dev split only: candidates and their features
    python -m tobio.memory.rank_train features.npz            # cross-validate, then write memory/data/ranker.json

The model is linear in standardised features, fitted by each evidence item's softmax against its
question's candidates that are not evidence (evidence items do not compete with each other, as recall
wants them all; the listwise softmax over all candidates before it: CV recall@10 0.8278 -> 0.8308 on the
same features), plus an L2 penalty, by Adam in numpy (no new dependency). Questions whose evidence is not among the candidates teach nothing and are
left out of fitting (they still count, as misses, in the recall). The estimate of held-out recall is
leave-one-conversation-out: fit on the other conversations, score the one left out, pool the questions.
The ablation does the same with each feature group left out.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tobio.memory.rank import FEATURES, GROUPS, RANKER_PATH, Ranker

L2 = 1e-2
STEPS = 600
LEARNING_RATE = 0.05


@dataclass(frozen=True)
class Question:
    """One question's candidates (rows of features, first-stage order), which are evidence, and how many evidence items it has."""

    features: np.ndarray
    evidence: np.ndarray  # 1.0 where the candidate is one of the question's evidence turns
    wanted: int  # evidence turns in all (some may be outside the candidates)
    group: int  # the conversation it belongs to


def fit(questions: Sequence[Question], columns: Sequence[int], candidates: int) -> Ranker:
    """Linear weights over `columns` of the features (the others get weight 0), each evidence item's softmax
    against the question's other candidates that are not evidence."""
    stacked = np.concatenate([q.features for q in questions])
    mean = stacked.mean(axis=0)
    scale = stacked.std(axis=0) + 1e-9
    useful = [q for q in questions if q.evidence.any()]
    size = max(len(q.evidence) for q in useful)
    # pad to one (questions, candidates, features) array; padded rows get no probability
    x = np.zeros((len(useful), size, len(columns)))
    positive = np.zeros((len(useful), size), dtype=bool)
    pad = np.ones((len(useful), size), dtype=bool)
    for row, q in enumerate(useful):
        m = len(q.evidence)
        x[row, :m] = ((q.features - mean) / scale)[:, columns]
        positive[row, :m] = q.evidence > 0
        pad[row, :m] = False
    negative = ~pad & ~positive
    w = np.zeros(len(columns))
    first, second = np.zeros_like(w), np.zeros_like(w)
    for step in range(1, STEPS + 1):
        s = x @ w
        e = np.exp(s - np.where(pad, -np.inf, s).max(axis=1, keepdims=True))
        e[pad] = 0.0
        # each evidence item against the non-evidence candidates only: evidence items do not compete (recall wants them all)
        denominator = np.where(positive, e + (e * negative).sum(axis=1, keepdims=True), 1.0)
        share = np.where(positive, 1.0 / denominator, 0.0)
        slope = np.where(positive, e * share - 1.0, e * share.sum(axis=1, keepdims=True) * negative)
        grad = np.einsum("qm,qmf->f", slope / positive.sum(axis=1, keepdims=True), x) / len(x) + L2 * w
        first = 0.9 * first + 0.1 * grad
        second = 0.999 * second + 0.001 * grad * grad
        w -= LEARNING_RATE * (first / (1 - 0.9**step)) / (np.sqrt(second / (1 - 0.999**step)) + 1e-8)
    weights = np.zeros(len(FEATURES))
    weights[list(columns)] = w
    return Ranker(FEATURES, mean, scale, weights, candidates)


def recall(questions: Sequence[Question], ranker: Ranker | None, k: int) -> float:
    """Mean evidence recall@k, reordered by `ranker` (None: the first stage's order)."""
    found = []
    for q in questions:
        order = np.arange(len(q.evidence)) if ranker is None else np.argsort(-ranker.score(q.features), kind="stable")
        found.append(q.evidence[order[:k]].sum() / q.wanted)
    return float(np.mean(found))


def cross_validate(questions: Sequence[Question], columns: Sequence[int], candidates: int) -> dict[str, float]:
    """recall@5 and @10, each conversation scored by weights fitted on the others."""
    r5: list[float] = []
    r10: list[float] = []
    for group in sorted({q.group for q in questions}):
        held = [q for q in questions if q.group == group]
        ranker = fit([q for q in questions if q.group != group], columns, candidates)
        r5 += [recall([q], ranker, 5) for q in held]
        r10 += [recall([q], ranker, 10) for q in held]
    return {"recall_at_5": round(float(np.mean(r5)), 4), "recall_at_10": round(float(np.mean(r10)), 4)}


def save_questions(path: Path, questions: Sequence[Question], candidates: int) -> None:
    """What the bench collected, for this module's command line."""
    np.savez_compressed(path, candidates=candidates, features=np.concatenate([q.features for q in questions]),
                        sizes=[len(q.evidence) for q in questions], evidence=np.concatenate([q.evidence for q in questions]),
                        wanted=[q.wanted for q in questions], group=[q.group for q in questions], names=list(FEATURES))


def load_questions(path: Path) -> tuple[list[Question], int]:
    with np.load(path) as stored:
        data = {key: stored[key] for key in stored.files}  # an NpzFile reads an array again at every access
    if tuple(data["names"]) != FEATURES:
        raise SystemExit(f"{path} holds other features than this code computes: collect them again with bench/locomo.py")
    ends = np.cumsum(data["sizes"])
    starts = ends - data["sizes"]
    features, evidence = data["features"], data["evidence"]
    questions = [Question(features[a:b], evidence[a:b], int(w), int(g))
                 for a, b, w, g in zip(starts, ends, data["wanted"], data["group"])]
    return questions, int(data["candidates"])


def train(questions: Sequence[Question], candidates: int, out: Path | None, ablate: bool = True) -> dict[str, object]:
    """Cross-validated numbers (and per left-out group), then weights fitted on every question written to `out`."""
    everything = list(range(len(FEATURES)))
    report: dict[str, object] = {
        "questions": len(questions), "candidates": candidates,
        "first_stage": {"recall_at_5": round(recall(questions, None, 5), 4), "recall_at_10": round(recall(questions, None, 10), 4)},
        "ceiling": round(recall(questions, None, candidates), 4),
        "cross_validated": cross_validate(questions, everything, candidates),
    }
    if ablate:
        report["without"] = {
            group: cross_validate(questions, [i for i, f in enumerate(FEATURES) if f not in names], candidates)
            for group, names in GROUPS.items()
        }
    ranker = fit(questions, everything, candidates)
    report["fitted_on_all"] = {"recall_at_5": round(recall(questions, ranker, 5), 4), "recall_at_10": round(recall(questions, ranker, 10), 4)}
    if out is not None:
        about = {"about": "tobio recall ranker: linear, each evidence item's softmax against the non-evidence candidates; python -m tobio.memory.rank_train",
                 "trained_on": "LoCoMo dev split (6 conversations; Maharana et al., ACL 2024; CC BY-NC 4.0)",
                 "cross_validated": report["cross_validated"], "first_stage": report["first_stage"]}
        out.write_text(ranker.to_json(**about) + "\n", encoding="utf-8")
    return report


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("features", type=Path, help="what `bench/locomo.py --train-ranker PATH` collected")
    parser.add_argument("--out", type=Path, default=RANKER_PATH, help="where the weights go (default: the package's)")
    parser.add_argument("--no-ablation", action="store_true", help="skip the per-group ablation (faster)")
    args = parser.parse_args(argv)
    questions, candidates = load_questions(args.features)
    print(json.dumps(train(questions, candidates, args.out, ablate=not args.no_ablation), indent=2))


if __name__ == "__main__":
    main()
