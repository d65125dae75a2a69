"""SillyTavern macros (`{{char}}`, `{{user}}`, `{{time}}`, `{{random:a,b}}`, `<USER>`, ...) as ST applies them.

Cards are written for SillyTavern, whose `evaluateMacros` (public/scripts/macros.js) fills these in
every prompt field and lore entry just before the prompt is built. The order here is ST's: legacy
`<USER>`/`<BOT>` forms, dice, `{{newline}}`/`{{trim}}`/`{{noop}}`, the named values, `{{reverse:}}`,
comments, time and date, then `{{random}}` and `{{pick}}`. Unknown macros are left as written.
Differences: `{{time}}`/`{{date}}` use English month and day names (moment's default locale), not the
user's locale; `{{datetimeformat}}` understands the common moment tokens only; `{{pick}}` is seeded by
`MacroEnv.seed` (the thread) where ST hashes the chat file name.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from functools import lru_cache

_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December")
_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_LIST_MAX = 1000  # items in one {{random}}/{{pick}} list: hostile cards must not cost much
_MOMENT_MAX = 256  # characters of one {{datetimeformat}} pattern
MAX_DICE = 10_000  # dice rolled for one text, all its {{roll}}s together
MAX_OUTPUT = 4 * 1024 * 1024  # characters macros may expand a text to; past it the rest stays as written
_ROLL = re.compile(r"^(\d{0,3})d(\d{1,6})(?:\s*([+-])\s*(\d{1,6}))?$", re.IGNORECASE)


@dataclass
class MacroEnv:
    """What the macros stand for in one prompt: who speaks (`char`), to whom (`user`), and when."""

    char: str
    user: str = "User"
    group: str = ""  # the names of everyone in a group chat; empty outside one
    now: datetime | None = None  # local time; None: the clock
    seed: str = ""  # {{pick}} is stable for the same seed, text and position
    rng: random.Random | None = None  # {{random}} and {{roll}}; None: a fresh system RNG
    values: Mapping[str, str | Callable[[], str]] = field(default_factory=dict)  # more {{name}} values

    def clock(self) -> datetime:
        return self.now or datetime.now().astimezone()

    def random(self) -> random.Random:
        if self.rng is None:
            self.rng = random.Random()
        return self.rng


def _split_list(body: str) -> list[str]:
    """ST: `::` separates items verbatim; else commas (`\\,` escapes one) with items trimmed."""
    if "::" in body:
        return body.split("::")[:_LIST_MAX]
    marker = "\x00COMMA\x00"
    return [item.strip().replace(marker, ",") for item in body.replace("\\,", marker).split(",")][:_LIST_MAX]


def _roll(formula: str, rng: random.Random, dice: list[int] | None = None) -> str:
    """`{{roll:d6}}`, `{{roll:2d10+3}}`, `{{roll:20}}` (= 1d20); an invalid formula gives ''. `dice` is
    what is left of the text's MAX_DICE: a card of thousands of `{{roll:999d6}}` must not cost seconds."""
    formula = formula.strip()
    if len(formula) > 32:
        return ""
    if formula.isdigit():
        formula = f"1d{formula}"
    match = _ROLL.match(formula)
    if not match or int(match.group(2)) < 1:
        return ""
    count = int(match.group(1) or 1)
    if dice is not None:
        if dice[0] < count:
            return ""
        dice[0] -= count
    total = sum(rng.randint(1, int(match.group(2))) for _ in range(count))
    if match.group(3):
        total += int(match.group(4)) * (1 if match.group(3) == "+" else -1)
    return str(total)


def _hour12(when: datetime) -> tuple[int, str]:
    return (when.hour % 12 or 12), ("AM" if when.hour < 12 else "PM")


def format_time(when: datetime) -> str:
    """moment's `LT` in the English locale: `2:05 PM`."""
    hour, meridiem = _hour12(when)
    return f"{hour}:{when.minute:02d} {meridiem}"


def format_date(when: datetime) -> str:
    """moment's `LL`: `September 28, 2024`."""
    return f"{_MONTHS[when.month - 1]} {when.day}, {when.year}"


_MOMENT = re.compile(r"\[[^\]]*\]|YYYY|YY|MMMM|MMM|MM|M|DD|D|dddd|ddd|HH|H|hh|h|mm|m|ss|s|A|a")


