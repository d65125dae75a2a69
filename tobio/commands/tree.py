"""The one command tree: groups, commands and their declared arguments.

The shell's completer, `--help`, `.tsh` scripts, the `%tobio` magic and agents' tool calls all read
this tree. Commands parse their arguments with argparse (built from the declared `Arg`s), but errors
come back as CommandError with the usage, never as SystemExit.
"""

from __future__ import annotations

import argparse
import inspect
import math
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NoReturn

from tobio.config.limits import INT_MAX
from tobio.errors import CommandError
from tobio.hooks import current_owner

if TYPE_CHECKING:
    from tobio.commands.context import Context
    from tobio.commands.result import Result

Handler = Callable[..., "Result | str | None | Awaitable[Result | str | None]"]
Access = Literal["undeclared", "people", "agents"]


@dataclass(frozen=True)
class Arg:
    """A declared argument: positional (`name`) or option (`--name`); `complete` names a completion source."""

    name: str
    help: str = ""
    short: str | None = None
    type: Callable[[str], Any] = str
    default: Any = None
    nargs: str | int | None = None
    flag: bool = False
    choices: tuple[str | int, ...] | None = None
    complete: str | None = None
    metavar: str | tuple[str, ...] | None = None  # a tuple names each of nargs=N values
    raw: bool = False  # positional taking the rest of the line verbatim (quotes kept), e.g. SQL
    min: float | None = None  # for int/float: the smallest value accepted (ints: 0 unless told)
    max: float | None = None  # for int/float: the largest value accepted (ints: INT_MAX unless told)
    # What an agent caller may name here (tobio/commands/view.py): "self", "channel", "thread", "run",
    # "persona", "fixed" (agents leave it as is), "any", or a module's own (view.add_reach). Unset: taken
    # from `complete` ("agent" means "self", "channel" a channel the agent is on, ...), else any value.
    reach: str | None = None
    agent_value: Any = None  # with reach="fixed": what an agent gets instead of the default (e.g. its own role)

    @property
    def positional(self) -> bool:
        return not self.name.startswith("-")

    @property
    def dest(self) -> str:
        return self.name.lstrip("-").replace("-", "_")

    @property
    def takes_value(self) -> bool:
        return not self.flag


def confine_paths(args: Sequence[Arg], kwargs: dict[str, Any], private: Callable[[Path], bool] | None = None) -> dict[str, Any]:
    """For an agent's call: every file argument (`complete="file"`) resolved inside the data directory.

    Declared once on the argument, so every command that takes a file, now or added by a module later,
    keeps agents' reads and writes in the data directory; a relative path is taken from there.
    `private(path)`: the kernel's own files there (database, secrets), which an agent never names."""
    from tobio.paths import data_dir, within

    root = data_dir()
    out = dict(kwargs)
    for arg in args:
        if arg.complete != "file" or out.get(arg.dest) is None:
            continue
        value = out[arg.dest]
        paths = []
        for item in value if isinstance(value, list) else [value]:
            path = Path(str(item)).expanduser()
            inside = within(path if path.is_absolute() else root / path, root)
            if inside is None:
                raise CommandError(f"{arg.dest}: agents may only name files inside the data directory ({root})")
            if private is not None and private(inside):
                raise CommandError(f"{arg.dest}: agents may not name the kernel's own files, its database, "
                                   f"configuration or secrets ({inside.name})")
            paths.append(str(inside))
        out[arg.dest] = paths if isinstance(value, list) else paths[0]
    return out


def _one_line(message: str, limit: int = 200) -> str:
    """argparse quotes what it could not use; a hostile argument must not become a huge message."""
    text = " ".join(message.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _shown(text: str) -> str:
    return repr(text) if len(text) <= 24 else repr(text[:21] + "...")


def number_type(arg: Arg) -> Callable[[str], Any]:
    """The checked converter for an int or float argument: bounded, finite, one clear line otherwise.

    Integers are counts, ids and limits: unless the Arg says otherwise they lie in 0..INT_MAX, so
    `-n -5` or `--limit 10**30` are refused here for every command rather than in each handler.
    """
    kind = arg.type
    low = arg.min if arg.min is not None else (0 if kind is int else None)
    high = arg.max if arg.max is not None else (INT_MAX if kind is int else None)

    def convert(text: str) -> Any:
        word = text.strip()
        if len(word) > 40:  # int() of thousands of digits is slow, and no count needs them
            raise argparse.ArgumentTypeError(f"not a {kind.__name__} we accept: {_shown(text)} (too long)")
        try:
            value = kind(word)
        except (ValueError, OverflowError):
            raise argparse.ArgumentTypeError(f"expected a{'n' * (kind is int)} {kind.__name__}, not {_shown(text)}") from None
        if isinstance(value, float) and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"expected a finite number, not {_shown(text)}")
        if low is not None and value < low:
            raise argparse.ArgumentTypeError(f"must be at least {_bound(low)}, not {_shown(text)}")
        if high is not None and value > high:
            raise argparse.ArgumentTypeError(f"must be at most {_bound(high)}, not {_shown(text)}")
        return value

    convert.__name__ = kind.__name__
    return convert


