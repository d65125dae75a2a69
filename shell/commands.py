"""Commands the shell adds to the kernel's one tree, so completion, `help` and scripts see them too.

`exit` and `chat` are carried out by the shell itself (they change where the prompt is); `sleep`
and `wait` run on the kernel like any command and make `.tsh` scripts deterministic.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from tobio.commands import Arg, Context, Group, Result
from tobio.commands.tree import Handler
from tobio.errors import CommandError
from tobio.models.module import ModelsModule


class ShellCommands:
    """The owner of the shell's commands in the tree (so they can be told apart and removed)."""

    def register(self, root: Group) -> None:
        """Add `exit`, `chat`, `sleep` and `wait` unless the tree already has them."""
        taken = set(root.children)

        def command(name: str, *args: Arg, aliases: tuple[str, ...] = ()) -> Callable[[Handler], Handler]:
            if name in taken:
                return lambda func: func
            # The shell's own commands are a person's: an agent has no prompt to leave or chat from,
            # and `sleep`/`wait` would only hold its turn.
            return root.command(name, *args, aliases=tuple(a for a in aliases if a not in taken), owner=self,
                                agents="people")

        @command("exit", Arg("code", type=int, nargs="?", help="leave the shell with this status"), aliases=("quit",))
        def exit_(ctx: Context, code: int | None) -> None:
            """Leave the current subshell, or the shell at the top (Ctrl-D too)."""
            raise CommandError("`exit` is understood by tobio-shell only")

        @command(
            "chat",
            Arg("agent", help="the agent to talk to", complete="agent"),
            Arg("--user", default="user", help="your name in the conversation"),
            Arg("--channel", help="channel to talk on (default: dm.USER.AGENT)", complete="channel"),
        )
        def chat(ctx: Context, agent: str, user: str, channel: str | None) -> None:
            """Talk with an agent; its replies stream in. `/exit` leaves, `/cmd …` runs a command."""
            raise CommandError("`chat` needs tobio-shell's interactive prompt")

        @command("sleep", Arg("seconds", type=float, help="how long"))
        async def sleep(ctx: Context, seconds: float) -> None:
            """Pause for a number of seconds (Ctrl-C cuts it short)."""
            await asyncio.sleep(seconds)

        @command(
            "wait",
            Arg("--quiet", type=float, default=0.3, help="seconds without activity that count as done"),
            Arg("--timeout", type=float, default=30.0, help="give up after this many seconds"),
        )
        async def wait(ctx: Context, quiet: float, timeout: float) -> Result | None:
            """Wait until agents are idle: nothing unhandled, no model loading or running, nothing said for --quiet s."""
            await wait_quiet(ctx.kernel, quiet, timeout)
            return None


async def wait_quiet(kernel: Any, quiet: float, timeout: float) -> None:
    """Return once nothing is pending and nothing moved on any channel for `quiet` seconds.

    Pending: a running agent with mail in its inbox or a message in hand, a model run in progress,
    model weights loading (a persona's first reply waits on them with an empty inbox and no run yet),
    or, in the database, messages pushed to a running agent that it has not handled."""
    from tobio.agents.handling import unhandled_counts
    from tobio.progress import loads_in_progress

    loop = asyncio.get_running_loop()
    last = [loop.time()]

    def touch(_item: object) -> None:
        last[0] = loop.time()

    async def unhandled(running: list[Any]) -> list[str]:
        await kernel.flush()  # marks nobody waited for are counted once durable
        counts = await kernel.db.call(unhandled_counts)
        here = {a.id for a in kernel.agents.live.values()}
        elsewhere = [f"agent {i}: {n} unhandled in another kernel" for i, n in counts.items() if n and i not in here]
        return [f"{a.name}: {counts[a.id]} unhandled" for a in running if counts.get(a.id)] + (elsewhere if kernel.cluster else [])

    stops = [kernel.transport.listen(name, touch) for name in kernel.transport.known_channels()]
    try:
        deadline = loop.time() + timeout
        seen: tuple[Any, ...] = ()
        while True:
            now = loop.time()
            running = [a for a in kernel.agents.live.values() if not a.paused]
            state = tuple((a.name, a.handled, a.failures, a.inbox.qsize()) for a in running)
            if state != seen:
                seen, last[0] = state, now
            models = kernel.modules.get(ModelsModule)
            runs = list(models.runs.live.values()) if models is not None else []
            thinking = [r for r in runs if r.status == "in_progress"]
            busy = [f"{a.name}: {a.inbox.qsize()} in inbox" for a in running if a.inbox.qsize()]
            busy += [f"{a.name}: handling a message" for a in running if a.current is not None]
            busy += ["a model is running"] if thinking else []
            busy += ["a model is loading"] if loads_in_progress() else []
            if busy:
                last[0] = now
            elif now - last[0] >= quiet:
                busy = await unhandled(running)
                if not busy:
                    return
                last[0] = loop.time()
            if now >= deadline:
                raise CommandError(f"agents still busy after {timeout:g} s ({', '.join(busy) or 'messages still flowing'})")
            await asyncio.sleep(min(0.05, quiet / 4 or 0.01))
    finally:
        for stop in stops:
            stop()
