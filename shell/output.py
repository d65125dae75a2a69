"""How results, errors and streamed output reach the person: rich on a terminal, plain or JSON in pipes.

rich is imported only when something is drawn on a terminal, so `tobio-shell -c …` in a pipe never
pays for it. Long tables and texts are cut on a terminal with a note saying how to see everything.
"""

from __future__ import annotations

import io
import json
import logging
import os
import sys
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal, TextIO

from tobio.commands.result import cell
from tobio.errors import CommandError, TobioError

if TYPE_CHECKING:
    from tobio.commands.result import Result

Style = Literal["rich", "plain", "json"]
BOLD, DIM, RED, CYAN, YELLOW, RESET = "\x1b[1m", "\x1b[2m", "\x1b[31m", "\x1b[36m", "\x1b[33m", "\x1b[0m"


class Printer:
    """Writes results to `out` and errors to `err` (the current sys streams unless given)."""

    def __init__(
        self,
        style: Style = "plain",
        out: TextIO | None = None,
        err: TextIO | None = None,
        max_rows: int = 200,
        debug: bool = False,
    ) -> None:
        self.style = style
        self.color = style == "rich" and not os.environ.get("NO_COLOR")  # https://no-color.org
        self._out, self._err = out, err
        self.max_rows = max_rows
        self.debug = debug
        self._lock = threading.Lock()  # results, streamed chunks and log lines come from two threads

    @property
    def out(self) -> TextIO:
        return self._out or sys.stdout

    @property
    def err(self) -> TextIO:
        return self._err or sys.stderr

    def write(self, text: str, stream: TextIO | None = None) -> None:
        with self._lock:
            target = stream or self.out
            target.write(text)
            target.flush()

    # -- results -----------------------------------------------------------------------------
    def result(self, result: Result) -> None:
        if all(v is None for v in (result.text, result.columns, result.data, result.title, result.note)):
            return
        if self.style == "json":
            self.write(json.dumps(result.to_json(), ensure_ascii=False, default=str) + "\n")
        elif self.style == "rich":
            self.write(self._rich(result))
        else:
            text = result.to_plain()
            if text:
                self.write(text + "\n")

    def _rich(self, result: Result) -> str:
        import shutil

        from rich import box
        from rich.console import Console
        from rich.table import Table
        from rich.text import Text

        console = Console(file=io.StringIO(), force_terminal=True, width=shutil.get_terminal_size().columns,
                          highlight=False, emoji=False)
        notes: list[str] = []
        with console.capture() as capture:
            if result.title:
                console.print(Text(result.title, style="bold"))
            if result.text:
                lines = result.text.splitlines()
                limit = self.max_rows * 2 if self.max_rows else len(lines)
                console.print(Text("\n".join(lines[:limit])))
                if len(lines) > limit:
                    notes.append(f"{len(lines) - limit} more lines not shown; pipe the output or use --max-rows 0")
            if result.columns is not None:
                rows = result.rows or []
                shown = rows[: self.max_rows] if self.max_rows else rows
                table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, header_style="bold cyan")
                for column in result.columns:
                    table.add_column(column, overflow="fold")
                for row in shown:
                    table.add_row(*(Text(cell(v)) for v in row))
                console.print(table)
                if not rows:
                    notes.append("no rows")
                if len(shown) < len(rows):
                    notes.append(f"showing {len(shown)} of {len(rows)} rows; --json, a pipe or --max-rows 0 shows all")
            for note in ([result.note] if result.note else []) + notes:
                console.print(Text(f"({note})", style="dim italic"))
        return capture.get()

    # -- streams, info, errors ---------------------------------------------------------------
    def emit(self, item: Any) -> None:
        """A piece of streamed output from a running command."""
        if isinstance(item, str):
            self.write(item)
        elif self.style == "json":
            self.write(json.dumps(item, ensure_ascii=False, default=str) + "\n")
        else:
            self.write(f"{item}\n")

    def chat_line(self, sender: str, text: str) -> None:
        name = f"{BOLD}{CYAN}{sender}{RESET}" if self.color else sender
        self.write(f"{name}: {text}\n")

    def info(self, text: str) -> None:
        """A hint for the person at the prompt (dim on a terminal)."""
        self.write(f"{DIM}{text}{RESET}\n" if self.color else f"{text}\n")

    def error(self, exc: BaseException | str, where: str = "") -> None:
        """One clear line (plus the usage, if any); the traceback only with --debug."""
        if isinstance(exc, BaseException) and not isinstance(exc, TobioError):
            hint = "" if self.debug else " (--debug shows the traceback)"
            message = f"internal error: {type(exc).__name__}: {exc}{hint}"
        else:
            message = str(exc)
        from tobio.secrets import redact_text

        message = redact_text(message)  # a server's error may quote the URL or header that held a key
        label = f"{RED}{BOLD}error:{RESET}" if self.color else "error:"
        text = f"{where}: {label} {message}" if where else f"{label} {message}"
        usage = exc.usage if isinstance(exc, CommandError) else None
        if usage:
            text += f"\n{usage}"
        if self.debug and isinstance(exc, BaseException):
            import traceback

            text = "".join(traceback.format_exception(exc)) + text
        self.write(text + "\n", self.err)


class ConsoleLogHandler(logging.Handler):
    """Kernel warnings as one line on stderr (all levels and tracebacks with --debug)."""

    def __init__(self, printer: Printer, debug: bool = False) -> None:
        super().__init__(logging.DEBUG if debug else logging.WARNING)
        self.printer = printer
        self.debug = debug

    def emit(self, record: logging.LogRecord) -> None:
        import traceback

        try:
            text = record.getMessage()
            if record.exc_info and record.exc_info[1] is not None:
                exc = record.exc_info[1]
                trace = "\n" + "".join(traceback.format_exception(exc)).rstrip()
                text += trace if self.debug else f": {type(exc).__name__}: {exc}"
            label = record.levelname.lower()
            if self.printer.color:
                label = f"{YELLOW if record.levelno < logging.ERROR else RED}{label}{RESET}"
            self.printer.write(f"{label}: {text}\n", self.printer.err)
        except Exception:  # logging must never raise
            self.handleError(record)


def install_log_handler(printer: Printer, debug: bool) -> Callable[[], None]:
    """Show the kernel's warnings (not Python's last-resort handler's raw records); returns the undo."""
    handler = ConsoleLogHandler(printer, debug)
    logger = logging.getLogger("tobio")
    level = logger.level
    logger.addHandler(handler)
    if debug:
        logger.setLevel(logging.DEBUG)

    def uninstall() -> None:
        logger.removeHandler(handler)
        logger.setLevel(level)

    return uninstall
