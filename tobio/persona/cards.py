"""Character Card V1/V2/V3 import and export, as JSON or as a PNG with the card in a text chunk.

Specs: github.com/malfoyslastname/character-card-spec-v2 and github.com/kwaroran/character-card-spec-v3.
A persona made from a card keeps in `Persona.card` the card minus what the persona's own fields
reproduce: spec, unknown fields, `extensions`, lorebook, and the original text of a mapped field only
where the mapping loses something (a personality split on `;`, the name written out next to `{{char}}`).
So an unedited persona exports the very same card, and an edited field exports as edited.
"""

from __future__ import annotations

import base64
import copy
import json
import re
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from tobio.config import jsondata
from tobio.config.cardfile import PNG_SIGNATURE, is_card_chunk, png_chunks, read_card
from tobio.config.files import read_bytes
from tobio.config.limits import MAX_IMPORT_BYTES
from tobio.errors import ConfigError
from tobio.persona.schema import Persona

V2, V3 = "chara_card_v2", "chara_card_v3"
SPECS = {2: (V2, "2.0"), 3: (V3, "3.0")}
V1_FIELDS = ("name", "description", "personality", "scenario", "first_mes", "mes_example")
# Every field a spec requires, in the spec's order, with what a missing one defaults to.
_V2_FIELDS: dict[str, Any] = {
    **dict.fromkeys(V1_FIELDS, ""),
    "creator_notes": "", "system_prompt": "", "post_history_instructions": "", "alternate_greetings": [],
    "tags": [], "creator": "", "character_version": "", "extensions": {},
}
REQUIRED = {V2: _V2_FIELDS, V3: {**_V2_FIELDS, "group_only_greetings": []}}
# Persona fields no card has: written to `data.extensions.tobio` so Tobio → card → Tobio loses nothing.
TOBIO_FIELDS = ("speaking_style", "goals", "relationships", "initial_mood", "big_five")


# --- mapping card fields to persona fields and back -------------------------------------------------

_CHAR = re.compile(r"\{\{char\}\}|<bot>", re.IGNORECASE)
_LABELS = r"\{\{user\}\}|<user>|\{\{char\}\}|<bot>"
_SCENARIO = "Scenario: "


def _fill(value: Any, char: str) -> str:
    """Card text with `{{char}}` filled in, since the persona's text goes straight into prompts."""
    return _CHAR.sub(lambda _: char, value) if isinstance(value, str) else ""


def _unfill(text: str, char: str) -> str:
    """The way back: the name as a whole word becomes `{{char}}`, as card apps expect."""
    return re.sub(rf"(?<!\w){re.escape(char)}(?!\w)", "{{char}}", text) if char.strip() else text


def _read_description(card: dict[str, Any], char: str) -> str:
    desc, scenario = _fill(card["description"], char), _fill(card["scenario"], char)
    return "\n\n".join(part for part in (desc, scenario and _SCENARIO + scenario) if part)


def _write_description(text: str, char: str) -> dict[str, Any]:
    text = _unfill(text, char)
    desc, sep, scenario = ("\n\n" + text).rpartition("\n\n" + _SCENARIO)
    return {"description": desc[2:], "scenario": scenario} if sep else {"description": text, "scenario": ""}


def _read_personality(card: dict[str, Any], char: str) -> list[str]:
    """A list when the text looks like one ("shy, clever; loyal"), else the whole text as one item."""
    text = _fill(card["personality"], char).strip()
    items = [item.strip() for item in re.split(r"[,;]", text) if item.strip()]
    if len(items) > 1 and all(len(item) <= 40 and not re.search(r"[.!?]", item) for item in items):
        return items
    return [text] if text else []


def _messages(text: str, char: str) -> list[tuple[str, str]]:
    """(speaker, text) per message; ("", "") marks `<START>`. Unlabelled lines continue the last message."""
    names = f"{_LABELS}|{re.escape(char)}" if char.strip() else _LABELS
    label = re.compile(f"({names}):[ \\t]?", re.IGNORECASE)
    out: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        match = label.match(line)
        if line.strip().lower() == "<start>":
            out.append(("", []))
        elif match:
            out.append(("user" if match.group(1).lower() in ("{{user}}", "<user>") else "char", [line[match.end():]]))
        elif out and out[-1][0]:
            out[-1][1].append(line)
    return [(who, _fill("\n".join(lines).strip(), char)) for who, lines in out]


def _read_examples(card: dict[str, Any], char: str) -> list[dict[str, str]]:
    """`<START>` blocks of `{{user}}:` / `{{char}}:` lines as exchanges; a reply with no question gets user ""."""
    text = card["mes_example"] if isinstance(card["mes_example"], str) else ""
    exchanges: list[dict[str, str]] = []
    asked: list[str] = []
    for who, said in [*_messages(text, char), ("", "")]:
        if who == "user":
            asked.append(said)
        elif who == "char" or asked:
            exchanges.append({"user": "\n".join(asked), "reply": said if who else ""})
            asked = []
    return exchanges


