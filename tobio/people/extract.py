"""Facts people state about themselves, found by rules: cheap, deterministic, and right often enough.

Only first-person statements count ("my name is Ada", "I live in Lisbon", "my dog is called
Biscuit"); questions and negations are skipped, so asking "is my name Ada?" teaches nothing. A model
can add more (see model_extract.py) where a capable one is configured.

`read` also tells a correction from news: a statement that opens by saying the agent got it wrong
("no, …", "that's not right, …", "actually …", "I said …") or that denies a value ("…, not Max", "my
dog isn't called Max") is a correction: the old value was never true and is retracted, where news
("I moved to Paris") only ends the old value's window.
"""

from __future__ import annotations

import re

from tobio.people.facts import ALWAYS_LIST, Fact, Statement

_SENTENCES = re.compile(r"[^.!?\n]+[.!?]*")
_END = r"(?=\s*(?:[.,!;:]|$|\band\b|\bbut\b|\bwho\b|\bwith\b|\bso\b|\bbecause\b))"
_NOT_NAMES = {
    "sorry", "not", "fine", "good", "glad", "happy", "here", "back", "just", "really", "so", "very", "also", "still",
    "tired", "sure", "ok", "okay", "afraid", "sad", "angry", "busy", "new", "doing", "going", "from", "in", "at",
    "the", "your", "a", "an", "always", "never", "only", "quite", "feeling", "well", "great", "excited", "curious",
}
_NEWS = re.compile(r"\b(?:moved|relocated|just started|started working|new job|got a job|changed jobs?|switched)\b", re.I)
_NO_LONGER = re.compile(r"\b(?:anymore|any more|no longer|not any longer)\b", re.I)

_TIME_WORDS = re.compile(r"(?:\s+(?:now|nowadays|these days|at the moment|currently|today|yesterday|anymore|any more|recently"
                         r"|last (?:week|month|year|spring|summer|autumn|fall|winter)|a (?:while|week|month|year) ago"
                         r"|this (?:week|month|year)))+$", re.I)


def _clean(value: str) -> str:
    value = re.sub(r"\s+", " ", value).strip(" \t'\"")
    return _TIME_WORDS.sub("", value.rstrip(".,!;:")).rstrip(".,!;:")


