"""Key matching as SillyTavern does it (`matchKeys`, the scan buffer, selective logic), for the engine."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from types import ModuleType
from typing import Any

from tobio.lore.schema import AND_ALL, AND_ANY, LOGIC_NAMES, NOT_ALL, NOT_ANY, Book, Entry

_regex: ModuleType | None
try:  # a timeout stops a hostile pattern from hanging the turn; `re` has none
    import regex

    _regex = regex
except ImportError:  # pragma: no cover - depends on the environment
    _regex = None

MAX_PATTERN = 1000  # characters in one regex key
REGEX_TIMEOUT_S = 0.05
MATCHER, JOINER = "\x01", "\n\x01"
_SLASHED = re.compile(r"^/([\s\S]+?)/([gimsuy]*)$")


@dataclass
class Settings:
    """Scan settings, SillyTavern's defaults (recursion off unless a book asks for it with `recursive_scanning`)."""

    scan_depth: int = 2
    budget_tokens: int = 512
    recursive: bool = False
    max_recursion_steps: int = 3
    case_sensitive: bool = False
    whole_words: bool = False


def compile_key(key: str, entry: Entry, settings: Settings) -> Any | None:
    """A compiled pattern for a regex key (`/…/flags`, or any key of a `use_regex` entry), else None."""
    match = _SLASHED.match(key)
    if match is None and not entry.use_regex:
        return None
    pattern, flags = (match.group(1), match.group(2)) if match else (key, "" if _case(entry, settings) else "i")
    if len(pattern) > MAX_PATTERN:
        return False
    return _compile(pattern.replace("\\/", "/"), "".join(sorted(set(flags) & set("ims"))))


@lru_cache(maxsize=4096)
def _compile(pattern: str, flags: str) -> Any:
    lib: Any = _regex or re
    value = (lib.IGNORECASE if "i" in flags else 0) | (lib.MULTILINE if "m" in flags else 0) | (lib.DOTALL if "s" in flags else 0)
    try:
        return lib.compile(pattern, value)
    except Exception:  # noqa: BLE001 - an invalid pattern never matches (V3: "MUST consider … not a match")
        return False


def _case(entry: Entry, settings: Settings) -> bool:
    return entry.case_sensitive if entry.case_sensitive is not None else settings.case_sensitive


def match_key(haystack: str, key: str, entry: Entry, settings: Settings) -> bool:
    """SillyTavern's `matchKeys`: regex keys as patterns, else a (whole-word, case-folded) substring."""
    compiled = compile_key(key, entry, settings)
    if compiled is False:
        return False
    if compiled is not None:
        try:
            found = compiled.search(haystack, timeout=REGEX_TIMEOUT_S) if _regex is not None else compiled.search(haystack)
        except TimeoutError:
            return False
        return found is not None
    if not _case(entry, settings):
        haystack, key = haystack.lower(), key.lower()
    whole = entry.whole_words if entry.whole_words is not None else settings.whole_words
    if whole and len(key.split()) == 1:
        return re.search(rf"(?:^|\W)({re.escape(key)})(?:$|\W)", haystack) is not None
    return key in haystack


@dataclass
class Scan:
    """One evaluation: the chat (newest message first) plus what recursion has added."""

    messages: list[str]
    settings: Settings
    recurse: list[str] = field(default_factory=list)

    def text(self, entry: Entry, book: Book | None, recursion: bool) -> str:
        depth = entry.scan_depth if entry.scan_depth is not None else (
            book.scan_depth if book is not None and book.scan_depth is not None else self.settings.scan_depth)
        depth = max(0, min(depth, 1000))
        chat = [m.strip() for m in self.messages[:depth]] if depth else []
        parts = ([MATCHER + JOINER.join(chat)] if chat else []) + (self.recurse if recursion else [])
        return JOINER.join(parts)


def secondary(entry: Entry, text: str, settings: Settings, macro: Callable[[str], str]) -> tuple[bool, str]:
    """SillyTavern's selective logic over the secondary keys: (passes, why)."""
    logic = entry.logic
    any_match, all_match = False, True
    for raw in entry.secondary:
        key = macro(raw).strip()
        hit = bool(key) and match_key(text, key, entry, settings)
        any_match, all_match = any_match or hit, all_match and hit
        if logic == AND_ANY and hit:
            return True, f"secondary key {key!r} (AND ANY)"
        if logic == NOT_ALL and not hit:
            return True, f"secondary key {key!r} absent (NOT ALL)"
    if logic == NOT_ANY and not any_match:
        return True, "no secondary key present (NOT ANY)"
    if logic == AND_ALL and all_match:
        return True, "all secondary keys present (AND ALL)"
    return False, f"secondary keys not satisfied ({LOGIC_NAMES.get(logic, logic)})"


def decorator_keys(entry: Entry, text: str, settings: Settings, macro: Callable[[str], str]) -> str | None:
    """Why `@@additional_keys` / `@@exclude_keys` block the entry, or None."""
    for decorator in entry.decorators:
        keys = [macro(k).strip() for k in decorator.values()]
        found = [k for k in keys if k and match_key(text, k, entry, settings)]
        if decorator.name == "additional_keys" and not found:
            return f"none of @@additional_keys {decorator.value!r} present"
        if decorator.name == "exclude_keys" and found:
            return f"@@exclude_keys {found[0]!r} present"
    return None
