"""Character Card V1/V2/V3 import and export: JSON and PNG round trips lose nothing, edits show up."""

from __future__ import annotations

import base64
import copy
import json
import struct
import zlib
from pathlib import Path
from typing import Any

import pytest

from tobio.errors import ConfigError
from tobio.persona.cards import (
    export_card,
    import_card,
    persona_to_card,
    persona_to_yaml,
    placeholder_png,
    read_card,
)
from tobio.persona.schema import Exchange, load_persona

REPO = Path(__file__).resolve().parent.parent

MES_EXAMPLE = (
    "<START>\n{{user}}: Where does this line go?\n{{char}}: All the way to the coast, {{user}}.\n"
    "<START>\n{{char}}: *{{char}} checks the timetable*\nThe 8:15 is late again.\n"
    "{{user}}: Again?\n{{char}}: Again."
)


def v2_card() -> dict[str, Any]:
    return {
        "spec": "chara_card_v2",
        "spec_version": "2.0",
        "x_exporter": {"app": "somewhere", "build": 7},  # unknown top-level field
        "data": {
            "name": "Mika",
            "description": "{{char}} is a night-train conductor who knows every station by its smell.",
            "personality": "calm, dry humour; punctual",
            "scenario": "A sleeper train crossing the mountains, a little after midnight.",
            "first_mes": "*{{char}} punches your ticket* Evening, {{user}}. Cabin four.",
            "mes_example": MES_EXAMPLE,
            "creator_notes": "Works best with slow, quiet chats.",
            "system_prompt": "Write {{char}}'s next reply. Costs are in $$, e.g. ${fare}.",
            "post_history_instructions": "Keep replies under 80 words.",
            "alternate_greetings": ["*yawns* Tickets, please.", "Last stop is the sea."],
            "character_book": {
                "name": "Line 9 lore",
                "scan_depth": 4,
                "token_budget": 300,
                "recursive_scanning": False,
                "extensions": {"x_book": True},
                "entries": [
                    {"keys": ["tunnel"], "content": "The long tunnel takes eleven minutes.", "extensions": {},
                     "enabled": True, "insertion_order": 10, "id": 1, "comment": "geography",
                     "selective": False, "constant": False, "position": "after_char"},
                ],
            },
            "tags": ["trains", "slice of life"],
            "creator": "test-suite",
            "character_version": "1.2",
            "extensions": {"talkativeness": "0.5", "depth_prompt": {"depth": 4, "prompt": "stay calm"}},
            "x_unknown_data_field": [1, {"nested": None}],
        },
    }


def v3_card() -> dict[str, Any]:
    card = v2_card()
    card.update(spec="chara_card_v3", spec_version="3.0")
    card["data"].update(
        nickname="Mi",
        assets=[{"type": "icon", "uri": "ccdefault:", "name": "main", "ext": "png"}],
        creator_notes_multilingual={"en": "Slow chats.", "fr": "Conversations lentes."},
        source=["https://example.invalid/cards/mika"],
        group_only_greetings=["Everyone, tickets please."],
        creation_date=1700000000,
        modification_date=1700000500,
    )
    card["data"]["personality"] = "calm, dry humour, punctual"
    card["data"]["character_book"]["entries"][0].update(use_regex=False, case_sensitive=True)
    return card


def write_json(path: Path, card: Any) -> Path:
    path.write_text(json.dumps(card), encoding="utf-8")
    return path


