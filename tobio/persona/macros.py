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

_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December")
_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_LIST_MAX = 1000  # items in one {{random}}/{{pick}} list: hostile cards must not cost much
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


def _roll(formula: str, rng: random.Random) -> str:
    """`{{roll:d6}}`, `{{roll:2d10+3}}`, `{{roll:20}}` (= 1d20); an invalid formula gives ''."""
    formula = formula.strip()
    if formula.isdigit():
        formula = f"1d{formula}"
    match = _ROLL.match(formula)
    if not match or int(match.group(2)) < 1:
        return ""
    count = int(match.group(1) or 1)
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


def _stable_index(seed: str, raw: str, offset: int, size: int) -> int:
    digest = hashlib.blake2b(f"{seed}-{raw}-{offset}".encode(), digest_size=8).digest()
    return random.Random(int.from_bytes(digest, "little")).randrange(size)


def _value(value: str | Callable[[], str]) -> str:
    return str(value() if callable(value) else value)


def apply_macros(text: str | None, env: MacroEnv) -> str:
    """`text` with SillyTavern's macros filled in for `env`."""
    if not text:
        return ""
    raw = text
    legacy = {"user": env.user, "bot": env.char, "char": env.char, "charifnotgroup": env.group or env.char,
              "group": env.group or env.char}
    text = re.sub(r"<(USER|BOT|CHAR|CHARIFNOTGROUP|GROUP)>", lambda m: legacy[m.group(1).lower()], text, flags=re.IGNORECASE)
    if "{{" not in text:
        return text
    text = re.sub(r"\{\{roll[ :]([^}]+)\}\}", lambda m: _roll(m.group(1), env.random()), text, flags=re.IGNORECASE)
    text = re.sub(r"\{\{newline\}\}", "\n", text, flags=re.IGNORECASE)
    text = re.sub(r"(?:\r?\n)*\{\{trim\}\}(?:\r?\n)*", "", text, flags=re.IGNORECASE)
    text = re.sub(r"\{\{noop\}\}", "", text, flags=re.IGNORECASE)
    named: dict[str, str | Callable[[], str]] = {
        "user": env.user, "char": env.char, "group": env.group or env.char, "charIfNotGroup": env.group or env.char,
        "groupNotMuted": env.group or env.char, **env.values,
    }
    lowered = {name.lower(): value for name, value in named.items()}
    text = re.sub(r"\{\{([A-Za-z_][\w]*)\}\}", lambda m: _value(lowered[m.group(1).lower()]) if m.group(1).lower() in lowered
                  else m.group(0), text)
    text = re.sub(r"\{\{reverse:(.+?)\}\}", lambda m: m.group(1)[::-1], text, flags=re.IGNORECASE)
    text = re.sub(r"\{\{//[\s\S]*?\}\}", "", text)
    if re.search(r"\{\{(time|date|weekday|isotime|isodate|datetimeformat|time_utc)", text, re.IGNORECASE):
        when = env.clock()
        text = re.sub(r"\{\{time\}\}", lambda _: format_time(when), text, flags=re.IGNORECASE)
        text = re.sub(r"\{\{date\}\}", lambda _: format_date(when), text, flags=re.IGNORECASE)
        text = re.sub(r"\{\{weekday\}\}", lambda _: _DAYS[when.weekday()], text, flags=re.IGNORECASE)
        text = re.sub(r"\{\{isotime\}\}", lambda _: f"{when:%H:%M}", text, flags=re.IGNORECASE)
        text = re.sub(r"\{\{isodate\}\}", lambda _: f"{when:%Y-%m-%d}", text, flags=re.IGNORECASE)
        text = re.sub(r"\{\{datetimeformat +([^}]*)\}\}", lambda m: format_moment(when, m.group(1)), text, flags=re.IGNORECASE)
        text = re.sub(r"\{\{time_UTC([-+]\d{1,2})\}\}", lambda m: format_time(
            when.astimezone(timezone(timedelta(hours=max(-14, min(14, int(m.group(1)))))))), text, flags=re.IGNORECASE)
    text = re.sub(r"\{\{random\s?::?([^}]+)\}\}", lambda m: env.random().choice(_split_list(m.group(1))), text, flags=re.IGNORECASE)

    def pick(match: re.Match[str]) -> str:
        items = _split_list(match.group(1))
        return items[_stable_index(env.seed, raw, match.start(), len(items))]

    return re.sub(r"\{\{pick\s?::?([^}]+)\}\}", pick, text, flags=re.IGNORECASE)


def split_examples(text: str) -> list[str]:
    """Example dialogue split at `<START>` into separate exchanges (ST's `parseMesExamples`), each trimmed."""
    if not text or not text.strip():
        return []
    blocks = re.split(r"<START>", text, flags=re.IGNORECASE)
    return [block.strip() for block in blocks if block.strip()]