def _write_examples(exchanges: list[dict[str, str]], char: str) -> dict[str, Any]:
    blocks = []
    for ex in exchanges:
        lines = ["<START>"] + ([f"{{{{user}}}}: {_unfill(ex['user'], char)}"] if ex["user"] else [])
        if ex["reply"] or not ex["user"]:
            lines.append(f"{{{{char}}}}: {_unfill(ex['reply'], char)}")
        blocks.append("\n".join(lines))
    return {"mes_example": "\n".join(blocks)}


@dataclass(frozen=True)
class _Mapped:
    """The card fields one persona field is made from, and the way back."""

    attr: str
    keys: tuple[str, ...]
    read: Callable[[dict[str, Any], str], Any]  # card values, name for {{char}} -> persona value (plain data)
    write: Callable[[Any, str], dict[str, Any]]  # persona value, name for {{char}} -> card values


_MAPPED = (
    _Mapped("name", ("name",), lambda card, _: card["name"], lambda name, _: {"name": name}),
    _Mapped("description", ("description", "scenario"), _read_description, _write_description),
    _Mapped("personality", ("personality",), _read_personality,
            lambda items, char: {"personality": _unfill(", ".join(items), char)}),
    _Mapped("greeting", ("first_mes",), lambda card, char: _fill(card["first_mes"], char) or None,
            lambda greeting, char: {"first_mes": _unfill(greeting or "", char)}),
    _Mapped("example_dialogue", ("mes_example",), _read_examples, _write_examples),
)


def _char_name(data: dict[str, Any], name: str) -> str:
    """V3: `{{char}}` stands for the nickname when there is one."""
    nickname = data.get("nickname")
    return nickname if isinstance(nickname, str) and nickname.strip() else name


def _normalize(raw: Any, source: str) -> dict[str, Any]:
    """A deep copy of the card as V2 or V3 with every required field present; a V1 card is upgraded to V2."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: a Character Card is a JSON object, not {type(raw).__name__}")
    spec = raw.get("spec")
    if spec is None and "data" not in raw and isinstance(raw.get("name"), str):
        rest = {key: copy.deepcopy(value) for key, value in raw.items() if key not in V1_FIELDS and key != "spec"}
        card = {"spec": V2, "spec_version": "2.0", **rest, "data": {key: raw.get(key, "") for key in V1_FIELDS}}
    elif isinstance(spec, str) and spec in REQUIRED and isinstance(raw.get("data"), dict):
        card = copy.deepcopy(raw)
    else:
        shown = repr(spec) if len(repr(spec)) <= 40 else repr(spec)[:37] + "..."
        raise ConfigError(f"{source}: not a Character Card (spec {shown}; expected {V2!r}, {V3!r} or a V1 card)")
    data = card["data"]
    for key, default in REQUIRED[card["spec"]].items():
        data.setdefault(key, copy.deepcopy(default))
    if not isinstance(data["name"], str) or not data["name"].strip():
        raise ConfigError(f"{source}: the card has no name")
    return card


def card_to_persona(raw: Any, source: str = "card") -> Persona:
    """Map a card onto a persona; what the persona cannot say is kept in `card` for a lossless export."""
    card = _normalize(jsondata.check_depth(raw, source), source)
    data = card["data"]
    char = _char_name(data, data["name"])
    fields: dict[str, Any] = {}
    for mapped in _MAPPED:
        original = {key: data[key] for key in mapped.keys}
        fields[mapped.attr] = mapped.read(original, char)
        if mapped.write(fields[mapped.attr], char) == original:
            for key in mapped.keys:
                del data[key]
    extensions = data.get("extensions")
    if isinstance(extensions, dict) and isinstance(extensions.get("tobio"), dict):
        fields.update((k, v) for k, v in extensions.pop("tobio").items() if k in TOBIO_FIELDS)
    for key, default in REQUIRED[card["spec"]].items():  # export puts them back; no need to keep them
        if key in data and data[key] == default:
            del data[key]
    try:
        return Persona(**fields, card=card)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors(include_url=False))
        raise ConfigError(f"{source}: {problems}") from None


def persona_to_card(persona: Persona, version: int = 2) -> dict[str, Any]:
    """The card for `persona` in spec `version` (2 or 3): its fields mapped back, everything else as imported."""
    if version not in SPECS:
        raise ValueError(f"Character Card version must be 2 or 3, not {version!r}")
    spec, spec_version = SPECS[version]
    kept = copy.deepcopy(persona.card)
    data = kept.pop("data", None)
    data = data if isinstance(data, dict) else {}
    source_spec, source_version = kept.pop("spec", None), kept.pop("spec_version", None)
    if source_spec == spec and source_version is not None:
        spec_version = source_version
    current = persona.model_dump()
    char = _char_name(data, persona.name)
    out: dict[str, Any] = {}
    for mapped in _MAPPED:
        # Kept original text wins only while the persona still says what that text says.
        stored: dict[str, Any] | None = None
        if data.keys() & set(mapped.keys):
            stored = {key: data.pop(key, _V2_FIELDS[key]) for key in mapped.keys}
        if stored is None or mapped.read(stored, char) != current[mapped.attr]:
            stored = mapped.write(current[mapped.attr], char)
        out.update(stored)
    out.update(data)
    defaults = Persona(name=persona.name).model_dump()
    tobio = {key: current[key] for key in TOBIO_FIELDS if current[key] != defaults[key]}
    if tobio and isinstance(out.get("extensions", {}), dict):
        out["extensions"] = {**out.get("extensions", {}), "tobio": tobio}
    for key, default in REQUIRED[spec].items():
        out.setdefault(key, copy.deepcopy(default))
    if spec == V3 and source_spec != V3:
        _v3_book(out)
    ordered = {**{key: out[key] for key in REQUIRED[spec]}, **out}
    return {"spec": spec, "spec_version": spec_version, **kept, "data": ordered}


def _v3_book(data: dict[str, Any]) -> None:
    """V3 lorebook entries must say `use_regex`; a V2 book's keys are plain text."""
    book = data.get("character_book")
    entries = book.get("entries") if isinstance(book, dict) else None
    for entry in entries if isinstance(entries, list) else []:
        if isinstance(entry, dict):
            entry.setdefault("use_regex", False)


