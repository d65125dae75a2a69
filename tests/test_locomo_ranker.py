"""bench/locomo.py --train-ranker in its quick mode (2 conversations, the linear ranker, no LightGBM needed): it
collects every question's candidates with their features and dia_ids, and cross-validates the ranker both on the
collected candidates (rank_train) and through the whole search, leaving each conversation out in turn."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.test_benches import LOCOMO, numbers, run_bench
from tobio.memory.rank import FEATURES
from tobio.memory.rank_train import load_categories, load_questions


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_train_ranker_quick_mode(tmp_path: Path) -> None:
    if LOCOMO is None:
        pytest.skip("no LoCoMo data (shared/data/locomo/locomo_dev.json beside the repository)")
    data = LOCOMO / "data" / "locomo" / "locomo_dev.json"
    npz = tmp_path / "features.npz"
    out = run_bench("locomo.py", "--data", str(data), "--quick", "--train-ranker", str(npz), tmp_path=tmp_path, timeout=840)
    assert out["conversations"] == 2
    ranker = out["ranker"]
    assert ranker["questions"] == out["questions"] > 0 and "trees" not in ranker  # the linear path
    held = ranker["cross_validated"]
    search = ranker["search_cross_validated"]
    for result in (held, search):
        assert all(0.0 <= v <= 1.0 for v in numbers(result, "recall_at_5", "recall_at_10"))
        assert result["recall_at_5"] <= result["recall_at_10"]
    assert set(search["by_category"]) <= {"multi-hop", "temporal", "open-domain", "single-hop", "adversarial"}
    # a ranker fitted on one conversation still finds most evidence in the other, far above chance (10 of ~400 turns)
    assert search["recall_at_10"] > 0.5
    # what the bench collected is what rank_train reads: one question per question asked, candidates by dia_id beside it
    questions, candidates = load_questions(npz)
    assert candidates == 100 and len(questions) == out["questions"]
    assert {q.group for q in questions} == {0, 1} and all(q.features.shape[1] == len(FEATURES) for q in questions)
    ids = json.loads(npz.with_suffix(".ids.json").read_text(encoding="utf-8"))
    assert [len(row["candidates"]) for row in ids] == [len(q.evidence) for q in questions]
    assert all(row["candidates"][0].startswith("D") for row in ids)
    assert load_categories(npz, len(questions)) is not None
