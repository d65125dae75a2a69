"""Correction from the conversation and by command: the wrong fact is retracted (kept, marked with the
message that retracted it), the right one believed, and the retracted one never reaches a prompt's notes
or a recall again; `agent replay --at` before the correction shows the old belief."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_facts import history, notes, told_then
from test_people import ask, prompt_of, spawned, start

from tobio.errors import TobioError
from tobio.kernel import Kernel
from tobio.people.extract import read
from tobio.people.module import PeopleModule

from conftest import write


@pytest.fixture
def kernel(db_url: str, tmp_path: Path) -> Iterator[Kernel]:
    with spawned(db_url, tmp_path) as k:
        yield k


@pytest.fixture
def duck(duckdb_url: str, tmp_path: Path) -> Iterator[Kernel]:
    with spawned(duckdb_url, tmp_path) as k:
        yield k


def known(kernel: Kernel, person: str = "ada") -> dict[str, str]:
    return PeopleModule.of(kernel).known(kernel.agents.get("tobio").id, person)


def say_as_tobio(kernel: Kernel, user: str, text: str) -> None:
    """Post a line as tobio in the user's private channel (what it said, for "no, it's Rex")."""

    async def go() -> None:
        _, channel = await kernel.agents.open_dm(user, "tobio")
        await kernel.transport.post(channel, text, sender=kernel.agents.get("tobio"), role="assistant")

    kernel.call(go())


# -- reading a correction: the class, in several phrasings --------------------------------------------
@pytest.mark.parametrize(("text", "facts", "denied"), [
    ("No, my dog is called Rex.", {("dog", "Rex")}, set()),
    ("no my dog is called Rex", {("dog", "Rex")}, set()),
    ("Nope, my dog's name is Rex.", {("dog", "Rex")}, set()),
    ("That's not right, I live in Oslo.", {("home", "Oslo")}, set()),
    ("that is wrong. I live in Oslo", {("home", "Oslo")}, set()),
    ("Actually my name is Ada.", {("name", "Ada")}, set()),
    ("Actually, I'm Ada.", {("name", "Ada")}, set()),
    ("You got it wrong: my dog is Rex.", {("dog", "Rex")}, set()),
    ("I said my dog is called Rex!", {("dog", "Rex")}, set()),
    ("I told you, I work as a pilot.", {("job", "pilot")}, set()),
    ("My dog isn't called Max, it's Rex.", {("", "Rex")}, {("dog", "Max")}),
    ("No, it's Rex, not Max.", {("", "Rex")}, {(None, "Max")}),
    ("My name is not Bob. It's Ada.", {("", "Ada")}, {("name", "Bob")}),
    ("Nope, I'm not a nurse, I'm a doctor.", {("is", "a doctor")}, {("is", "a nurse")}),
])
def test_a_correction_is_read_in_several_phrasings(text: str, facts: set[tuple[str, str]], denied: set[tuple[Any, str]]) -> None:
    statement = read(text)
    assert statement.correction
    assert {(f.key, f.value) for f in statement.facts} == facts and set(statement.denied) == denied


@pytest.mark.parametrize("text", ["My dog is called Rex.", "I moved to Oslo.", "Is my dog called Rex?", "Hi! I'm Ada.",
                                  "Actually, I moved to Oslo last month."])
def test_news_and_questions_are_not_corrections(text: str) -> None:
    assert not read(text).correction


