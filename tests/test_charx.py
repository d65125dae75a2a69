"""CHARX (zip with card.json and assets): lossless import and export, hostile archives refused."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

import pytest

from tobio.errors import ConfigError
from tobio.lore.hook import card_book
from tobio.lore.schema import AT_DEPTH
from tobio.persona.cards import import_card, persona_to_card, read_card
from tobio.persona.charx import export_charx, import_charx, load_assets, read_charx, save_assets

CARDS = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "cards"
ICON = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4


def v3_card() -> dict[str, Any]:
    return {"spec": "chara_card_v3", "spec_version": "3.0", "data": {
        "name": "Vela", "description": "{{char}} keeps the lighthouse.", "personality": "calm", "scenario": "",
        "first_mes": "The lamp is lit.", "mes_example": "", "creator_notes": "", "system_prompt": "",
        "post_history_instructions": "", "alternate_greetings": ["Storm tonight."], "tags": ["sea"], "creator": "t",
        "character_version": "1", "extensions": {"x_app": {"k": 1}}, "group_only_greetings": [], "nickname": "Ve",
        "assets": [{"type": "icon", "uri": "embeded://assets/icon/images/main.png", "name": "main", "ext": "png"}],
        "creation_date": 1700000000, "modification_date": 1700000100,
        "character_book": {"name": "Coast", "entries": [
            {"keys": ["storm"], "content": "@@depth 0\n@@role user\n@@risu_only 3\nThe lamp must stay lit.", "enabled": True,
             "insertion_order": 5, "use_regex": False, "extensions": {}},
        ]},
    }}


def charx(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, blob in members.items():
            archive.writestr(name, blob)
    return path


def test_charx_round_trip_keeps_card_and_assets(tmp_path: Path) -> None:
    members = {"card.json": json.dumps(v3_card()).encode(), "assets/icon/images/main.png": ICON,
               "x_risu_meta.json": b'{"module": true}'}
    persona, files = import_charx(charx(tmp_path / "vela.charx", members))
    assert persona.name == "Vela" and persona.description.startswith("Ve keeps")
    assert files == {k: v for k, v in members.items() if k != "card.json"}
    saved = save_assets("vela", files, root=tmp_path / "data")
    assert saved == tmp_path / "data" / "charx" / "vela"
    export_charx(persona, tmp_path / "out.charx", load_assets("vela", root=tmp_path / "data"))
    card, back = read_charx(tmp_path / "out.charx")
    assert card == v3_card() and back == files
    again, _ = import_charx(tmp_path / "out.charx")
    assert again == persona
    # V3 decorators in its lorebook are honoured (depth, role) and unknown ones kept.
    book = card_book(type("A", (), {"persona": persona, "persona_key": "vela", "name": "vela"})())
    assert book is not None
    entry = book.entries[0]
    assert (entry.position, entry.depth, entry.role, entry.content) == (AT_DEPTH, 0, 1, "The lamp must stay lit.")
    assert [str(d) for d in entry.unknown] == ["@@risu_only 3"]
    assert persona_to_card(persona, 3)["data"]["character_book"]["entries"][0]["content"].startswith("@@depth 0\n")


@pytest.mark.skipif(not CARDS.is_dir(), reason=f"the real cards are not at {CARDS}")
def test_amy_v3_survives_import_and_export_unchanged(tmp_path: Path) -> None:
    source = CARDS / "contest_Assistant_Amy.png"
    original = read_card(source)  # its `ccv3` chunk
    assert original["spec"] == "chara_card_v3"
    persona = import_card(source)
    assert persona_to_card(persona, 3) == original
    export_charx(persona, tmp_path / "amy.charx")
    card, files = read_charx(tmp_path / "amy.charx")
    assert card == original and files == {}
    again, _ = import_charx(tmp_path / "amy.charx")
    assert again == persona and persona_to_card(again, 3) == original


def _raw_zip(entries: list[tuple[str, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, blob in entries:
            archive.writestr(zipfile.ZipInfo(name), blob, compress_type=zipfile.ZIP_DEFLATED)
    return buffer.getvalue()


@pytest.mark.parametrize("entries,error", [
    ([("card.json", b"{}"), ("../evil.txt", b"x")], "unsafe path"),
    ([("card.json", b"{}"), ("/etc/evil", b"x")], "unsafe path"),
    ([("card.json", b"{}"), ("a\\b", b"x")], "unsafe path"),
    ([("assets/x.png", b"x")], "no card.json"),
    ([("card.json", b"[" * 100 + b"]" * 100)], "nested"),
    ([("card.json", b"\0" * (9 * 1024 * 1024))], "too large"),
    ([("card.json", b"{}"), ("bomb.bin", b"\0" * (30 * 1024 * 1024))], "too large"),
])
def test_hostile_archives_are_refused(tmp_path: Path, entries: list[tuple[str, bytes]], error: str) -> None:
    path = tmp_path / "bad.charx"
    path.write_bytes(_raw_zip(entries))
    with pytest.raises(ConfigError, match=error):
        read_charx(path)
    (tmp_path / "notzip.charx").write_bytes(b"PK not really")
    with pytest.raises(ConfigError, match="not a zip"):
        read_charx(tmp_path / "notzip.charx")


def test_assets_are_written_only_inside_the_data_dir(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unsafe path"):
        save_assets("x", {"../../outside.txt": b"x"}, root=tmp_path)
    assert save_assets("../../etc", {"a.txt": b"x"}, root=tmp_path) == tmp_path / "charx" / "etc"
    assert not (tmp_path.parent / "outside.txt").exists()


def test_persona_commands_import_and_export_charx(tmp_path: Path, duckdb_url: str) -> None:
    """`persona import x.charx` keeps the assets; `persona export NAME y.charx` gives them back."""
    from tobio.config.schema import KernelConfig
    from tobio.kernel import Kernel

    members = {"assets/icon/images/main.png": ICON, "assets/other/notes.txt": b"hello"}
    source = charx(tmp_path / "vela.charx", {"card.json": json.dumps(v3_card()).encode(), **members})
    with Kernel(KernelConfig(modules=["persona"], base_dir=tmp_path / "conf"), database=duckdb_url) as kernel:
        assert "persona 'vela'" in kernel.run(f"persona import {source}").text
        kernel.run(f"persona export vela {tmp_path / 'back.charx'}")
    card, files = read_charx(tmp_path / "back.charx")
    assert files == members
    assert card["data"]["name"] == read_charx(source)[0]["data"]["name"]
