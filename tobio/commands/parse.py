"""Bash-like parsing of a command line against the tree: shlex quoting, `--flags`, raw SQL tails.

Parsing is linear in the line's length (`shlex` is quadratic in a token's length: it grows each
token one character at a time) and lines are capped at MAX_LINE_CHARS, so no line can stall the
kernel; `aresolve` parses long lines in a worker thread, off the kernel's loop.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from typing import Any

from tobio.commands.tree import Command, Group, Node
from tobio.config.limits import MAX_LINE_CHARS, MAX_OPTION_WORDS, THREAD_PARSE_CHARS
from tobio.errors import CommandError

_BARE_WORD = re.compile(r"\s*([^\s'\"\\]+)(?=\s|$)")
# Compiled on first use (re's cache), as a plain command's start never uses it: ~1.3 M instructions a pattern.
_OPTION = r"\s*(--?[A-Za-z][\w-]*)(?:=(\S*))?(?=\s|$)"
_VALUE = r"\s*(\S+)"
_NEGATIVE = re.compile(r"^-\d+$|^-\d*\.\d+$")  # what argparse takes for a negative number, not an option
# shlex's POSIX mode with whitespace_split: words split on space, tab, CR and LF only. A word is
# plain text, '…', "…" (where only \\ and \" are escapes) or \x, run together. No alternative can
# match what another does, and nothing follows the repetition, so matching never backtracks.
_DOUBLE = '"[^"\\\\]*(?:\\\\[\\s\\S][^"\\\\]*)*'
_WORD = f"(?:[^ \t\r\n'\"\\\\]+|'[^']*'|{_DOUBLE}\"|\\\\[\\s\\S])+"
_PIECE = f"'([^']*)'|({_DOUBLE})\"|\\\\([\\s\\S])"
_OPEN_DOUBLE = _DOUBLE
_SPACES = re.compile("[ \t\r\n]*")
_DOUBLE_ESCAPE = r'\\([\\"])'
_QUOTING = "['\"\\\\]"


@dataclass
class Invocation:
    """A resolved line: the node it names, its parsed arguments, and whether help was asked for."""

    node: Node
    kwargs: dict[str, Any] = field(default_factory=dict)
    help: bool = False


def check_line(line: str) -> None:
    """One clear line for a command line too long to be meant."""
    if len(line) > MAX_LINE_CHARS:
        raise CommandError(f"command line too long ({len(line):,} characters; the limit is {MAX_LINE_CHARS:,})")


def split_words(text: str) -> list[str]:
    """What `shlex.split(text, posix=True)` returns, in linear time; clear errors for bad quoting.

    Outside quotes `\\x` is `x`; inside '…' nothing is special; inside "…" only `\\"` and `\\\\` are.
    """
    check_line(text)
    words: list[str] = []
    pos, end = 0, len(text)
    while True:
        pos = _SPACES.match(text, pos).end()  # type: ignore[union-attr]  # `\s*` matches everywhere
        if pos >= end:
            return words
        match = re.compile(_WORD).match(text, pos)
        stop = match.end() if match else pos
        if stop < end and text[stop] not in " \t\r\n":
            raise CommandError(f"bad quoting: {_quoting_problem(text, stop)}")
        word = text[pos:stop]
        words.append(_unquote(word) if re.search(_QUOTING, word) else word)
        pos = stop


def _unquote(word: str) -> str:
    """A word's text with its quotes and escapes taken out."""
    def piece(match: re.Match[str]) -> str:
        single, double, escaped = match.groups()
        if double is not None:
            return re.sub(_DOUBLE_ESCAPE, r"\1", double[1:])
        return single if single is not None else escaped

    return re.sub(_PIECE, piece, word)


def _quoting_problem(text: str, pos: int) -> str:
    """shlex's words for why a word cannot end at `pos`: an open quote, or a backslash at the very end."""
    if text[pos] == '"':
        inside = re.compile(_OPEN_DOUBLE).match(text, pos)
        if inside is not None and inside.end() < len(text):  # stopped at a backslash with nothing after it
            return "no escaped character"
    return "no escaped character" if text[pos] == "\\" else "no closing quotation"