def _bound(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise CommandError(_one_line(message), usage=_one_line(self.format_usage().strip(), 500))

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        raise CommandError(_one_line(message or "bad arguments"), usage=_one_line(self.format_usage().strip(), 500))


@dataclass(eq=False)
class Node:
    name: str
    help: str = ""
    parent: Group | None = field(default=None, repr=False)
    owner: Any = field(default=None, repr=False)  # the module that registered it, for unloading

    @property
    def path(self) -> str:
        parts: list[str] = []
        node: Node | None = self
        while node is not None and node.parent is not None:
            parts.append(node.name)
            node = node.parent
        return " ".join(reversed(parts))

    def help_text(self) -> str:
        """What `help PATH` and `PATH --help` print (commands and groups say more)."""
        return f"{self.path}: {self.help}"


@dataclass(eq=False)
class Command(Node):
    """A runnable command: `func(ctx, **args)` returning a Result, a string or None."""

    func: Handler | None = None
    args: tuple[Arg, ...] = ()
    # Who may run it besides the person: "undeclared" (nobody: the default, so a command that says
    # nothing is never an agent's), "people" (said explicitly), "agents" (within each Arg's reach).
    agents: Access = "undeclared"

    @property
    def raw_arg(self) -> Arg | None:
        return next((a for a in self.args if a.raw), None)

    def parser(self) -> argparse.ArgumentParser:
        parser = _Parser(prog=self.path, description=self.help, add_help=False, allow_abbrev=False)
        for arg in self.args:
            kwargs: dict[str, Any] = {"help": arg.help}
            if arg.flag:
                kwargs["action"] = "store_true"
            else:
                kind = number_type(arg) if arg.type in (int, float) else arg.type
                kwargs.update(type=kind, default=arg.default)
                if arg.nargs is not None:
                    kwargs["nargs"] = arg.nargs
                if arg.choices:
                    kwargs["choices"] = arg.choices
                if arg.metavar:
                    kwargs["metavar"] = arg.metavar
            if arg.positional:
                if arg.raw:
                    kwargs["nargs"] = "?" if arg.default is not None else None
                parser.add_argument(arg.name, **kwargs)
            else:
                names = [arg.short, arg.name] if arg.short else [arg.name]
                parser.add_argument(*names, dest=arg.dest, **kwargs)
        parser.add_argument("-h", "--help", action="store_true", help="show this help")
        return parser

    def usage(self) -> str:
        return self.parser().format_usage().strip()

    def help_text(self) -> str:
        return self.parser().format_help().strip()

    def option(self, token: str) -> Arg | None:
        for arg in self.args:
            if not arg.positional and token in (arg.name, arg.short):
                return arg
        return None

    async def invoke(self, ctx: Context, kwargs: dict[str, Any]) -> Any:
        assert self.func is not None
        if not ctx.caller.privileged:
            from tobio.commands.view import within_view
            from tobio.confined import is_private

            kwargs = await within_view(self, ctx, confine_paths(self.args, kwargs, lambda p: is_private(ctx.kernel, p)))
        out = self.func(ctx, **kwargs)
        if inspect.isawaitable(out):
            out = await out
        return out


@dataclass(eq=False)
class Group(Node):
    """A group of commands and subgroups; typing its name alone enters it as a subshell."""

    children: dict[str, Node] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)

    def add(self, node: Node, owner: Any = None) -> Node:
        """Attach `node`; it belongs to `owner`, else to the module whose `module_init` is running (so a
        module's commands leave with it without saying so), else to the kernel."""
        if node.name in self.children:
            raise ValueError(f"command {node.name!r} already exists in {self.path or 'the root'}")
        node.parent = self
        owner = owner if owner is not None else current_owner()
        if owner is not None:
            node.owner = owner
        self.children[node.name] = node
        return node

    def group(self, name: str, help: str = "", owner: Any = None) -> Group:
        """Create (or return the existing) subgroup `name`."""
        existing = self.children.get(name)
        if isinstance(existing, Group):
            return existing
        node = self.add(Group(name=name, help=help), owner)
        assert isinstance(node, Group)
        return node

    def command(self, name: str, *args: Arg, aliases: tuple[str, ...] = (), owner: Any = None,
                agents: Access = "undeclared") -> Callable[[Handler], Handler]:
        """Decorator: register `func` as `name`; its docstring's first line is the help. `agents` says
        whether agents may run it ("agents", within its arguments' reach) or only people ("people")."""

        def register(func: Handler) -> Handler:
            doc = inspect.getdoc(func) or ""
            command = Command(name=name, help=doc.splitlines()[0] if doc else "", func=func, args=args, agents=agents)
            self.add(command, owner)
            for alias in aliases:
                self.aliases[alias] = name
            return func

        return register

    def get(self, name: str) -> Node | None:
        return self.children.get(self.aliases.get(name, name))

    def remove_owned_by(self, owner: Any) -> None:
        """Drop everything `owner` registered (a module being unloaded)."""
        for name, node in list(self.children.items()):
            if node.owner is owner:
                del self.children[name]
            elif isinstance(node, Group):
                node.remove_owned_by(owner)
        for alias, target in list(self.aliases.items()):
            if target not in self.children:
                del self.aliases[alias]

    def walk(self) -> Iterator[Node]:
        for node in self.children.values():
            yield node
            if isinstance(node, Group):
                yield from node.walk()

    def help_text(self) -> str:
        width = max((len(n) for n in self.children), default=0)
        lines = [f"{self.path or 'tobio'}: {self.help}".rstrip(": ") if self.help or self.path else "Commands:"]
        for name in sorted(self.children):
            node = self.children[name]
            marker = " …" if isinstance(node, Group) else ""
            lines.append(f"  {name.ljust(width)}  {node.help}{marker}")
        if self.path:
            lines.append(f"Type `{self.path}` alone to enter it; `{self.path} COMMAND --help` for one command.")
        else:
            lines.append("`help COMMAND` or `COMMAND --help` for details; a group's name alone enters it.")
        return "\n".join(lines)
