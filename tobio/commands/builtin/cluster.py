"""`kernel ls`, `agent move NAME --to KERNEL`: the kernels sharing this PostgreSQL, and where agents run.

People only: they show and change which process runs whom, and say nothing of any one agent's life.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from tobio.commands import Arg, Context, Group, Result, table
from tobio.errors import CommandError


def _cluster(ctx: Context) -> Any:
    cluster = ctx.kernel.cluster
    if cluster is None:
        raise CommandError("this kernel runs alone (kernel.yaml has no `cluster:` section on a PostgreSQL database)")
    return cluster


def register(root: Group) -> None:
    kernel = root.group("kernel", "The kernels sharing this database (tobio cluster).")

    @kernel.command("ls", agents="people")
    async def ls(ctx: Context) -> Result:
        """List the kernels sharing this database: where they run, since when, their last heartbeat, their agents.

        `state` is `up`, `stopping`, or `silent` once its heartbeat is older than the lease time (its agents
        are being adopted). `*` marks this kernel."""
        cluster = _cluster(ctx)
        from tobio.cluster import sql

        def read(conn: sa.Connection) -> list[Any]:
            return list(conn.exec_driver_sql(
                "SELECT k.id, k.host, k.pid, k.grp, k.started_at, k.heartbeat_at, k.stopping,"
                f" k.heartbeat_at < {sql.NOW} - make_interval(secs => %(s)s) AS silent,"
                " (SELECT count(*) FROM leases l WHERE l.kernel_id = k.id) AS agents FROM kernels k ORDER BY k.id",
                {"s": cluster.config.lease_s}))

        rows = []
        for r in await ctx.kernel.db.call(read):
            state = "stopping" if r.stopping else "silent" if r.silent else "up"
            rows.append((f"{r.id}{' *' if r.id == cluster.id else ''}", r.host, r.pid, r.grp or "",
                         r.started_at.strftime("%Y-%m-%d %H:%M:%S"), r.heartbeat_at.strftime("%H:%M:%S"), state, r.agents))
        return table(["id", "host", "pid", "group", "started", "heartbeat", "state", "agents"], rows)

    agent = root.group("agent", "Spawn, inspect and control agents.")

    @agent.command("move", Arg("name", help="agent name", complete="agent"),
                   Arg("--to", type=int, help="the kernel to run it (see `kernel ls`)"), agents="people")
    async def move(ctx: Context, name: str, to: int | None) -> Result:
        """Hand an agent to another kernel: its lease moves at once; the old kernel stops it, the new one starts it
        with its unhandled messages. Whatever the old kernel still writes for it is refused."""
        cluster = _cluster(ctx)
        from tobio.cluster import sql

        if to is None:
            raise CommandError("agent move: say where with --to KERNEL (see `kernel ls`)")

        def check(conn: sa.Connection) -> tuple[Any, Any, Any]:
            agent = conn.exec_driver_sql("SELECT id, config FROM agents WHERE name = %(n)s AND status <> 'killed'",
                                         {"n": name}).first()
            up = conn.exec_driver_sql(
                f"SELECT grp FROM kernels WHERE id = %(k)s AND NOT stopping AND heartbeat_at > {sql.NOW}"
                " - make_interval(secs => %(s)s)", {"k": to, "s": cluster.config.lease_s}).first()
            return agent, up, up[0] if up else None

        agent, up, group = await ctx.kernel.db.call(check)
        if agent is None:
            raise CommandError(f"no running agent named '{name}' (see `agent ls`)")
        if up is None:
            raise CommandError(f"no kernel {to} is up (see `kernel ls`)")
        agent_id, placed = agent[0], cluster.group_of(name, agent[1])
        if placed is not None and placed != group:
            raise CommandError(f"{name} runs only in kernel group '{placed}'; kernel {to} is in {repr(group) if group else 'none'}")
        moved = await cluster.control(sql.move, agent_id, to, cluster.config.lease_s)
        if not moved:
            return Result(text=f"{name} already runs in kernel {to}")
        if to != cluster.id:
            cluster.drop({agent_id})  # at once here; the others hear of it by NOTIFY
        return Result(text=f"{name} moves to kernel {to}")
