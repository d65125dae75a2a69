"""The activation engine: which lorebook entries fire for one prompt, and why.

It follows SillyTavern's `checkWorldInfo` (public/scripts/world-info.js): entries sorted by order
(highest first, the channel's books before the character's), scanned against the newest
`scan_depth` messages joined newest first; constant and `@@activate` entries always fire; a primary
key must match, then secondary keys by the entry's logic (AND ANY, NOT ALL, NOT ANY, AND ALL);
probability is rolled once per scan; contents are added until the token budget is reached; entries
that fired become text that later passes (recursion) scan too, up to `max_recursion_steps` passes.
Sticky, cooldown and delay count messages in the thread, kept in `TimedState` between turns.
Nothing here touches the database or the kernel, so `lore test` and the prompt hook share it.
"""

from __future__ import annotations

import random
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from tobio.lore.schema import AND_ALL, AND_ANY, LOGIC_NAMES, NOT_ALL, NOT_ANY, Book, Entry

try:  # a timeout stops a hostile pattern from hanging the turn; `re` has none
    import regex as _regex
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


@dataclass
class TimedState:
    """Per-thread memory of sticky and cooldown effects (start/end in thread message counts) and of
    entries that matched before (`@@keep_activate_after_match`, `@@dont_activate_after_match`)."""

    sticky: dict[str, dict[str, Any]] = field(default_factory=dict)
    cooldown: dict[str, dict[str, Any]] = field(default_factory=dict)
    matched: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"sticky": self.sticky, "cooldown": self.cooldown, "matched": self.matched}

    @classmethod
    def from_dict(cls, data: Any) -> TimedState:
        data = data if isinstance(data, dict) else {}
        return cls({k: v for k, v in dict(data.get("sticky") or {}).items() if isinstance(v, dict)},
                   {k: v for k, v in dict(data.get("cooldown") or {}).items() if isinstance(v, dict)},
                   [str(k) for k in data.get("matched") or []])


@dataclass
class Fired:
    entry: Entry
    content: str
    reason: str
    sticky: bool = False


@dataclass
class Activation:
    """What fired (in prompt order: lowest order first) and why each other entry did not."""

    fired: list[Fired] = field(default_factory=list)
    skipped: list[tuple[Entry, str]] = field(default_factory=list)
    passes: int = 0
    tokens: int = 0
    overflowed: bool = False

    def why(self) -> list[dict[str, Any]]:
        out = [{"entry": f.entry.key, "label": f.entry.label(), "fired": True, "reason": f.reason} for f in self.fired]
        return out + [{"entry": e.key, "label": e.label(), "fired": False, "reason": r} for e, r in self.skipped]


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


def _secondary(entry: Entry, text: str, settings: Settings, macro: Callable[[str], str]) -> tuple[bool, str]:
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


def _decorator_keys(entry: Entry, text: str, settings: Settings, macro: Callable[[str], str]) -> str | None:
    """Why `@@additional_keys` / `@@exclude_keys` block the entry, or None."""
    for decorator in entry.decorators:
        keys = [macro(k).strip() for k in decorator.values()]
        found = [k for k in keys if k and match_key(text, k, entry, settings)]
        if decorator.name == "additional_keys" and not found:
            return f"none of @@additional_keys {decorator.value!r} present"
        if decorator.name == "exclude_keys" and found:
            return f"@@exclude_keys {found[0]!r} present"
    return None


