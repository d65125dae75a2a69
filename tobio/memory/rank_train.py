"""Fit the recall ranker (rank.py) and say honestly how well it does on conversations it did not see.

    python bench/locomo.py --train-ranker features.npz        # dev split only: candidates and their features
    python -m tobio.memory.rank_train features.npz            # cross-validate, then write memory/data/ranker.json

Needs LightGBM for the trees (training only: the shipped model runs in numpy): in a throwaway venv,
`python -m venv /tmp/ltrvenv && /tmp/ltrvenv/bin/pip install lightgbm numpy`, then
`PYTHONPATH=. /tmp/ltrvenv/bin/python -m tobio.memory.rank_train features.npz` (tobio itself needs only
numpy here). `--linear` fits the linear model alone, without LightGBM.

The model has two parts. A linear one in standardised features, fitted by each evidence item's softmax
against its question's candidates that are not evidence (evidence items do not compete with each other,
as recall wants them all; the listwise softmax over all candidates before it: CV recall@10 0.8278 ->
0.8308 on the same features), plus an L2 penalty, by Adam in numpy. Then gradient-boosted trees
(LightGBM's lambdarank, NDCG@10 over each question's candidates) that start from the linear score and
correct it: small trees, many rows per leaf, shrinkage, and as many rounds as an inner
leave-one-conversation-out finds best, as there are only about a thousand questions. Questions whose
evidence is not among the candidates teach nothing and are left out of fitting (they still count, as
misses, in the recall). The estimate of held-out recall is leave-one-conversation-out: fit on the other
conversations (the trees' rounds chosen inside those alone), score the one left out, pool the questions;
it is given for the linear part alone too, with the paired difference and its standard error, and the
trees are written only if they gain more than twice that. The ablation (linear part, `--ablation`) does
the same with each feature group left out. About 3 minutes of one core (the fits shared by the nested
folds: 22 of them), 0.4 GB of memory at most.

On LoCoMo dev (1,155 questions, 100 candidates): linear 0.8304 recall@10, with the trees 0.8375
(+0.0071, paired SE 0.0030, every conversation gaining; recall@5 +0.002). Measured and not kept:
trees of 15 leaves (0.8315), rows and features subsampled (0.8350-0.8383 by seed), LightGBM's
rank_xendcg (collapses from the linear start) and pointwise logloss (no gain), trees without the linear
start, a small neural network with the linear model's loss (0.826), and each candidate's feature
relative to the question's best or its rank among the candidates as extra tree inputs (+0.001: noise).
"""

from __future__ import annotations

import argparse
import importlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from tobio.memory.rank import FEATURES, GROUPS, RANKER_PATH, Ranker, Trees

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


# Conservative on purpose (about a thousand questions in six conversations): trees of at most 7 leaves and
# depth 3, 100 candidate rows a leaf, shrinkage 0.05, an L2 penalty on leaf values. No row or feature
# subsampling: with it CV recall@10 moved with the seed (0.8383, 0.8350, 0.8358 over three), without it
# the fit is one deterministic function of the data (0.8375, every conversation gaining). Trees of 15
# leaves and depth 4: 0.8315.
TREE_PARAMS: dict[str, Any] = {
    "objective": "lambdarank", "lambdarank_truncation_level": 20, "eval_at": [10], "num_leaves": 7, "max_depth": 3,
    "min_data_in_leaf": 100, "learning_rate": 0.05, "lambda_l2": 10.0, "max_bin": 63, "num_threads": 1,
    "deterministic": True, "verbose": -1,
}
MAX_ROUNDS = 300


def boosting() -> ModuleType:
    """LightGBM, or one clear line saying how to get it."""
    try:
        return importlib.import_module("lightgbm")
    except ImportError:
        raise SystemExit("rank_train: the trees need LightGBM (training only): pip install lightgbm in a throwaway venv "
                         "(see python -m tobio.memory.rank_train --help), or pass --linear") from None


def has_boosting() -> bool:
    """Whether LightGBM is there, so the trees can be fitted."""
    try:
        return bool(boosting())
    except SystemExit:
        return False


