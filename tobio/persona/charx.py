"""CHARX: a Character Card V3 as a zip with `card.json` at its root and the assets it names (`embeded://path`).

Spec: github.com/kwaroran/character-card-spec-v3 (SPEC_V3.md, "CHARX"). A CHARX is someone else's
file, so it is read defensively: the archive, each member and their sum are capped, as is the
compression ratio (zip bombs) and the JSON nesting; member names must be plain relative paths.
Everything besides `card.json` (assets, app-specific JSON) is kept byte for byte under the data dir
(`charx/KEY/`), so an export of an unedited persona writes the same members back.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path, PurePosixPath
from typing import Any

from tobio.config.jsondata import loads
from tobio.errors import ConfigError
from tobio.paths import data_dir, slug, within
from tobio.persona.cards import card_to_persona, persona_to_card
from tobio.persona.schema import Persona

CARD = "card.json"
MAX_ARCHIVE_BYTES = 256 * 1024 * 1024
MAX_MEMBER_BYTES = 64 * 1024 * 1024
MAX_TOTAL_BYTES = 512 * 1024 * 1024
MAX_MEMBERS = 2000
MAX_RATIO = 200  # uncompressed / compressed, per member
MAX_CARD_BYTES = 8 * 1024 * 1024
MAX_CARD_DEPTH = 64


def _safe_name(name: str, source: object) -> str:
    """A member name as a relative POSIX path with no `..`, drive or backslash; else an error."""
    path = PurePosixPath(name)
    if not name or "\\" in name or name.startswith("/") or ":" in path.parts[0] or any(p in ("..", "") for p in path.parts):
        raise ConfigError(f"{source}: unsafe path in archive: {name!r}")
    return str(path)


def read_charx(path: str | Path) -> tuple[dict[str, Any], dict[str, bytes]]:
    """(the card, every other member by path) of a CHARX file."""
    file = Path(path).expanduser()
    try:
        size = file.stat().st_size
        if size > MAX_ARCHIVE_BYTES:
            raise ConfigError(f"{file}: {size} bytes; a CHARX may have at most {MAX_ARCHIVE_BYTES}")
        archive = zipfile.ZipFile(file)
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read ({exc.strerror})") from None
    except zipfile.BadZipFile:
        raise ConfigError(f"{file}: not a zip archive (a CHARX is a zip with card.json)") from None
    with archive:
        infos = [i for i in archive.infolist() if not i.is_dir()]
        if len(infos) > MAX_MEMBERS:
            raise ConfigError(f"{file}: {len(infos)} members (at most {MAX_MEMBERS})")
        total = 0
        files: dict[str, bytes] = {}
        for info in infos:
            name = _safe_name(info.filename, file)
            if info.flag_bits & 0x1:
                raise ConfigError(f"{file}: {name} is encrypted")
            limit = MAX_CARD_BYTES if name == CARD else MAX_MEMBER_BYTES
            if info.file_size > limit or info.file_size > MAX_RATIO * max(info.compress_size, 1024):
                raise ConfigError(f"{file}: {name} would unpack to {info.file_size} bytes (too large)")
            total += info.file_size
            if total > MAX_TOTAL_BYTES:
                raise ConfigError(f"{file}: members unpack to more than {MAX_TOTAL_BYTES} bytes")
            if name in files:
                raise ConfigError(f"{file}: {name} appears twice")
            with archive.open(info) as member:
                blob = member.read(limit + 1)
            if len(blob) > limit:
                raise ConfigError(f"{file}: {name} is larger than its header says")
            files[name] = blob
    if CARD not in files:
        raise ConfigError(f"{file}: no card.json at the root of the archive")
    try:
        text = files.pop(CARD).decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ConfigError(f"{file}: card.json is not UTF-8") from None
    card = loads(text, f"{file}:card.json", limit=MAX_CARD_DEPTH)
    if not isinstance(card, dict):
        raise ConfigError(f"{file}: card.json holds a JSON {type(card).__name__}, not a card")
    return card, files


def import_charx(path: str | Path) -> tuple[Persona, dict[str, bytes]]:
    """A persona from a CHARX, and the archive's other members (assets) to keep with it."""
    card, files = read_charx(path)
    return card_to_persona(card, str(path)), files


def charx_bytes(persona: Persona, files: dict[str, bytes] | None = None) -> bytes:
    """The CHARX for `persona`: card.json (V3) first, then the kept members in their order."""
    import json

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        card = json.dumps(persona_to_card(persona, 3), ensure_ascii=False, indent=2) + "\n"
        archive.writestr(CARD, card.encode("utf-8"))
        for name, blob in (files or {}).items():
            archive.writestr(_safe_name(name, "assets"), blob)
    return buffer.getvalue()


def export_charx(persona: Persona, path: str | Path, files: dict[str, bytes] | None = None) -> None:
    Path(path).expanduser().write_bytes(charx_bytes(persona, files))


def assets_dir(key: str, root: Path | None = None) -> Path:
    """Where a persona's CHARX members live: DATA/charx/KEY (KEY as a slug)."""
    return (root or data_dir()) / "charx" / slug(key)


def save_assets(key: str, files: dict[str, bytes], root: Path | None = None) -> Path:
    """Write the members under the persona's assets dir, never outside it; returns the dir."""
    base = assets_dir(key, root)
    base.mkdir(parents=True, exist_ok=True)
    for name, blob in files.items():
        target = base / _safe_name(name, "assets")
        if within(target.parent if target.parent.exists() else base, base) is None:
            raise ConfigError(f"asset {name!r} would be written outside {base}")
        target.parent.mkdir(parents=True, exist_ok=True)
        if within(target.parent, base) is None:
            raise ConfigError(f"asset {name!r} would be written outside {base}")
        target.write_bytes(blob)
    return base


def load_assets(key: str, root: Path | None = None) -> dict[str, bytes]:
    """The members saved for a persona (empty when it came from elsewhere)."""
    base = assets_dir(key, root)
    if not base.is_dir():
        return {}
    return {p.relative_to(base).as_posix(): p.read_bytes() for p in sorted(base.rglob("*")) if p.is_file() and not p.is_symlink()}
