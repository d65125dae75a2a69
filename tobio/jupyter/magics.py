"""`%tobio COMMAND` and `%%tobio` cells: the command tree in IPython, results shown as HTML tables."""

from __future__ import annotations

import sys
from typing import Any

from IPython.core.magic import Magics, line_cell_magic, magics_class, no_var_expand

from tobio.commands.parse import split_words
from tobio.commands.result import Result
from tobio.errors import CommandError, TobioError
from tobio.principal import LOCAL_PERSON


@magics_class
class TobioMagics(Magics):
    """Tobio's magics; the docstring of `tobio` is what `%tobio?` shows."""

    @no_var_expand
    @line_cell_magic
    def tobio(self, line: str, cell: str | None = None) -> Any:
        """Run Tobio commands on the notebook's shared kernel.

        %tobio agent ls                      one command; the result is the cell's value
        r = %tobio sql SELECT * FROM messages   r.to_pandas() gives a DataFrame
        %%tobio                              several commands, one per line (# comments)
        %tobio --config PATH [--database URL]   choose the kernel config (restarts the kernel)
        %tobio chat AGENT                    a chat widget (log, mood, input, send)

        SQL and JSON pass through as typed: no $variable or {expression} expansion.
        A bad command prints one clear error line; the kernel keeps working.
        """
        from tobio.jupyter.session import configure, get_kernel

        if cell is None and line.split()[:1] == ["chat"] and len(line.split()) == 2:
            from tobio.jupyter.chatview import ChatView

            return ChatView(line.split()[1])  # `%tobio chat tobio`: a chat widget in the cell
        if line.strip().startswith("--config") or line.strip().startswith("--database"):
            try:
                options = _options(line)
                configure(options.get("--config"), options.get("--database"))
            except TobioError as exc:
                print(f"error: {exc}", file=sys.stderr)
                return None
            line = ""
            if not cell:
                return None
        commands = [line] if cell is None else [*([line] if line.strip() else []), *cell.splitlines()]
        kernel = get_kernel()
        results: list[Result] = []
        for command in commands:
            command = command.strip()
            if not command or command.startswith("#"):
                continue
            try:
                result = kernel.run(command, caller=LOCAL_PERSON)  # the person at the notebook
            except CommandError as exc:
                print(f"error: {exc}" + (f"\n{exc.usage}" if exc.usage else ""), file=sys.stderr)
                continue
            except TobioError as exc:
                print(f"error: {exc}", file=sys.stderr)
                continue
            results.append(result)
            if cell is not None:
                assert self.shell is not None  # a cell magic runs inside a shell
                self.shell.display_pub.publish({"text/plain": result.to_plain(), "text/html": result._repr_html_()})
        if cell is None and results:
            return results[-1]
        return None


def _options(line: str) -> dict[str, str]:
    words = split_words(line)  # the command line's own parser: bounded, one clear error for bad quoting
    out = {}
    for i, word in enumerate(words):
        if word in ("--config", "--database") and i + 1 < len(words):
            out[word] = words[i + 1]
    return out
