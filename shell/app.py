"""`tobio-shell`: start a kernel in-process, then a prompt, a script, `-c` commands or stdin.

Only argparse is imported up front; the kernel, prompt_toolkit and rich are imported when the
chosen mode needs them, so `tobio-shell -c "agent ls"` in a pipe never loads the prompt or rich.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from shell.output import Printer, Style
    from shell.session import Session
    from tobio.kernel import Kernel

USAGE_EXAMPLES = """examples:
  tobio-shell                          interactive prompt (TAB completes, Ctrl-D leaves)
  tobio-shell -c "agent ls"            one command, then exit
  tobio-shell setup.tsh alice bob      a script; $1 is alice, $2 is bob
  echo "sql SELECT 42;" | tobio-shell  commands from a pipe
"""


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="tobio-shell",
        description="A shell over the Tobio kernel: commands, subshells, SQL, chat with agents, .tsh scripts.",
        epilog=USAGE_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("script", nargs="?", help="a .tsh file to run (`-` reads stdin)")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="arguments for the script ($1, $2, …)")
    parser.add_argument("-c", dest="command", metavar="COMMAND", help="run COMMAND (one per line) and exit")
    parser.add_argument("--config", metavar="PATH", help="kernel config (default: $TOBIO_CONFIG, ./configs/kernel.yaml, else configs/ in the data dir)")
    parser.add_argument("--database", metavar="URL", help="database URL (default: DuckDB in the data dir)")
    parser.add_argument("--model", metavar="URL", default=os.environ.get("TOBIO_MODEL_URL") or None,
                        help="chat on an OpenAI-compatible server: http://HOST:PORT/v1[#MODEL] "
                             "(Ollama, llama.cpp, vLLM, OpenAI); key from $TOBIO_MODEL_API_KEY; "
                             "default $TOBIO_MODEL_URL, else the embedded model")
    parser.add_argument("--json", action="store_true", help="print each result as one JSON object per line")
    parser.add_argument("--plain", action="store_true", help="plain text even on a terminal")
    parser.add_argument("--keep-going", "-k", action="store_true", help="scripts: go on after a failing line (exit 1)")
    parser.add_argument("--echo", "-x", action="store_true", help="print each command before running it")
    parser.add_argument("--max-rows", type=int, default=200, metavar="N", help="rows shown on a terminal (0: all)")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and the kernel's debug log")
    parser.add_argument("--chat", metavar="AGENT", help="start chatting with AGENT (`/exit` for the shell)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `tobio-shell` console script; returns the exit status."""
    args = parse_args(argv)
    # No cyclic garbage collection while Tobio is imported and the kernel started: what that builds lives as
    # long as the kernel, so each pass would only re-scan it (~1.5% of a one-shot command). `_run` turns it
    # back on once the kernel is up (which freezes what boot built, see Kernel.start).
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _main(args, collecting)
    finally:
        if collecting:
            gc.enable()


def _main(args: argparse.Namespace, collecting: bool) -> int:
    from shell.output import Printer, install_log_handler

    interactive = args.command is None and args.script is None and sys.stdin.isatty()
    style: Style = "json" if args.json else "plain" if args.plain or not sys.stdout.isatty() else "rich"
    printer = Printer(style, max_rows=args.max_rows if style == "rich" else 0, debug=args.debug)
    lines = None
    if not interactive:
        lines = _input_lines(args, printer)
        if lines is None:
            return 2
    uninstall = install_log_handler(printer, args.debug)
    try:
        return _run(args, printer, lines, collecting)
    except KeyboardInterrupt:
        return 130
    finally:
        uninstall()


def _run(args: argparse.Namespace, printer: Printer, lines: Iterable[tuple[str, str]] | None, collecting: bool = True) -> int:
    """Start the kernel, add the shell's commands, then the prompt (`lines` is None) or the lines."""
    kernel = _start_kernel(args, printer)
    if collecting:
        gc.enable()  # main() turned it off for the start
    if kernel is None:
        return 1
    try:
        from shell.commands import ShellCommands
        from shell.session import Session

        owner = ShellCommands()
        owner.register(kernel.commands)
        session = Session(kernel, shell_owner=owner)
        if lines is None:
            return _interactive(session, printer, f"chat {args.chat}" if args.chat else None)
        from shell.script import Batch

        script_args = args.args if args.script not in (None, "-") else None  # `$1`… only in script files
        batch = Batch(session, printer, keep_going=args.keep_going, echo=args.echo, args=script_args, name=args.script or "")
        return batch.run(lines)
    finally:
        _close(kernel)


def _input_lines(args: argparse.Namespace, printer: Printer) -> Iterable[tuple[str, str]] | None:
    """The logical lines to run without a prompt (None if the script cannot be read)."""
    from shell.script import logical_lines

    if args.command is not None:
        return logical_lines(args.command.splitlines(), "")
    if args.script in (None, "-"):
        return logical_lines(sys.stdin, "<stdin>" if args.script else "")
    try:
        with open(args.script, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as exc:
        printer.error(f"cannot read {args.script}: {exc.strerror or exc}")
        return None
    except UnicodeDecodeError as exc:
        printer.error(f"cannot read {args.script}: not UTF-8 text (byte {exc.start})")
        return None
    return logical_lines(text.splitlines(), args.script)


def _start_kernel(args: argparse.Namespace, printer: Printer) -> Kernel | None:
    from tobio.errors import TobioError
    from tobio.kernel import Kernel
    from tobio.models.server_flag import kernel_config

    try:
        return Kernel(kernel_config(args.config, args.model), database=args.database).start()
    except TobioError as exc:
        printer.error(exc)
    except Exception as exc:  # a failed start is one clear line too
        printer.error(exc)
    return None


def _interactive(session: Session, printer: Printer, first: str | None = None) -> int:
    import asyncio

    from shell.repl import Repl
    from tobio.commands.complete import KernelSources
    from tobio.paths import data_dir

    history = os.environ.get("TOBIO_SHELL_HISTORY") or str(data_dir() / "shell_history")
    repl = Repl(session, printer, sources=KernelSources(session.kernel), history_path=history, first=first)
    loop = asyncio.new_event_loop()  # not asyncio.run: its SIGINT handling would cancel the whole shell
    try:
        return loop.run_until_complete(repl.run())
    finally:
        loop.close()


def _close(kernel: Kernel) -> None:
    """Flush and close the kernel; a second Ctrl-C while closing does not leave it half-closed."""
    for _ in range(2):
        try:
            kernel.close()
            return
        except KeyboardInterrupt:
            continue


if __name__ == "__main__":
    sys.exit(main())
