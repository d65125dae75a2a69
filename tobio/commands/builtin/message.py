"""`message retry|swipe|alternatives|edit|branches|branch`: regenerate an agent's latest reply and choose
among the alternatives; change a message and go on from it, what followed kept in a branch.

People only: choosing what an agent said rewrites its history and its state, which an agent must not do
to itself or another (tobio/commands/view.py)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from tobio.commands import Arg, Context, Group, Result, table
from tobio.errors import CommandError
from tobio.hooks import FIRST, PROMPT
from tobio.modules import on_first_call

if TYPE_CHECKING:
    from tobio.kernel import Kernel
    from tobio.swipes.service import Alternative, Swipes
    from tobio.turn.prompt import Prompt

CHANNEL = Arg("channel", help="the conversation's channel (a private chat is dm.USER.AGENT)", complete="channel")
AGENT = Arg("--agent", help="whose reply (default: the newest reply's sender)", complete="agent")
SHOWN = 72  # characters of each alternative in the table


def register(root: Group) -> None:
    message = root.group("message", "Messages: retry a reply and choose among the alternatives; edit one and go on from it.")

    @message.command("retry", CHANNEL, AGENT,
                     Arg("--timeout", type=float, default=300.0, help="seconds to wait for the new reply (0: do not wait)"),
                     agents="people")
    async def retry(ctx: Context, channel: str, agent: str | None, timeout: float) -> Result:
        """Regenerate the agent's latest reply on CHANNEL; the old one is kept as an alternative."""
        swipes = _swipes(ctx.kernel)
        said = await swipes.retry(channel, agent, timeout=timeout)
        alternatives = await swipes.alternatives(channel, agent)
        if said is None:
            return Result(text=f"asked for reply {len(alternatives) + 1} on {channel}", data={"alternatives": len(alternatives)})
        return _shown(alternatives, f"{said.sender}: {said.content}")

    @message.command("swipe", CHANNEL, Arg("number", type=int, help="which alternative (1 = the first said)"), AGENT,
                     aliases=("choose",), agents="people")
    async def swipe(ctx: Context, channel: str, number: int, agent: str | None) -> Result:
        """Choose alternative NUMBER of the latest reply on CHANNEL: the agent's history and mood follow it."""
        alternatives = await _swipes(ctx.kernel).choose(channel, number, agent)
        chosen = alternatives[number - 1].message
        return _shown(alternatives, f"{chosen.sender}: {chosen.content}")

    @message.command("alternatives", CHANNEL, AGENT, aliases=("alts",), agents="people")
    async def alternatives(ctx: Context, channel: str, agent: str | None) -> Result:
        """List the alternatives of the latest reply on CHANNEL; the chosen one is marked."""
        return _shown(await _swipes(ctx.kernel).alternatives(channel, agent))


    @message.command("edit", Arg("id", type=int, help="the message to change"),
                     Arg("text", nargs="+", help="its new text (quote it or not)"),
                     Arg("--branch", help="name the branch what followed moves to (default: edit-ID)"),
                     agents="people")
    async def edit(ctx: Context, id: int, text: list[str], branch: str | None) -> Result:
        """Change message ID and go on from it: it and what came after move to a branch that stays readable."""
        from tobio.swipes.edit import edit as edit_message

        edited = await edit_message(ctx.kernel, id, " ".join(text), branch)
        said = (f"message {id} is now {edited.message.id}; the {edited.moved} message(s) from it on are in "
                f"branch '{edited.branch}' (`message branch {edited.branch}`)")
        if edited.summarised:
            said += f"\nnote: the summaries of {', '.join(edited.summarised)} already fold the old text in; they stay as written"
        return Result(text=said, data={"id": edited.message.id, "branch": edited.branch, "moved": edited.moved,
                                       "summarised": edited.summarised})

    @message.command("branches", CHANNEL, agents="people")
    async def branches(ctx: Context, channel: str) -> Result:
        """List the branches edits left on CHANNEL: where each began and how many messages it holds."""
        from tobio.swipes import store

        swipes = _swipes(ctx.kernel)
        await swipes.ready()
        await ctx.kernel.flush()
        rows = await ctx.kernel.db.call(store.branches, channel)
        return table(["branch", "from msg", "messages", "left at"], rows)

    @message.command("branch", Arg("name", help="a branch (see `message branches CHANNEL`)"), agents="people")
    async def branch(ctx: Context, name: str) -> Result:
        """Show the messages of a branch an edit left, oldest first."""
        from tobio.swipes import store

        swipes = _swipes(ctx.kernel)
        await swipes.ready()
        messages = await ctx.kernel.db.call(store.branch_messages, name)
        if not messages:
            raise CommandError(f"no branch '{name}' (see `message branches CHANNEL`)")
        rows = [(m.id, m.created_at, m.sender or "-", m.role, m.content) for m in messages]
        return table(["msg", "at", "from", "role", "content"], rows, title=f"branch {name} ({messages[0].channel})")


def _shown(alternatives: list[Alternative], text: str | None = None) -> Result:
    rows = [(a.number, "*" if a.chosen else "", a.message.id, a.message.created_at, _short(a.message.content))
            for a in alternatives]
    data = [{"number": a.number, "chosen": a.chosen, "id": a.message.id, "content": a.message.content} for a in alternatives]
    return table(["#", "chosen", "msg", "at", "reply"], rows, text=text, data=data)


def _short(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= SHOWN else line[: SHOWN - 1] + "…"


def _swipes(kernel: Kernel) -> Swipes:
    """The kernel's swipe service, imported with the first command or turn that needs it (not at every start)."""
    from tobio.swipes.service import Swipes

    return Swipes.of(kernel)


def hook(kernel: Kernel) -> None:
    """The turn-start snapshot a retry goes back to (kernel-owned: every agent's turn, whatever is loaded)."""

    def turn_started() -> Callable[[Prompt], Awaitable[None]]:
        return _swipes(kernel).turn_started

    kernel.hooks.add(PROMPT, on_first_call(turn_started), order=FIRST)
