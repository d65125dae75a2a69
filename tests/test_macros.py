"""SillyTavern macros as SillyTavern applies them, and card fields in the persona prompt."""

from __future__ import annotations

import random
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tobio.persona.schema import Exchange, Persona
from tobio.turn.macros import MacroEnv, apply_macros, format_moment, split_examples

WHEN = datetime(2024, 9, 28, 14, 5, 9, tzinfo=timezone.utc)


def env(**kw: Any) -> MacroEnv:
    return MacroEnv(**{"char": "Mika", "user": "Ada", "now": WHEN, "rng": random.Random(1), "seed": "t1", **kw})


def test_names_and_legacy_forms() -> None:
    text = "{{char}} greets {{USER}}. <BOT> waves at <user>; {{Char}}!"
    assert apply_macros(text, env()) == "Mika greets Ada. Mika waves at Ada; Mika!"
    assert apply_macros("{{unknown}} stays", env()) == "{{unknown}} stays"
    assert apply_macros("", env()) == ""
    assert apply_macros("In {{group}}", env(group="Mika, Sol")) == "In Mika, Sol"
    assert apply_macros("In {{group}}", env()) == "In Mika"  # outside a group: the character


def test_time_and_date_like_moment_in_english() -> None:
    assert apply_macros("{{time}} on {{date}}, a {{weekday}}", env()) == "2:05 PM on September 28, 2024, a Saturday"
    assert apply_macros("{{isodate}} {{isotime}}", env()) == "2024-09-28 14:05"
    assert apply_macros("{{datetimeformat YYYY/MM/DD [at] HH:mm}}", env()) == "2024/09/28 at 14:05"
    assert format_moment(WHEN, "dddd, MMMM D") == "Saturday, September 28"
    assert apply_macros("{{time_UTC+2}}", env()) == "4:05 PM"


def test_random_pick_roll() -> None:
    picks = {apply_macros("{{random:a,b,c}}", env(rng=random.Random(i))) for i in range(40)}
    assert picks == {"a", "b", "c"}
    assert apply_macros("{{random::x, y::z}}", env()) in ("x, y", "z")  # `::` keeps commas and spaces
    assert apply_macros("{{random:one\\, two}}", env()) == "one, two"  # an escaped comma is no separator
    # {{pick}} is stable for the same seed, text and place; another seed may choose otherwise.
    once = apply_macros("{{pick:a,b,c,d,e,f}}", env())
    assert all(apply_macros("{{pick:a,b,c,d,e,f}}", env(rng=random.Random(i))) == once for i in range(10))
    assert len({apply_macros("{{pick:a,b,c,d,e,f}}", env(seed=str(i))) for i in range(30)}) > 1
    rolls = {int(apply_macros("{{roll:d6}}", env(rng=random.Random(i)))) for i in range(200)}
    assert rolls == set(range(1, 7))
    assert 5 <= int(apply_macros("{{roll:2d10+3}}", env())) <= 23
    assert apply_macros("{{roll 20}}", env()).isdigit()
    assert apply_macros("[{{roll:banana}}]", env()) == "[]"


def test_newline_trim_comments_noop_reverse() -> None:
    assert apply_macros("a{{newline}}b", env()) == "a\nb"
    assert apply_macros("top\n\n{{trim}}\nbottom", env()) == "topbottom"
    assert apply_macros("keep {{// a note for card authors }}this{{noop}}", env()) == "keep this"
    assert apply_macros("{{reverse:abc}}", env()) == "cba"


def test_examples_split_at_start() -> None:
    text = "<START>\n{{user}}: Hi\n{{char}}: Hello\n<start>\n{{char}}: Alone\n\n<START>\n"
    assert split_examples(text) == ["{{user}}: Hi\n{{char}}: Hello", "{{char}}: Alone"]
    assert split_examples("  ") == []


def test_persona_prompt_fields_get_macros() -> None:
    card = {"spec": "chara_card_v2", "data": {"system_prompt": "Write {{char}}'s reply to {{user}}.",
                                             "post_history_instructions": "Stay brief, {{char}}.",
                                             "alternate_greetings": ["Yo {{user}}!"]}}
    persona = Persona(name="Mika", description="{{char}} knows {{user}}.", personality=["fond of {{user}}"],
                      example_dialogue=[Exchange(user="{{user}}: hi", reply="Hi {{user}}"), Exchange(user="", reply="Alone.")],
                      greeting="Hello {{user}}", card=card)
    system = persona.system_prompt([], env=env())
    assert system.startswith("Write Mika's reply to Ada.\nYou are Mika. Mika knows Ada.\nPersonality: fond of Ada.")
    assert persona.example_messages(env()) == [{"role": "user", "content": "Ada: hi"}, {"role": "assistant", "content": "Hi Ada"},
                                               {"role": "assistant", "content": "Alone."}]
    assert persona.post_history(env()) == "Stay brief, Mika."
    assert persona.greetings() == ["Hello {{user}}", "Yo {{user}}!"]
    assert persona.greeting_text(env(), 1) == "Yo Ada!"
    assert "{{user}}" in persona.system_prompt([])  # without an env, text is as written


