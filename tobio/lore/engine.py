"""The activation engine: which lorebook entries fire for one prompt, and why.

It follows SillyTavern's `checkWorldInfo` (public/scripts/world-info.js): entries sorted by order
(highest first, the channel's books before the character's), scanned against the newest
`scan_depth` messages joined newest first; constant and `@@activate` entries always fire; a primary
key must match, then secondary keys by the entry's logic (AND ANY, NOT ALL, NOT ANY, AND ALL);
probability is rolled once per scan; contents are added until the token budget is reached; entries
that fired become text that later passes (recursion) scan too, up to `max_recursion_steps` passes.
Sticky, cooldown and delay count messages in the thread, kept in `TimedState` between turns.
Nothing here touches the database or the kernel, so `lore test` and the prompt hook share it.

A book is untrusted text: all matching of one `run` (every pass, every kind of key) shares one `Budget`
of time and searches (see `matching`), and runs on a worker thread, so the kernel's loop never waits
on it; entries the budget did not reach are skipped with that reason.
"""

from __future__ import annotations

import asyncio
import random
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from tobio.lore.matching import Budget, Scan, Settings, compile_key, decorator_keys, match_key, secondary
from tobio.lore.schema import AND_ALL, AND_ANY, Book, Entry
from tobio.lore.timed import TimedState, check_timed, remember

__all__ = ["Activation", "Budget", "Engine", "Fired", "Settings", "TimedState", "compile_key", "match_key"]


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
    budget_spent: bool = False  # the scan's time or search budget ran out (a hostile or huge book)

    def why(self) -> list[dict[str, Any]]:
        out = [{"entry": f.entry.key, "label": f.entry.label(), "fired": True, "reason": f.reason} for f in self.fired]
        return out + [{"entry": e.key, "label": e.label(), "fired": False, "reason": r} for e, r in self.skipped]


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
        sticky, cooldown = check_timed(state, live, chat_length)
        result = Activation()
        scan = Scan(messages, settings, budget=Budget(settings.scan_budget_s, settings.max_searches))
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

            def one_pass(recursion: bool = recursion, level: int = level) -> list[tuple[Entry, str, str]]:
                """Match every entry (the slow part, on a worker thread), then settle inclusion groups."""
                found: list[tuple[Entry, str]] = []
                with scan.budget:
                    for entry in entries:
                        if entry.key in done or entry.key in failed:
                            continue
                        why = self._check(entry, scan, recursion, level, sticky, cooldown, chat_length,
                                          assistant_turns, state)
                        if why.startswith("+"):
                            found.append((entry, why[1:]))
                        elif why and not recursion:
                            reasons[entry.key] = why
                    found.sort(key=lambda pair: (pair[0].key not in sticky, rank[id(pair[0])]))
                    found = self._groups(found, done, sticky, scan, recursion)
                return [(entry, why, self.macro(entry.content)) for entry, why in found]

            matched = await asyncio.to_thread(one_pass)
            result.budget_spent = scan.budget.spent
            fresh: list[Entry] = []
            texts: dict[str, str] = {}
            for entry, why, content in matched:
                if (entry.use_probability and entry.probability < 100 and entry.key not in sticky
                        and self.rng.random() * 100 > entry.probability):
                    failed.add(entry.key)
                    reasons[entry.key] = f"matched ({why}) but failed its {entry.probability:g}% probability roll"
                    continue
                texts[entry.key] = content
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
            scan.recurse.append("\n".join(texts[e.key] for e in more))
        result.tokens = used
        # Prompt order: ST sorts by order descending and unshifts, so the lowest order comes first.
        result.fired = list(reversed(sorted(chosen, key=lambda f: -f.entry.order)))
        result.skipped = [(live[k], r) for k, r in reasons.items() if k in live and k not in done]
        if state is not None:
            remember(state, [f.entry for f in result.fired], chat_length)
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
        budget = scan.budget
        spent = "" if recursion else budget.describe(self.settings)
        if budget.spent:
            return spent
        text = scan.text(entry, self.book_of.get(id(entry)), recursion)
        primary = None
        for raw in entry.keys:
            key = self.macro(raw).strip()
            if key and match_key(text, key, entry, self.settings, budget):
                primary = key
                break
            if budget.spent:
                return spent
        if primary is None:
            return ""
        why = f"key {primary!r}"
        if entry.selective and entry.secondary:
            ok, detail = secondary(entry, text, self.settings, self.macro, budget)
            if not ok:
                return f"{why} matched but {detail}"
            why += f" and {detail}"
        blocked = decorator_keys(entry, text, self.settings, self.macro, budget)
        if blocked:
            return f"{why} matched but {blocked}"
        return "+" + why

    def _score(self, entry: Entry, scan: Scan, recursion: bool) -> int:
        """SillyTavern's `getScore`: keys found (secondary ones count under AND ANY, and AND ALL when all are)."""
        text = scan.text(entry, self.book_of.get(id(entry)), recursion)
        def hits(keys: list[str]) -> int:
            found = (self.macro(raw).strip() for raw in keys)
            return sum(1 for key in found if key and match_key(text, key, entry, self.settings, scan.budget))

        primary, second = hits(entry.keys), hits(entry.secondary)
        if not entry.keys:
            return 0
        if entry.secondary and (entry.logic == AND_ANY or (entry.logic == AND_ALL and second == len(entry.secondary))):
            return primary + second
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

async def _words(text: str) -> int:
    """A stand-in token count (words and punctuation) when no tokenizer is given."""
    return len(re.findall(r"\w+|[^\w\s]", text))
