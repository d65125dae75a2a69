"""`emotion show|history|set`: look at and poke an agent's affect."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from tobio.commands import Arg, Context, Group, Result
from tobio.db.tables import StateRow
from tobio.emotion.affect import DIMENSIONS, Affect, Mood
from tobio.errors import CommandError
from tobio.replay import parse_time

if TYPE_CHECKING:
    from tobio.emotion.module import EmotionModule

BARS = "▁▂▃▄▅▆▇█"
NAME = Arg("agent", help="agent name", complete="agent")


def sparkline(values: list[float]) -> str:
    """Values in [-1, 1] as a row of block characters."""
    return "".join(BARS[min(len(BARS) - 1, int((v + 1) / 2 * len(BARS)))] for v in values)


def register(root: Group, module: EmotionModule) -> None:
    group = root.group("emotion", "Agents' affect: pleasure, arousal, dominance.", owner=module)

    @group.command("show", NAME, Arg("--at", help="at this time (ISO, `now`, or --at=-5m), decayed from the last appraisal"),
                   agents="agents")
    def show(ctx: Context, agent: str, at: str | None) -> Result:
        """Show an agent's current mood (or at a time), its baseline and named emotion."""
        target = ctx.kernel.agents.get(agent)
        mood = module.mood(target, parse_time(at) if at else None)
        rows = [(k, round(getattr(mood.affect, k), 3), round(getattr(mood.baseline, k), 3)) for k in DIMENSIONS]
        note = f"{mood.affect.label}; half-life {module.settings.half_life_s:g} s; at {mood.at:%Y-%m-%d %H:%M:%S}"
        return Result(columns=["dimension", "now", "baseline"], rows=rows, note=note,
                      data={"affect": mood.affect.as_dict(), "baseline": mood.baseline.as_dict(), "label": mood.affect.label})

    @group.command("history", NAME, Arg("--last", short="-n", type=int, default=60, help="how many changes"), agents="agents")
    async def history(ctx: Context, agent: str, last: int) -> Result:
        """Chart how an agent's mood changed (from the state table)."""
        target = ctx.kernel.agents.get(agent)
        await ctx.kernel.flush()

        def read(conn: sa.Connection) -> list[dict[str, Any]]:
            query = sa.select(StateRow.c.state_dict).where(StateRow.c.agent_id == target.id).order_by(StateRow.c.id)
            return [s for s in conn.execute(query).scalars()]

        states = await ctx.kernel.db.call(read) + [ctx.kernel.agents.full_state(target)]
        moods = [Mood.from_state(s["modules"]["emotion"]) for s in states if (s or {}).get("modules", {}).get("emotion")]
        moods = moods[-last:]
        if not moods:
            return Result(text=f"{agent} has no recorded mood yet")
        lines = [f"{k:<9} {sparkline([getattr(m.affect, k) for m in moods])}  now {getattr(moods[-1].affect, k):+.2f}" for k in DIMENSIONS]
        lines.append(f"{len(moods)} changes from {moods[0].at:%Y-%m-%d %H:%M:%S} to {moods[-1].at:%Y-%m-%d %H:%M:%S}; ▁ is -1, █ is +1")
        rows = [(m.at, m.affect.pleasure, m.affect.arousal, m.affect.dominance, m.affect.label) for m in moods]
        return Result(text="\n".join(lines), data=[{"at": r[0].isoformat(), "pleasure": r[1], "arousal": r[2],
                                                     "dominance": r[3], "label": r[4]} for r in rows])

    @group.command(
        "set", NAME,
        Arg("--pleasure", type=float, help="-1 … 1"), Arg("--arousal", type=float, help="-1 … 1"),
        Arg("--dominance", type=float, help="-1 … 1"), Arg("--baseline", flag=True, help="set the baseline instead"),
        agents="agents",  # its own mood only (NAME reaches the caller alone)
    )
    async def set_(ctx: Context, agent: str, pleasure: float | None, arousal: float | None, dominance: float | None, baseline: bool) -> Result:
        """Set an agent's mood (or baseline) for an experiment; recorded like any change."""
        target = ctx.kernel.agents.get(agent)
        values = {"pleasure": pleasure, "arousal": arousal, "dominance": dominance}
        if all(v is None for v in values.values()):
            raise CommandError("give at least one of --pleasure, --arousal, --dominance")
        for name, value in values.items():
            if value is not None and not -1 <= value <= 1:
                raise CommandError(f"--{name} must be between -1 and 1 (got {value})")
        mood = module.mood(target)
        which = mood.baseline if baseline else mood.affect
        changed = Affect(**{k: getattr(which, k) if (v := values[k]) is None else v for k in DIMENSIONS})
        mood = Mood(mood.affect, changed, mood.at) if baseline else Mood(changed, mood.baseline, mood.at)
        module.set_mood(target, mood)
        await ctx.kernel.agents.save_state(target)
        return Result(text=f"{agent}: {'baseline' if baseline else 'mood'} now {changed.as_dict()} ({changed.label})")