def test_imported_card_prompt_has_no_macros_left(tmp_path: Path) -> None:
    import json

    from tobio.persona.cards import import_card

    card = {"spec": "chara_card_v2", "spec_version": "2.0", "data": {
        "name": "Flux", "description": "{{char}} is wary of {{user}}.", "personality": "", "scenario": "{{user}}'s flat",
        "first_mes": "*{{char}} stares at <USER>*", "mes_example": "<START>\n{{user}}: Describe your traits?\n{{char}}: Meow.",
        "post_history_instructions": "Never write for {{user}}.", "tags": [], "creator": "", "character_version": "",
        "extensions": {}}}
    path = tmp_path / "flux.json"
    path.write_text(json.dumps(card))
    persona = import_card(path)
    e = env(char="Flux")
    rendered = "\n".join([persona.system_prompt([], env=e), persona.post_history(e), persona.greeting_text(e) or "",
                          *(m["content"] for m in persona.example_messages(e))])
    assert "{{" not in rendered and "<START>" not in rendered and "<USER>" not in rendered
    assert "Flux is wary of Ada." in rendered and "Describe your traits?" in rendered and "*Flux stares at Ada*" in rendered


def test_greeting_choices_for_an_agent() -> None:
    from tobio.persona.prompt import greeting

    card = {"spec": "chara_card_v3", "data": {"nickname": "Mi", "alternate_greetings": ["Back again, {{user}}?"]}}
    agent = type("A", (), {"name": "mika", "persona": Persona(name="Mika", greeting="Hi {{user}}, I'm {{char}}.", card=card)})()
    assert greeting(agent, "Ada") == "Hi Ada, I'm Mi."  # type: ignore[arg-type]
    assert greeting(agent, "Ada", 1) == "Back again, Ada?"  # type: ignore[arg-type]
    agent.persona = Persona(name="Quiet")
    assert greeting(agent) is None  # type: ignore[arg-type]


def test_a_new_chat_opens_with_the_cards_greeting(tmp_path: Path, duckdb_url: str) -> None:
    """As SillyTavern opens a chat: the card's first message, macros filled in for whoever opens it, once."""
    import json

    from tobio.config.schema import KernelConfig
    from tobio.kernel import Kernel

    card = {"spec": "chara_card_v2", "spec_version": "2.0", "data": {
        "name": "Flux", "description": "A cat.", "personality": "", "scenario": "", "first_mes": "*{{char}} blinks at {{user}}*",
        "mes_example": "", "tags": [], "creator": "", "character_version": "", "extensions": {}}}
    (tmp_path / "flux.json").write_text(json.dumps(card))
    providers = {"s": {"type": "scripted", "replies": ["Meow."]}}
    models = {"chat-default": {"provider": "s", "model": "x", "purpose": "chat"}}
    config = KernelConfig(modules=["models", "persona"], providers=providers, models=models, base_dir=tmp_path)
    with Kernel(config, database=duckdb_url) as kernel:
        kernel.run(f"persona import {tmp_path / 'flux.json'}")
        (tmp_path / "flux-agent.yaml").write_text("name: flux\ntype: persona\npersona: personas/flux.yaml\n")
        kernel.run(f"agent spawn {tmp_path / 'flux-agent.yaml'}")
        for _ in range(2):  # opening the same conversation again does not greet twice
            kernel.call(kernel.agents.open_dm("ada", "flux", greet=True))
        kernel.call(kernel.flush())
        said = kernel.run("sql SELECT content FROM messages WHERE channel = 'dm.ada.flux';").rows
        assert [row[0] for row in said] == ["*Flux blinks at ada*"]
        kernel.call(kernel.agents.open_dm("ben", "flux"))  # without greet (ask(), tests): nothing said
        assert not kernel.run("sql SELECT content FROM messages WHERE channel = 'dm.ben.flux';").rows