def png_with(chunks: list[tuple[bytes, bytes]]) -> bytes:
    """A tiny PNG with the given extra chunks before IEND, built here so the tests don't trust the writer."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", 1, 1, 8, 6, 0, 0, 0)
    body = chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0\0\0\0\0"))
    return b"\x89PNG\r\n\x1a\n" + body + b"".join(chunk(k, b) for k, b in chunks) + chunk(b"IEND", b"")


def b64(card: dict[str, Any]) -> bytes:
    return base64.b64encode(json.dumps(card).encode())


def png_texts(path: Path) -> dict[str, bytes]:
    blob, pos, out = path.read_bytes(), 8, {}
    while pos < len(blob):
        length, kind = struct.unpack_from(">I4s", blob, pos)
        body = blob[pos + 8 : pos + 8 + length]
        assert struct.unpack_from(">I", blob, pos + 8 + length)[0] == zlib.crc32(kind + body)
        if kind == b"tEXt":
            key, _, text = body.partition(b"\0")
            out[key.decode()] = text
        pos += 12 + length
    return out


@pytest.mark.parametrize("make,version", [(v2_card, 2), (v3_card, 3)])
@pytest.mark.parametrize("suffix", [".json", ".png"])
def test_round_trip_loses_nothing(tmp_path: Path, make: Any, version: int, suffix: str) -> None:
    original = make()
    persona = import_card(write_json(tmp_path / "in.json", original))
    export_card(persona, tmp_path / f"out{suffix}", version=version)
    assert read_card(tmp_path / f"out{suffix}") == original
    again = import_card(tmp_path / f"out{suffix}")
    assert again == persona
    export_card(again, tmp_path / f"again{suffix}", version=version)
    assert read_card(tmp_path / f"again{suffix}") == original


def test_mapping_to_persona_fields(tmp_path: Path) -> None:
    persona = import_card(write_json(tmp_path / "mika.json", v2_card()))
    assert persona.name == "Mika"
    assert persona.description == (
        "Mika is a night-train conductor who knows every station by its smell.\n\n"
        "Scenario: A sleeper train crossing the mountains, a little after midnight."
    )
    assert persona.personality == ["calm", "dry humour", "punctual"]
    assert persona.greeting == "*Mika punches your ticket* Evening, {{user}}. Cabin four."
    assert persona.example_dialogue == [
        Exchange(user="Where does this line go?", reply="All the way to the coast, {{user}}."),
        Exchange(user="", reply="*Mika checks the timetable*\nThe 8:15 is late again."),
        Exchange(user="Again?", reply="Again."),
    ]
    # What a persona has no field for stays in `card`, verbatim.
    assert persona.card["x_exporter"] == {"app": "somewhere", "build": 7}
    assert persona.card["data"]["system_prompt"] == v2_card()["data"]["system_prompt"]
    assert persona.card["data"]["extensions"]["depth_prompt"] == {"depth": 4, "prompt": "stay calm"}


def test_v3_nickname_stands_for_char(tmp_path: Path) -> None:
    persona = import_card(write_json(tmp_path / "mika.json", v3_card()))
    assert persona.name == "Mika"
    assert persona.greeting == "*Mi punches your ticket* Evening, {{user}}. Cabin four."


def test_personality_that_is_prose_stays_whole(tmp_path: Path) -> None:
    card = v2_card()
    card["data"]["personality"] = "Quiet at first. Once she trusts you, she talks about trains for hours, happily."
    persona = import_card(write_json(tmp_path / "c.json", card))
    assert persona.personality == [card["data"]["personality"]]
    card["data"]["personality"] = ""
    assert import_card(write_json(tmp_path / "c.json", card)).personality == []


def test_lossless_mapping_is_not_stored_twice(tmp_path: Path) -> None:
    persona = import_card(write_json(tmp_path / "c.json", v2_card()))
    # {{char}} comes back from the name, so these texts are not kept a second time in `card`...
    assert {"name", "description", "scenario", "first_mes"}.isdisjoint(persona.card["data"])
    # ...but "calm, dry humour; punctual" would come back with a comma, and the examples as one
    # <START> block per exchange, so those originals are kept.
    assert persona.card["data"]["personality"] == "calm, dry humour; punctual"
    assert persona.card["data"]["mes_example"] == MES_EXAMPLE


def test_literal_name_in_card_text_survives(tmp_path: Path) -> None:
    card = v2_card()
    card["data"]["description"] = "Mika (Mika Tanaka to her friends) is {{char}}, a conductor."
    persona = import_card(write_json(tmp_path / "c.json", card))
    assert persona.description.startswith("Mika (Mika Tanaka to her friends) is Mika, a conductor.")
    assert persona_to_card(persona) == card


def test_edits_show_up_in_the_export(tmp_path: Path) -> None:
    original = v3_card()
    persona = import_card(write_json(tmp_path / "in.json", original))
    edited = persona.model_copy(update={
        "description": "A retired conductor.\n\nScenario: The last train of the season.",
        "personality": ["calm", "nostalgic"],
        "greeting": "Oh, a passenger!",
        "example_dialogue": [Exchange(user="Miss the trains?", reply="Every day.")],
        "goals": ["find the old timetable"],
    })
    card = persona_to_card(edited, version=3)
    data = card["data"]
    assert data["description"] == "A retired conductor."
    assert data["scenario"] == "The last train of the season."
    assert data["personality"] == "calm, nostalgic"
    assert data["first_mes"] == "Oh, a passenger!"
    assert data["mes_example"] == "<START>\n{{user}}: Miss the trains?\n{{char}}: Every day."
    assert data["extensions"]["tobio"] == {"goals": ["find the old timetable"]}
    # Everything not edited is untouched.
    for key in ("name", "system_prompt", "character_book", "assets", "creation_date", "x_unknown_data_field"):
        assert data[key] == original["data"][key]
    assert {k: v for k, v in data["extensions"].items() if k != "tobio"} == original["data"]["extensions"]
    assert card["x_exporter"] == original["x_exporter"]
    # Re-imported, it says the same; its `card` no longer holds the pre-edit text it kept before.
    again = import_card(write_json(tmp_path / "edited.json", card))
    assert again.model_dump(exclude={"card"}) == edited.model_dump(exclude={"card"})
    assert persona_to_card(again, version=3) == card


def test_version_conversion(tmp_path: Path) -> None:
    v2_persona = import_card(write_json(tmp_path / "v2.json", v2_card()))
    as_v3 = persona_to_card(v2_persona, version=3)
    assert (as_v3["spec"], as_v3["spec_version"]) == ("chara_card_v3", "3.0")
    assert as_v3["data"]["group_only_greetings"] == []
    assert as_v3["data"]["character_book"]["entries"][0]["use_regex"] is False
    assert as_v3["data"]["mes_example"] == MES_EXAMPLE

    v3_persona = import_card(write_json(tmp_path / "v3.json", v3_card()))
    as_v2 = persona_to_card(v3_persona, version=2)
    assert (as_v2["spec"], as_v2["spec_version"]) == ("chara_card_v2", "2.0")
    assert as_v2["data"] == v3_card()["data"]  # V3 fields ride along: V2 apps must not destroy them


def test_v3_png_has_both_chunks_and_is_a_valid_image(tmp_path: Path) -> None:
    persona = import_card(write_json(tmp_path / "in.json", v3_card()))
    export_card(persona, tmp_path / "mika.png", version=3)
    texts = png_texts(tmp_path / "mika.png")
    assert set(texts) == {"chara", "ccv3"}
    assert json.loads(base64.b64decode(texts["ccv3"])) == v3_card()
    assert json.loads(base64.b64decode(texts["chara"]))["spec"] == "chara_card_v2"
    blob, pos, pixels = (tmp_path / "mika.png").read_bytes(), 8, b""  # a 64x64 RGBA picture, read with zlib
    assert struct.unpack_from(">4sIIBB", blob, 12) == (b"IHDR", 64, 64, 8, 6)
    while pos < len(blob):
        length, kind = struct.unpack_from(">I4s", blob, pos)
        pixels += blob[pos + 8 : pos + 8 + length] if kind == b"IDAT" else b""
        pos += 12 + length
    rows = zlib.decompress(pixels)
    assert len(rows) == 64 * (1 + 64 * 4) and all(rows[i * (1 + 64 * 4)] <= 4 for i in range(64))  # filter bytes


def test_export_into_a_given_image_replaces_old_card(tmp_path: Path) -> None:
    base = tmp_path / "portrait.png"
    old = v2_card()
    old["data"]["name"] = "Someone Else"
    base.write_bytes(png_with([(b"tEXt", b"chara\0" + b64(old)), (b"tEXt", b"Comment\0kept")]))
    persona = import_card(write_json(tmp_path / "in.json", v2_card()))
    export_card(persona, tmp_path / "out.png", version=2, image=base)
    texts = png_texts(tmp_path / "out.png")
    assert texts["Comment"] == b"kept"
    assert read_card(tmp_path / "out.png") == v2_card()
    blob = (tmp_path / "out.png").read_bytes()
    assert blob.count(b"chara\0") == 1 and blob.endswith(b"IEND\xaeB`\x82")


def test_png_prefers_ccv3_over_chara(tmp_path: Path) -> None:
    old, new = v2_card(), v3_card()
    old["data"]["name"] = "Backfilled"
    path = tmp_path / "both.png"
    path.write_bytes(png_with([(b"tEXt", b"chara\0" + b64(old)), (b"tEXt", b"ccv3\0" + b64(new))]))
    persona = import_card(path)
    assert persona.name == "Mika" and persona.card["spec"] == "chara_card_v3"


@pytest.mark.parametrize("kind", ["zTXt", "iTXt", "iTXt-compressed"])
def test_png_compressed_and_international_text_chunks(tmp_path: Path, kind: str) -> None:
    text = b64(v2_card())
    body = {
        "zTXt": b"chara\0\0" + zlib.compress(text),
        "iTXt": b"chara\0\0\0en\0\0" + text,
        "iTXt-compressed": b"chara\0\1\0\0\0" + zlib.compress(text),
    }[kind]
    path = tmp_path / "card.png"
    path.write_bytes(png_with([(kind[:4].encode(), body)]))
    assert read_card(path) == v2_card()


def test_v1_card_is_upgraded(tmp_path: Path) -> None:
    v1_fields = ("name", "description", "personality", "scenario", "first_mes", "mes_example")
    v1 = {key: v2_card()["data"][key] for key in v1_fields}
    v1["chat"] = "Mika - 2023-5-1 @12h"  # what old exporters add next to the V1 fields
    persona = import_card(write_json(tmp_path / "v1.json", v1))
    assert persona.name == "Mika" and persona.greeting and len(persona.example_dialogue) == 3
    card = persona_to_card(persona, version=2)
    assert card["spec"] == "chara_card_v2" and card["chat"] == v1["chat"]
    assert {key: card["data"][key] for key in v1 if key != "chat"} == {k: v for k, v in v1.items() if k != "chat"}
    assert card["data"]["extensions"] == {} and card["data"]["alternate_greetings"] == []


def test_native_persona_exports_and_comes_back(tmp_path: Path) -> None:
    persona = load_persona(REPO / "configs" / "personas" / "tobio.yaml")
    export_card(persona, tmp_path / "tobio.png", version=3)
    card = read_card(tmp_path / "tobio.png")
    assert card["spec"] == "chara_card_v3"
    assert set(card["data"]) >= {"name", "first_mes", "mes_example", "extensions", "group_only_greetings"}
    assert card["data"]["extensions"]["tobio"]["goals"] == list(persona.goals)
    again = import_card(tmp_path / "tobio.png")
    assert again.model_copy(update={"card": {}}) == persona


def test_persona_yaml_loads_back_equal(tmp_path: Path) -> None:
    persona = import_card(write_json(tmp_path / "in.json", v3_card()))
    text = persona_to_yaml(persona)
    assert "card:" in text and text.startswith("#")
    path = tmp_path / "mika.yaml"
    path.write_text(text, encoding="utf-8")
    loaded = load_persona(path)
    assert loaded == persona  # `$$` and `${fare}` in the system prompt survive the file's ${VAR} expansion
    assert persona_to_card(loaded, version=3) == v3_card()


def test_unedited_native_yaml_has_no_card(tmp_path: Path) -> None:
    persona = load_persona(REPO / "configs" / "personas" / "tobio.yaml")
    text = persona_to_yaml(persona)
    assert "card:" not in text
    (tmp_path / "p.yaml").write_text(text, encoding="utf-8")
    assert load_persona(tmp_path / "p.yaml") == persona


def _error(path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        import_card(path)
    message = str(info.value)
    assert str(path) in message and "\n" not in message
    return message


def test_errors_name_the_file(tmp_path: Path) -> None:
    no_card = tmp_path / "plain.png"
    no_card.write_bytes(placeholder_png())
    assert "no character card" in _error(no_card)

    bad_b64 = tmp_path / "bad64.png"
    bad_b64.write_bytes(png_with([(b"tEXt", b"chara\0not base64!!")]))
    assert "not valid base64" in _error(bad_b64)

    bad_json = tmp_path / "badjson.png"
    bad_json.write_bytes(png_with([(b"tEXt", b"chara\0" + base64.b64encode(b"{nope"))]))
    assert "not valid JSON" in _error(bad_json)

    (tmp_path / "broken.json").write_text("{", encoding="utf-8")
    assert "not valid JSON" in _error(tmp_path / "broken.json")

    future = v3_card()
    future["spec"] = "chara_card_v9"
    assert "chara_card_v9" in _error(write_json(tmp_path / "future.json", future))
    assert "not a Character Card" in _error(write_json(tmp_path / "list.json", [1, 2]))

    fake = tmp_path / "fake.png"
    fake.write_bytes(b"GIF89a")
    assert "not a PNG" in _error(fake)

    truncated = tmp_path / "cut.png"
    truncated.write_bytes(placeholder_png()[:30])
    assert "truncated" in _error(truncated)

    nameless = copy.deepcopy(v2_card())
    nameless["data"]["name"] = ""
    assert "no name" in _error(write_json(tmp_path / "nameless.json", nameless))


def test_export_errors(tmp_path: Path) -> None:
    persona = load_persona(REPO / "configs" / "personas" / "tobio.yaml")
    with pytest.raises(ConfigError, match="json or .png"):
        export_card(persona, tmp_path / "card.txt")
    (tmp_path / "notpng.png").write_bytes(b"nope")
    with pytest.raises(ConfigError, match="not a PNG"):
        export_card(persona, tmp_path / "out.png", image=tmp_path / "notpng.png")
    with pytest.raises(ValueError):
        persona_to_card(persona, version=4)
