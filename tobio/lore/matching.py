"""Key matching as SillyTavern does it (`matchKeys`, the scan buffer, selective logic), for the engine.

A lorebook is someone else's file, so one scan (every key of every entry, decorator and secondary keys
included, over every recursion pass) shares one `Budget`: wall time and a number of key searches. The
scanned chat is capped in size, a regex key is refused when it is long or nests quantifiers (the shape
of catastrophic backtracking), each search has a timeout from what is left of the budget, and a
pattern that once timed out is not run again. With the `regex` package a search releases the GIL, so
the engine can run it on a worker thread while the kernel's loop goes on.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from tobio.lore.schema import AND_ALL, AND_ANY, LOGIC_NAMES, NOT_ALL, NOT_ANY, Book, Entry
from tobio.patterns import PatternError, compile_pattern, search

REGEX_TIMEOUT_S = 0.05  # one search; the scan's budget bounds their sum
SCAN_BUDGET_S = 0.25  # matching time of one whole scan (all keys, all passes)
MAX_SEARCHES = 100_000  # key searches in one whole scan
MAX_SCAN_CHARS = 64 * 1024  # characters of chat one entry scans (the newest ones)
MAX_DECORATOR_KEYS = 200  # keys in one `@@additional_keys` / `@@exclude_keys` line, like MAX_KEYS
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
    scan_budget_s: float = SCAN_BUDGET_S
    max_searches: int = MAX_SEARCHES
    max_scan_chars: int = MAX_SCAN_CHARS


class Budget:
    """What one whole scan may still spend: matching time (counted only while matching) and searches."""

    def __init__(self, seconds: float, searches: int) -> None:
        self.left_s = seconds
        self.searches = searches
        self.spent = False
        self._deadline: float | None = None

    def __enter__(self) -> Budget:
        self._deadline = time.monotonic() + self.left_s
        return self

    def __exit__(self, *_: object) -> None:
        if self._deadline is not None:
            self.left_s = max(0.0, self._deadline - time.monotonic())
            self._deadline = None

    def take(self) -> float | None:
        """Seconds one more search may use, or None (and `spent`) when the scan's budget is gone."""
        if self.spent:
            return None
        left = (self._deadline - time.monotonic()) if self._deadline is not None else self.left_s
        if left <= 0 or self.searches <= 0:
            self.spent = True
            return None
        self.searches -= 1
        return left

    def describe(self, settings: Settings) -> str:
        return (f"the lore scan's budget ({settings.scan_budget_s * 1000:g} ms, {settings.max_searches} key searches) "
                "was spent before this entry was checked")


UNLIMITED = Budget(float("inf"), 2**62)  # for callers that bound the work themselves (a single key test)

def compile_key(key: str, entry: Entry, settings: Settings) -> Any | None:
    """A compiled pattern for a regex key (`/…/flags`, or any key of a `use_regex` entry), None for a
    plain key, False for a key that never matches (invalid, too long, or shaped to backtrack forever)."""
    match = _SLASHED.match(key)
    if match is None and not entry.use_regex:
        return None
    pattern, flags = (match.group(1), match.group(2)) if match else (key, "" if _case(entry, settings) else "i")
    try:  # V3: an invalid pattern "MUST be considered … not a match"
        return compile_pattern(pattern.replace("\\/", "/"), "i" in flags, "m" in flags, "s" in flags)
    except PatternError:
        return False


def _case(entry: Entry, settings: Settings) -> bool:
    return entry.case_sensitive if entry.case_sensitive is not None else settings.case_sensitive


@lru_cache(maxsize=16)
def _lowered(text: str) -> str:
    """The scan text case-folded once per scan, not once per key (str hashes are cached, so a hit is cheap)."""
    return text.lower()


def match_key(haystack: str, key: str, entry: Entry, settings: Settings, budget: Budget = UNLIMITED) -> bool:
    """SillyTavern's `matchKeys`: regex keys as patterns, else a (whole-word, case-folded) substring.
    Every search is charged to `budget`; once it is spent, keys no longer match."""
    left = budget.take()
    if left is None:
        return False
    compiled = compile_key(key, entry, settings)
    if compiled is False:
        return False
    if compiled is not None:
        return search(compiled, haystack, min(REGEX_TIMEOUT_S, left), poison=left >= REGEX_TIMEOUT_S)
    if not _case(entry, settings):
        haystack, key = _lowered(haystack), key.lower()
    whole = entry.whole_words if entry.whole_words is not None else settings.whole_words
    if whole and len(key.split()) == 1:
        return re.search(rf"(?:^|\W)({re.escape(key)})(?:$|\W)", haystack) is not None
    return key in haystack


@dataclass
class Scan:
    """One evaluation: the chat (newest message first) plus what recursion has added, and its budget."""

    messages: list[str]
    settings: Settings
    recurse: list[str] = field(default_factory=list)
    budget: Budget = field(default_factory=lambda: Budget(SCAN_BUDGET_S, MAX_SEARCHES))
    _texts: dict[tuple[int, bool, int], str] = field(default_factory=dict)

    def text(self, entry: Entry, book: Book | None, recursion: bool) -> str:
        """The text an entry scans: its depth of newest messages (at most `max_scan_chars` of them), then
        on recursion passes what fired entries added. Built once per depth and pass, not per entry."""
        depth = entry.scan_depth if entry.scan_depth is not None else (
            book.scan_depth if book is not None and book.scan_depth is not None else self.settings.scan_depth)
        depth = max(0, min(depth, 1000))
        key = (depth, recursion, len(self.recurse))
        cached = self._texts.get(key)
        if cached is not None:
            return cached
        chat, size = [], 0
        for message in self.messages[:depth]:
            piece = message[: self.settings.max_scan_chars * 2].strip()[: max(0, self.settings.max_scan_chars - size)]
            chat.append(piece)
            size += len(piece) + len(JOINER)
            if size >= self.settings.max_scan_chars:
                break
        extra = [part[: self.settings.max_scan_chars] for part in self.recurse] if recursion else []
        parts = ([MATCHER + JOINER.join(chat)] if chat else []) + extra
        text = self._texts[key] = JOINER.join(parts)
        return text


def secondary(entry: Entry, text: str, settings: Settings, macro: Callable[[str], str],
              budget: Budget = UNLIMITED) -> tuple[bool, str]:
    """SillyTavern's selective logic over the secondary keys: (passes, why)."""
    logic = entry.logic
    any_match, all_match = False, True
    for raw in entry.secondary:
        key = macro(raw).strip()
        hit = bool(key) and match_key(text, key, entry, settings, budget)
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


def decorator_keys(entry: Entry, text: str, settings: Settings, macro: Callable[[str], str],
                   budget: Budget = UNLIMITED) -> str | None:
    """Why `@@additional_keys` / `@@exclude_keys` block the entry, or None."""
    for decorator in entry.decorators:
        if decorator.name not in ("additional_keys", "exclude_keys"):
            continue
        keys = [macro(k).strip() for k in decorator.values()[:MAX_DECORATOR_KEYS]]
        found = [k for k in keys if k and match_key(text, k, entry, settings, budget)]
        if decorator.name == "additional_keys" and not found:
            return f"none of @@additional_keys {decorator.value!r} present"
        if decorator.name == "exclude_keys" and found:
            return f"@@exclude_keys {found[0]!r} present"
    return None