# -- in a conversation --------------------------------------------------------------------------------
@pytest.mark.parametrize("correction", [
    "No, my dog is called Rex.",
    "That's not right, my dog's name is Rex.",
    "My dog isn't called Max, it's Rex.",
    "No, it's Rex, not Max.",
])
def test_a_correction_retracts_the_wrong_fact_and_keeps_it_marked(duck: Kernel, correction: str) -> None:
    ask(duck, "ada", "Hi! My name is Ada and my dog is called Max.")
    ask(duck, "ada", correction)
    retracting = duck.run(f"sql SELECT max(id) FROM messages WHERE content = '{correction.replace(chr(39), chr(39) * 2)}'").rows[0][0]
    assert known(duck)["dog"] == "Rex" and known(duck)["name"] == "Ada"
    dogs = [r for r in history(duck) if r["key"] == "dog"]
    assert [(d["value"], d["source"]) for d in dogs] == [("Max", "rule"), ("Rex", "correction")]
    assert dogs[0]["retracted"] is not None and dogs[0]["retracted_by"] == retracting
    assert dogs[1]["valid_from"] == dogs[0]["valid_from"] and dogs[1]["confidence"] == 0.95  # true all along


def test_no_its_rex_corrects_what_the_agent_last_said(duck: Kernel) -> None:
    ask(duck, "ada", "My dog is called Max and my cat is called Tom.")
    say_as_tobio(duck, "ada", "Your dog Max sounds lovely!")
    ask(duck, "ada", "No, it's Rex.")
    assert known(duck)["dog"] == "Rex" and known(duck)["cat"] == "Tom"


def test_a_retracted_fact_never_reaches_a_prompt_note_or_a_recall(duck: Kernel) -> None:
    ask(duck, "ada", "My dog is called Max.")
    for line in ("I like tea.", "The weather is nice."):
        ask(duck, "ada", line)
    ask(duck, "ada", "No, my dog is called Rex.")
    told = notes(prompt_of(duck, "ada", "What is my dog called?"))
    assert "Your dog is called Rex." in told and "Max" not in told and "used to" not in told
    hits = duck.run("memory search tobio 'dog called Max' -k 10").records()
    assert not any("Max" in h["content"] and "Rex" not in h["content"] for h in hits)
    assert any("Rex" in h["content"] for h in hits)
    assert duck.run("sql SELECT count(*) FROM memory_forgotten WHERE requested_by = 'people'").rows[0][0] == 1
    assert duck.run("sql SELECT count(*) FROM messages WHERE content = 'My dog is called Max.'").rows[0][0] == 1  # kept


def test_replay_before_the_correction_shows_the_old_belief(kernel: Kernel) -> None:
    before = told_then(kernel, "ada", "My dog is called Max and I live in Berlin.", "That's not right, my dog is called Rex.")
    old = kernel.run(f"agent replay tobio --at {before}").data
    new = kernel.run("agent replay tobio").data
    assert old["people"]["ada"]["dog"] == "Max" and new["people"]["ada"]["dog"] == "Rex"
    assert "dog" not in new["people_past"].get("ada", {})  # retracted: it was never true, so not "used to"
    assert kernel.run("sql SELECT count(*) FROM people_facts WHERE value = 'Max'").rows[0][0] == 1


# -- by command, within the agent's own memory ----------------------------------------------------------
def test_memory_correct_and_people_forget_retract_without_deleting(kernel: Kernel) -> None:
    ask(kernel, "ada", "My dog is called Max and I work as a baker.")
    out = kernel.run("memory correct tobio ada dog=Rex")
    assert "retracted" in (out.note or "") and known(kernel)["dog"] == "Rex"
    kernel.run("people forget tobio ada job")
    assert "job" not in known(kernel)
    rows = {(r["key"], r["value"]): r for r in history(kernel)}
    assert rows[("dog", "Max")]["retracted"] is not None and rows[("dog", "Rex")]["source"] == "command"
    assert rows[("job", "baker")]["retracted"] is not None and rows[("job", "baker")]["retracted_by"] is None
    with pytest.raises(TobioError, match="knows no 'pet'"):
        kernel.run("people forget tobio ada pet")
    with pytest.raises(TobioError, match="KEY=VALUE"):
        kernel.run("memory correct tobio ada dog")


