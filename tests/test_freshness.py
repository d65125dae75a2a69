"""Repetition and parroting control: a reply reusing a recent message's word trigrams is sampled again
with a penalty, each resample recorded as a step of the run that produced the posted reply."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tobio.config.schema import KernelConfig
from tobio.kernel import Kernel
from tobio.models.module import models_of
from tobio.providers.scripted import ScriptedProvider
from tobio.turn.freshness import penalised, staleness

from conftest import write

SAME = "I love the old steam trains, they puff and whistle all day long."
FRESH = "Yesterday I counted every carriage of a freight train: forty two!"


def start(url: str, replies: list[str]) -> Kernel:
    config = KernelConfig(modules=["models", "persona"], providers={"s": {"type": "scripted", "replies": replies}},
                          models={"m": {"provider": "s", "model": "x", "purpose": "chat", "params": {"temperature": 0.3, "seed": 5}}})
    return Kernel(config, database=url).start()


def spawn(kernel: Kernel, tmp_path: Path, stream: bool = False) -> None:
    write(tmp_path / "p.yaml", "name: Tobio\ndescription: An artificial person who loves trains.\n")
    agent = write(tmp_path / "a.yaml", f"name: tobio\ntype: persona\npersona: p.yaml\nmodel: m\nstream: {str(stream).lower()}\n")
    kernel.run(f"agent spawn {agent}")


def ask(kernel: Kernel, text: str) -> str:
    from tobio.agents.conversation import exchange

    return kernel.call(exchange(kernel, "tobio", text, user="ada", timeout=30)).content


def steps(kernel: Kernel) -> list[tuple[Any, ...]]:
    kernel.call(kernel.writer.flush())
    rows = kernel.run("sql SELECT s.run_id, s.message_id, s.params, s.result FROM steps s WHERE s.kind = 'resample' ORDER BY s.id").rows
    return [(r[0], r[1], _json(r[2]), _json(r[3])) for r in rows or []]


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def calls(kernel: Kernel) -> int:
    provider = models_of(kernel).get("m").provider
    assert isinstance(provider, ScriptedProvider)
    return provider.calls


# -- the check --------------------------------------------------------------------------------------
def test_staleness_names_the_worst_overlap_and_whose_it_was() -> None:
    assert staleness(FRESH, [SAME], ["Hello there, how are you?"]).score == 0.0
    own = staleness(SAME, ["Hi!", SAME], [])
    assert own.score == 1.0 and own.source == "own" and own.stale()
    parrot = staleness("So glad you are finding your own path, Mara.", [], ["I'm so glad you are finding your own path."])
    assert parrot.source == "other" and parrot.stale()
    assert not staleness("I am glad you came.", ["I am glad"], []).stale()  # a shared phrase is not a repeat


def test_resample_parameters_get_hotter_and_change_the_seed() -> None:
    base = {"temperature": 0.3, "repeat_penalty": 1.15, "seed": 5, "max_tokens": 96}
    first, second = penalised(base, 1), penalised(base, 2)
    assert base["temperature"] < first["temperature"] < second["temperature"]
    assert base["repeat_penalty"] < first["repeat_penalty"] < second["repeat_penalty"]
    assert len({base["seed"], first["seed"], second["seed"]}) == 3
    assert first["max_tokens"] == 96 and base == {"temperature": 0.3, "repeat_penalty": 1.15, "seed": 5, "max_tokens": 96}


# -- in a persona agent's turn -------------------------------------------------------------------------
def test_a_repeated_reply_is_resampled_and_the_resample_recorded(duckdb_url: str, tmp_path: Path) -> None:
    kernel = start(duckdb_url, [SAME, SAME, FRESH])
    try:
        spawn(kernel, tmp_path)
        assert ask(kernel, "Tell me about yourself.") == SAME
        assert calls(kernel) == 1
        assert ask(kernel, "Tell me more.") == FRESH  # the second SAME was stale: one resample
        assert calls(kernel) == 3
        [(run_id, message_id, params, result)] = steps(kernel)
        assert result["rejected"] == SAME and result["with"] == "own" and result["overlap"] == 1.0
        assert result["run"] == run_id and result["chosen"] is True and result["rejected_run"] != run_id
        assert params["attempt"] == 1 and params["params"]["temperature"] > 0.3 and params["params"]["seed"] != 5
        posted = kernel.run(f"sql SELECT content FROM messages WHERE id = {message_id}").rows
        assert posted == [(FRESH,)]  # the step belongs to the run that produced the posted message
    finally:
        kernel.close()


def test_parroting_the_other_speaker_is_resampled(duckdb_url: str, tmp_path: Path) -> None:
    kernel = start(duckdb_url, ["You said: {last}", FRESH])
    try:
        spawn(kernel, tmp_path)
        assert ask(kernel, "I am so glad that you are finding your own path in life.") == FRESH
        [(_, _, _, result)] = steps(kernel)
        assert result["with"] == "other" and result["rejected"].startswith("You said: I am so glad")
    finally:
        kernel.close()


def test_when_every_candidate_is_stale_the_least_stale_is_posted(duckdb_url: str, tmp_path: Path) -> None:
    half = "I love the old steam trains, and I also like modern electric ones a great deal."
    kernel = start(duckdb_url, [SAME, SAME, SAME, half])
    try:
        spawn(kernel, tmp_path)
        ask(kernel, "Hello.")
        assert ask(kernel, "Tell me more.") == half  # still overlaps, but least
        assert calls(kernel) == 4  # the reply and two resamples, no more
        recorded = steps(kernel)
        assert [r[2]["attempt"] for r in recorded] == [1, 2]
        assert [r[3]["chosen"] for r in recorded] == [False, True]
    finally:
        kernel.close()


def test_a_fresh_reply_costs_no_extra_call(duckdb_url: str, tmp_path: Path) -> None:
    kernel = start(duckdb_url, [SAME, FRESH, "Do you like trains too?"])
    try:
        spawn(kernel, tmp_path)
        for text in ("Hi", "More?", "And?"):
            ask(kernel, text)
        assert calls(kernel) == 3 and steps(kernel) == []
    finally:
        kernel.close()


@pytest.mark.parametrize("stream", [True, False])
def test_streamed_and_whole_replies_alike(duckdb_url: str, tmp_path: Path, stream: bool) -> None:
    kernel = start(duckdb_url, [SAME, SAME, FRESH])
    try:
        spawn(kernel, tmp_path, stream)
        ask(kernel, "One.")
        assert ask(kernel, "Two.") == FRESH
    finally:
        kernel.close()


def test_saying_again_who_it_is_is_not_a_repeat(duckdb_url: str, tmp_path: Path) -> None:
    intro = "I'm Tobio, an artificial person who loves trains. What's your name?"
    kernel = start(duckdb_url, [intro, intro, FRESH])
    try:
        spawn(kernel, tmp_path)
        assert ask(kernel, "Hi! Who are you?") == intro
        assert ask(kernel, "Sorry, what was your name again?") == intro  # its own words and the question's
        assert calls(kernel) == 2 and steps(kernel) == []
    finally:
        kernel.close()


def test_a_failed_resample_keeps_the_reply(duckdb_url: str, tmp_path: Path) -> None:
    config = KernelConfig(modules=["models", "persona"],
                          providers={"s": {"type": "scripted", "replies": [SAME, SAME, FRESH], "fail_every": 3, "fail_retryable": False}},
                          models={"m": {"provider": "s", "model": "x", "purpose": "chat"}})
    kernel = Kernel(config, database=duckdb_url).start()
    try:
        spawn(kernel, tmp_path)
        ask(kernel, "Hi")
        assert ask(kernel, "Tell me more.") == SAME  # call 3, the resample, failed: the stale reply still goes out
    finally:
        kernel.close()


# -- echoes of the instructions ---------------------------------------------------------------------
ECHO = "You are Tobio. An artificial person who loves trains."  # the reminder spawn()'s persona gets


def test_only_whole_sentences_copied_from_an_instruction_are_cut() -> None:
    from tobio.turn.echo import strip_echoes

    mood = "Your mood right now: cheerful. Let it colour how you answer."
    assert strip_echoes(f"Trains are great! (3). {ECHO}", [ECHO, mood]) == "Trains are great! (3)."
    assert strip_echoes(f"Hello!\n{ECHO}\nLet it colour how you answer.", [ECHO, mood]) == "Hello!"
    kept = ["I'm Tobio, an artificial person who loves trains.", "Your dog is called Biscuit.", "I see.", "Yes, you are."]
    for text in kept:  # its own voice, a fact from a note, too short to judge, words of an instruction but not a sentence of one
        assert strip_echoes(text, [ECHO, mood]) == text
    assert strip_echoes(ECHO, []) == ECHO


def test_a_copied_reminder_is_not_said_and_an_echo_alone_is_resampled(duckdb_url: str, tmp_path: Path) -> None:
    kernel = start(duckdb_url, [f"Trains are great! {ECHO}", ECHO, FRESH])
    try:
        spawn(kernel, tmp_path)
        assert ask(kernel, "Hello.") == "Trains are great!"  # judged fresh on what it says: no resample
        assert calls(kernel) == 1
        assert ask(kernel, "Who are you?") == FRESH  # nothing but the reminder: sampled again
        [(_, _, _, result)] = steps(kernel)
        assert result["with"] == "echo" and result["rejected"] == "" and result["like"] == ECHO
        rows = kernel.run("sql SELECT content FROM messages WHERE role = 'assistant' ORDER BY id;").rows
        assert [r[0] for r in rows] == ["Trains are great!", FRESH]
    finally:
        kernel.close()