def format_moment(when: datetime, pattern: str) -> str:
    """The common moment.js tokens (`YYYY-MM-DD HH:mm`, `dddd`, `[literal]`); other text is kept."""
    hour, meridiem = _hour12(when)
    table = {
        "YYYY": f"{when.year:04d}", "YY": f"{when.year % 100:02d}", "MMMM": _MONTHS[when.month - 1],
        "MMM": _MONTHS[when.month - 1][:3], "MM": f"{when.month:02d}", "M": str(when.month), "DD": f"{when.day:02d}",
        "D": str(when.day), "dddd": _DAYS[when.weekday()], "ddd": _DAYS[when.weekday()][:3], "HH": f"{when.hour:02d}",
        "H": str(when.hour), "hh": f"{hour:02d}", "h": str(hour), "mm": f"{when.minute:02d}", "m": str(when.minute),
        "ss": f"{when.second:02d}", "s": str(when.second), "A": meridiem, "a": meridiem.lower(),
    }
    return _MOMENT.sub(lambda m: m.group(0)[1:-1] if m.group(0).startswith("[") else table[m.group(0)], pattern)


def _seed_digest(seed: str, raw: str) -> str:
    """The text's part of `{{pick}}`'s seed, hashed once per text (not once per pick: that was quadratic)."""
    return hashlib.blake2b(f"{seed}-{raw}".encode(), digest_size=16).hexdigest()


def _stable_index(seed: str, offset: int, size: int) -> int:
    digest = hashlib.blake2b(f"{seed}-{offset}".encode(), digest_size=16).digest()
    return int.from_bytes(digest, "little") % size  # 128 bits over at most _LIST_MAX items: no visible bias


def _value(value: str | Callable[[], str]) -> str:
    return str(value() if callable(value) else value)


class _Next:
    """The first `needle` at or after a position, for positions that only grow: every character is
    searched at most once, so a text of many unclosed macros costs linear time, not quadratic."""

    def __init__(self, text: str, needle: str) -> None:
        self.text, self.needle, self.at = text, needle, -2  # -2: not searched yet

    def after(self, pos: int) -> int:
        if self.at == -1 or self.at >= pos:
            return self.at  # none after an earlier position means none after this one either
        self.at = self.text.find(self.needle, pos)
        return self.at


class _Out:
    """Pieces of a rewritten text; past MAX_OUTPUT characters no more macros are expanded."""

    def __init__(self, size: int) -> None:
        self.parts: list[str] = []
        self.size = size

    def room(self, extra: int) -> bool:
        if self.size + extra > MAX_OUTPUT:
            return False
        self.size += extra
        return True


# How a macro's body ends: `brace` is `[^}]+}}` (no `}` inside), `lazy` is `.+?}}` (one line),
# `comment` is `[\s\S]*?}}`. Each is found with `_Next`, never by backtracking.
_Kind = str


def _sub(text: str, opener: re.Pattern[str], kind: _Kind, fn: Callable[[str, int], str | None],
         empty: bool = False) -> str:
    """Replace `opener` + body + `}}` by `fn(body, start)` (None keeps it as written), in linear time."""
    brace, pair, line = _Next(text, "}"), _Next(text, "}}"), _Next(text, "\n")
    out = _Out(len(text))
    last = 0
    for match in opener.finditer(text):
        start, begin = match.start(), match.end()
        if start < last:
            continue
        if kind == "brace":
            close = brace.after(begin)
            if close == -1:
                break  # no `}` after here: no later macro of this kind can close either
            if text[close + 1 : close + 2] != "}" or (close == begin and not empty):
                continue
        else:
            close = pair.after(begin if kind == "comment" or empty else begin + 1)
            if close == -1:
                break
            if kind == "lazy":
                newline = line.after(begin)
                if newline != -1 and newline < close:
                    continue
        value = fn(text[begin:close], start)
        if value is None or not out.room(len(value) - (close + 2 - start)):
            continue
        out.parts += [text[last:start], value]
        last = close + 2
    out.parts.append(text[last:])
    return "".join(out.parts)


def _regex_sub(pattern: re.Pattern[str], text: str, fn: Callable[[re.Match[str]], str]) -> str:
    """`pattern.sub(fn, text)` for patterns that are linear already, with the output capped."""
    out = _Out(len(text))
    last = 0
    for match in pattern.finditer(text):
        value = fn(match)
        if not out.room(len(value) - (match.end() - match.start())):
            break
        out.parts += [text[last:match.start()], value]
        last = match.end()
    out.parts.append(text[last:])
    return "".join(out.parts)


def _trim(text: str) -> str:
    """`(?:\r?\n)*{{trim}}(?:\r?\n)*` removed, scanning each newline once (the regex was quadratic on newlines)."""
    out: list[str] = []
    last = 0
    for match in _TRIM.finditer(text):
        start, end = match.start(), match.end()
        if start < last:
            continue
        while start > last and text[start - 1] == "\n":
            start -= 1
            if start > last and text[start - 1] == "\r":
                start -= 1
        while True:
            if text.startswith("\n", end):
                end += 1
            elif text.startswith("\r\n", end):
                end += 2
            else:
                break
        out += [text[last:start]]
        last = end
    out.append(text[last:])
    return "".join(out)