@dataclass(frozen=True)
class Padded:
    """Questions as one (questions, candidates, features) array, for scoring many at once."""

    features: np.ndarray
    evidence: np.ndarray
    pad: np.ndarray  # True where a question has fewer candidates than the widest
    wanted: np.ndarray

    @classmethod
    def of(cls, questions: Sequence[Question]) -> Padded:
        size = max(len(q.evidence) for q in questions)
        x = np.zeros((len(questions), size, len(FEATURES)))
        evidence = np.zeros((len(questions), size))
        pad = np.ones((len(questions), size), dtype=bool)
        for row, q in enumerate(questions):
            x[row, : len(q.evidence)], evidence[row, : len(q.evidence)], pad[row, : len(q.evidence)] = q.features, q.evidence, False
        return cls(x, evidence, pad, np.array([q.wanted for q in questions], dtype=np.float64))

    def recall(self, scores: np.ndarray, k: int) -> np.ndarray:
        """Each question's recall@k under `scores` (questions, candidates); ties keep the first stage's order."""
        order = np.argsort(-np.where(self.pad, -np.inf, scores), axis=1, kind="stable")[:, :k]
        found: np.ndarray = np.take_along_axis(self.evidence, order, axis=1).sum(axis=1) / self.wanted
        return found


def _dataset(lgb: ModuleType, questions: Sequence[Question], linear: Ranker) -> Any:
    """LightGBM's rows (questions with evidence among their candidates), grouped by question, starting from the linear score."""
    useful = [q for q in questions if q.evidence.any()]
    x = np.concatenate([q.features for q in useful])
    return lgb.Dataset(x, label=np.concatenate([q.evidence for q in useful]), group=[len(q.evidence) for q in useful],
                       init_score=linear.linear(x), params={"max_bin": TREE_PARAMS["max_bin"]})


def _recall_curve(questions: Sequence[Question], linear: Ranker, booster: Any) -> np.ndarray:
    """Mean recall@10 of `questions` after each boosting round (index 0: the linear part alone)."""
    padded = Padded.of(questions)
    flat = padded.features.reshape(-1, len(FEATURES))
    base = linear.linear(flat).reshape(padded.pad.shape)
    # each round's trees' leaves for every row, then cumulative sums of their values: one pass, every round
    leaves = booster.predict(flat, pred_leaf=True).reshape(*padded.pad.shape, -1)
    trees = to_trees(booster)
    values = trees.value[np.arange(leaves.shape[-1]), _leaf_nodes(booster, leaves)]
    totals = np.concatenate([np.zeros((*padded.pad.shape, 1)), np.cumsum(values, axis=-1)], axis=-1)
    return np.array([padded.recall(base + totals[..., r], 10).mean() for r in range(totals.shape[-1])])


def _leaf_nodes(booster: Any, leaves: np.ndarray) -> np.ndarray:
    """LightGBM's leaf index within each tree -> that leaf's node number in `to_trees`' arrays."""
    table = _leaf_table(booster)
    return np.asarray(table[np.arange(leaves.shape[-1]), leaves.astype(np.int64)])


def _leaf_table(booster: Any) -> np.ndarray:
    dumped = booster.dump_model()["tree_info"]
    table = np.zeros((len(dumped), max(int(t["num_leaves"]) for t in dumped)), dtype=np.int64)
    for t, tree in enumerate(dumped):
        for node, leaf in _walk(tree["tree_structure"]):
            if leaf is not None:
                table[t, leaf] = node
    return table


def _walk(root: dict[str, Any]) -> list[tuple[int, int | None]]:
    """(node number, leaf index or None) in the order `to_trees` numbers nodes (breadth first from the root)."""
    out: list[tuple[int, int | None]] = []
    queue = [root]
    while queue:
        node = queue.pop(0)
        out.append((len(out), int(node.get("leaf_index", 0)) if "leaf_value" in node else None))
        if "leaf_value" not in node:
            queue += [node["left_child"], node["right_child"]]
    return out


