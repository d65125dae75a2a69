"""`help [COMMAND …]`: the tree's own documentation."""

from __future__ import annotations

from tobio.commands import Arg, Context, Group, Result
from tobio.commands.parse import walk_path
from tobio.errors import CommandError


def register(root: Group) -> None:
    @root.command("help", Arg("command", nargs="*", help="a command or group", complete="command"), agents="agents")
    def help_(ctx: Context, command: list[str]) -> Result:
        """Show the commands, or one command's usage."""
        if not command:
            return Result(text=ctx.kernel.commands.help_text())
        node, pos = walk_path(ctx.kernel.commands, " ".join(command))
        if pos < len(" ".join(command)):
            raise CommandError(f"no command '{' '.join(command)}' (try `help`)")
        return Result(text=node.help_text())
