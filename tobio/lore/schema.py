"""Lorebook entries as the engine sees them, read from a card's `character_book` or a SillyTavern World Info file.

Books are stored as they came (lossless: export gives back the same JSON); `parse_book` maps either
shape onto `Entry` each time a book version is first used. Field names and defaults follow
SillyTavern's `newWorldInfoEntryDefinition` and `convertCharacterBook` (public/scripts/world-info.js).
V3 decorators (`@@depth 2` lines at the top of `content`) are parsed here, fallbacks (`@@@`) included;
the ones the engine honours are in KNOWN_DECORATORS, any other is kept in `Entry.unknown`.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any

from tobio.errors import ConfigError

# SillyTavern's world_info_position and world_info_logic numbers.
BEFORE, AFTER, AN_TOP, AN_BOTTOM, AT_DEPTH, EM_TOP, EM_BOTTOM = range(7)
AND_ANY, NOT_ALL, NOT_ANY, AND_ALL = range(4)
LOGIC_NAMES = {AND_ANY: "AND ANY", NOT_ALL: "NOT ALL", NOT_ANY: "NOT ANY", AND_ALL: "AND ALL"}
ROLES = ("system", "user", "assistant")  # ST's extension_prompt_roles: 0, 1, 2
DEFAULT_DEPTH = 4
DEFAULT_WEIGHT = 100
MAX_ENTRIES = 5000  # per book: more is not a lorebook but an attack
MAX_KEYS = 200  # per entry
MAX_DECORATORS = 32  # decorator lines read per entry (V3: fallback chains of at least 5)
MAX_NUMBER = 10**9  # any count, depth or order in a book: larger is clamped (`@@depth 1e999` is not an error)
KNOWN_DECORATORS = frozenset({
    "activate", "dont_activate", "depth", "role", "scan_depth", "position", "additional_keys", "exclude_keys",
    "activate_only_after", "activate_only_every", "keep_activate_after_match", "dont_activate_after_match",
})
_V3_POSITIONS = {"before_desc": BEFORE, "after_desc": AFTER, "personality": AFTER, "scenario": AFTER}


@dataclass(frozen=True)
class Decorator:
    """One `@@name value` line."""

    name: str
    value: str = ""

    def values(self) -> list[str]:
        return [part.strip() for part in self.value.split(",") if part.strip()]

    def number(self) -> int | None:
        """The value as a whole number, clamped to ±MAX_NUMBER; None when it is not a finite number."""
        try:
            value = float(self.value.strip()[:64])
        except ValueError:
            return None
        return _clamp(value) if math.isfinite(value) else None

    def __str__(self) -> str:
        return f"@@{self.name}{' ' + self.value if self.value else ''}"


@dataclass
class Entry:
    """One lorebook entry, normalised. `book` and `uid` make its key for sticky/cooldown state."""

    book: str
    uid: str
    content: str
    keys: list[str] = field(default_factory=list)
    secondary: list[str] = field(default_factory=list)
    selective: bool = False
    logic: int = AND_ANY
    comment: str = ""
    constant: bool = False
    enabled: bool = True
    order: float = 100
    position: int = BEFORE
    depth: int = DEFAULT_DEPTH
    role: int = 0
    use_regex: bool = False
    case_sensitive: bool | None = None
    whole_words: bool | None = None
    scan_depth: int | None = None
    probability: float = 100
    use_probability: bool = True
    exclude_recursion: bool = False
    prevent_recursion: bool = False
    delay_until_recursion: int = 0
    group: str = ""
    group_override: bool = False
    group_weight: float = DEFAULT_WEIGHT
    group_scoring: bool = False  # in its group, only the entries matching the most keys compete
    sticky: int = 0
    cooldown: int = 0
    delay: int = 0
    characters: list[str] = field(default_factory=list)  # ST's characterFilter.names: only (or, with exclude, never) for these
    exclude_characters: bool = False
    decorators: list[Decorator] = field(default_factory=list)  # honoured ones
    unknown: list[Decorator] = field(default_factory=list)  # kept, not acted on
    digest: str = ""  # changes when the entry does: timed effects of an edited entry end

    @property
    def key(self) -> str:
        return f"{self.book}.{self.uid}"

    def decorator(self, name: str) -> Decorator | None:
        return next((d for d in self.decorators if d.name == name), None)

    def label(self) -> str:
        return self.comment or (", ".join(self.keys[:3]) if self.keys else f"entry {self.uid}")


def parse_decorators(content: str) -> tuple[list[Decorator], list[Decorator], str]:
    """(honoured, unknown, content without the decorator lines) per the V3 spec's fallback rules."""
    if not content.startswith("@@"):
        return [], [], content
    lines = content.split("\n")
    honoured: list[Decorator] = []
    unknown: list[Decorator] = []
    resolved = True  # whether the decorator a `@@@` fallback belongs to was understood
    index = 0
    for index, line in enumerate(lines):
        if not line.startswith("@@") or index >= MAX_DECORATORS:
            break
        fallback = line.startswith("@@@")
        name, _, value = line.lstrip("@").strip().partition(" ")
        decorator = Decorator(name.strip().lower(), value.strip())
        if fallback and resolved:
            continue  # the decorator before it was understood (or was a fallback that was)
        if decorator.name in KNOWN_DECORATORS:
            if all(d.name != decorator.name for d in honoured) or decorator.name in ("additional_keys", "exclude_keys"):
                honoured.append(decorator)
            resolved = True
        else:
            unknown.append(decorator)
            resolved = False
    else:
        index = len(lines)
    return honoured, unknown, "\n".join(lines[index:]).strip("\n")