def to_trees(booster: Any, rounds: int | None = None) -> Trees:
    """LightGBM's trees as rank.Trees' node arrays (numerical splits `<=` only; a NaN follows default_left,
    or goes as 0 would where LightGBM saw no missing values)."""
    dumped = [t["tree_structure"] for t in booster.dump_model(num_iteration=rounds)["tree_info"]]
    flat = []
    for root in dumped:
        nodes: list[dict[str, Any]] = []
        queue = [root]
        while queue:
            node = queue.pop(0)
            nodes.append(node)
            if "leaf_value" not in node:
                queue += [node["left_child"], node["right_child"]]
        flat.append(nodes)
    width = max(len(nodes) for nodes in flat)
    shape = (len(flat), width)
    feature, left, right = np.zeros(shape, np.int64), np.zeros(shape, np.int64), np.zeros(shape, np.int64)
    threshold, value, default_left = np.zeros(shape), np.zeros(shape), np.zeros(shape, bool)
    depth = 0
    for t, nodes in enumerate(flat):
        number = {id(node): i for i, node in enumerate(nodes)}
        level = {0: 0}
        left[t], right[t] = np.arange(width), np.arange(width)  # padding and leaves point to themselves
        for i, node in enumerate(nodes):
            if "leaf_value" in node:
                value[t, i] = float(node["leaf_value"])
                continue
            if node["decision_type"] != "<=" or node["missing_type"] not in ("None", "NaN"):
                raise ValueError(f"rank_train: a split LightGBM made cannot be exported ({node['decision_type']}, {node['missing_type']})")
            feature[t, i], threshold[t, i] = int(node["split_feature"]), float(node["threshold"])
            default_left[t, i] = bool(node["default_left"]) if node["missing_type"] == "NaN" else 0.0 <= threshold[t, i]
            left[t, i], right[t, i] = number[id(node["left_child"])], number[id(node["right_child"])]
            level[left[t, i]] = level[right[t, i]] = level[i] + 1
            depth = max(depth, level[i] + 1)
    return Trees(feature, threshold, default_left, left, right, value, depth)


def fit_trees(questions: Sequence[Question], linear: Ranker, rounds: int) -> Any:
    """A LightGBM booster of `rounds` trees fitted on top of `linear`'s score."""
    lgb = boosting()
    booster = lgb.train(TREE_PARAMS, _dataset(lgb, questions, linear), num_boost_round=rounds)
    # its trees alone, without the training state (Boosted keeps 22 boosters)
    return lgb.Booster(model_str=booster.model_to_string())


class Boosted:
    """Linear part and MAX_ROUNDS trees fitted once per set of conversations. A leave-one-conversation-out
    inside another fits each pair's complement twice, and the inner folds of the model on everything are the
    outer folds; the first n trees of a booster are the booster of n rounds, so fewer rounds cost no refit."""

    def __init__(self, questions: Sequence[Question], candidates: int) -> None:
        self.questions, self.candidates = questions, candidates
        self.fitted: dict[frozenset[int], tuple[Ranker, Any]] = {}

    def on(self, groups: frozenset[int]) -> tuple[Ranker, Any]:
        if groups not in self.fitted:
            chosen = [q for q in self.questions if q.group in groups]
            linear = fit(chosen, range(len(FEATURES)), self.candidates)
            self.fitted[groups] = linear, fit_trees(chosen, linear, MAX_ROUNDS)
        return self.fitted[groups]

    def rounds(self, groups: frozenset[int]) -> int:
        """The rounds with the best recall@10 over a leave-one-conversation-out inside `groups` (each
        conversation weighted by its questions; 0: the linear part alone)."""
        curves = []
        for group in sorted(groups):
            linear, booster = self.on(groups - {group})
            held = [q for q in self.questions if q.group == group]
            curves.append(_recall_curve(held, linear, booster) * len(held))
        return int(np.argmax(np.sum(curves, axis=0)))

    def model(self, groups: frozenset[int]) -> tuple[Ranker, Any]:
        """Fitted on `groups`: the linear part with the trees of the rounds chosen inside them, and the booster."""
        rounds = self.rounds(groups)
        linear, booster = self.on(groups)
        if rounds == 0:
            return linear, None
        return Ranker(linear.features, linear.mean, linear.scale, linear.weights, self.candidates, to_trees(booster, rounds)), booster


