"""Where the shell is (root, a group, a raw command such as `sql`, a chat) and what a line means there.

The same Session drives the interactive prompt and scripts, so a `.tsh` file behaves exactly like
typing its lines: `agent` alone enters the group, `ls` then means `agent ls`, `exit` goes back up,
and after `sql` alone lines gather until a statement ends with `;`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from tobio.commands.parse import resolve, split_words, walk_path
from tobio.commands.tree import Command, Group
from tobio.errors import CommandError, TobioError

if TYPE_CHECKING:
    from tobio.kernel import Kernel

LEAVE_WORDS = ("exit", "quit", "\\q")
HELP_WORDS = ("help", "\\?")
CHAT_HELP = """In a chat, what you type is said to the agent. Lines starting with `/`:
  /exit          leave the chat (Ctrl-D too)
  /cmd COMMAND   run a shell command without leaving (also /COMMAND, e.g. /agent ls)
  /retry         ask for another reply to your last line (the one shown is kept)
  /swipe N       choose reply N of the last turn (/swipe alone lists them)
  /help          this help
Ctrl-C stops the replies still streaming (and cancels the agent's model run)."""


@dataclass(frozen=True)
class Mode:
    """One level of the prompt: a group subshell, a raw command (`sql>`), or a chat with an agent."""

    kind: Literal["group", "raw", "chat"]
    label: str
    group: Group | None = None
    command: Command | None = None
    line: str = ""  # raw mode: what each input is appended to, e.g. "sql --write"
    args: dict[str, Any] = field(default_factory=dict)  # chat mode: agent, user, channel


@dataclass(frozen=True)
class Action:
    """What a line asks for; the REPL and the script runner carry it out."""

    kind: Literal["none", "run", "enter", "leave", "exit", "chat", "say", "retry", "swipe", "info", "error"]
    line: str = ""
    mode: Mode | None = None
    code: int = 0
    args: dict[str, Any] = field(default_factory=dict)
    error: TobioError | None = None


class Session:
    """The kernel plus a stack of modes; `plan(line)` says what a line means at the current level."""

    def __init__(self, kernel: Kernel, shell_owner: Any = None) -> None:
        self.kernel = kernel
        self.root: Group = kernel.commands
        self.stack: list[Mode] = []
        self.shell_owner = shell_owner  # whose `exit`/`chat` commands the shell carries out itself

    # -- where we are ------------------------------------------------------------------------
    @property
    def mode(self) -> Mode | None:
        return self.stack[-1] if self.stack else None

    @property
    def group(self) -> Group:
        """The innermost group subshell (the root at the top)."""
        return next((m.group for m in reversed(self.stack) if m.kind == "group" and m.group), self.root)

    def prompt(self) -> str:
        return f"{self.mode.label if self.mode else 'tobio'}> "

    def enter(self, mode: Mode) -> None:
        self.stack.append(mode)

    def leave(self) -> Mode | None:
        """Go up one level; returns the mode left, None at the top."""
        return self.stack.pop() if self.stack else None

    def needs_more(self, text: str) -> bool:
        """In `sql>`, a statement goes on until it ends with `;`."""
        mode = self.mode
        if mode is None or mode.kind != "raw" or mode.command is None:
            return False
        arg = mode.command.raw_arg
        stripped = text.strip()
        if not stripped or stripped in LEAVE_WORDS + HELP_WORDS or arg is None or arg.complete != "sql":
            return False
        from tobio.commands.complete import sql_is_complete  # here: the completer's module is ~10 ms to import

        return not sql_is_complete(text)

    def chunks(self, lines: Iterable[tuple[str, str]]) -> Iterator[tuple[str, str]]:
        """Group (where, line) pairs into what runs at once: in `sql>` a statement goes on to its `;`.

        Lazy on purpose: the caller runs each chunk before the next is read, so `sql` alone on one
        line changes how the following lines group.
        """
        pending, where = "", ""
        for place, line in lines:
            text = f"{pending}\n{line}" if pending else line
            where = where if pending else place
            if self.needs_more(text):
                pending = text
                continue
            pending = ""
            yield where, text
        if pending.strip():
            yield where, pending

    # -- what a line means -------------------------------------------------------------------
    def plan(self, text: str) -> Action:
        line = text.strip()
        mode = self.mode
        if not line:
            return Action("none")
        if mode is not None and mode.kind == "chat":
            if not line.startswith("/"):
                return Action("say", line=text.rstrip("\n"))
            word, _, rest = line[1:].partition(" ")
            if word in ("exit", "quit", "q"):
                return Action("leave")
            if word in ("help", "?"):
                return Action("info", line=CHAT_HELP)
            if word == "retry" and not rest.strip():
                return Action("retry")
            if word == "swipe":
                number = rest.strip()
                if number and not number.isdigit():
                    return Action("error", error=CommandError(f"/swipe takes the number of a reply, not '{number}'"))
                return Action("swipe", args={"number": int(number) if number else None})
            return self._command(rest.strip() if word == "cmd" else line[1:], self.root)
        if mode is not None and mode.kind == "raw":
            if line in LEAVE_WORDS:
                return Action("leave")
            if line in HELP_WORDS and mode.command is not None:
                return Action("run", line=f"help {mode.command.path}")
            return Action("run", line=f"{mode.line} {line}")
        return self._command(line, self.group)

    def absolute(self, line: str, group: Group) -> str:
        """`line` as typed at the root: inside `agent`, `ls` is `agent ls`, `help ls` is `help agent ls`."""
        if group is self.root:
            return line
        first, _, rest = line.partition(" ")
        if first == "help":
            words = rest.split()
            if not words:
                return f"help {group.path}"
            return f"help {group.path} {rest}" if group.get(words[0]) else line
        if group.get(first) is None and first not in ("-h", "--help") and self.root.get(first) is not None:
            return line
        return f"{group.path} {line}"

    def _command(self, line: str, group: Group) -> Action:
        line = self.absolute(line, group)
        node, pos = walk_path(self.root, line)
        rest = line[pos:].strip()
        if isinstance(node, Group):
            if node is not self.root and not rest:
                return Action("enter", mode=Mode("group", node.path, group=node))
            return Action("run", line=line)
        assert isinstance(node, Command)
        if self.shell_owner is not None and node.owner is self.shell_owner and node.name in ("exit", "chat"):
            try:
                invocation = resolve(self.root, line)
            except CommandError as exc:
                return Action("error", error=exc)
            if invocation is None or invocation.help:
                return Action("run", line=line)
            if node.name == "chat":
                return Action("chat", args=invocation.kwargs)
            code = invocation.kwargs.get("code")
            return Action("exit" if code is not None or not self.stack else "leave", code=code or 0)
        if node.raw_arg is not None and _only_options(node, rest):
            label = line.strip()
            return Action("enter", mode=Mode("raw", label, command=node, line=label))
        return Action("run", line=line)


def _only_options(cmd: Command, rest: str) -> bool:
    """Whether `rest` holds nothing but the command's own options (so its raw argument is missing)."""
    try:
        words = split_words(rest)
    except CommandError:
        return False
    i = 0
    while i < len(words):
        option = cmd.option(words[i].split("=", 1)[0])
        if option is None:
            return False
        i += 2 if option.takes_value and "=" not in words[i] else 1
    return True
