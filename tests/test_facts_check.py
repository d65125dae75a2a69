"""Who is who, checked before a reply is posted: asked about a fact it holds, the agent states it (and
nothing known wrong); asked its own name, it says its own; other replies pass untouched."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from test_people import _spawn, ask, spawned, start

from tobio.kernel import Kernel
from tobio.people.check import asked_keys, checked, self_checked

FACTS = {"name": "Ada", "dog": "Biscuit", "home": "Paris", "job": "pilot", "favourite colour": "green"}


@pytest.mark.parametrize(("question", "key"), [
    ("What is my name?", "name"), ("Do you remember my name?", "name"), ("Who am I?", "name"),
    ("What is my dog called?", "dog"), ("What's my dog's name again?", "dog"),
    ("Which city do I live in?", "home"), ("Where do I live these days?", "home"),
    ("What do I do for a living?", "job"), ("What is my job?", "job"),
    ("What is my favourite colour?", "favourite colour"),
])
def test_questions_about_the_person_name_the_fact_they_ask_for(question: str, key: str) -> None:
    assert asked_keys(question, FACTS) == (key,)


@pytest.mark.parametrize("question", ["What is your name?", "Do you like trains?", "My dog is called Biscuit.", "How are you?"])
def test_other_lines_ask_for_nothing_held(question: str) -> None:
    assert asked_keys(question, FACTS) == ()


def test_a_reply_with_the_wrong_name_is_answered_from_the_record() -> None:
    fixed = checked("Your name is Tobio. Do you like trains?", "What is my name?", "Tobio", "Ada", FACTS, {}, {})
    assert fixed == "Your name is Ada. Do you like trains?"
    assert checked("Biscuit, my name.", "What is my name?", "Tobio", "Ada", FACTS, {}, {}) == "Your name is Ada."


def test_a_right_reply_passes_untouched() -> None:
    assert checked("You're Ada, of course!", "What is my name?", "Tobio", "Ada", FACTS, {}, {}) is None
    assert checked("Biscuit! Such a good dog.", "What is my dog called?", "Tobio", "Ada", FACTS, {}, {}) is None
    assert checked("I love steam trains.", "What do you love?", "Tobio", "Ada", FACTS, {}, {}) is None


def test_the_persons_fact_said_as_the_agents_own_fails() -> None:
    """Seen on the embedded model: "My dog is called Biscuit." and "Lisbon is my home." to Ada."""
    assert checked("My dog is called Biscuit. He loves fetch.", "What is my dog called?", "Tobio", "Ada", FACTS, {}, {}) \
        == "Your dog is called Biscuit."
    assert checked("Paris is my home!", "Which city do I live in?", "Tobio", "Ada", FACTS, {}, {}) == "You live in Paris."
    assert checked("I'm Ada.", "What is my name?", "Tobio", "Ada", FACTS, {}, {}) == "Your name is Ada."
    assert checked("You live in Paris, my friend.", "Which city do I live in?", "Tobio", "Ada", FACTS, {}, {}) is None


def test_a_retracted_or_changed_value_in_the_reply_fails_it() -> None:
    wrong = {"dog": {"Max"}}
    assert checked("Biscuit or Max?", "What is my dog called?", "Tobio", "Ada", FACTS, {}, wrong) == "Your dog is called Biscuit."
    was = {"home": "Berlin"}
    assert checked("You live in Berlin.", "Where do I live?", "Tobio", "Ada", FACTS, was, {}) == "You live in Paris."
    assert checked("You lived in Berlin.", "Where did I live before?", "Tobio", "Ada", FACTS, was, {}) is None
    assert checked("In Paris.", "Where did I live before?", "Tobio", "Ada", FACTS, was, {}) == "You used to live in Berlin."


def test_asked_its_own_name_the_agent_says_its_own_not_the_persons() -> None:
    assert checked("I'm Ada, nice to meet you!", "What's your name?", "Tobio", "Ada", FACTS, {}, {}) == "I'm Tobio."
    assert checked("I'm Tobio, an artificial person.", "Who are you?", "Tobio", "Ada", FACTS, {}, {}) is None
    assert checked("Hello there! What's yours?", "What's your name?", "Tobio", None, {}, {}, {}) == "I'm Tobio. What's yours?"


TOBIO = "A curious, warm artificial person who lives in a small computer and loves trains."


def test_asked_what_it_is_or_loves_the_reply_agrees_with_its_description() -> None:
    """Seen on the embedded model: "Are you a human being?" -> "I'm a human being. I live in a small computer…"."""
    assert self_checked("I'm a human being. I live in a small computer.", "Are you a human being?", TOBIO) == \
        "No, I'm not a human. I'm a curious, warm artificial person who lives in a small computer and loves trains."
    assert self_checked("No, I'm an artificial person.", "Are you human?", TOBIO) is None
    assert self_checked("I love new places. Do you travel?", "What do you love most?", TOBIO) == "I love trains! Do you travel?"
    assert self_checked("Steam trains, of course.", "What do you love most?", TOBIO) is None
    assert self_checked("I'm a human being.", "Are you human?", "A retired sailor from Hull.") is None  # it says nothing


@pytest.fixture
def kernel(duckdb_url: str, tmp_path: Path) -> Iterator[Kernel]:
    with spawned(duckdb_url, tmp_path) as k:
        yield k


def test_a_posted_reply_is_checked_and_what_the_model_said_is_noted(kernel: Kernel) -> None:
    ask(kernel, "ada", "Hi! My name is Ada and my dog is called Max.")
    ask(kernel, "ada", "No, my dog is called Rex.")
    assert ask(kernel, "ada", "What is my dog called?") == "Your dog is called Rex."
    assert ask(kernel, "ada", "What is my name?") == "Your name is Ada."
    assert ask(kernel, "ada", "And what is your name?") == "I'm Tobio."
    assert ask(kernel, "ada", "Tell me about trains.") in ("Nice to meet you.", "Tell me more.", "I see.")


def test_the_check_can_be_turned_off(duckdb_url: str, tmp_path: Path) -> None:
    kernel = start(duckdb_url, reflect_every=0, check_replies=False)
    try:
        _spawn(kernel, tmp_path)
        ask(kernel, "ada", "Hi! My name is Ada.")
        assert ask(kernel, "ada", "What is my name?") in ("Nice to meet you.", "Tell me more.", "I see.")
    finally:
        kernel.close()