def _clamp(value: float) -> int:
    return int(max(-MAX_NUMBER, min(MAX_NUMBER, value)))


def _num(value: Any, default: float) -> float:
    """A finite number within ±MAX_NUMBER, else `default` (a book's NaN, Infinity or `1e999`)."""
    if value is None or value == "" or isinstance(value, (dict, list)):
        return default
    try:
        number = float(value if not isinstance(value, str) else value.strip()[:64])
    except (TypeError, ValueError, OverflowError):
        return default
    return max(-MAX_NUMBER, min(MAX_NUMBER, number)) if math.isfinite(number) else default


def _int(value: Any, default: int = 0) -> int:
    number = _num(value, float("nan"))
    return _clamp(number) if math.isfinite(number) else default


def _opt_bool(value: Any) -> bool | None:
    return None if value is None else bool(value)


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        value = value.split(",")
    return [str(v) for v in value if isinstance(v, (str, int, float)) and str(v).strip()][:MAX_KEYS] if isinstance(value, list) else []


def _position(value: Any, fallback: Any) -> int:
    if isinstance(value, int) and 0 <= value <= 6:
        return value
    return BEFORE if fallback == "before_char" else AFTER


def _role(value: Any) -> int:
    if isinstance(value, str):
        return ROLES.index(value) if value in ROLES else 0
    return _int(value) if _int(value) in (0, 1, 2) else 0


def _digest(raw: Any) -> str:
    return hashlib.blake2b(json.dumps(raw, sort_keys=True, default=str).encode(), digest_size=8).hexdigest()


def _finish(entry: Entry, raw: Any) -> Entry:
    entry.decorators, entry.unknown, entry.content = parse_decorators(entry.content)
    depth = entry.decorator("depth")
    if depth is not None and depth.number() is not None:
        entry.position, entry.depth = AT_DEPTH, max(0, depth.number() or 0)
    role = entry.decorator("role")
    if role is not None and role.value.strip().lower() in ROLES:
        entry.role = ROLES.index(role.value.strip().lower())
    position = entry.decorator("position")
    if position is not None and position.value.strip() in _V3_POSITIONS and depth is None:
        entry.position = _V3_POSITIONS[position.value.strip()]
    scan = entry.decorator("scan_depth")
    if scan is not None and scan.number() is not None:
        entry.scan_depth = max(0, scan.number() or 0)
    entry.digest = _digest(raw)
    return entry


def card_entry(book: str, index: int, raw: dict[str, Any]) -> Entry:
    """An entry of a Character Card's `character_book` (V2/V3 spec fields, ST's `extensions`)."""
    ext: dict[str, Any] = raw["extensions"] if isinstance(raw.get("extensions"), dict) else {}
    uid = raw.get("id", index)
    entry = Entry(
        book=book, uid=str(uid if uid is not None else index), content=str(raw.get("content") or ""),
        keys=_strings(raw.get("keys", raw.get("key"))), secondary=_strings(raw.get("secondary_keys", raw.get("keysecondary"))),
        selective=bool(raw.get("selective", False)), logic=_int(ext.get("selectiveLogic"), AND_ANY) % 4,
        comment=str(raw.get("comment") or raw.get("name") or ""), constant=bool(raw.get("constant", False)),
        enabled=bool(raw.get("enabled", True)), order=_num(raw.get("insertion_order"), 100),
        position=_position(ext.get("position"), raw.get("position")), depth=_int(ext.get("depth"), DEFAULT_DEPTH),
        role=_role(ext.get("role")), use_regex=bool(raw.get("use_regex", False)),
        case_sensitive=_opt_bool(raw.get("case_sensitive", ext.get("case_sensitive"))),
        whole_words=_opt_bool(ext.get("match_whole_words")),
        scan_depth=None if ext.get("scan_depth") is None else _int(ext.get("scan_depth")),
        probability=_num(ext.get("probability"), 100), use_probability=bool(ext.get("useProbability", True)),
        exclude_recursion=bool(ext.get("exclude_recursion", False)), prevent_recursion=bool(ext.get("prevent_recursion", False)),
        delay_until_recursion=_int(ext.get("delay_until_recursion"), 0) if ext.get("delay_until_recursion") is not True else 1,
        group=str(ext.get("group") or ""), group_override=bool(ext.get("group_override", False)),
        group_weight=_num(ext.get("group_weight"), DEFAULT_WEIGHT), group_scoring=bool(ext.get("use_group_scoring")),
        sticky=_int(ext.get("sticky")), cooldown=_int(ext.get("cooldown")), delay=_int(ext.get("delay")),
    )
    return _finish(entry, raw)