_RULES: list[tuple[str, re.Pattern[str]]] = [
    ("name", re.compile(r"\bmy name(?:'s| is)\s+([A-Za-z][\w'-]*)", re.I)),
    ("name", re.compile(r"\b(?i:call me|this is)\s+([A-Z][\w'-]*)")),
    ("name", re.compile(r"(?:^|\b(?:hi|hello|hey)[,!]?\s+)I(?:'m| am)\s+([A-Z][\w'-]+)" + _END)),
    ("age", re.compile(r"\bI(?:'m| am)\s+(\d{1,3})(?:\s+years?\s+old)?" + _END, re.I)),
    ("job", re.compile(r"\bI work as (?:a|an)\s+([\w' -]{3,40}?)" + _END, re.I)),
    ("workplace", re.compile(r"\bI work (?:at|for|in)\s+([\w' -]{2,40}?)" + _END, re.I)),
    ("is", re.compile(r"\bI(?:'m| am)\s+((?:a|an)\s+[\w' -]{3,40}?)" + _END, re.I)),
    ("home", re.compile(r"\bI (?:now |still |actually )?live in\s+([\w' -]{2,40}?)" + _END, re.I)),
    ("home", re.compile(r"\bI(?:'ve| have)? (?:just |recently )?(?:moved|relocated) to\s+([\w' -]{2,40}?)" + _END, re.I)),
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
# "my dog is Rex" (a capitalised name), only read in a correction, where it cannot be "my dog is Happy".
_NAMED_BARE = re.compile(r"\b(?i:my) ([a-z]+)(?:'s name)? is\s+([A-Z][\w'-]*)")
# "it's Rex", "but Rex", or a bare "Rex" ending a correction: a value whose key is that of the value it denies.
_VALUE_ONLY = re.compile(r"(?:^|\bbut |\b(?i:it)(?:'s| is| was) )(?!I\b)([A-Z][\w'-]*)\s*[.!,;]*$")
# Saying the agent got it wrong, at the start of a sentence: "No, …", "Nope …", "That's not right, …",
# "Wrong!", "Actually …", "You got it wrong …", "I said …", "I meant …", "I told you …", "Correction: …".
_CORRECTING = re.compile(
    r"^\s*(?:(?:no|nope|nah|wrong|incorrect|not quite|not really|not true|correction|oops|sorry)\b[\s,.:;!-]*"
    r"|(?:that|this|it)(?:'s| is| was)? (?:not (?:right|true|correct|it|what i said)|wrong|incorrect|a mistake)\b[\s,.:;!-]*"
    r"|you(?:'ve| have|'re| are)? (?:got (?:it|that|this) )?(?:wrong|mistaken|mixed (?:it|that) up)\b[\s,.:;!-]*"
    r"|(?:you misheard|you misunderstood)\b[\s,.:;!-]*"
    r"|(?:actually|in fact|to be clear|let me correct (?:you|that))\b[\s,.:;!-]*"
    r"|i (?:said|meant|told you|already told you)(?: that)?\b[\s,.:;!-]*)+",
    re.I,
)
# Values denied: "my dog isn't called Max", "my name is not Bob", "I don't live in Berlin", "…, not Max".
_DENIALS: list[tuple[str | None, re.Pattern[str]]] = [
    (None, re.compile(r"\bmy ([a-z]+(?: [a-z]+)?) (?:isn't|is not|'s not|was never|wasn't)(?: called| named)?\s+([A-Za-z][\w'-]*)", re.I)),
    ("home", re.compile(r"\bI (?:don't|do not|no longer) live in\s+([\w' -]{2,40}?)" + _END, re.I)),
    ("is", re.compile(r"\bI(?:'m| am) not ((?:a|an)\s+[\w' -]{3,40}?)" + _END, re.I)),
    ("", re.compile(r"(?:^|[,;]\s*|\band\s+|\bbut\s+)not\s+([A-Z][\w'-]*)\b")),
]
_NEGATED = re.compile(r"\b(?:don't|do not|never|not|isn't|am not|'m not)\b", re.I)


def extract(text: str) -> list[Fact]:
    """Facts in `text`, in order; a later statement of the same key wins when they are stored."""
    return read(text).facts


def read(text: str) -> Statement:
    """The facts in `text`, and whether it corrects the agent (see the module docstring)."""
    facts: list[Fact] = []
    denied: list[tuple[str | None, str]] = []
    ended: list[tuple[str | None, str]] = []
    correction = False
    for sentence in _SENTENCES.findall(text):
        sentence = sentence.strip()
        if not sentence or sentence.endswith("?"):
            continue
        opened = _CORRECTING.match(sentence)
        if opened and opened.end() > 0:
            sentence = sentence[opened.end():].strip()
            correction = correction or not _NEWS.search(sentence)  # "actually, I moved to Paris" is news
            sentence = sentence[:1].upper() + sentence[1:] if sentence.lower().startswith("i ") or sentence.lower().startswith("i'") else sentence
        found = _denials(sentence)
        if found and _NO_LONGER.search(sentence):  # news, not a correction: it was true until now
            ended += found
            sentence = _strip_denials(sentence)
        elif found:
            denied += found
            correction = True
            sentence = _strip_denials(sentence)
        said = _facts(sentence)
        if correction:
            for match in _NAMED_BARE.finditer(sentence):
                noun = match.group(1).lower()
                if noun not in ("name",) and not noun.startswith("favou"):
                    said.append(Fact(noun, _clean(match.group(2))))
            bare = _VALUE_ONLY.search(sentence)
            if not said and bare:
                said.append(Fact("", _clean(bare.group(1))))  # the key is the denied value's (see People.correct)
        facts += said
    return Statement(_dedupe(facts), correction, tuple(denied), tuple(ended))


def _denials(sentence: str) -> list[tuple[str | None, str]]:
    out: list[tuple[str | None, str]] = []
    for key, pattern in _DENIALS:
        for match in pattern.finditer(sentence):
            if key is None:
                noun = match.group(1).lower()
                out.append(("name" if noun == "name" else noun, _clean(match.group(2))))
            else:
                out.append((key or None, _clean(match.group(1))))
    return [(k, v) for k, v in out if v]


def _strip_denials(sentence: str) -> str:
    """The sentence without its denials, so "my dog isn't Max, it's Rex" is not read as a fact about Max."""
    for _, pattern in _DENIALS:
        sentence = pattern.sub(" ", sentence)
    return sentence.strip(" ,;")


def _facts(sentence: str) -> list[Fact]:
    facts: list[Fact] = []
    if sentence:
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
    return facts


def _dedupe(facts: list[Fact]) -> list[Fact]:
    seen: set[tuple[str, str]] = set()
    out = []
    for fact in facts:
        if (fact.key, fact.value.lower()) not in seen:
            seen.add((fact.key, fact.value.lower()))
            out.append(fact)
    return out


__all__ = ["ALWAYS_LIST", "Fact", "Statement", "extract", "read"]
