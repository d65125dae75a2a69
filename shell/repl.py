"""The interactive prompt: prompt_toolkit on the shell's own asyncio loop, the kernel on its thread.

Ctrl-C at the prompt clears the line (or stops a reply that is streaming in a chat); while a command
runs the terminal is in cooked mode, so Ctrl-C arrives as SIGINT and cancels that command only.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from typing import TYPE_CHECKING, Any

from shell.chat import Chat
from shell.session import Mode, Session
from tobio.errors import TobioError
from tobio.principal import LOCAL_PERSON

if TYPE_CHECKING:
    from prompt_toolkit import PromptSession
    from prompt_toolkit.formatted_text import StyleAndTextTuples

    from shell.output import Printer
    from tobio.commands.complete import KernelSources

PROMPT_STYLE = {"prompt": "ansicyan bold", "sender": "ansicyan bold", "continuation": "ansibrightblack"}
WELCOME = "Tobio shell · `help` lists commands · TAB completes · a group's name enters it · Ctrl-D leaves"


class Repl:
    """Reads lines at a prompt that shows where you are, and carries them out through the Session."""

    def __init__(
        self,
        session: Session,
        printer: Printer,
        *,
        sources: KernelSources | None = None,
        history_path: str | None = None,
        input: Any = None,
        output: Any = None,
        patch_stdout: bool = True,
        first: str | None = None,
    ) -> None:
        self.first = first  # a line to run before the first prompt (e.g. `chat tobio`)
        self.session = session
        self.printer = printer
        self.sources = sources
        self.history_path = history_path
        self.input, self.output = input, output
        self.patch_stdout = patch_stdout
        self.chat: Chat | None = None
        self.prompt: PromptSession[str] | None = None
        self._running: asyncio.Future[Any] | None = None
        self._interrupted = False

    # -- the loop ----------------------------------------------------------------------------
    async def run(self) -> int:
        """Prompt until `exit` or Ctrl-D at the top; returns the exit status."""
        from prompt_toolkit.patch_stdout import patch_stdout

        self.prompt = self._build_prompt()
        loop = asyncio.get_running_loop()
        if self.sources is not None:
            self.sources.warm()
        self.printer.info(WELCOME)
        self._catch_sigint(loop)
        try:
            with patch_stdout(raw=True) if self.patch_stdout else contextlib.nullcontext():
                if self.first:
                    code = await self.handle(self.first)
                    if code is not None:
                        return code
                while True:
                    try:
                        # Our SIGINT handler stays installed: in raw mode Ctrl-C is a key anyway.
                        text = await self.prompt.prompt_async(self._message, handle_sigint=False)
                    except KeyboardInterrupt:
                        if self.chat is not None:
                            self.chat.stop_streams()
                        continue
                    except EOFError:
                        if self.session.mode is None:
                            return 0
                        self._leave()
                        continue
                    code = await self.handle(text)
                    if code is not None:
                        return code
        finally:
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.remove_signal_handler(signal.SIGINT)
            if self.chat is not None:
                self.chat.close()

    async def handle(self, text: str) -> int | None:
        """Carry out one accepted input (pasted lines one by one); returns an exit status to stop with."""
        mode = self.session.mode
        if "\n" not in text.strip() or (mode is not None and mode.kind != "group"):
            return await self._handle_one(text)
        from shell.script import logical_lines

        for _, chunk in self.session.chunks(logical_lines(text.strip().splitlines(), "")):
            code = await self._handle_one(chunk)
            if code is not None:
                return code
        return None

    async def _handle_one(self, text: str) -> int | None:
        try:
            action = self.session.plan(text)
        except TobioError as exc:
            self.printer.error(exc)
            return None
        if action.kind == "run":
            await self._run(action.line)
        elif action.kind == "enter" and action.mode is not None:
            self._enter(action.mode)
        elif action.kind == "leave":
            self._leave()
        elif action.kind == "exit":
            return action.code
        elif action.kind == "chat":
            await self._open_chat(action.args)
        elif action.kind == "say" and self.chat is not None:
            try:
                await self.chat.say(action.line)
            except TobioError as exc:
                self.printer.error(exc)
        elif action.kind in ("retry", "swipe") and self.chat is not None:
            try:
                if action.kind == "retry":
                    await self.chat.retry()
                else:
                    self.printer.info(await self.chat.swipe(action.args.get("number")))
            except TobioError as exc:
                self.printer.error(exc)
        elif action.kind == "info":
            self.printer.info(action.line)
        elif action.kind == "error" and action.error is not None:
            self.printer.error(action.error)
        return None

    @property
    def busy(self) -> bool:
        """A command is running (Ctrl-C would cancel it)."""
        return self._running is not None and not self._running.done()

    def _catch_sigint(self, loop: asyncio.AbstractEventLoop) -> None:
        """Route SIGINT (Ctrl-C while a command runs, in cooked mode) to `interrupt`."""
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signal.SIGINT, self.interrupt)

    def interrupt(self) -> None:
        """SIGINT: cancel the running command, or stop the streaming replies; never the shell."""
        if self._running is not None and self.busy:
            self._interrupted = True
            self._running.cancel()
        elif self.chat is not None:
            self.chat.stop_streams()

    # -- carrying out ------------------------------------------------------------------------
    async def _run(self, line: str) -> None:
        kernel = self.session.kernel
        task = asyncio.ensure_future(kernel.arun(line, caller=LOCAL_PERSON, emit=self.printer.emit))  # the person at this prompt
        self._running = task
        try:
            result = await task
        except asyncio.CancelledError:
            if not self._interrupted:
                raise
            self._interrupted = False
            self.printer.info("interrupted")
            return
        except Exception as exc:  # TobioError or a bug: one line either way
            self.printer.error(exc)
            return
        finally:
            self._running = None
            if self.sources is not None:
                self.sources.invalidate()
        self.printer.result(result)
        if result.enter is not None:
            self._enter(Mode("group", result.enter.path, group=result.enter))

    def _enter(self, mode: Mode) -> None:
        self.session.enter(mode)
        if mode.kind == "group" and mode.group is not None:
            names = ", ".join(sorted(mode.group.children))
            self.printer.info(f"{mode.label}: {names} · `help` · `exit` or Ctrl-D goes back")
        elif mode.kind == "raw":
            self.printer.info(f"{mode.label}: end each statement with `;` · `exit` or Ctrl-D goes back")

    def _leave(self) -> None:
        left = self.session.leave()
        if left is not None and left.kind == "chat" and self.chat is not None:
            self.chat.close()
            self.chat = None

    async def _open_chat(self, args: dict[str, Any]) -> None:
        if self.chat is not None:
            self._leave()
        chat = Chat(self.session.kernel, args["agent"], user=args.get("user") or "user", channel=args.get("channel"))
        try:
            await chat.open(self.printer.chat_line, self._redraw)
        except TobioError as exc:
            self.printer.error(exc)
            return
        self.chat = chat
        self.session.enter(Mode("chat", f"chat:{chat.agent}", args={"agent": chat.agent, "channel": chat.channel}))
        paused = f" · {chat.agent} is paused: replies wait for `agent resume {chat.agent}`" if chat.paused else ""
        self.printer.info(f"talking with {chat.agent} on {chat.channel} · /exit leaves · /help{paused}")

    # -- drawing -----------------------------------------------------------------------------
    def _message(self) -> StyleAndTextTuples:
        """The prompt, under the replies still streaming in a chat."""
        parts: StyleAndTextTuples = []
        for sender, text in self.chat.pending() if self.chat is not None else []:
            parts += [("class:sender", f"{sender}: "), ("", f"{text}▌\n")]
        parts.append(("class:prompt", self.session.prompt()))
        return parts

    def _redraw(self) -> None:
        app = self.prompt.app if self.prompt is not None else None
        if app is not None and app.is_running:
            app.invalidate()

    def _build_prompt(self) -> PromptSession[str]:
        from prompt_toolkit import PromptSession
        from prompt_toolkit.application.current import get_app
        from prompt_toolkit.auto_suggest import AutoSuggestFromHistory
        from prompt_toolkit.completion import ThreadedCompleter
        from prompt_toolkit.filters import Condition
        from prompt_toolkit.history import InMemoryHistory
        from prompt_toolkit.key_binding import KeyBindings
        from prompt_toolkit.lexers import DynamicLexer, PygmentsLexer
        from prompt_toolkit.styles import Style
        from pygments.lexers.sql import SqlLexer

        from shell.completer import ShellCompleter
        from shell.history import RedactingFileHistory
        from tobio.commands.complete import CommandCompleter

        keys = KeyBindings()

        @keys.add("enter", filter=Condition(lambda: self.session.needs_more(get_app().current_buffer.text)))
        def _newline(event: Any) -> None:
            event.current_buffer.insert_text("\n")

        @keys.add("escape", "enter")
        def _accept(event: Any) -> None:
            event.current_buffer.validate_and_handle()

        sql = PygmentsLexer(SqlLexer)
        engine = CommandCompleter(self.session.root, self.sources)
        return PromptSession(
            history=RedactingFileHistory(self.history_path) if self.history_path else InMemoryHistory(),
            auto_suggest=AutoSuggestFromHistory(),
            completer=ThreadedCompleter(ShellCompleter(self.session, engine)),
            complete_while_typing=False,
            key_bindings=keys,
            lexer=DynamicLexer(lambda: sql if self.session.mode and self.session.mode.kind == "raw" else None),
            prompt_continuation=lambda width, line, soft: [("class:continuation", "." * max(width - 2, 0) + "> ")],
            style=Style.from_dict(PROMPT_STYLE),
            input=self.input,
            output=self.output,
        )