def walk_path(root: Group, line: str) -> tuple[Node, int]:
    """Follow leading bare words down the tree; returns the deepest node and where its arguments start."""
    node: Node = root
    pos = 0
    while isinstance(node, Group):
        match = _BARE_WORD.match(line, pos)
        if not match:
            break
        child = node.get(match.group(1))
        if child is None:
            break
        node, pos = child, match.end()
    return node, pos


def _raw_argv(cmd: Command, rest: str) -> list[str]:
    """Leading options are parsed as usual; everything after them is one verbatim argument."""
    argv: list[str] = []
    pos = 0
    while True:
        match = re.compile(_OPTION).match(rest, pos)
        if not match:
            break
        token, inline = match.group(1), match.group(2)
        option = cmd.option(token)
        if token in ("-h", "--help") and inline is None:
            return ["--help"]
        if option is None or (inline is not None and not option.takes_value):
            break
        pos = match.end()
        if inline is not None:  # --limit=2
            argv.append(f"{token}={_one_word(inline)}")
            continue
        argv.append(token)
        if option.takes_value:
            value = re.compile(_VALUE).match(rest, pos)
            if not value:
                break
            argv.extend(split_words(value.group(1)))
            pos = value.end()
    tail = rest[pos:].strip()
    if tail:
        argv.append(tail)
    return argv


def _one_word(text: str) -> str:
    words = split_words(text)
    return words[0] if len(words) == 1 else text


async def aresolve(root: Group, line: str) -> Invocation | None:
    """`resolve` for a coroutine on the kernel's loop: long lines are parsed in a worker thread."""
    check_line(line)
    if len(line) > THREAD_PARSE_CHARS:
        return await asyncio.to_thread(resolve, root, line)
    return resolve(root, line)


def resolve(root: Group, line: str) -> Invocation | None:
    """Parse `line` into an Invocation; None for a blank line. Raises CommandError with usage."""
    check_line(line)
    line = line.strip()
    if not line:
        return None
    node, pos = walk_path(root, line)
    rest = line[pos:]
    if isinstance(node, Group):
        words = split_words(rest)
        if not words:
            return Invocation(node)
        if words[0] in ("-h", "--help"):
            return Invocation(node, help=True)
        where = f" in '{node.path}'" if node.path else ""
        suggestion = _closest(words[0], list(node.children))
        hint = f" (did you mean '{suggestion}'?)" if suggestion else ""
        raise CommandError(f"unknown command {_shown(words[0])}{where}{hint}", usage=_group_usage(node))
    assert isinstance(node, Command)
    argv = _raw_argv(node, rest) if node.raw_arg else split_words(rest)
    _check_option_words(argv)
    if "-h" in argv or "--help" in argv:
        if not node.raw_arg or argv == ["--help"]:
            return Invocation(node, help=True)
    namespace = node.parser().parse_args(argv)
    kwargs = vars(namespace)
    kwargs.pop("help", None)
    return Invocation(node, kwargs)


def _check_option_words(argv: list[str]) -> None:
    """Refuse lines with very many `-x` words: argparse's time grows with their square."""
    count = 0
    for word in argv:
        if word == "--":
            return
        if len(word) > 1 and word[0] == "-" and " " not in word and not _NEGATIVE.match(word):
            count += 1
            if count > MAX_OPTION_WORDS:
                raise CommandError(f"too many options in one line (more than {MAX_OPTION_WORDS})")


def _shown(word: str) -> str:
    """A word as an error quotes it: on one line and short."""
    return repr(word if len(word) <= 40 else word[:37] + "...")


def _group_usage(group: Group) -> str:
    prefix = f"{group.path} " if group.path else ""
    return f"usage: {prefix}{{{','.join(sorted(group.children))}}} ..."


def _closest(word: str, options: list[str]) -> str | None:
    import difflib

    match = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    return match[0] if match else None
