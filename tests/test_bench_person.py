"""The interview bench runs end to end (scripted model, quick plan) and prints one JSON line with every key."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
KEYS = {"self", "facts", "facts_2", "facts_4", "facts_8", "people", "people_leaks", "mood", "mood_internal", "mood_replies",
        "fresh", "fresh_dm", "fresh_scene", "voice", "score", "bare_score", "lift", "bare", "lift_by_category", "seconds"}


def test_quick_bench_prints_one_json_line_with_all_keys(tmp_path: Path) -> None:
    """Bounded at 60 s by the subprocess timeout (it takes ~10 s: no model runs)."""
    env = {**os.environ, "TOBIO_DATA_DIR": str(tmp_path / "data")}
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "person.py"), "--quick", "--model", "scripted"],
                          capture_output=True, text=True, timeout=60, env=env, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    assert len(lines) == 1
    result = json.loads(lines[0])
    assert KEYS <= set(result)
    for category in ("self", "facts", "people", "mood", "fresh", "voice", "score", "bare_score"):
        assert 0.0 <= result[category] <= 1.0
    assert set(result["bare"]) == {"self", "facts", "people", "mood", "fresh", "voice"}
    assert result["lift"] == pytest.approx(result["score"] - result["bare_score"], abs=1e-3)
    assert result["people_leaks"] == 0  # the scripted model repeats what it is told: a leak would show