def held_out(questions: Sequence[Question], fitter: Callable[[Sequence[Question]], Ranker]) -> dict[int, np.ndarray]:
    """Each question's recall@5 and @10 (rows: question, columns: k) scored by a model fitted without its conversation."""
    out: dict[int, np.ndarray] = {}
    for group in sorted({q.group for q in questions}):
        ranker = fitter([q for q in questions if q.group != group])
        for i, q in enumerate(questions):
            if q.group == group:
                out[i] = np.array([recall([q], ranker, 5), recall([q], ranker, 10)])
    return out


def cross_validate(questions: Sequence[Question], columns: Sequence[int], candidates: int) -> dict[str, float]:
    """recall@5 and @10 of the linear model, each conversation scored by weights fitted on the others."""
    found = np.array(list(held_out(questions, lambda rest: fit(rest, columns, candidates)).values()))
    return {"recall_at_5": round(float(found[:, 0].mean()), 4), "recall_at_10": round(float(found[:, 1].mean()), 4)}


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


def load_categories(path: Path, count: int) -> list[int] | None:
    """Each question's LoCoMo category, from the NPZ.ids.json the bench writes beside the NPZ (None if absent or not matching)."""
    try:
        ids = json.loads(path.with_suffix(".ids.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    categories = [int(row["category"]) for row in ids]
    return categories if len(categories) == count else None


CATEGORIES = {1: "multi-hop", 2: "temporal", 3: "open-domain", 4: "single-hop", 5: "adversarial"}


def _summary(found: dict[int, np.ndarray], categories: Sequence[int] | None) -> dict[str, object]:
    rows = np.array([found[i] for i in sorted(found)])
    out: dict[str, object] = {"recall_at_5": round(float(rows[:, 0].mean()), 4), "recall_at_10": round(float(rows[:, 1].mean()), 4)}
    if categories is not None:
        out["by_category"] = {
            CATEGORIES.get(c, str(c)): {"questions": int(sum(1 for x in categories if x == c)),
                                        "recall_at_5": round(float(rows[[x == c for x in categories], 0].mean()), 4),
                                        "recall_at_10": round(float(rows[[x == c for x in categories], 1].mean()), 4)}
            for c in sorted(set(categories))}
    return out


def _paired(questions: Sequence[Question], better: dict[int, np.ndarray], base: dict[int, np.ndarray]) -> dict[str, object]:
    """The gain over `base`, per question paired: its mean and standard error, and per left-out conversation."""
    diff = np.array([better[i] - base[i] for i in sorted(better)])
    groups = np.array([questions[i].group for i in sorted(better)])
    return {"gain_at_10": round(float(diff[:, 1].mean()), 4), "se_at_10": round(float(diff[:, 1].std(ddof=1) / np.sqrt(len(diff))), 4),
            "gain_at_5": round(float(diff[:, 0].mean()), 4), "se_at_5": round(float(diff[:, 0].std(ddof=1) / np.sqrt(len(diff))), 4),
            "gain_at_10_by_conversation": [round(float(diff[groups == g, 1].mean()), 4) for g in sorted(set(groups))]}


def _fitted(questions: Sequence[Question], ranker: Ranker) -> dict[str, float]:
    return {"recall_at_5": round(recall(questions, ranker, 5), 4), "recall_at_10": round(recall(questions, ranker, 10), 4)}


def train(questions: Sequence[Question], candidates: int, out: Path | None, ablate: bool = True, trees: bool | None = None,
          categories: Sequence[int] | None = None) -> dict[str, object]:
    """Cross-validated numbers of the linear model and (with `trees`; None: when LightGBM is there) of the trees on
    top of it; then the model fitted on every question written to `out` (the trees if they beat the linear model
    in cross-validation by more than twice the paired standard error, else the linear one)."""
    if trees is None:
        trees = has_boosting()
    everything = list(range(len(FEATURES)))
    began = time.perf_counter()
    linear_found = held_out(questions, lambda rest: fit(rest, everything, candidates))
    linear = fit(questions, everything, candidates)
    report: dict[str, object] = {
        "questions": len(questions), "candidates": candidates,
        "first_stage": {"recall_at_5": round(recall(questions, None, 5), 4), "recall_at_10": round(recall(questions, None, 10), 4)},
        "ceiling": round(recall(questions, None, candidates), 4),
        "cross_validated": _summary(linear_found, categories),
        "fitted_on_all": _fitted(questions, linear),
        "seconds": round(time.perf_counter() - began, 1),
    }
    shipped, about = linear, {"model": "linear", "cross_validated": report["cross_validated"]}
    if trees:
        began = time.perf_counter()
        groups = frozenset(q.group for q in questions)
        boosted = Boosted(questions, candidates)
        rounds = [boosted.rounds(groups - {g}) for g in sorted(groups)]
        found = held_out(questions, lambda rest: boosted.model(frozenset(q.group for q in rest))[0])
        paired = _paired(questions, found, linear_found)
        cross_validated = {**_summary(found, categories), "rounds_by_conversation": rounds, "versus_linear": paired}
        model, booster = boosted.model(groups)
        rounds_all = 0 if model.trees is None else len(model.trees.value)
        report["trees"] = {"params": {**TREE_PARAMS, "max_rounds": MAX_ROUNDS}, "cross_validated": cross_validated,
                           "fitted_on_all": _fitted(questions, model), "rounds": rounds_all,
                           "seconds": round(time.perf_counter() - began, 1)}
        if model.trees is not None and paired["gain_at_10"] > 2 * paired["se_at_10"]:  # type: ignore[operator]
            shipped = model
            about = {"model": f"linear + {rounds_all} trees (LightGBM lambdarank)", "cross_validated": cross_validated,
                     "linear_cross_validated": report["cross_validated"], "check": _check_rows(questions, model, booster)}
    if ablate:
        report["without"] = {
            group: cross_validate(questions, [i for i, f in enumerate(FEATURES) if f not in names], candidates)
            for group, names in GROUPS.items()
        }
    report["shipped"] = about["model"]
    if out is not None:
        about = {"about": "tobio recall ranker: linear (each evidence item's softmax against the non-evidence candidates), "
                          "plus boosted trees on top of it when they help; python -m tobio.memory.rank_train",
                 "trained_on": "LoCoMo dev split (Maharana et al., ACL 2024; CC BY-NC 4.0)", **about,
                 "first_stage": report["first_stage"]}
        out.write_text(shipped.to_json(**about) + "\n", encoding="utf-8")
    return report


def _check_rows(questions: Sequence[Question], model: Ranker, booster: Any, count: int = 24) -> dict[str, object]:
    """Refuses trees whose numpy scores differ from LightGBM's on any training row; returns a few rows and
    LightGBM's scores of them (the trees' part), for a test to hold numpy's evaluation to."""
    assert model.trees is not None
    x = np.concatenate([q.features for q in questions])
    ours, theirs = model.trees.score(x), booster.predict(x, num_iteration=len(model.trees.value))
    worst = float(np.max(np.abs(ours - theirs)))
    if worst > 1e-9:
        raise SystemExit(f"rank_train: numpy's trees score a training row {worst:.3g} away from LightGBM's; not written")
    picked = np.random.default_rng(7).choice(len(x), size=min(count, len(x)), replace=False)
    return {"rows": x[picked].tolist(), "tree_scores": theirs[picked].tolist()}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("features", type=Path, help="what `bench/locomo.py --train-ranker PATH` collected")
    parser.add_argument("--out", type=Path, default=RANKER_PATH, help="where the model goes (default: the package's)")
    parser.add_argument("--ablation", action="store_true", help="also cross-validate the linear part with each feature group "
                        "left out (84 more fits: about 5 minutes more)")
    parser.add_argument("--linear", action="store_true", help="the linear model only (no LightGBM needed)")
    args = parser.parse_args(argv)
    if not args.linear:
        boosting()
    questions, candidates = load_questions(args.features)
    categories = load_categories(args.features, len(questions))
    print(json.dumps(train(questions, candidates, args.out, ablate=args.ablation, trees=not args.linear,
                           categories=categories), indent=2))


if __name__ == "__main__":
    main()
