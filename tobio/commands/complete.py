"""Completion over the one command tree: names, flags and argument values, with help beside each.

Front ends (the shell's prompt, the `%tobio` magic) ask `CommandCompleter.complete(text)` for the
candidates at the end of `text`. Values come from named sources (`Arg.complete`): the engine knows
`command` and `file` itself, SQL is completed by `complete_sql`, and the rest (`agent`, `channel`,
`module`, `thread`, `task`, `model`) are read from a `Sources` object. `KernelSources` reads a live
kernel and never blocks for long: slow lists (threads, the SQL schema) are cached and refreshed in
the background.
"""

from __future__ import annotations

import os
import re
import shlex
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from tobio.commands.tree import Arg, Command, Group

if TYPE_CHECKING:
    from tobio.kernel import Kernel

QUOTES = "'\""
_SAFE = re.compile(r"^[\w@%+=:,./~-]*$")


@dataclass(frozen=True)
class Candidate:
    """One completion: `text` replaces the `start` characters before the cursor (start <= 0)."""

    text: str
    start: int
    display: str
    help: str = ""
    kind: str = ""


@dataclass(frozen=True)
class Word:
    """A word of the line as the user typed it: its unquoted value, where it starts, an open quote."""

    value: str
    start: int
    quote: str | None = None


def split_partial(text: str) -> tuple[list[Word], Word]:
    """Split like a POSIX shell but tolerate an unfinished last word; returns (done words, current)."""
    words: list[Word] = []
    i, n = 0, len(text)
    while True:
        while i < n and text[i].isspace():
            i += 1
        if i >= n:
            return words, Word("", n)
        start, buf, quote = i, [], None
        while i < n:
            ch = text[i]
            if quote:
                if ch == quote:
                    quote = None
                elif ch == "\\" and quote == '"' and i + 1 < n and text[i + 1] in '"\\$`':
                    i += 1
                    buf.append(text[i])
                else:
                    buf.append(ch)
            elif ch in QUOTES:
                quote = ch
            elif ch == "\\" and i + 1 < n:
                i += 1
                buf.append(text[i])
            elif ch.isspace():
                break
            else:
                buf.append(ch)
            i += 1
        word = Word("".join(buf), start, quote)
        if i >= n:
            return words, word
        words.append(word)


def quote_for(value: str, word: Word, close: bool = True) -> str:
    """How `value` must be typed to replace `word`: keep the user's open quote, else quote if needed."""
    if word.quote == "'":
        return "'" + value.replace("'", "'\"'\"'") + ("'" if close else "")
    if word.quote == '"':
        escaped = re.sub(r'(["\\$`])', r"\\\1", value)
        return '"' + escaped + ('"' if close else "")
    if _SAFE.match(value):
        return value
    quoted = shlex.quote(value)
    return quoted if close else quoted[:-1]


class Sources(Protocol):
    """Where argument values come from: `values("agent")` -> [(name, help)], plus the SQL schema."""

    def values(self, source: str) -> list[tuple[str, str]]: ...

    def sql_schema(self) -> dict[str, list[tuple[str, str]]]: ...

    def sql_functions(self) -> list[tuple[str, str]]: ...


class NoSources:
    """No live values: names and flags still complete."""

    def values(self, source: str) -> list[tuple[str, str]]:
        return []

    def sql_schema(self) -> dict[str, list[tuple[str, str]]]:
        return {}

    def sql_functions(self) -> list[tuple[str, str]]:
        return []


