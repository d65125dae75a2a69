"""The ranker's trees: numpy walks them as the training library does (the shipped file carries LightGBM's own
scores of some rows to hold it to), NaNs go where the split says, a file with broken trees is refused, and the
trainer says in one line what it needs when LightGBM is missing."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from tobio.memory import rank
from tobio.memory.rank import FEATURES, Ranker, Trees
from tobio.memory.rank_train import Question, fit, fit_trees, main, to_trees, train


def two_trees() -> Trees:
    """Tree 0: x0 <= 1 ? (x1 <= 0 ? 1 : 2) : 3, NaN goes right. Tree 1: x1 <= 5 ? 10 : 20, NaN goes left."""
    return Trees(feature=np.array([[0, 1, 0, 0, 0], [1, 0, 0, 0, 0]]),
                 threshold=np.array([[1.0, 0.0, 0, 0, 0], [5.0, 0, 0, 0, 0]]),
                 default_left=np.array([[False, False, False, False, False], [True, False, False, False, False]]),
                 left=np.array([[1, 3, 2, 3, 4], [1, 1, 2, 3, 4]]), right=np.array([[2, 4, 2, 3, 4], [2, 1, 2, 3, 4]]),
                 value=np.array([[0, 0, 3.0, 1.0, 2.0], [0, 10.0, 20.0, 0, 0]]), depth=2)


def test_trees_send_each_row_down_every_tree_and_sum_the_leaves() -> None:
    rows = np.array([[0.5, -1.0], [0.5, 1.0], [1.0, 0.0], [2.0, 9.0], [np.nan, 9.0], [0.0, np.nan]])
    # thresholds are inclusive (x <= t goes left), as in LightGBM
    assert two_trees().score(rows).tolist() == [1 + 10, 2 + 10, 1 + 10, 3 + 20, 3 + 20, 2 + 10]


def test_a_ranker_with_trees_adds_them_to_its_linear_score_and_survives_its_file() -> None:
    ranker = Ranker(("a", "b"), np.array([1.0, 0.0]), np.array([2.0, 1.0]), np.array([1.0, -1.0]), 10, two_trees())
    rows = np.array([[3.0, 1.0], [0.5, -1.0]])
    assert ranker.score(rows).tolist() == [(1.0 - 1.0) + 3 + 10, (-0.25 + 1.0) + 1 + 10]
    again = Ranker.from_json(ranker.to_json(about="test"))
    assert again.trees is not None and again.score(rows).tolist() == ranker.score(rows).tolist()


def test_a_ranker_file_with_broken_trees_is_refused() -> None:
    good = json.loads(Ranker(("a", "b"), np.zeros(2), np.ones(2), np.ones(2), 10, two_trees()).to_json())
    for key, value in (("left", [[1, 9, 2, 3, 4], [1, 1, 2, 3, 4]]), ("feature", [[0, 2, 0, 0, 0], [1, 0, 0, 0, 0]]),
                       ("value", [[0, 1]])):
        broken = {**good, "trees": {**good["trees"], key: value}}
        with pytest.raises(ValueError):
            Ranker.from_json(json.dumps(broken))


def test_the_shipped_trees_score_as_lightgbm_did() -> None:
    """rank_train refuses to write trees numpy scores differently on any training row, and keeps some rows with
    LightGBM's scores; the shipped file's trees, read back, give exactly those."""
    about = json.loads(rank.RANKER_PATH.read_text())
    ranker = rank.shipped()
    assert ranker is not None
    if ranker.trees is None:
        pytest.skip("the shipped ranker is linear")
    rows = np.array(about["check"]["rows"])
    assert rows.shape == (24, len(FEATURES))
    assert ranker.trees.score(rows) == pytest.approx(about["check"]["tree_scores"], abs=1e-9)
    assert len(set(np.round(about["check"]["tree_scores"], 6))) > 1  # rows that the trees tell apart
    # shipped only because they beat the linear part, fitted and judged the same way, by > 2 paired standard errors
    versus = about["cross_validated"]["versus_linear"]
    assert about["cross_validated"]["recall_at_10"] > about["linear_cross_validated"]["recall_at_10"]
    assert versus["gain_at_10"] > 2 * versus["se_at_10"]


def test_numpy_walks_lightgbm_trees_as_lightgbm_does() -> None:
    """With LightGBM (a training-only dependency) at hand: a fitted booster, exported, scores every row as predict()."""
    pytest.importorskip("lightgbm")
    rng = np.random.default_rng(1)
    questions = []
    for q in range(40):
        features = rng.normal(size=(30, len(FEATURES)))
        evidence = (features[:, 0] > 1.2).astype(np.float64) * (features[:, 1] > 0)
        questions.append(Question(features, evidence, max(1, int(evidence.sum())), q % 4))
    linear = fit(questions, range(len(FEATURES)), 30)
    booster = fit_trees(questions, linear, 20)
    rows = np.concatenate([q.features for q in questions])
    rows[::5, 0] = np.nan
    assert to_trees(booster).score(rows) == pytest.approx(booster.predict(rows), abs=1e-12)


def test_the_trainer_says_in_one_line_that_it_needs_lightgbm(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "lightgbm", None)  # importing it now fails, as where it is not installed
    with pytest.raises(SystemExit) as exit_info:
        main(["missing.npz"])
    message = str(exit_info.value)
    assert "LightGBM" in message and "--linear" in message and "\n" not in message


def test_without_lightgbm_training_reports_and_writes_the_linear_model(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """What bench/locomo.py --train-ranker does in tobio's own environment: the linear model's numbers, no trees."""
    monkeypatch.setitem(sys.modules, "lightgbm", None)
    rng = np.random.default_rng(2)
    mark = FEATURES.index("after_question")
    questions = []
    for q in range(24):
        features = rng.normal(size=(20, len(FEATURES)))
        evidence = np.zeros(20)
        evidence[10 + q % 10] = 1.0
        features[:, mark] += evidence * 3
        questions.append(Question(features, evidence, 1, q % 3))
    out = tmp_path / "ranker.json"
    report = train(questions, 20, out, ablate=False)
    assert "trees" not in report and report["shipped"] == "linear"
    assert Ranker.from_json(out.read_text()).trees is None
    assert report["cross_validated"]["recall_at_10"] > 0.9  # type: ignore[index]


def test_many_rows_are_scored_in_bounded_pieces_with_the_same_result() -> None:
    """Past rank.CHUNK rows the trees score piecewise (their nodes x rows decisions would grow with the data set)."""
    rows = np.random.default_rng(4).normal(scale=3.0, size=(rank.CHUNK * 2 + 7, 2))
    trees = two_trees()
    assert trees.score(rows).tolist() == np.concatenate([trees.score(rows[i : i + 100]) for i in range(0, len(rows), 100)]).tolist()
