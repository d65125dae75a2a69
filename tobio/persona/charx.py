"""CHARX: a Character Card V3 as a zip with `card.json` at its root and the assets it names (`embeded://path`).

Spec: github.com/kwaroran/character-card-spec-v3 (SPEC_V3.md, "CHARX"). A CHARX is someone else's
file, so it is read defensively: the archive, each member and their sum are capped, as is the
compression ratio (zip bombs) and the JSON nesting; member names must be plain relative paths.
Everything besides `card.json` (assets, app-specific JSON) is kept byte for byte under the data dir
(`charx/KEY/`), so an export of an unedited persona writes the same members back.
"""

from __future__ import annotations

import io
import shutil
import tempfile
import zipfile
from pathlib import Path, PurePosixPath
from typing import Any

from tobio.config.jsondata import loads
from tobio.errors import ConfigError
from tobio.paths import data_dir, slug, within
from tobio.persona.cards import card_to_persona, persona_to_card
from tobio.persona.schema import Persona

CARD = "card.json"
MAX_ARCHIVE_BYTES = 64 * 1024 * 1024
MAX_MEMBER_BYTES = 32 * 1024 * 1024
MAX_TOTAL_BYTES = 96 * 1024 * 1024  # everything an import unpacks, and so writes
MAX_MEMBERS = 2000
MAX_RATIO = 100  # uncompressed / compressed, per member
MAX_TOTAL_RATIO = 8  # all members unpacked / the archive's size (pictures barely compress; a bomb does)
TOTAL_RATIO_FLOOR = 8 * 1024 * 1024  # small archives may unpack to this much whatever their ratio (a big card.json)
MAX_CARD_BYTES = 8 * 1024 * 1024
MAX_CARD_DEPTH = 64


def _safe_name(name: str, source: object) -> str:
    """A member name as a relative POSIX path with no `..`, drive or backslash; else an error."""
    path = PurePosixPath(name)
    if not name or "\\" in name or name.startswith("/") or ":" in path.parts[0] or any(p in ("..", "") for p in path.parts):
        raise ConfigError(f"{source}: unsafe path in archive: {name!r}")
    return str(path)


def _members(archive: zipfile.ZipFile, file: Path, budget: int) -> dict[str, bytes]:
    """Every member's bytes, within `budget` bytes in all (counted as read, not as the headers claim);
    a corrupt member (bad CRC, unknown compression, truncated data) is one ConfigError."""
    infos = [i for i in archive.infolist() if not i.is_dir()]
    if len(infos) > MAX_MEMBERS:
        raise ConfigError(f"{file}: {len(infos)} members (at most {MAX_MEMBERS})")
    names = [_safe_name(info.filename, file) for info in infos]
    dirs = {str(parent) for name in names for parent in PurePosixPath(name).parents if str(parent) != "."}
    clash = next((name for name in names if name in dirs), None)
    if clash is not None:
        raise ConfigError(f"{file}: {clash!r} is both a file and a folder in the archive")
    declared = sum(info.file_size for info in infos)
    if declared > budget:  # refused before anything is unpacked
        raise ConfigError(f"{file}: members would unpack to {declared} bytes (too large): a {file.stat().st_size}-byte CHARX "
                          f"may unpack to at most {budget}")
    total = 0
    files: dict[str, bytes] = {}
    for info, name in zip(infos, names):
        if info.flag_bits & 0x1:
            raise ConfigError(f"{file}: {name} is encrypted")
        limit = min(MAX_CARD_BYTES if name == CARD else MAX_MEMBER_BYTES, budget - total)
        if info.file_size > limit or info.file_size > MAX_RATIO * max(info.compress_size, 1024):
            raise ConfigError(f"{file}: {name} would unpack to {info.file_size} bytes (too large for a "
                              f"{info.compress_size}-byte member of a {file.stat().st_size}-byte CHARX)")
        if name in files:
            raise ConfigError(f"{file}: {name} appears twice")
        try:
            with archive.open(info) as member:  # never more than the header said: the check above holds
                blob = member.read(min(limit, info.file_size) + 1)
        except NotImplementedError:
            raise ConfigError(f"{file}: {name} uses a compression method Tobio cannot read "
                              f"(method {info.compress_type}; CHARX members are stored or deflated)") from None
        except zipfile.BadZipFile as exc:
            raise ConfigError(f"{file}: {name} is corrupt ({str(exc).splitlines()[0][:80]})") from None
        except Exception as exc:  # zlib/bz2/lzma each raise their own error on bad data
            raise ConfigError(f"{file}: {name} is corrupt ({type(exc).__name__})") from None
        if len(blob) > min(limit, info.file_size):
            raise ConfigError(f"{file}: {name} unpacks to more than its header says")
        total += len(blob)
        files[name] = blob
    return files


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
    except Exception as exc:  # a mangled directory raises ValueError, EOFError, struct.error ...
        raise ConfigError(f"{file}: not a readable zip archive ({type(exc).__name__})") from None
    with archive:
        files = _members(archive, file, min(MAX_TOTAL_BYTES, max(TOTAL_RATIO_FLOOR, MAX_TOTAL_RATIO * size)))
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
    """Write the members as the persona's assets dir, never outside it; returns the dir.

    All or nothing: they are written into a fresh temporary dir beside it, which then replaces the old
    dir; on any failure the temporary dir is removed and the old one is left as it was."""
    base = assets_dir(key, root)
    base.parent.mkdir(parents=True, exist_ok=True)
    if sum(len(blob) for blob in files.values()) > MAX_TOTAL_BYTES:
        raise ConfigError(f"assets of {key!r}: more than {MAX_TOTAL_BYTES} bytes")
    staging = Path(tempfile.mkdtemp(prefix=f".{base.name}.", dir=base.parent))
    old = base.parent / f".{base.name}.old"
    try:
        for name, blob in files.items():
            target = staging / _safe_name(name, "assets")
            target.parent.mkdir(parents=True, exist_ok=True)
            if within(target.parent, staging) is None:
                raise ConfigError(f"asset {name!r} would be written outside {base}")
            target.write_bytes(blob)
        shutil.rmtree(old, ignore_errors=True)
        if base.is_symlink() or base.is_file():
            base.unlink()
        elif base.exists():
            base.rename(old)
        staging.rename(base)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        if old.exists() and not base.exists():
            old.rename(base)
        raise ConfigError(f"cannot write the assets of {key!r} under {base.parent}: {exc.strerror or exc}") from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    shutil.rmtree(old, ignore_errors=True)
    return base


def remove_assets(key: str, root: Path | None = None) -> None:
    """Undo `save_assets` (an import that failed after it)."""
    shutil.rmtree(assets_dir(key, root), ignore_errors=True)


def load_assets(key: str, root: Path | None = None) -> dict[str, bytes]:
    """The members saved for a persona (empty when it came from elsewhere)."""
    base = assets_dir(key, root)
    if not base.is_dir():
        return {}
    return {p.relative_to(base).as_posix(): p.read_bytes() for p in sorted(base.rglob("*")) if p.is_file() and not p.is_symlink()}