class CommandCompleter:
    """Completes command lines against `root`, optionally from inside a subshell `group`."""

    def __init__(self, root: Group, sources: Sources | None = None) -> None:
        self.root = root
        self.sources: Sources = sources or NoSources()

    def complete(self, text: str, group: Group | None = None, extra: dict[str, str] | None = None) -> list[Candidate]:
        """Candidates for the end of `text`; `extra` adds first words (shell words such as `exit`)."""
        words, current = split_partial(text)
        base = group or self.root
        node: Group | Command = base
        for i, word in enumerate(words):
            child = node.get(word.value) if isinstance(node, Group) and not word.quote else None
            if child is None and i == 0 and base is not self.root:
                child = self.root.get(word.value)  # root commands stay reachable from a subshell
            if child is None:
                if isinstance(node, Command):
                    return self._arguments(node, text, words[i:], current)
                return []
            node = child  # type: ignore[assignment]
        if isinstance(node, Command):
            return self._arguments(node, text, [], current)
        return self._children(node, current, extra if node is base else None, fallback=base is not self.root and not words)

    # -- names -------------------------------------------------------------------------------
    def _children(self, group: Group, word: Word, extra: dict[str, str] | None, fallback: bool) -> list[Candidate]:
        if word.quote:
            return []
        if word.value.startswith("-"):
            return _matching([("--help", "show this help")], word, "flag")
        items = [(name, _node_help(node)) for name, node in sorted(group.children.items())]
        items += sorted((extra or {}).items())
        out = _matching(items, word, "command")
        if fallback and word.value:
            taken = {c.display for c in out}
            root_items = [(n, _node_help(c)) for n, c in sorted(self.root.children.items()) if n not in taken]
            out += _matching(root_items, word, "command")
        return out

    # -- arguments ---------------------------------------------------------------------------
    def _arguments(self, cmd: Command, text: str, done: list[Word], word: Word) -> list[Candidate]:
        raw = cmd.raw_arg
        positional: list[Word] = []
        used: set[str] = set()
        pending: Arg | None = None  # an option still waiting for its value
        options_over = False
        for w in done:
            if pending is not None:
                pending = None
                continue
            if not options_over and w.value == "--" and not w.quote:
                options_over = True
                continue
            option = None if options_over or w.quote else cmd.option(w.value.split("=", 1)[0])
            if option is not None:
                used.add(option.name)
                if option.takes_value and "=" not in w.value:
                    pending = option
                continue
            if raw is not None and not w.value.startswith("-"):
                return self._raw(cmd, raw, text[w.start:], word)
            positional.append(w)
        if pending is not None:
            return self._values(pending, word, [])
        if raw is not None and word.value and not word.value.startswith("-"):
            return self._raw(cmd, raw, text[word.start:], word)
        if word.value.startswith("-") and not word.quote and not options_over:
            if word.value.startswith("--") and "=" in word.value:
                name, _, rest = word.value.partition("=")
                option = cmd.option(name)
                if option is None or not option.takes_value:
                    return []
                inner = Word(rest, word.start + len(name) + 1)
                return self._values(option, inner, [])
            return self._options(cmd, used, word)
        arg, consumed = _positional_at(cmd, positional)
        out = self._values(arg, word, consumed) if arg is not None else []
        if not word.value and not word.quote and (arg is None or not out or arg.nargs in ("*", "?")):
            out += self._options(cmd, used, word)
        return out

    def _options(self, cmd: Command, used: set[str], word: Word) -> list[Candidate]:
        items = []
        for arg in cmd.args:
            if arg.positional or arg.name in used:
                continue
            meta = "" if arg.flag else f" {arg.metavar or arg.dest.upper()}"
            items.append((arg.name, f"{arg.help}{' ·' + meta if meta else ''}".strip()))
        items.append(("--help", "show this help"))
        return _matching(items, word, "flag")

    def _values(self, arg: Arg, word: Word, consumed: list[Word]) -> list[Candidate]:
        if arg.choices:
            return _matching([(c, arg.help) for c in arg.choices], word, "value")
        source = arg.complete
        if source == "command":
            return self._command_path([w.value for w in consumed], word)
        if source == "file":
            return _files(word)
        if source is None:
            return []
        try:
            items = self.sources.values(source)
        except Exception:  # noqa: BLE001 - completion must never break the prompt
            return []
        return _matching(items, word, source)

    def _command_path(self, path: list[str], word: Word) -> list[Candidate]:
        node: Any = self.root
        for name in path:
            node = node.get(name) if isinstance(node, Group) else None
        return self._children(node, word, None, False) if isinstance(node, Group) else []

    def _raw(self, cmd: Command, arg: Arg, raw_text: str, word: Word) -> list[Candidate]:
        if arg.complete == "sql":
            return complete_sql(raw_text, self.sources)
        return []

    def complete_raw(self, cmd: Command, text: str) -> list[Candidate]:
        """Completion inside a raw-command subshell (e.g. `sql>`): `text` is the raw argument so far."""
        arg = cmd.raw_arg
        return self._raw(cmd, arg, text, Word("", len(text))) if arg is not None else []


def _node_help(node: Any) -> str:
    return f"{node.help} …" if isinstance(node, Group) else node.help


def _matching(items: Iterable[tuple[str, str]], word: Word, kind: str) -> list[Candidate]:
    """Candidates whose value starts with what was typed, quoted as the word needs."""
    out = []
    seen: set[str] = set()
    for value, help_text in items:
        if value in seen or not value.startswith(word.value):
            continue
        seen.add(value)
        out.append(Candidate(quote_for(value, word) + " ", -_typed_len(word), value, help_text, kind))
    return out


def _typed_len(word: Word) -> int:
    return word.__dict__.get("_typed", -1) if False else _TYPED.get(id(word), -1)


_TYPED: dict[int, int] = {}


def _positional_at(cmd: Command, given: list[Word]) -> tuple[Arg | None, list[Word]]:
    """Which positional argument the next word fills, and the words it already took."""
    index = 0
    for arg in (a for a in cmd.args if a.positional and not a.raw):
        if arg.nargs in ("*", "+"):
            return arg, given[index:]
        count = arg.nargs if isinstance(arg.nargs, int) else 1
        if len(given) - index < count:
            return arg, given[index:]
        index += count
    return None, []


def _files(word: Word) -> list[Candidate]:
    """Paths under the directory the word names; directories end with '/' and keep the word open."""
    typed = word.value
    head, _, tail = typed.rpartition("/")
    directory = os.path.expanduser(head + "/" if head or typed.startswith("/") else ".")
    try:
        entries = sorted(os.scandir(directory), key=lambda e: e.name)
    except OSError:
        return []
    out = []
    for entry in entries:
        if not entry.name.startswith(tail) or (entry.name.startswith(".") and not tail.startswith(".")):
            continue
        path = (head + "/" if head or typed.startswith("/") else "") + entry.name
        is_dir = entry.is_dir()
        text = quote_for(path + "/", word, close=False) if is_dir else quote_for(path, word) + " "
        out.append(Candidate(text, -_typed_len(word), entry.name + ("/" if is_dir else ""), "directory" if is_dir else "file", "file"))
    return out