def import_card(path: str | Path) -> Persona:
    """A persona from a Character Card file (.json or .png; V1, V2 or V3)."""
    return card_to_persona(read_card(path), str(path))


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def placeholder_png(size: int = 64) -> bytes:
    """A plain RGBA square, for a card PNG when no portrait is given."""
    row = b"\0" + bytes((0x8E, 0x9A, 0xAF, 0xFF)) * size  # filter type 0, then the pixels
    header = struct.pack(">IIBBBBB", size, size, 8, 6, 0, 0, 0)  # 8-bit RGBA, no interlace
    return PNG_SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(row * size, 9)) + _chunk(b"IEND", b"")


def embed_cards(png: bytes, cards: dict[str, dict[str, Any]], source: object = "image") -> bytes:
    """`png` with any old card chunks replaced by `cards` ({keyword: card}), put before IEND."""
    kept = [
        _chunk(kind, body)
        for kind, body in png_chunks(png, source)
        if kind != b"IEND" and not is_card_chunk(kind, body)
    ]
    for key, card in cards.items():
        text = base64.b64encode(json.dumps(card, ensure_ascii=False, separators=(",", ":")).encode())
        kept.append(_chunk(b"tEXt", key.encode() + b"\0" + text))
    return PNG_SIGNATURE + b"".join(kept) + _chunk(b"IEND", b"")


def card_bytes(
    persona: Persona, path: str | Path, version: int = 2, image: str | Path | bytes | None = None
) -> bytes:
    """The file content of `persona` as a card: .json, or .png (into `image`, else a placeholder) with `chara` (+ `ccv3` for V3)."""
    file = Path(path)
    card = persona_to_card(persona, version)
    if file.suffix.lower() == ".json":
        return (json.dumps(card, ensure_ascii=False, indent=2) + "\n").encode()
    if file.suffix.lower() == ".png":
        # V3 PNGs carry a V2 copy in `chara` too, for apps that only read V2.
        cards = {"chara": card} if version == 2 else {"chara": persona_to_card(persona, 2), "ccv3": card}
        base = read_bytes(image, MAX_IMPORT_BYTES) if isinstance(image, (str, Path)) else image
        return embed_cards(base or placeholder_png(), cards, image if isinstance(image, (str, Path)) else "image")
    raise ConfigError(f"{file}: a card is written as .json or .png, not {file.suffix or 'no extension'!r}")


def export_card(
    persona: Persona, path: str | Path, version: int = 2, image: str | Path | bytes | None = None
) -> None:
    """Write `persona` as a card file (see `card_bytes`); the command `persona export` also refuses to overwrite."""
    Path(path).write_bytes(card_bytes(persona, path, version, image))


# --- persona files ----------------------------------------------------------------------------------


class _Dumper(yaml.SafeDumper):
    """Multi-line text as `|` blocks, so card text stays readable in the persona file."""


def _represent_str(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style="|" if "\n" in text else None)


_Dumper.add_representer(str, _represent_str)


def persona_to_yaml(persona: Persona) -> str:
    """A persona file (what `persona import` writes under configs/personas/) that loads back to `persona`.

    Persona files are data (no ${VAR} expansion), so text such as `$` goes in as it is.
    """
    data = persona.model_dump(mode="json")
    header = "# A persona file: who an artificial person is.\n"
    if data["card"]:
        header += "# `card` keeps what the imported Character Card says beyond these fields, for `persona export`.\n"
    else:
        del data["card"]
    return header + yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)
