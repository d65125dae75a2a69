"""Every script in bench/ runs in its quick mode and prints one JSON object with its keys, so none can rot
(bench/history.py once failed for months after a column was added to `messages`). The numbers of a quick
run mean little; the full runs and their goals are in the README.

bench/hostile.py and bench/setup.py are run by their own tests (tests/security/, tests/test_setup*.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
TESTED_ELSEWHERE = {"hostile.py", "setup.py"}
LOCOMO = next((p for p in (ROOT.parent / "shared", ROOT.parents[1] / "shared")
               if (p / "data" / "locomo" / "locomo_dev.json").exists()), None)

# Each bench starts a Python process that imports Tobio, and most load a model: all are slow.
slow = pytest.mark.slow


def run_bench(script: str, *args: str, tmp_path: Path, timeout: float) -> dict[str, Any]:
    """Run bench/`script` with `args`; its whole stdout must be one JSON object."""
    env = {**os.environ, "TOBIO_DATA_DIR": str(tmp_path / "data"), "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    done = subprocess.run([sys.executable, str(BENCH / script), *args], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=ROOT, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, f"bench/{script} {' '.join(args)} failed:\n{done.stderr[-3000:]}"
    result = json.loads(done.stdout)
    assert isinstance(result, dict), done.stdout[:500]
    return result


def numbers(result: dict[str, Any], *keys: str) -> list[float]:
    """The values of `keys`, each a number (a missing key fails the test, naming it)."""
    missing = [k for k in keys if k not in result]
    assert not missing, f"missing keys {missing} in {sorted(result)}"
    values = [result[k] for k in keys]
    assert all(isinstance(v, (int, float)) for v in values), dict(zip(keys, values))
    return values


def test_every_bench_script_has_a_test_here() -> None:
    scripts = {p.name for p in BENCH.glob("*.py")} - TESTED_ELSEWHERE
    tested = {name.removeprefix("test_").replace("_quick_mode", "") + ".py"
              for name in globals() if name.startswith("test_") and name.endswith("_quick_mode")}
    assert scripts <= tested, f"bench scripts without a quick-mode test in {Path(__file__).name}: {sorted(scripts - tested)}"


@slow
def test_history_quick_mode(tmp_path: Path) -> None:
    out = run_bench("history.py", "--quick", tmp_path=tmp_path, timeout=240)
    assert out["messages"] == 100_000 and out["threads"] == 1_000
    assert min(numbers(out, "build_s", "context_ms_p50", "context_ms_p95", "raw_sql_ms_p50", "raw_sql_ms_p95", "ratio_p50")) > 0


@slow
def test_swipe_quick_mode(tmp_path: Path) -> None:
    out = run_bench("swipe.py", "--quick", tmp_path=tmp_path, timeout=240)
    assert out["messages"] == 100_000 and out["alternatives"] == 4  # the first reply and three retries
    assert min(numbers(out, "build_s", "retry_ms_p50", "retry_ms_max", "swipe_ms_p50", "swipe_ms_p95")) > 0


def test_fork_quick_mode(tmp_path: Path) -> None:
    out = run_bench("fork.py", "--quick", tmp_path=tmp_path, timeout=240)
    assert out["chat_messages"] == 100_000
    assert min(numbers(out, "build_s", "fork_ms_at_100k", "branch_context_ms_p50", "raw_sql_ms_p50", "branch_history_ratio",
                       "parent_context_ms_p50", "parent_raw_sql_ms_p50", "parent_history_ratio")) > 0


@slow
def test_transport_quick_mode(tmp_path: Path) -> None:
    out = run_bench("transport.py", "--quick", tmp_path=tmp_path, timeout=240)
    assert out["messages"] == 2_000
    keys = [f"{kind}_{n}" for n in (1, 10, 100) for kind in ("msgs_per_s", "raw_msgs_per_s", "consumed_msgs_per_s")]
    assert min(numbers(out, *keys, "ratio_to_raw_10")) > 0
    numbers(out, "overhead_us_per_msg", "handled_overhead_us_per_msg")


@slow
def test_context_quick_mode(tmp_path: Path) -> None:
    out = run_bench("context.py", "--quick", tmp_path=tmp_path, timeout=240)
    assert out["turns"] == 60 and out["budget"] == 512
    max_prompt, over, summaries = numbers(out, "max_prompt_tokens", "over_budget_turns", "summaries")
    assert 0 < max_prompt <= 512 and over == 0  # the bench's goal holds at any length
    assert summaries > 0  # 60 turns overflow the budget: memory summarised
    numbers(out, "memory_ms_per_turn", "memory_ms_p95", "model_ms_per_turn", "turn_ms")


@slow
def test_startup_quick_mode(tmp_path: Path) -> None:
    out = run_bench("startup.py", "--runs", "1", tmp_path=tmp_path, timeout=240)
    assert out["runs"] == 1
    assert min(numbers(out, "tobio_ms", "baseline_ms", "ratio", "kernel_ms")) > 0


@slow
def test_person_quick_mode(tmp_path: Path) -> None:
    """The interview bench end to end on the scripted model (no model runs), with every key."""
    out = run_bench("person.py", "--quick", "--model", "scripted", tmp_path=tmp_path, timeout=240)
    keys = {"self", "facts", "facts_2", "facts_4", "facts_8", "people", "people_leaks", "mood", "mood_internal",
            "mood_replies", "fresh", "fresh_dm", "fresh_scene", "voice", "score", "bare_score", "lift", "bare",
            "lift_by_category", "seconds", "corrections", "contradictions", "score_classic"}
    assert keys <= set(out), sorted(keys - set(out))
    for category in ("self", "facts", "corrections", "contradictions", "people", "mood", "fresh", "voice", "score", "bare_score"):
        assert 0.0 <= out[category] <= 1.0
    assert set(out["bare"]) == {"self", "facts", "corrections", "contradictions", "people", "mood", "fresh", "voice"}
    assert out["lift"] == pytest.approx(out["score"] - out["bare_score"], abs=1e-3)
    assert out["people_leaks"] == 0  # the scripted model repeats what it is told: a leak would show


@slow
def test_cpu_build_quick_mode(tmp_path: Path) -> None:
    out = run_bench("cpu_build.py", "--quick", tmp_path=tmp_path, timeout=240)
    assert "AVX2" in out["system_info"]
    assert min(numbers(out, "prompt_tokens", "prompt_tokens_per_s_p50", "gen_tokens_per_s_p50")) > 0


@slow
@pytest.mark.timeout(600)
def test_turn_quick_mode(tmp_path: Path) -> None:
    out = run_bench("turn.py", "--quick", tmp_path=tmp_path, timeout=540)
    assert out["turns"] == 2
    numbers(out, "model_ms_mean", "turn_ms_mean", "overhead_ms_mean", "overhead_ms_p50", "overhead_pct",
            "tokens_per_s_tobio", "tokens_per_s_direct", "tokens_per_s_ratio", "same_length_turns")


@slow
@pytest.mark.timeout(600)
def test_latency_quick_mode(tmp_path: Path) -> None:
    out = run_bench("latency.py", "--quick", tmp_path=tmp_path, timeout=540)
    assert out["turns"] == 4 and out["scene_turns"] > 0
    numbers(out, "ttft_ms_p50_turn_100", "new_tokens_eval_ms_p50", "ratio", "cache_reuse", "prompt_tokens_last",
            "scene_ttft_ms_p50", "scene_new_tokens_eval_ms_p50", "scene_ratio", "scene_cache_reuse",
            "resample_share", "prefill_tokens_per_turn", "seconds")


@slow
@pytest.mark.timeout(600)
def test_locomo_quick_mode(tmp_path: Path) -> None:
    if LOCOMO is None:
        pytest.skip("no LoCoMo data (shared/data/locomo/locomo_dev.json beside the repository)")
    data = LOCOMO / "data" / "locomo" / "locomo_dev.json"
    out = run_bench("locomo.py", "--data", str(data), "--limit", "1", tmp_path=tmp_path, timeout=540)
    assert out["conversations"] == 1 and out["questions"] > 0
    assert all(0.0 <= v <= 1.0 for v in numbers(out, "recall_at_5", "recall_at_10", "bm25_recall_at_10", "recent_recall_at_10"))


@slow
@pytest.mark.timeout(600)
def test_emotion_quick_mode(tmp_path: Path) -> None:
    out = run_bench("emotion.py", "--quick", tmp_path=tmp_path, timeout=540)  # the sample in tests/data: no mirror
    assert out["emobank_sentences"] == 200
    assert out["emobank_scale"] == "emobank.csv (readers and writers)"  # the sample carries both scales
    r = numbers(out, "emobank_r_v", "emobank_r_a", "emobank_r_d", "vader_r_v", "vader_r_a", "vader_r_d")
    assert r[0] > r[3] > 0  # the head reads valence better than VADER, even on 200 sentences
    reader = numbers(out, "emobank_reader_r_v", "vader_reader_r_v")
    assert reader[0] > reader[1] > 0 and reader[0] != r[0]  # the readers' ratings alone, a different scale
    assert 0 < numbers(out, "appraise_ms_p50")[0] < 2
    dynamics = out["dynamics"]
    assert dynamics["sign_follows_events"] and dynamics["neurotic_moves_further"] and dynamics["neurotic_recovers_slower"]
    assert dynamics["half_life_within_10pct"] and dynamics["appraised_by"]["learned"] > 0
    congruent = out["congruent_recall"]  # the mood reorders recall towards memories that match it
    assert congruent["congruent_top8_share_on"] > congruent["congruent_top8_share_off"]


@slow
def test_cluster_quick_mode(tmp_path: Path) -> None:
    from conftest import _postgres_url

    _postgres_url()  # skips without a PostgreSQL server, as the other PostgreSQL tests do
    out = run_bench("cluster.py", "--quick", tmp_path=tmp_path, timeout=900)
    numbers(out, "msgs_per_s_1", "msgs_per_s_2", "scaling_2", "lost", "doubled", "adoption_s",
            "cross_kernel_latency_ms_p50", "cross_kernel_latency_ms_p99", "one_kernel_duckdb_msgs_per_s",
            "one_kernel_postgres_msgs_per_s")
    assert out["lost"] == 0 and out["doubled"] == 0