class Engine:
    """Evaluates books against a chat. `state` None is a dry run: nothing is remembered."""

    def __init__(self, books: list[Book], settings: Settings, *, rng: random.Random | None = None,
                 macro: Callable[[str], str] = lambda s: s, count_tokens: Callable[[str], Awaitable[int]] | None = None) -> None:
        self.books = books
        self.settings = settings
        self.rng = rng or random.Random()
        self.macro = macro
        self.count = count_tokens or _words
        self.book_of = {id(e): b for b in books for e in b.entries}
        self.character: set[str] | None = None

    def sorted_entries(self) -> list[Entry]:
        """Each book group by order, highest first (ST's `sortFn`); books keep their given precedence."""
        out: list[Entry] = []
        for book in self.books:
            out += sorted(book.entries, key=lambda e: -e.order)
        return out

    async def run(self, messages: list[str], *, chat_length: int, assistant_turns: int = 0,
                  state: TimedState | None = None, character: set[str] | None = None) -> Activation:
        """`messages` newest first (with speaker names); `chat_length` counts the thread's messages;
        `character` the names the speaking character goes by (for entries filtered by character)."""
        self.character = {c.lower() for c in character} if character is not None else None
        settings = self.settings
        entries = self.sorted_entries()
        live = {e.key: e for e in entries}
        rank = {id(e): i for i, e in enumerate(entries)}
        sticky, cooldown = self._timed(state, live, chat_length)
        result = Activation()
        scan = Scan(messages, settings)
        done: set[str] = set()
        failed: set[str] = set()
        reasons: dict[str, str] = {}
        levels = sorted({e.delay_until_recursion for e in entries if e.delay_until_recursion})
        level = levels.pop(0) if levels else 0
        recursion = False
        used = 0
        by_book: dict[str, int] = {}
        chosen: list[Fired] = []
        while True:
            if settings.max_recursion_steps and result.passes >= settings.max_recursion_steps:
                break
            result.passes += 1
            found: list[tuple[Entry, str]] = []
            for entry in entries:
                if entry.key in done or entry.key in failed:
                    continue
                why = self._check(entry, scan, recursion, level, sticky, cooldown, chat_length, assistant_turns, state)
                if why.startswith("+"):
                    found.append((entry, why[1:]))
                elif why and not recursion:
                    reasons[entry.key] = why
            found.sort(key=lambda pair: (pair[0].key not in sticky, rank[id(pair[0])]))
            found = self._groups(found, done, sticky, scan, recursion)
            fresh: list[Entry] = []
            for entry, why in found:
                if (entry.use_probability and entry.probability < 100 and entry.key not in sticky
                        and self.rng.random() * 100 > entry.probability):
                    failed.add(entry.key)
                    reasons[entry.key] = f"matched ({why}) but failed its {entry.probability:g}% probability roll"
                    continue
                content = self.macro(entry.content)
                cost = await self.count(content) + 1 if content else 0
                book = self.book_of.get(id(entry))
                if book is not None and book.token_budget and by_book.get(book.name, 0) + cost > book.token_budget:
                    reasons[entry.key] = f"matched ({why}) but its book's token_budget {book.token_budget} is spent"
                    failed.add(entry.key)
                    continue
                if used + cost > settings.budget_tokens:
                    result.overflowed = True
                    reasons[entry.key] = f"matched ({why}) but the lore budget of {settings.budget_tokens} tokens is spent"
                    break
                used += cost
                if book is not None:
                    by_book[book.name] = by_book.get(book.name, 0) + cost
                done.add(entry.key)
                reasons.pop(entry.key, None)
                chosen.append(Fired(entry, content, why if not recursion else f"{why} (recursion pass {result.passes})",
                                    entry.key in sticky))
                fresh.append(entry)
            more = [e for e in fresh if not e.prevent_recursion and self._recursive(e)]
            if not result.overflowed and more:
                recursion = True
            elif not result.overflowed and levels:
                recursion, level = True, levels.pop(0)
            else:
                break
            scan.recurse.append("\n".join(self.macro(e.content) for e in more))
        result.tokens = used
        # Prompt order: ST sorts by order descending and unshifts, so the lowest order comes first.
        result.fired = list(reversed(sorted(chosen, key=lambda f: -f.entry.order)))
        result.skipped = [(live[k], r) for k, r in reasons.items() if k in live and k not in done]
        if state is not None:
            self._remember(state, result.fired, chat_length)
        return result

    def _recursive(self, entry: Entry) -> bool:
        book = self.book_of.get(id(entry))
        return book.recursive if book is not None and book.recursive is not None else self.settings.recursive

    def _check(self, entry: Entry, scan: Scan, recursion: bool, level: int, sticky: set[str], cooldown: set[str],
               chat_length: int, turns: int, state: TimedState | None) -> str:
        """'+reason' when the entry matches now; else why not ('' for an ordinary miss)."""
        is_sticky = entry.key in sticky
        if not entry.enabled:
            return "disabled"
        if entry.characters and self.character is not None:
            named = bool({c.lower() for c in entry.characters} & self.character)
            if named == entry.exclude_characters:
                return "filtered out by character"
        if entry.delay and chat_length < entry.delay:
            return f"delayed until the chat has {entry.delay} messages"
        if entry.key in cooldown and not is_sticky:
            return "on cooldown"
        if entry.delay_until_recursion and not is_sticky and (not recursion or entry.delay_until_recursion > level):
            return "delayed until recursion"
        if recursion and entry.exclude_recursion and not is_sticky:
            return "excluded from recursion"
        after = entry.decorator("activate_only_after")
        if after is not None and after.number() is not None and turns < (after.number() or 0):
            return f"@@activate_only_after {after.value}: {turns} replies so far"
        every = entry.decorator("activate_only_every")
        if every is not None and (every.number() or 0) > 0 and turns % (every.number() or 1):
            return f"@@activate_only_every {every.value}: {turns} replies so far"
        if entry.decorator("activate"):
            return "+@@activate"
        if entry.decorator("dont_activate"):
            return "@@dont_activate"
        matched_before = state is not None and entry.key in state.matched
        if entry.decorator("dont_activate_after_match") and matched_before:
            return "@@dont_activate_after_match: matched before"
        if entry.constant:
            return "+constant"
        if entry.decorator("keep_activate_after_match") and matched_before:
            return "+@@keep_activate_after_match: matched before"
        if is_sticky:
            return "+sticky"
        if not entry.keys:
            return "no keys"
        text = scan.text(entry, self.book_of.get(id(entry)), recursion)
        primary = next((k for k in (self.macro(raw).strip() for raw in entry.keys)
                        if k and match_key(text, k, entry, self.settings)), None)
        if primary is None:
            return ""
        why = f"key {primary!r}"
        if entry.selective and entry.secondary:
            ok, detail = _secondary(entry, text, self.settings, self.macro)
            if not ok:
                return f"{why} matched but {detail}"
            why += f" and {detail}"
        blocked = _decorator_keys(entry, text, self.settings, self.macro)
        if blocked:
            return f"{why} matched but {blocked}"
        return "+" + why

    def _score(self, entry: Entry, scan: Scan, recursion: bool) -> int:
        """SillyTavern's `getScore`: keys found (secondary ones count under AND ANY, and AND ALL when all are)."""
        text = scan.text(entry, self.book_of.get(id(entry)), recursion)
        def hits(keys: list[str]) -> int:
            found = (self.macro(raw).strip() for raw in keys)
            return sum(1 for key in found if key and match_key(text, key, entry, self.settings))

        primary, secondary = hits(entry.keys), hits(entry.secondary)
        if not entry.keys:
            return 0
        if entry.secondary and (entry.logic == AND_ANY or (entry.logic == AND_ALL and secondary == len(entry.secondary))):
            return primary + secondary
        return primary

    def _groups(self, found: list[tuple[Entry, str]], done: set[str], sticky: set[str], scan: Scan,
                recursion: bool) -> list[tuple[Entry, str]]:
        """Inclusion groups: one entry per group (sticky first, then the best key score where the group
        asks for scoring, then `group_override`, else a weighted roll)."""
        groups: dict[str, list[Entry]] = {}
        for entry, _ in found:
            for name in (g.strip() for g in entry.group.split(",")):
                if name:
                    groups.setdefault(name, []).append(entry)
        if not groups:
            return found
        fired_groups = {g.strip() for e in self.sorted_entries() if e.key in done for g in e.group.split(",") if g.strip()}
        losers: set[str] = set()
        for name, members in groups.items():
            stuck = [e for e in members if e.key in sticky]
            if stuck:
                losers |= {e.key for e in members if e not in stuck}
                continue
            if name in fired_groups:
                losers |= {e.key for e in members}
                continue
            if any(e.group_scoring for e in members):
                scores = {e.key: self._score(e, scan, recursion) for e in members}
                best = max(scores.values())
                dropped = {e.key for e in members if e.group_scoring and scores[e.key] < best}
                losers |= dropped
                members = [e for e in members if e.key not in dropped]
            if len(members) < 2:
                continue
            override = sorted((e for e in members if e.group_override), key=lambda e: -e.order)
            if override:
                winner = override[0]
            else:
                roll = self.rng.random() * sum(e.group_weight for e in members)
                winner, total = members[-1], 0.0
                for e in members:
                    total += e.group_weight
                    if roll <= total:
                        winner = e
                        break
            losers |= {e.key for e in members if e is not winner}
        return [(e, why) for e, why in found if e.key not in losers]

    @staticmethod
    def _timed(state: TimedState | None, live: dict[str, Entry], length: int) -> tuple[set[str], set[str]]:
        """Active sticky and cooldown keys, ending the effects whose time is up (ST's checkTimedEffects)."""
        if state is None:
            return set(), set()
        active: dict[str, set[str]] = {"sticky": set(), "cooldown": set()}
        for kind in ("sticky", "cooldown"):
            effects = getattr(state, kind)
            for key, effect in list(effects.items()):
                entry = live.get(key)
                start, end = int(effect.get("start", 0)), int(effect.get("end", 0))
                if length <= start and not effect.get("protected"):
                    del effects[key]  # the chat did not move on (the same turn again)
                elif entry is None or entry.digest != effect.get("digest") or not getattr(entry, kind):
                    if entry is None and length < end:
                        continue  # a book not attached right now: keep its clock running
                    del effects[key]
                elif length >= end:
                    del effects[key]
                    if kind == "sticky" and entry.cooldown:  # a sticky entry that ends goes on cooldown
                        state.cooldown[key] = {"start": length, "end": length + entry.cooldown, "protected": True,
                                               "digest": entry.digest}
                        active["cooldown"].add(key)
                else:
                    active[kind].add(key)
        return active["sticky"], active["cooldown"]

    @staticmethod
    def _remember(state: TimedState, fired: list[Fired], length: int) -> None:
        for f in fired:
            entry = f.entry
            for kind in ("sticky", "cooldown"):
                span = getattr(entry, kind)
                effects = getattr(state, kind)
                if span and entry.key not in effects:
                    effects[entry.key] = {"start": length, "end": length + span, "protected": False, "digest": entry.digest}
            if entry.key not in state.matched and (entry.decorator("keep_activate_after_match") or entry.decorator("dont_activate_after_match")):
                state.matched.append(entry.key)


async def _words(text: str) -> int:
    """A stand-in token count (words and punctuation) when no tokenizer is given."""
    return len(re.findall(r"\w+|[^\w\s]", text))
