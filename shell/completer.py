"""prompt_toolkit's view of the completion engine: the mode decides what the buffer is."""

from __future__ import annotations

from collections.abc import Iterator

from prompt_toolkit.completion import CompleteEvent, Completer, Completion
from prompt_toolkit.document import Document

from shell.session import Session
from tobio.commands.complete import Candidate, CommandCompleter

CHAT_WORDS = {"/exit": "leave the chat", "/cmd": "run a command without leaving", "/help": "what you can type here",
              "/retry": "another reply to your last line", "/swipe": "choose reply N of the last turn"}


class ShellCompleter(Completer):
    """Commands at `tobio>` and in subshells, SQL in `sql>`, slash commands in a chat."""

    def __init__(self, session: Session, engine: CommandCompleter) -> None:
        self.session = session
        self.engine = engine

    def candidates(self, text: str) -> list[Candidate]:
        """Everything that completes `text` (the buffer up to the cursor) where the prompt is."""
        mode = self.session.mode
        if mode is None or mode.kind == "group":
            extra = {"exit": "leave this subshell (Ctrl-D too)"} if mode else None
            return self.engine.complete(text, group=self.session.group, extra=extra)
        if mode.kind == "raw" and mode.command is not None:
            leave = Candidate("exit", -len(text), "exit", "leave this subshell", "command")
            return ([leave] if text and "exit".startswith(text) else []) + self.engine.complete_raw(mode.command, text)
        if not text.startswith("/"):
            return []
        head, space, rest = text.partition(" ")
        if not space:
            words = [Candidate(w + " ", -len(text), w, h, "command") for w, h in CHAT_WORDS.items() if w.startswith(text)]
            commands = [Candidate("/" + c.text, c.start - 1, c.display, c.help, c.kind) for c in self.engine.complete(text[1:])]
            return words + commands
        return self.engine.complete(rest if head == "/cmd" else text[1:])

    def get_completions(self, document: Document, complete_event: CompleteEvent) -> Iterator[Completion]:
        for c in self.candidates(document.text_before_cursor):
            yield Completion(c.text, c.start, display=c.display, display_meta=c.help)
