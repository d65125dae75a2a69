"""Facts people state about themselves, found by rules: cheap, deterministic, and right often enough.

Only first-person statements count ("my name is Ada", "I live in Lisbon", "my dog is called
Biscuit"); questions and negations are skipped, so asking "is my name Ada?" teaches nothing. A model
can add more (see model_extract.py) where a capable one is configured.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_SENTENCES = re.compile(r"[^.!?\n]+[.!?]*")
_END = r"(?=\s*(?:[.,!;:]|$|\band\b|\bbut\b|\bwho\b|\bwith\b|\bso\b|\bbecause\b))"
_NOT_NAMES = {
    "sorry", "not", "fine", "good", "glad", "happy", "here", "back", "just", "really", "so", "very", "also", "still",
    "tired", "sure", "ok", "okay", "afraid", "sad", "angry", "busy", "new", "doing", "going", "from", "in", "at",
    "the", "your", "a", "an", "always", "never", "only", "quite", "feeling", "well", "great", "excited", "curious",
}
ALWAYS_LIST = {"likes", "dislikes"}  # keys whose values accumulate instead of replacing


@dataclass(frozen=True)
class Fact:
    """One thing a person said about themselves: `key` (name, dog, home, job, likes…) and its value."""

    key: str
    value: str


def _clean(value: str) -> str:
    value = re.sub(r"\s+", " ", value).strip(" \t'\"")
    return value.rstrip(".,!;:")


_RULES: list[tuple[str, re.Pattern[str]]] = [
    ("name", re.compile(r"\bmy name(?:'s| is)\s+([A-Za-z][\w'-]*)", re.I)),
    ("name", re.compile(r"\b(?i:call me|this is)\s+([A-Z][\w'-]*)")),
    ("name", re.compile(r"(?:^|\b(?:hi|hello|hey)[,!]?\s+)I(?:'m| am)\s+([A-Z][\w'-]+)" + _END)),
    ("age", re.compile(r"\bI(?:'m| am)\s+(\d{1,3})(?:\s+years?\s+old)?" + _END, re.I)),
    ("job", re.compile(r"\bI work as (?:a|an)\s+([\w' -]{3,40}?)" + _END, re.I)),
    ("workplace", re.compile(r"\bI work (?:at|for|in)\s+([\w' -]{2,40}?)" + _END, re.I)),
    ("is", re.compile(r"\bI(?:'m| am)\s+((?:a|an)\s+[\w' -]{3,40}?)" + _END, re.I)),
    ("home", re.compile(r"\bI live in\s+([\w' -]{2,40}?)" + _END, re.I)),
    ("from", re.compile(r"\bI(?:'m| am| come) from\s+([\w' -]{2,40}?)" + _END, re.I)),
    ("birthday", re.compile(r"\bmy birthday is (?:on )?([\w' -]{3,30}?)" + _END, re.I)),
    ("likes", re.compile(r"\bI (?:really |also )?(?:like|love|enjoy|adore)\s+([\w' -]{3,40}?)" + _END, re.I)),
    ("dislikes", re.compile(r"\bI (?:really )?(?:hate|dislike|can't stand)\s+([\w' -]{3,40}?)" + _END, re.I)),
]
# "my dog is called Biscuit", "my sister's name is Eva", "I have a cat named Tom", "my favourite colour is blue".
_NAMED = [
    re.compile(r"\bmy ([a-z]+(?: [a-z]+)?) (?:is called|is named|'s called|'s named|'s name is|name is)\s+([A-Za-z][\w'-]*)", re.I),
    re.compile(r"\bmy ([a-z]+)'s name is\s+([A-Za-z][\w'-]*)", re.I),
    re.compile(r"\bI have an? ([a-z]+) (?:called|named)\s+([A-Za-z][\w'-]*)", re.I),
]
_FAVOURITE = re.compile(r"\bmy favou?rite ([a-z]+(?: [a-z]+)?) is\s+([\w' -]{2,40}?)" + _END, re.I)
_NEGATED = re.compile(r"\b(?:don't|do not|never|not|isn't|am not|'m not)\b", re.I)


def extract(text: str) -> list[Fact]:
    """Facts in `text`, in order; a later statement of the same key wins when they are stored."""
    facts: list[Fact] = []
    for sentence in _SENTENCES.findall(text):
        sentence = sentence.strip()
        if not sentence or sentence.endswith("?"):
            continue
        for match in _FAVOURITE.finditer(sentence):
            facts.append(Fact(f"favourite {match.group(1).lower()}", _clean(match.group(2))))
        for pattern in _NAMED:
            for match in pattern.finditer(sentence):
                noun = match.group(1).lower()
                if noun != "name" and not noun.startswith("favou"):
                    facts.append(Fact(noun, _clean(match.group(2))))
        for key, pattern in _RULES:
            for match in pattern.finditer(sentence):
                value = _clean(match.group(1))
                if not value or _NEGATED.search(sentence[: match.start(1)].split(",")[-1]):
                    continue
                if key == "name":
                    if value.lower() in _NOT_NAMES:
                        continue
                    value = value[:1].upper() + value[1:]
                facts.append(Fact(key, value))
    return _dedupe(facts)


def _dedupe(facts: list[Fact]) -> list[Fact]:
    seen: set[tuple[str, str]] = set()
    out = []
    for fact in facts:
        if (fact.key, fact.value.lower()) not in seen:
            seen.add((fact.key, fact.value.lower()))
            out.append(fact)
    return out
