"""Emotion: appraisal moves affect, it decays with its half-life, reaches the prompt, and the loop is stable."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest

from tobio.config.schema import KernelConfig
from tobio.emotion.affect import Affect, Mood
from tobio.emotion.appraise import LexiconAppraiser
from tobio.errors import ModuleError
from tobio.kernel import Kernel

from conftest import write
from helpers import wait_until

HOSTILE = ["You are useless and I hate you!", "This is awful, you stupid machine.", "Shut up. Terrible answer!",
           "I despise talking to you.", "Worst. Conversation. Ever. You ruin everything!"]
T0 = datetime(2026, 1, 1, 12, 0, 0)


def start(url: str, **settings: float) -> Kernel:
    config = KernelConfig(
        modules=["scripted", "models", "persona", "emotion"],
        providers={"s": {"type": "scripted", "replies": ["I see."]}},
        models={"chat-default": {"provider": "s", "model": "x", "purpose": "chat", "params": {"temperature": 0.5}}},
        settings={"emotion": {"half_life_s": 60.0, **settings}},
    )
    return Kernel(config, database=url).start()


def spawn(kernel: Kernel, path: Path, text: str) -> None:
    kernel.run(f"agent spawn {write(path, text)}")


@pytest.mark.slow
def test_hostility_lowers_pleasure_and_it_recovers_with_the_half_life(duckdb_url: str, tmp_path: Path) -> None:
    kernel = start(duckdb_url)
    try:
        spawn(kernel, tmp_path / "a.yaml", "name: quiet\ntype: scripted\nchannels: [room]\n")
        quiet = kernel.agents.live["quiet"]
        for i, text in enumerate(HOSTILE):
            kernel.post_sync("room", text, created_at=T0 + timedelta(seconds=i))
        wait_until(lambda: quiet.handled == len(HOSTILE))
        last = T0 + timedelta(seconds=len(HOSTILE) - 1)
        hurt = kernel.run(f"emotion show quiet --at {last.isoformat()}").data["affect"]
        assert hurt["pleasure"] < -0.5 and hurt["dominance"] < -0.3
        later = kernel.run(f"emotion show quiet --at {(last + timedelta(seconds=60)).isoformat()}").data["affect"]
        assert later["pleasure"] == pytest.approx(hurt["pleasure"] / 2, abs=0.01)  # baseline 0: halfway in one half-life
        much_later = kernel.run(f"emotion show quiet --at {(last + timedelta(seconds=600)).isoformat()}").data
        assert abs(much_later["affect"]["pleasure"]) < 0.01 and much_later["label"] == "calm"
        history = kernel.run("emotion history quiet")
        assert "pleasure" in history.text and len(history.data) >= 2
    finally:
        kernel.close()


def test_mood_line_and_temperature_reach_the_prompt(duckdb_url: str, tmp_path: Path) -> None:
    kernel = start(duckdb_url)
    try:
        write(tmp_path / "ada.yaml", "name: Ada\ndescription: An engineer.\ninitial_mood: {pleasure: 0.5}\n")
        spawn(kernel, tmp_path / "agent.yaml", "name: ada\ntype: persona\npersona: ada.yaml\nchannels: [room]\n")
        calm = kernel.run("agent prompt ada")
        mood = [row[2] for row in calm.rows if "Your mood right now:" in row[2]]
        assert mood and "Your mood right now: exuberant." in mood[0] and "pleasure" not in mood[0]  # a name, not numbers
        assert calm.data["notes"]["emotion"]["affect"]["pleasure"] == pytest.approx(0.5)
        assert "Your mood right now:" not in calm.rows[0][2]  # not in the system prompt: it would change every turn
        kernel.run("emotion set ada --arousal 0.9 --pleasure -0.8")
        tense = kernel.run("agent prompt ada")
        mood = [row[2] for row in tense.rows if "Your mood right now:" in row[2]]
        assert "angry" in mood[0] or "anxious" in mood[0]
        assert tense.data["params"]["temperature"] == pytest.approx(0.5 + 0.3 * 0.9, abs=0.01)
    finally:
        kernel.close()


def test_feedback_loop_is_bounded_and_converges_over_1000_turns() -> None:
    """Each turn: a hostile message in, the agent's own (mood-coloured) reply out, a minute apart."""
    appraiser = LexiconAppraiser()
    baseline = Affect(0.3, 0.0, 0.1)
    mood = Mood(baseline, baseline, T0)
    trace = []
    for turn in range(1000):
        at = T0 + timedelta(minutes=turn)
        mood = mood.at_time(at, 600.0)
        mood = Mood(mood.affect.nudged(appraiser.score(HOSTILE[turn % 5], "incoming")), baseline, at)
        reply = "I am upset and hurt." if mood.affect.pleasure < 0 else "I am happy to help!"
        mood = Mood(mood.affect.nudged(appraiser.score(reply, "outgoing")), baseline, at)
        trace.append(mood.affect)
    assert all(-1 <= getattr(a, k) <= 1 for a in trace for k in ("pleasure", "arousal", "dominance"))
    tail = [a.pleasure for a in trace[-200:]]
    assert max(tail) - min(tail) < 0.25  # settled into a narrow band, no runaway or oscillation growth
    early_swing = max(a.pleasure for a in trace[100:300]) - min(a.pleasure for a in trace[100:300])
    late_swing = max(tail) - min(tail)
    assert late_swing <= early_swing + 1e-9


@pytest.mark.slow
def test_live_loop_with_replies_stays_bounded(duckdb_url: str, tmp_path: Path) -> None:
    kernel = start(duckdb_url)
    try:
        write(tmp_path / "ada.yaml", "name: Ada\ndescription: An engineer.\n")
        spawn(kernel, tmp_path / "agent.yaml", "name: ada\ntype: persona\npersona: ada.yaml\nchannels: [room]\nstream: false\n")
        ada = kernel.agents.live["ada"]
        for i in range(30):
            kernel.post_sync("room", HOSTILE[i % 5] if i % 2 else "Thanks, that is lovely!", created_at=T0 + timedelta(seconds=10 * i))
            wait_until(lambda i=i: ada.turns == i + 1)
        affect = kernel.run(f"emotion show ada --at {(T0 + timedelta(seconds=300)).isoformat()}").data["affect"]
        assert all(-1 <= v <= 1 for v in affect.values())
        states = kernel.run("sql SELECT count(*) FROM state WHERE state_dict::VARCHAR LIKE '%emotion%'").rows[0][0]
        assert states >= 20  # every change of mood is kept
    finally:
        kernel.close()


def test_bad_module_settings_are_a_clear_error(duckdb_url: str) -> None:
    with pytest.raises(ModuleError, match=r"bad settings for module 'emotion': settings.emotion.half_life_s"):
        start(duckdb_url, half_life_s=-1)
