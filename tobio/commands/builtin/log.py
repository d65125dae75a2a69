"""`log tail`: the kernel's log, read back from the `logs` table."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from tobio.commands import Arg, Context, Group, Result, table
from tobio.db.tables import LogRow

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def register(root: Group) -> None:
    log = root.group("log", "The kernel's log (also in the `logs` table).")

    @log.command(
        "tail",
        Arg("--lines", short="-n", type=int, default=20, help="how many lines"),
        Arg("--level", default="DEBUG", choices=LEVELS, type=str.upper, help="lowest level to show"),
        Arg("--grep", help="only lines containing this text"),
        agents="people",  # the log quotes every agent's commands and errors
    )
    async def tail(ctx: Context, lines: int, level: str, grep: str | None) -> Result:
        """Show the last log lines."""
        await ctx.kernel.flush()
        wanted = LEVELS[LEVELS.index(level):]

        def read(conn: sa.Connection) -> list[tuple[Any, ...]]:
            query = sa.select(LogRow.c.id, LogRow.c.created_at, LogRow.c.level, LogRow.c.logger, LogRow.c.content).where(
                LogRow.c.level.in_(wanted)
            )
            if grep:
                query = query.where(LogRow.c.content.contains(grep))
            rows = conn.execute(query.order_by(LogRow.c.id.desc()).limit(lines)).all()
            return [tuple(r[1:]) for r in reversed(rows)]

        return table(["at", "level", "logger", "message"], await ctx.kernel.db.call(read))
