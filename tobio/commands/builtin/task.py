"""`task ls|cancel`: the kernel's running coroutines (agents, jobs)."""

from __future__ import annotations

from tobio.commands import Arg, Context, Group, Result, table
from tobio.errors import CommandError


def register(root: Group) -> None:
    task = root.group("task", "Kernel tasks: agents and background jobs.")

    @task.command("ls", Arg("--all", flag=True, help="include recently finished tasks"), agents="people")
    def ls(ctx: Context, all: bool) -> Result:
        """List kernel tasks."""
        rows = [(t.id, t.name, t.kind, t.owner or "", t.state, t.started_at) for t in ctx.kernel.tasks.list(all)]
        return table(["id", "name", "kind", "owner", "state", "started"], rows)

    @task.command("cancel", Arg("id", type=int, help="task id", complete="task"), agents="people")
    async def cancel(ctx: Context, id: int) -> Result:
        """Cancel a running task (an agent's task: prefer `agent kill`)."""
        info = ctx.kernel.tasks.get(id)
        if info is not None and info.kind == "agent" and info.owner in ctx.kernel.agents.live:
            raise CommandError(f"task {id} is agent {info.owner}: use `agent pause` or `agent kill`")
        if not await ctx.kernel.tasks.cancel(id):
            raise CommandError(f"no running task {id} (see `task ls`)")
        return Result(text=f"cancelled task {id}")
