"""Running lines without a prompt: `.tsh` scripts, `-c "…"` and commands piped on stdin.

A script is read like typed input: `#` starts a comment line, a trailing `\\` continues the line,
`$1`…`$9`, `$@`, `$#` and `${NAME:-default}` are replaced, and the first failing line stops the run
(exit status 1) unless `--keep-going`. `exit [CODE]` at the top ends it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING

from tobio.errors import CommandError, TobioError
from tobio.principal import LOCAL_PERSON

if TYPE_CHECKING:
    from shell.output import Printer
    from shell.session import Session

# Compiled on first use (re's cache), as a plain command's start never uses it: ~1.3 M instructions a pattern.
_VARIABLE = r"\\\$|\$(?:(\d)|([@#])|\{(\w+)(?::-([^}]*))?\})"


class Interrupted(Exception):
    """Ctrl-C stopped a non-interactive run."""


def substitute(line: str, args: Sequence[str], name: str = "") -> str:
    """Replace `$1`, `${1}`, `$@`, `$#`, `$0` and `${NAME:-default}`; `\\$` is a literal `$`."""

    def value(match: re.Match[str]) -> str:
        text = match.group(0)
        if text == "\\$":
            return "$"
        digit, special, braced, default = match.groups()
        if special == "@":
            return " ".join(args)
        if special == "#":
            return str(len(args))
        key = digit or braced
        if key.isdigit():
            index = int(key)
            if index == 0:
                return name
            if index <= len(args):
                return args[index - 1]
        elif key in os.environ:
            return os.environ[key]
        if default is not None:
            return default
        what = f"${key}" if digit else f"${{{key}}}"
        if not key.isdigit():
            raise CommandError(f"{what} is not set (not in the environment)")
        raise CommandError(f"{what} is not set (the script got {len(args)} argument{'s' * (len(args) != 1)})")

    return re.sub(_VARIABLE, value, line)


def read_script(path: str) -> list[str]:
    """The lines of a `.tsh` file; unreadable, oversized or non-UTF-8 files are one CommandError naming it."""
    from tobio.config.files import read_text
    from tobio.config.limits import MAX_YAML_BYTES
    from tobio.errors import ConfigError

    try:
        return read_text(path, MAX_YAML_BYTES).splitlines()
    except ConfigError as exc:
        raise CommandError(str(exc)) from None


def _decoded(lines: Iterable[str], name: str) -> Iterator[str]:
    """`lines`, with a decoding failure (non-UTF-8 on stdin) turned into one clear line."""
    iterator = iter(lines)
    number = 0
    while True:
        try:
            line = next(iterator)
        except StopIteration:
            return
        except UnicodeDecodeError:
            raise CommandError(f"{name or '<input>'}:{number + 1}: not UTF-8 text") from None
        number += 1
        yield line


def logical_lines(lines: Iterable[str], name: str) -> Iterator[tuple[str, str]]:
    """Drop `#` comment lines and join `\\` continuations; yields (`name:lineno` or "", line)."""
    parts: list[str] = []
    start = 0
    for number, raw in enumerate(_decoded(lines, name), 1):
        line = raw.rstrip("\r\n")
        if not parts:
            start = number
            if line.lstrip().startswith("#"):
                continue
        if line.endswith("\\") and not line.endswith("\\\\"):
            parts.append(line[:-1])
            continue
        parts.append(line)
        yield f"{name}:{start}" if name else "", " ".join(p.strip() if i else p.rstrip() for i, p in enumerate(parts))
        parts = []
    if parts:
        yield f"{name}:{start}" if name else "", " ".join(p.strip() for p in parts)


class Batch:
    """Carries out lines through a Session, printing results; stops at the first error unless told."""

    def __init__(self, session: Session, printer: Printer, keep_going: bool = False, echo: bool = False,
                 args: Sequence[str] | None = None, name: str = "") -> None:
        self.session = session
        self.printer = printer
        self.keep_going = keep_going
        self.echo = echo
        self.args = args  # None: no `$` substitution (-c and stdin)
        self.name = name

    def run(self, lines: Iterable[tuple[str, str]]) -> int:
        """Run every line; returns the exit status (0, 1 after a failure, or what `exit N` asked)."""
        failed = False
        try:
            for where, text in self.session.chunks(lines):
                status = self.line(text, where)
                if isinstance(status, int) and not isinstance(status, bool):
                    return status
                if not status:
                    failed = True
                    if not self.keep_going:
                        return 1
        except (Interrupted, KeyboardInterrupt):
            self.printer.error("interrupted")
            return 130
        except TobioError as exc:  # reading the input failed (e.g. not UTF-8): one line, no traceback
            self.printer.error(exc)
            return 1
        return 1 if failed else 0

    def line(self, text: str, where: str) -> bool | int:
        """Carry out one line: True if it worked, False if it failed, an int to exit with."""
        try:
            if self.args is not None:
                text = substitute(text, self.args, self.name)
            action = self.session.plan(text)
        except TobioError as exc:
            self.printer.error(exc, where)
            return False
        if self.echo and action.kind != "none":
            self.printer.write(f"+ {text.strip()}\n", self.printer.err)
        if action.kind == "run":
            return self._run(action.line, where)
        if action.kind == "enter" and action.mode is not None:
            self.session.enter(action.mode)
        elif action.kind == "leave":
            self.session.leave()
        elif action.kind == "exit":
            return action.code
        elif action.kind == "info":
            self.printer.info(action.line)
        elif action.kind in ("chat", "say", "retry", "swipe"):
            message = "`chat` needs the interactive prompt; in scripts use `channel post` and `wait`"
            self.printer.error(CommandError(message), where)
            return False
        elif action.kind == "error" and action.error is not None:
            self.printer.error(action.error, where)
            return False
        return True

    def _run(self, line: str, where: str) -> bool:
        kernel = self.session.kernel
        future = kernel.submit(kernel.execute(line, caller=LOCAL_PERSON, emit=self.printer.emit))
        try:
            result = future.result()
        except KeyboardInterrupt:
            future.cancel()
            raise Interrupted from None
        except TobioError as exc:
            self.printer.error(exc, where)
            return False
        except Exception as exc:  # a bug is still one clear line
            self.printer.error(exc, where)
            return False
        self.printer.result(result)
        if result.enter is not None:
            from shell.session import Mode

            self.session.enter(Mode("group", result.enter.path, group=result.enter))
        return True
