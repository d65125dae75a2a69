"""Helpers to test the shell (and front ends built like it): a small kernel config, a scripted prompt.

`write_config` makes a kernel config with the scripted module and an `echo` agent in a temp dir,
`running_kernel` starts a kernel on it;
`PipeShell` runs a Repl on prompt_toolkit's pipe input and DummyOutput, types into it and waits
for what it prints.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shell.output import Style

ECHO_AGENT = """name: echo
type: scripted
description: Repeats what it hears.
channels: [lobby]
stream: {stream}
token_delay_s: {token_delay}
rules:
  - match: "^(hi|hello)\\\\b"
    reply: "Hello, {{sender}}!"
replies:
  - "You said: {{text}}"
"""


def write_config(directory: str | os.PathLike[str], stream: bool = False, token_delay: float = 0.01) -> Path:
    """configs/kernel.yaml + configs/agents/echo.yaml under `directory`; returns the kernel.yaml path."""
    root = Path(directory) / "configs"
    (root / "agents").mkdir(parents=True, exist_ok=True)
    (root / "kernel.yaml").write_text("modules: [scripted]\nchannels: [lobby]\nagents: [agents/*.yaml]\n")
    (root / "agents" / "echo.yaml").write_text(ECHO_AGENT.format(stream=str(stream).lower(), token_delay=token_delay))
    return root / "kernel.yaml"


@contextlib.contextmanager
def running_kernel(directory: str | os.PathLike[str], stream: bool = False) -> Iterator[Any]:
    """A started kernel on `write_config(directory)` and a DuckDB file there; closed afterwards."""
    from tobio.kernel import Kernel

    database = f"duckdb:///{Path(directory) / 'tobio-test.duckdb'}"
    kernel = Kernel(write_config(directory, stream=stream), database=database)
    kernel.start()
    try:
        yield kernel
    finally:
        kernel.close()


def shell_env(data_dir: str | os.PathLike[str]) -> dict[str, str]:
    """Environment for a `tobio-shell` subprocess: its own data dir, no plugins, no terminal queries."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOBIO_")}
    env.update(TOBIO_DATA_DIR=str(data_dir), TOBIO_LOAD_PLUGINS="", PROMPT_TOOLKIT_NO_CPR="1")
    env.update(TERM="xterm", NO_COLOR="1")
    return env


class PipeShell:
    """A Repl reading from a pipe; `type()` sends keys, `expect()` waits for printed text."""

    def __init__(self, kernel: Any, style: Style = "plain") -> None:
        from shell.commands import ShellCommands
        from shell.output import Printer
        from shell.session import Session

        owner = ShellCommands()
        owner.register(kernel.commands)
        self.kernel = kernel
        self.out, self.err = io.StringIO(), io.StringIO()
        self.session = Session(kernel, shell_owner=owner)
        self.printer = Printer(style, out=self.out, err=self.err)
        self._seen = 0
        self.pipe: Any = None
        self.repl: Any = None

    def run(self, script: Callable[[PipeShell], Any], timeout: float = 90.0) -> int:
        """Run the prompt on a fresh loop while `script(self)` (a coroutine function) types into it."""
        from prompt_toolkit.input import create_pipe_input
        from prompt_toolkit.output import DummyOutput

        from shell.repl import Repl
        from tobio.commands.complete import KernelSources

        async def main() -> int:
            with create_pipe_input() as pipe:
                self.pipe = pipe
                self.repl = Repl(self.session, self.printer, sources=KernelSources(self.kernel),
                                 input=pipe, output=DummyOutput(), patch_stdout=False)
                shell = asyncio.ensure_future(self.repl.run())
                await script(self)
                return await asyncio.wait_for(shell, timeout)

        loop = asyncio.new_event_loop()
        try:
            return loop.run_until_complete(asyncio.wait_for(main(), timeout))
        finally:
            loop.close()

    async def type(self, text: str, pause: float = 0.05) -> None:
        """Send keys (\\r is Enter, \\t is TAB, \\x04 is Ctrl-D) and let the prompt handle them."""
        self.pipe.send_text(text)
        await asyncio.sleep(pause)

    async def expect(self, text: str, timeout: float = 30.0, stream: str = "out") -> str:
        """Wait until `text` appears in what was printed since the last expect; returns that output."""
        target = self.out if stream == "out" else self.err
        deadline = time.monotonic() + timeout
        while True:
            seen = target.getvalue()[self._seen if stream == "out" else 0:]
            if text in seen:
                if stream == "out":
                    self._seen += seen.index(text) + len(text)
                return seen
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} not printed within {timeout} s; got {seen!r}")
            await asyncio.sleep(0.02)

    @property
    def buffer(self) -> str:
        """What is typed at the prompt right now."""
        return self.repl.prompt.default_buffer.text if self.repl is not None and self.repl.prompt else ""

    async def until(self, condition: Callable[[], bool], timeout: float = 30.0) -> None:
        """Wait until `condition()` holds (e.g. a completion has landed in the buffer)."""
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"condition not met within {timeout} s (buffer: {self.buffer!r})")
            await asyncio.sleep(0.02)
