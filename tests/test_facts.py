"""Facts with time and source: validity windows, confidence and the message each came from; news ends an
old value's window ("used to"), on every backend, and the migration that adds the windows to old rows."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_people import _spawn, ask, prompt_of, spawned, start

from tobio.kernel import Kernel
from tobio.people.extract import read
from tobio.people.module import PeopleModule


@pytest.fixture
def kernel(db_url: str, tmp_path: Path) -> Iterator[Kernel]:
    with spawned(db_url, tmp_path) as k:
        yield k


def history(kernel: Kernel, person: str = "ada") -> list[dict[str, Any]]:
    return kernel.run(f"memory facts tobio {person} --history").records()


def notes(messages: list[dict[str, Any]]) -> str:
    """The system messages of a prompt (system prompt, per-person note, recalled memories): what the
    agent is told, as opposed to the transcript of what was said."""
    return "\n".join(str(m["content"]) for m in messages if m["role"] == "system")


def told_then(kernel: Kernel, person: str, first: str, then: str) -> str:
    """`person` says `first`, then `then`; returns a moment between the two on the kernel's clock (naive UTC,
    as rows are stamped), for `agent replay --at`."""
    from tobio.db.migrations import utcnow

    ask(kernel, person, first)
    time.sleep(0.05)
    kernel.call(PeopleModule.of(kernel).flush())
    between = utcnow().replace(tzinfo=None).isoformat()
    time.sleep(0.05)
    ask(kernel, person, then)
    return between


@pytest.mark.parametrize(("text", "key", "value"), [
    ("I moved to Paris.", "home", "Paris"),
    ("I've just moved to Paris!", "home", "Paris"),
    ("I live in Porto now.", "home", "Porto"),
    ("I now live in Oslo these days.", "home", "Oslo"),
])
def test_news_is_read_as_a_fact_not_a_correction(text: str, key: str, value: str) -> None:
    statement = read(text)
    assert [(f.key, f.value) for f in statement.facts] == [(key, value)] and not statement.correction


def test_no_longer_true_is_news_that_ends_a_fact() -> None:
    statement = read("I don't live in Berlin anymore.")
    assert statement.ended == (("home", "Berlin"),) and not statement.correction and not statement.denied


def test_each_fact_records_when_it_became_true_its_message_and_confidence(kernel: Kernel) -> None:
    ask(kernel, "ada", "Hi! My name is Ada and I live in Berlin.")
    first = kernel.run("sql SELECT id, created_at FROM messages WHERE content LIKE 'Hi! My name is Ada%'").rows[0]
    rows = {r["key"]: r for r in history(kernel)}
    assert rows["home"]["message"] == first[0] and str(rows["home"]["valid_from"]) == str(first[1])  # sqlite: text
    assert rows["home"]["valid_to"] is None and rows["home"]["retracted"] is None
    assert rows["home"]["confidence"] == 0.8 and rows["relationship"]["confidence"] == 0.5  # a rule; derived


def test_news_closes_the_old_window_keeps_both_and_replay_shows_each_at_its_time(kernel: Kernel) -> None:
    before = told_then(kernel, "ada", "I live in Berlin.", "I moved to Paris.")
    homes = [r for r in history(kernel) if r["key"] == "home"]
    assert [h["value"] for h in homes] == ["Berlin", "Paris"]
    assert homes[0]["valid_to"] == homes[1]["valid_from"] and homes[0]["until"] is not None
    assert homes[0]["retracted"] is None and homes[1]["valid_to"] is None  # ended, not retracted: it was true
    assert PeopleModule.of(kernel).known(kernel.agents.get("tobio").id, "ada")["home"] == "Paris"
    old = kernel.run(f"agent replay tobio --at {before}").data
    new = kernel.run("agent replay tobio").data
    assert old["people"]["ada"]["home"] == "Berlin" and "ada" not in old["people_past"]
    assert new["people"]["ada"]["home"] == "Paris" and new["people_past"]["ada"]["home"][0].startswith("Berlin (from ")


def test_the_prompt_says_used_to_for_a_recent_change_and_only_the_present_later(db_url: str, tmp_path: Path) -> None:
    kernel = start(db_url, reflect_every=0, used_to_turns=3)
    try:
        _spawn(kernel, tmp_path)
        ask(kernel, "ada", "I work as a baker and I live in Berlin.")
        assert "used to" not in notes(prompt_of(kernel, "ada", "Hello."))
        ask(kernel, "ada", "I moved to Paris.")
        told = notes(prompt_of(kernel, "ada", "Where do I live?"))
        assert "You live in Paris. You used to live in Berlin." in told and "You work as a baker." in told
        for line in ("Nice weather.", "I like tea.", "See you."):
            ask(kernel, "ada", line)
        later = notes(prompt_of(kernel, "ada", "Where do I live?"))
        assert "You live in Paris." in later and "Berlin" not in later
    finally:
        kernel.close()


def test_a_fact_that_stops_being_true_leaves_the_prompt(kernel: Kernel) -> None:
    ask(kernel, "ada", "I live in Berlin.")
    ask(kernel, "ada", "I don't live in Berlin anymore.")
    assert "home" not in PeopleModule.of(kernel).known(kernel.agents.get("tobio").id, "ada")
    told = notes(prompt_of(kernel, "ada", "Where do I live?"))
    assert "You live in Berlin" not in told and "You used to live in Berlin." in told
    (home,) = [r for r in history(kernel) if r["key"] == "home"]
    assert home["valid_to"] is not None and home["retracted"] is None


def test_windows_and_retractions_survive_a_restart(db_url: str, tmp_path: Path) -> None:
    kernel = start(db_url, reflect_every=0)
    try:
        _spawn(kernel, tmp_path)
        ask(kernel, "ada", "My dog is called Max and I live in Berlin.")
        ask(kernel, "ada", "I moved to Paris.")
        ask(kernel, "ada", "No, my dog is called Rex.")
    finally:
        kernel.close()
    kernel = start(db_url, reflect_every=0)
    try:
        known = PeopleModule.of(kernel).known(kernel.run("sql SELECT id FROM agents WHERE name = 'tobio'").rows[0][0], "ada")
        assert known["dog"] == "Rex" and known["home"] == "Paris"
        assert kernel.run("sql SELECT count(*) FROM people_facts WHERE value IN ('Max', 'Berlin')").rows[0][0] == 2
    finally:
        kernel.close()


def test_the_migration_gives_old_rows_a_window_and_a_confidence(db_url: str, tmp_path: Path) -> None:
    """A database from before m002_fact_windows: the columns are added, and old rows were true from when
    they were learnt until they were superseded, with their source's confidence."""
    kernel = start(db_url, reflect_every=0)
    try:
        _spawn(kernel, tmp_path)
        ask(kernel, "ada", "I live in Berlin.")
        ask(kernel, "ada", "I live in Paris.")

        def undo(conn: Any) -> None:
            for column in ("valid_from", "valid_to", "confidence", "retracted_at", "retracted_by"):
                conn.exec_driver_sql(f"ALTER TABLE people_facts DROP COLUMN {column}")
            conn.exec_driver_sql("DELETE FROM schema_migrations WHERE name = 'people.m002_fact_windows'")

        kernel.call(PeopleModule.of(kernel).flush())
        kernel.call(kernel.db.call(undo))
    finally:
        kernel.close()
    kernel = start(db_url, reflect_every=0)
    try:
        homes = [r for r in history(kernel) if r["key"] == "home"]
        assert [(h["value"], h["confidence"]) for h in homes] == [("Berlin", 0.8), ("Paris", 0.8)]
        assert homes[0]["valid_from"] == homes[0]["since"] and homes[0]["valid_to"] == homes[0]["until"] is not None
        assert homes[1]["valid_to"] is None
        assert kernel.run("sql SELECT count(*) FROM schema_migrations WHERE name = 'people.m002_fact_windows'").rows[0][0] == 1
    finally:
        kernel.close()