def test_memory_forget_of_a_message_retracts_the_facts_learnt_from_it(duck: Kernel) -> None:
    ask(duck, "ada", "My dog is called Max.")
    ask(duck, "ada", "I live in Lisbon.")
    message = duck.run("sql SELECT id FROM messages WHERE content = 'My dog is called Max.'").rows[0][0]
    out = duck.run(f"memory forget tobio {message}")
    assert out.data["retracted"] == ["ada dog=Max"] and known(duck).get("dog") is None and known(duck)["home"] == "Lisbon"


def test_an_agent_corrects_only_its_own_memory(duckdb_url: str, tmp_path: Path) -> None:
    duck = start(duckdb_url, reflect_every=0)
    try:
        write(tmp_path / "tobio.yaml", "name: Tobio\ndescription: A friendly artificial person.\n")
        agent = write(tmp_path / "agent.yaml", "name: tobio\ntype: persona\npersona: tobio.yaml\nmodel: m\nstream: false\n"
                      "commands: [memory correct, people forget]\n")
        duck.run(f"agent spawn {agent}")
        _corrects_only_its_own(duck)
    finally:
        duck.close()


def _corrects_only_its_own(duck: Kernel) -> None:
    ask(duck, "ada", "My dog is called Max.")
    duck.run("memory correct tobio ada dog=Rex", caller="tobio")  # its own belief: allowed
    assert known(duck)["dog"] == "Rex"
    with pytest.raises(TobioError, match="may only name itself"):
        duck.run("people forget ada tobio name", caller="tobio")  # another agent's memory: refused
    with pytest.raises(TobioError, match="may only name itself"):
        duck.run("memory correct ada tobio name=Bob", caller="tobio")


@pytest.mark.slow
def test_the_web_page_corrects_a_fact_and_forgets_a_memory(duckdb_url: str, tmp_path: Path) -> None:
    """In a real Chromium: the sidebar shows what the agent believes about the person; "correct" with
    dog=Rex retracts Max (kept, marked), "forget" on a memory shown stops its retrieval and retracts
    what was learnt from it, and "wrong" on a fact retracts it."""
    from browser import click_button, open_chat, say, wait_element, wait_gone, wait_text
    from test_web import free_port

    from tobio.web.serve import serve

    with spawned(duckdb_url, tmp_path) as kernel:
        server = serve(kernel, "127.0.0.1", free_port())
        try:
            page = open_chat(server.url, "My dog is called Max.")
            try:
                wait_text(page, "Nice to meet you.", 60)
                wait_text(page, "dog: Max", 30)
                wait_element(page, "input[placeholder='key=value, e.g. dog=Rex']").send_keys("dog=Rex")
                click_button(page, "correct")
                wait_text(page, "dog: Rex", 30)
                wait_gone(page, "dog: Max", 10)

                say(page, "I live in Porto.")
                wait_text(page, "Tell me more.", 30)
                wait_text(page, "home: Porto", 30)
                said = kernel.run("memory search tobio 'I live in Porto.' -k 1").data
                assert [(r["kind"], r["content"]) for r in said] == [("message", "I live in Porto.")]
                click_button(page, "forget")  # the first: the best memory for the last line, itself
                wait_gone(page, "home: Porto", 30)
                assert kernel.run("memory facts tobio user").data["dog"] == "Rex"
                click_button(page, "wrong")  # dog: Rex, the one fact left, was never true
                wait_gone(page, "dog: Rex", 30)
            finally:
                page.quit()
            versions = kernel.run("memory facts tobio user --history").records()
            assert {("dog", "Max"), ("dog", "Rex"), ("home", "Porto")} <= {(r["key"], r["value"]) for r in versions}  # kept, marked
            believed = kernel.run("memory facts tobio user").data
            assert "dog" not in believed and "home" not in believed
            remaining = kernel.run("memory search tobio 'I live in Porto.' -k 3").data
            assert said[0]["id"] not in [r["id"] for r in remaining if r["kind"] == "message"]
        finally:
            server.stop()
