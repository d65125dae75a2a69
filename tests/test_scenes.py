"""Turn-taking floors and scenes with several persona agents (scripted provider)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from tobio.config.schema import KernelConfig
from tobio.kernel import Kernel

from conftest import write
from helpers import wait_until


def start(url: str, classify_reply: str = '{"label": "carol"}') -> Kernel:
    config = KernelConfig(
        modules=["scripted", "models", "persona", "scenes"],
        providers={"s": {"type": "scripted", "replies": ["I hear you: {last}"]},
                   "judge": {"type": "scripted", "replies": [classify_reply]}},
        models={"chat-default": {"provider": "s", "model": "x"}, "classify": {"provider": "judge", "model": "x", "purpose": "classify"}},
    )
    return Kernel(config, database=url).start()


def cast(tmp_path: Path, names: tuple[str, ...] = ("ann", "bob", "carol")) -> list[Path]:
    write(tmp_path / "p.yaml", "name: Someone\ndescription: A person in a scene.\n")
    return [write(tmp_path / f"{n}.yaml", f"name: {n}\ntype: persona\npersona: p.yaml\nstream: false\n") for n in names]


def seat_in_hall(kernel: Kernel, tmp_path: Path, policy: str, max_agent_turns: int) -> None:
    """Spawn the cast, put everyone in #hall, and give the hall a floor."""
    for path in cast(tmp_path):
        kernel.run(f"agent spawn {path}")
        kernel.run(f"channel sub {path.stem} hall")
    kernel.run(f"floor set hall --policy {policy} --max-agent-turns {max_agent_turns}")


def agent_lines(kernel: Kernel, channel: str) -> list[tuple[str, str]]:
    kernel.call(kernel.writer.flush())
    return [tuple(r) for r in kernel.run(
        f"sql SELECT a.name, m.content FROM messages m JOIN agents a ON a.id = m.agent_id WHERE m.channel = '{channel}' ORDER BY m.id").rows]


@pytest.mark.slow
def test_round_robin_scene_runs_its_turns_and_stops(duckdb_url: str, tmp_path: Path) -> None:
    kernel = start(duckdb_url)
    try:
        files = cast(tmp_path)
        scene = write(tmp_path / "scene.yaml", "name: tea\nchannel: parlour\nagents: [ann.yaml, bob.yaml, carol.yaml]\n"
                      "opening: {text: 'Tea is served.'}\nturns: 6\npolicy: round_robin\n")
        assert files
        result = kernel.run(f"scene run {scene}")
        speakers = [row[1] for row in result.rows]
        assert speakers[0] == "(narrator)" and len(speakers) == 7
        assert all(a != b for a, b in zip(speakers[1:], speakers[2:]))  # nobody speaks twice in a row
        assert set(speakers[1:]) == {"ann", "bob", "carol"}
        time.sleep(0.3)
        assert len(agent_lines(kernel, "parlour")) == 6  # and then the scene is over
        assert kernel.run("floor ls").rows == []
    finally:
        kernel.close()


def test_addressed_member_answers_alone(duckdb_url: str, tmp_path: Path) -> None:
    kernel = start(duckdb_url)
    try:
        seat_in_hall(kernel, tmp_path, "addressed", 1)
        kernel.run("channel post hall Bob, what do you think?")
        wait_until(lambda: len(agent_lines(kernel, "hall")) == 1)
        time.sleep(0.3)
        assert agent_lines(kernel, "hall") == [("bob", "I hear you: Bob, what do you think?")]
    finally:
        kernel.close()


@pytest.mark.slow
def test_agents_stop_after_max_agent_turns_until_a_person_speaks(duckdb_url: str, tmp_path: Path) -> None:
    kernel = start(duckdb_url)
    try:
        seat_in_hall(kernel, tmp_path, "round_robin", 3)
        kernel.run("channel post hall hello everyone")
        wait_until(lambda: len(agent_lines(kernel, "hall")) == 3)
        time.sleep(0.4)
        assert len(agent_lines(kernel, "hall")) == 3
        kernel.run("channel post hall and again")  # a person speaks: the floor opens again
        wait_until(lambda: len(agent_lines(kernel, "hall")) == 6)
    finally:
        kernel.close()


def test_model_policy_lets_the_model_pick(duckdb_url: str, tmp_path: Path) -> None:
    kernel = start(duckdb_url, classify_reply='{"label": "carol"}')
    try:
        seat_in_hall(kernel, tmp_path, "model", 1)
        kernel.run("channel post hall who wants to go first?")
        wait_until(lambda: len(agent_lines(kernel, "hall")) == 1)
        assert agent_lines(kernel, "hall")[0][0] == "carol"
    finally:
        kernel.close()


def test_scenes_in_different_channels_run_concurrently(duckdb_url: str, tmp_path: Path) -> None:
    kernel = start(duckdb_url)
    try:
        cast(tmp_path, ("ann", "bob", "dan", "eve"))
        one = write(tmp_path / "one.yaml", "name: one\nchannel: c1\nagents: [ann.yaml, bob.yaml]\nopening: {text: go}\nturns: 5\n")
        two = write(tmp_path / "two.yaml", "name: two\nchannel: c2\nagents: [dan.yaml, eve.yaml]\nopening: {text: go}\nturns: 5\n")

        async def both() -> list:
            return await asyncio.gather(kernel.execute(f"scene run {one}"), kernel.execute(f"scene run {two}"))

        first, second = kernel.call(both())
        assert len(first.rows) == 6 and len(second.rows) == 6
        assert {r[1] for r in first.rows[1:]} == {"ann", "bob"} and {r[1] for r in second.rows[1:]} == {"dan", "eve"}
    finally:
        kernel.close()


def test_bad_scene_file_names_the_field(duckdb_url: str, tmp_path: Path) -> None:
    kernel = start(duckdb_url)
    try:
        bad = write(tmp_path / "bad.yaml", "name: x\nchannel: c\nagents: [a.yaml]\nopening: {text: hi}\npolicy: shouting\n")
        with pytest.raises(Exception) as err:
            kernel.run(f"scene run {bad}")
        assert "bad.yaml:3: field 'agents'" in str(err.value) and "bad.yaml:5: field 'policy'" in str(err.value)
    finally:
        kernel.close()