_I = re.IGNORECASE
_LEGACY = re.compile(r"<(USER|BOT|CHAR|CHARIFNOTGROUP|GROUP)>", _I)
_TRIM = re.compile(r"\{\{trim\}\}", _I)
_NAMED = re.compile(r"\{\{([A-Za-z_][\w]*)\}\}")
_TIMES = re.compile(r"\{\{(time|date|weekday|isotime|isodate|datetimeformat|time_utc)", _I)
_OPEN = {name: re.compile(pattern, _I) for name, pattern in {
    "roll": r"\{\{roll[ :]", "reverse": r"\{\{reverse:", "comment": r"\{\{//", "moment": r"\{\{datetimeformat +",
    "random": r"\{\{random\s?:", "pick": r"\{\{pick\s?:"}.items()}
_FIXED = {name: re.compile(pattern, _I) for name, pattern in {
    "newline": r"\{\{newline\}\}", "noop": r"\{\{noop\}\}", "time": r"\{\{time\}\}", "date": r"\{\{date\}\}",
    "weekday": r"\{\{weekday\}\}", "isotime": r"\{\{isotime\}\}", "isodate": r"\{\{isodate\}\}",
    "utc": r"\{\{time_UTC([-+]\d{1,2})\}\}"}.items()}


def _constant(value: str) -> Callable[[re.Match[str]], str]:
    return lambda _: value


def _list_body(body: str) -> list[str]:
    """ST's `{{random::a::b}}` and `{{random:a,b}}`: the opener takes a second `:` when a body follows it."""
    return _split_list(body[1:] if body.startswith(":") and len(body) > 1 else body)


def apply_macros(text: str | None, env: MacroEnv) -> str:
    """`text` with SillyTavern's macros filled in for `env`, in time linear in the text (hostile cards
    with thousands of unclosed `{{//` or `{{roll:` cost milliseconds) and growing it at most to MAX_OUTPUT."""
    if not text:
        return ""
    raw = text
    legacy = {"user": env.user, "bot": env.char, "char": env.char, "charifnotgroup": env.group or env.char,
              "group": env.group or env.char}
    text = _regex_sub(_LEGACY, text, lambda m: legacy[m.group(1).lower()])
    if "{{" not in text:
        return text
    dice = [MAX_DICE]
    text = _sub(text, _OPEN["roll"], "brace", lambda body, _: _roll(body, env.random(), dice))
    text = _regex_sub(_FIXED["newline"], text, lambda _: "\n")
    text = _trim(text)
    text = _regex_sub(_FIXED["noop"], text, lambda _: "")
    named: dict[str, str | Callable[[], str]] = {
        "user": env.user, "char": env.char, "group": env.group or env.char, "charIfNotGroup": env.group or env.char,
        "groupNotMuted": env.group or env.char, **env.values,
    }
    lowered = {name.lower(): value for name, value in named.items()}
    text = _regex_sub(_NAMED, text, lambda m: _value(lowered[m.group(1).lower()]) if m.group(1).lower() in lowered
                      else m.group(0))
    text = _sub(text, _OPEN["reverse"], "lazy", lambda body, _: body[::-1])
    text = _sub(text, _OPEN["comment"], "comment", lambda body, _: "", empty=True)
    if _TIMES.search(text):
        when = env.clock()
        fixed = {"time": format_time(when), "date": format_date(when), "weekday": _DAYS[when.weekday()],
                 "isotime": f"{when:%H:%M}", "isodate": f"{when:%Y-%m-%d}"}  # each worked out once per text
        for name, value in fixed.items():
            text = _regex_sub(_FIXED[name], text, _constant(value))
        text = _sub(text, _OPEN["moment"], "brace", lambda body, _: format_moment(when, body)
                    if len(body) <= _MOMENT_MAX else None, empty=True)
        zoned = lru_cache(maxsize=32)(lambda hours: format_time(when.astimezone(timezone(timedelta(hours=hours)))))
        text = _regex_sub(_FIXED["utc"], text, lambda m: zoned(max(-14, min(14, int(m.group(1))))))
    text = _sub(text, _OPEN["random"], "brace", lambda body, _: env.random().choice(_list_body(body)))
    if not _OPEN["pick"].search(text):
        return text
    seed = _seed_digest(env.seed, raw)

    def pick(body: str, start: int) -> str:
        items = _list_body(body)
        return items[_stable_index(seed, start, len(items))]

    return _sub(text, _OPEN["pick"], "brace", pick)


def split_examples(text: str) -> list[str]:
    """Example dialogue split at `<START>` into separate exchanges (ST's `parseMesExamples`), each trimmed."""
    if not text or not text.strip():
        return []
    blocks = re.split(r"<START>", text, flags=re.IGNORECASE)
    return [block.strip() for block in blocks if block.strip()]