def st_entry(book: str, key: str, raw: dict[str, Any]) -> Entry:
    """An entry of a SillyTavern World Info file (`entries` keyed by uid)."""
    dur = raw.get("delayUntilRecursion")
    chars: dict[str, Any] = raw["characterFilter"] if isinstance(raw.get("characterFilter"), dict) else {}
    entry = Entry(
        book=book, uid=str(raw.get("uid", key)), content=str(raw.get("content") or ""),
        keys=_strings(raw.get("key", raw.get("keys"))), secondary=_strings(raw.get("keysecondary", raw.get("secondary_keys"))),
        selective=bool(raw.get("selective", True)), logic=_int(raw.get("selectiveLogic"), AND_ANY) % 4,
        comment=str(raw.get("comment") or ""), constant=bool(raw.get("constant", False)),
        enabled=not bool(raw.get("disable", False)), order=_num(raw.get("order"), 100),
        position=_position(raw.get("position"), "before_char"), depth=_int(raw.get("depth"), DEFAULT_DEPTH),
        role=_role(raw.get("role")), use_regex=bool(raw.get("use_regex", False)),
        case_sensitive=_opt_bool(raw.get("caseSensitive")), whole_words=_opt_bool(raw.get("matchWholeWords")),
        scan_depth=None if raw.get("scanDepth") is None else _int(raw.get("scanDepth")),
        probability=_num(raw.get("probability"), 100), use_probability=bool(raw.get("useProbability", True)),
        exclude_recursion=bool(raw.get("excludeRecursion", False)), prevent_recursion=bool(raw.get("preventRecursion", False)),
        delay_until_recursion=1 if dur is True else _int(dur, 0),
        group=str(raw.get("group") or ""), group_override=bool(raw.get("groupOverride", False)),
        group_weight=_num(raw.get("groupWeight"), DEFAULT_WEIGHT), group_scoring=bool(raw.get("useGroupScoring")),
        sticky=_int(raw.get("sticky")), cooldown=_int(raw.get("cooldown")), delay=_int(raw.get("delay")),
        characters=_strings(chars.get("names")), exclude_characters=bool(chars.get("isExclude", False)),
    )
    return _finish(entry, raw)


@dataclass
class Book:
    """A parsed lorebook: its entries plus the book-level fields the V2/V3 spec gives."""

    name: str
    entries: list[Entry]
    scan_depth: int | None = None
    token_budget: int | None = None
    recursive: bool | None = None


def is_st_world(raw: Any) -> bool:
    """A SillyTavern World Info file: `entries` is an object keyed by uid (a card book's is a list)."""
    return isinstance(raw, dict) and isinstance(raw.get("entries"), dict)


def parse_book(name: str, raw: Any) -> Book:
    """Either shape of lorebook as a Book; raises ConfigError on anything else."""
    if not isinstance(raw, dict) or not isinstance(raw.get("entries"), (dict, list)):
        raise ConfigError(f"lorebook {name}: not a lorebook (needs `entries`, a list or an object)")
    items = raw["entries"]
    if len(items) > MAX_ENTRIES:
        raise ConfigError(f"lorebook {name}: {len(items)} entries (at most {MAX_ENTRIES})")
    if isinstance(items, dict):
        entries = [st_entry(name, key, value) for key, value in items.items() if isinstance(value, dict)]
    else:
        entries = [card_entry(name, i, value) for i, value in enumerate(items) if isinstance(value, dict)]
    scan = raw.get("scan_depth")
    budget = raw.get("token_budget")
    recursive = raw.get("recursive_scanning")
    return Book(name, entries, scan_depth=_int(scan) if isinstance(scan, (int, float)) else None,
                token_budget=_int(budget) if isinstance(budget, (int, float)) and budget > 0 else None,
                recursive=recursive if isinstance(recursive, bool) else None)
