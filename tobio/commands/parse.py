"""Bash-like parsing of a command line against the tree: shlex quoting, `--flags`, raw SQL tails."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from typing import Any

from tobio.commands.tree import Command, Group, Node
from tobio.errors import CommandError

_BARE_WORD = re.compile(r"\s*([^\s'\"\\]+)(?=\s|$)")
_OPTION = re.compile(r"\s*(--?[A-Za-z][\w-]*)(?=\s|$)")


@dataclass
class Invocation:
    """A resolved line: the node it names, its parsed arguments, and whether help was asked for."""

    node: Node
    kwargs: dict[str, Any] = field(default_factory=dict)
    help: bool = False


def split_words(text: str) -> list[str]:
    """shlex.split with a clear error for unbalanced quotes or a trailing backslash."""
    try:
        return shlex.split(text, comments=False, posix=True)
    except ValueError as exc:
        raise CommandError(f"bad quoting: {str(exc).lower()}") from None


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
        match = _OPTION.match(rest, pos)
        if not match:
            break
        token = match.group(1)
        option = cmd.option(token)
        if token in ("-h", "--help"):
            return ["--help"]
        if option is None:
            break
        argv.append(token)
        pos = match.end()
        if option.takes_value:
            value = re.compile(r"\s*(\S+)").match(rest, pos)
            if not value:
                break
            argv.extend(split_words(value.group(1)))
            pos = value.end()
    tail = rest[pos:].strip()
    if tail:
        argv.append(tail)
    return argv


def resolve(root: Group, line: str) -> Invocation | None:
    """Parse `line` into an Invocation; None for a blank line. Raises CommandError with usage."""
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
        raise CommandError(f"unknown command '{words[0]}'{where}{hint}", usage=_group_usage(node))
    assert isinstance(node, Command)
    argv = _raw_argv(node, rest) if node.raw_arg else split_words(rest)
    if "-h" in argv or "--help" in argv:
        if not node.raw_arg or argv == ["--help"]:
            return Invocation(node, help=True)
    namespace = node.parser().parse_args(argv)
    kwargs = vars(namespace)
    kwargs.pop("help", None)
    return Invocation(node, kwargs)


def _group_usage(group: Group) -> str:
    prefix = f"{group.path} " if group.path else ""
    return f"usage: {prefix}{{{','.join(sorted(group.children))}}} ..."


def _closest(word: str, options: list[str]) -> str | None:
    import difflib

    match = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    return match[0] if match else None
